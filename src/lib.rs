//! ratlip: the RATLIP text-to-image GAN on hand-written WGSL compute shaders.
//!
//! Layers, bottom up (see ARCHITECTURE.md):
//! - [`gpu`]: device, buffer pool, kernel cache, command encoding;
//! - [`tensor`]: device tensors (f32, contiguous, zero-copy reshape);
//! - [`ops`]: one module per kernel family: WGSL forward + backward, the Rust wrapper that
//!   checks shapes, a plain CPU reference, and the tape-recording variant;
//! - [`autograd`]: the tape that replays backward kernels;
//! - [`bench`]: kernel benchmarks at the model's shapes.

pub mod app;
pub mod autograd;
pub mod bench;
pub mod clip;
pub mod data;
pub mod error;
pub mod eval;
pub mod gpu;
pub mod images;
pub mod latent;
pub mod model;
pub mod ops;
pub mod rng;
pub mod tensor;
pub mod train;
pub mod weights;

pub use autograd::{Grads, Tape, Var};
pub use error::{Error, Result};
pub use gpu::{Gpu, GpuOptions};
pub use tensor::Tensor;
