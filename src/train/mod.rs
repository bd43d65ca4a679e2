//! Training (MODEL.md §5): the GALIP objective that RATLIP keeps, one step at a time.
//!
//! - [`adam`]: torch.optim.Adam over the parameters under a set of name prefixes, state kept
//!   per name (so it can be saved next to the weights under the same vocabulary);
//! - [`objective`]: the D step (hinge real / mismatch / fake + MA-GP), the G step
//!   (−NetC − 4·cos) on the same fake, and [`train_step`] = both, as the released loop.
//!   MA-GP's parameter gradient (a double backward in PyTorch) is a central difference of two
//!   first-order passes through NetD/NetC with their LeakyReLU slopes frozen at the real
//!   features (`Bind::record_slopes` / `replay_slopes`), which makes it exact.
//! - [`data`]: datasets (folder, AttnGAN/CUB), the released augmentation on worker threads,
//!   the caption-embedding cache;
//! - [`run`]: a run folder: config, metrics, samples, checkpoints, bit-exact resume.
//! - [`clip`]: contrastive training of an in-house CLIP (`ratlip train-clip`), its run folder;
//!   [`hard_negatives`]: captions said the other way round, as extra negatives for it;
//!   [`attribute_head`]: the renderer's labels as an auxiliary loss on its image side;
//!   [`zero_shot`]: its zero-shot attribute accuracy on synthetic images.

pub mod adam;
pub mod attribute_head;
pub mod checkpoints;
pub mod clip;
pub mod data;
pub mod hard_negatives;
pub mod objective;
pub mod run;
pub mod twins;
pub mod zero_shot;

pub use adam::Adam;
pub use objective::{d_losses, d_step, g_losses, g_step, generate_fake, grad_norm, ma_gp, train_step, Batch, Contrast, DStep, DTerms, Fake, GStep, GTerms, MaGp, Metrics, Shifts, DIV_TAU, DIV_W, HARD_NEGATIVE_W, MAGP_STEP, MAGP_W, PIXEL_W, SIM_W};
pub use run::{Outcome, Run, RunConfig, StepReport};
