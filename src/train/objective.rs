//! One step of the GALIP objective (MODEL.md §5) with the released loop's semantics
//! (tobran/GALIP code/lib/modules.py, train() and MA_GP_FP32):
//!
//! ```text
//! fake = G(z, [z; s])                 once, BatchNorm in training mode (running stats move once)
//! D step:  L_real = mean relu(1 − NetC(NetD(feats_r), s))
//!          L_mis  = mean relu(1 + NetC(NetD(feats_r), s_mis))      s_mis[i] = s[(i+1) mod B]
//!          L_fake = mean relu(1 + NetC(NetD(feats_f.detach()), s))
//!          L_D = L_real + (L_fake + L_mis)/2 + MA-GP;   Adam on NetD + NetC
//!          (`--hard-negative-w w`, not released: + w/2 · mean relu(1 + NetC(NetD(feats_r), s̃)),
//!           s̃ each real image's contrast caption; see `d_losses`)
//! G step:  L_G = −mean NetC(NetD'(feats_f), s) − 4 · mean cos(emb_f, s)   (NetD' = after its update)
//!          backpropagated through the SAME fake's tape;   Adam on G
//! ```
//! The released code builds the mismatched captions as `cat(s[1:], s[:1])`, i.e. a roll by
//! −1, not +1 as MODEL.md writes it; we follow the code (at B = 2 the two agree).

use std::collections::BTreeMap;

use crate::autograd::{Tape, Var};
use crate::error::{Error, Result};
use crate::model::params::ParamVars;
use crate::model::{Bind, Model, NET_C, NET_D, NET_G};
use crate::ops::elementwise::{self, Activation};
use crate::ops::reduce::{self, BinaryOp};
use crate::ops::shape::{self, roll0};
use crate::tensor::Tensor;
use crate::train::adam::{Adam, LR_D, LR_G};

/// Weight of the text–image cosine term in L_G (the released `sim_w`); a run may set another.
pub const SIM_W: f32 = 4.0;

/// Weight of MA-GP in L_D (the released 2 · mean ‖g‖⁶); a run may set another.
pub const MAGP_W: f32 = 2.0;

/// Weight of the pixel term in L_G: 0, as released (see `g_losses`).
pub const PIXEL_W: f32 = 0.0;

/// Weight of the diversity term in L_G: 0, as released (see `g_losses`).
pub const DIV_W: f32 = 0.0;

/// Where the diversity term stops paying: the ratio mean|G(z₁, s) − G(z₂, s)| / mean|z₁ − z₂|
/// it rewards up to. On the synthetic faces (tools/measure/real_pairs.py, 32 px, [-1, 1]) two
/// real images with every attribute equal differ by a mean |Δ| of 0.10, two that match the
/// README's prompt (background and skin left free) by 0.37, two at random by 0.42; two normal
/// noise vectors differ by 2/√π ≈ 1.13 per entry. So 0.25 (a mean |Δ| of 0.28) asks for less
/// spread than a prompt that leaves attributes free has in the data, more than a full one.
pub const DIV_TAU: f32 = 0.25;

/// Weight of L_D's hard-negative term: 0, as released (see `d_losses`).
pub const HARD_NEGATIVE_W: f32 = 0.0;

/// L_D's weights. `DTerms::RELEASED` is the released objective.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DTerms {
    /// MA-GP (released 2).
    pub magp_w: f32,
    /// The hinge on real images paired with their contrast captions (not released; 0 is off;
    /// a batch without `Batch::contrast` has no such images, and no term).
    pub hard_negative_w: f32,
}

impl DTerms {
    pub const RELEASED: DTerms = DTerms { magp_w: MAGP_W, hard_negative_w: HARD_NEGATIVE_W };
}

/// L_G's weights. `GTerms::RELEASED` is the released objective.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GTerms {
    /// The text–image cosine term (released `sim_w`).
    pub sim_w: f32,
    /// The L1 pull towards the batch's real image (not released; 0 is off).
    pub pixel_w: f32,
    /// The diversity reward (not released; 0 is off; needs `Batch::noise2`).
    pub div_w: f32,
    /// The ratio the diversity reward is capped at.
    pub div_tau: f32,
}

impl GTerms {
    pub const RELEASED: GTerms = GTerms { sim_w: SIM_W, pixel_w: PIXEL_W, div_w: DIV_W, div_tau: DIV_TAU };
}

/// The central difference's step for MA-GP's parameter gradient, relative: the inputs move by
/// MAGP_STEP · ‖(feats_r, s)‖ along v. With the LeakyReLU slopes frozen at feats_r the network
/// is affine in its input, so the difference is exact at any step; a large one keeps f32
/// rounding of the two gradients (≈ 1e-7 of each, divided by the step) small. See ma_gp.
pub const MAGP_STEP: f32 = 1.0;

/// One batch: images [B, 3, S, S] in [-1, 1], sentence embeddings [B, cond], noise [B, z],
/// and, when the run augments, the shifts that move real and fake images before CLIP sees
/// them; when it rewards diversity, a second noise [B, z] for the same captions; when D
/// learns from hard negatives, the contrast captions of the rows that have one.
pub struct Batch {
    pub images: Tensor,
    pub sent_emb: Tensor,
    pub noise: Tensor,
    pub shifts: Option<Shifts>,
    pub noise2: Option<Tensor>,
    pub contrast: Option<Contrast>,
}

/// Real images' contrast captions (`train::hard_negatives::contrasts`: the caption with its
/// mood, glasses or beard said the other way round): the batch rows that have one, ascending,
/// and their sentence embeddings [rows, cond].
pub struct Contrast {
    pub rows: Vec<usize>,
    pub sent_emb: Tensor,
}

/// DiffAugment's translation (Zhao et al. 2020), drawn per sample and separately for the real
/// and the fake images: [B, 2] (rows, columns) each, whole pixels, zero fill. Not in the
/// released code; `ratlip train --augment-shift K` turns it on. A ViT's gradient with respect
/// to the pixels repeats with its patch grid, so G, which learns only through the frozen CLIP,
/// is pushed towards patterns locked to that grid; moving the images by up to K pixels each
/// step unlocks them, while every loss term (NetD's, NetC's, the cosine) still sees the image.
pub struct Shifts {
    pub real: Tensor,
    pub fake: Tensor,
}

impl Batch {
    fn check(&self, model: &Model) -> Result<usize> {
        let c = &model.config;
        let b = self.images.shape().first().copied().unwrap_or(0);
        let s = c.image_size;
        if b == 0 || self.images.shape() != [b, 3, s, s] {
            return Err(Error::shape("train batch", format!("images {:?}, expected [B ≥ 1, 3, {s}, {s}]", self.images.shape())));
        }
        if let Some(sh) = &self.shifts {
            if sh.real.shape() != [b, 2] || sh.fake.shape() != [b, 2] {
                return Err(Error::shape("train batch", format!("shifts {:?} and {:?} for {b} images, expected [{b}, 2]", sh.real.shape(), sh.fake.shape())));
            }
        }
        if let Some(z2) = &self.noise2 {
            if z2.shape() != [b, c.z_dim] {
                return Err(Error::shape("train batch", format!("noise2 {:?} for {b} images, expected [{b}, {}]", z2.shape(), c.z_dim)));
            }
        }
        if let Some(con) = &self.contrast {
            let k = con.rows.len();
            if k == 0 || con.rows.windows(2).any(|w| w[0] >= w[1]) || con.rows[k - 1] >= b || con.sent_emb.shape() != [k, c.cond_dim] {
                return Err(Error::shape(
                    "train batch",
                    format!("contrast rows {:?} with sent_emb {:?} for {b} images: expected 1 to {b} ascending rows below {b} and [rows, {}]", con.rows, con.sent_emb.shape(), c.cond_dim),
                ));
            }
        }
        if self.sent_emb.shape() != [b, c.cond_dim] || self.noise.shape() != [b, c.z_dim] {
            return Err(Error::shape(
                "train batch",
                format!("sent_emb {:?} and noise {:?} for {b} images, expected [{b}, {}] and [{b}, {}]", self.sent_emb.shape(), self.noise.shape(), c.cond_dim, c.z_dim),
            ));
        }
        Ok(b)
    }
}

/// The step's fake batch: G's tape kept alive from the D step to the G step, so that G runs
/// (and moves its BatchNorm running statistics) once, as in torch.
pub struct Fake {
    tape: Tape,
    g_vars: ParamVars,
    /// CLIP features [B, n, W, g, g] and image embedding [B, embed] of the fake images (moved
    /// by `Batch::shifts` when the run augments).
    pub features: Var,
    pub embedding: Var,
    pub images: Var,
    /// G(noise2, s) on the same tape, when the batch has a second noise (only L_G's
    /// diversity term sees it: D and CLIP do not).
    pub images2: Option<Var>,
}

/// G(z, s) in training mode, then the discriminator's CLIP view of it, on one tape.
pub fn generate_fake(model: &mut Model, batch: &Batch) -> Result<Fake> {
    batch.check(model)?;
    let tape = Tape::new(model.params.gpu());
    let cx = Bind::new(&tape, &model.params, &[NET_G], true);
    let z = tape.constant(batch.noise.clone());
    // The released code differentiates sent_emb too, but it is a leaf there (the text
    // encoder is frozen): no parameter sees that gradient, so s is a constant here.
    let s = tape.constant(batch.sent_emb.clone());
    let images = model.generate_on(&cx, &z, &s)?;
    let images2 = match &batch.noise2 {
        Some(z2) => Some(model.generate_on(&cx, &tape.constant(z2.clone()), &s)?),
        None => None,
    };
    let g_vars = cx.finish();
    let seen = match &batch.shifts {
        Some(sh) => tape.translate(&images, &sh.fake)?,
        None => images.clone(),
    };
    let (features, embedding) = model.clip_features(&tape, &seen)?;
    // G ran in training mode: BatchNorm counts each pass, as torch does.
    for _ in 0..1 + usize::from(images2.is_some()) {
        model.params.count_batch_norm_pass(NET_G)?;
    }
    Ok(Fake { tape, g_vars, features, embedding, images, images2 })
}

/// MA-GP at (feats_r, s) and its gradient with respect to NetD/NetC's parameters.
pub struct MaGp {
    pub value: f32,
    pub grads: BTreeMap<String, Tensor>,
    /// The absolute step ε of the central difference (0 when the input gradient vanished).
    pub step: f32,
}

fn sum_sq(t: &Tensor, from_axis: usize) -> Result<Tensor> {
    let axes: Vec<usize> = (from_axis..t.dims()).collect();
    reduce::sum(&elementwise::mul(t, t)?, &axes, false)
}

fn scalar(t: &Tensor) -> Result<f32> {
    let v = t.to_vec()?;
    v.first().copied().ok_or_else(|| Error::Other("empty loss tensor".into()))
}

/// MA-GP = 2 · mean_b ‖(∂out/∂feats_r, ∂out/∂s)_b‖₂⁶, out = NetC(NetD(feats_r), s), the
/// gradient being of Σ out (samples are independent, so row b is ∂out_b/∂input_b).
///
/// Its parameter gradient is Σ_b v_b · ∂g_b/∂θ with v = ∂MA-GP/∂g = (12/B)‖g_b‖⁴ g_b, i.e. the
/// θ-gradient of the directional derivative of Σ out along v (PyTorch's create_graph=True
/// double backward). Let D_x be NetD/NetC with every LeakyReLU's slope frozen at its value
/// for the input x: D_x agrees with D at x, has the same input gradient there, and is affine
/// in its input everywhere, so `(∇θ Σ D_x(x + εv) − ∇θ Σ D_x(x − εv)) / 2ε` is that
/// θ-gradient exactly, for any ε: two first-order backward passes instead of a double
/// backward. (MODEL.md's plain central difference on D itself is exact only when no kink
/// lies within ±εv; but ∇θ D jumps at a kink — a slope change times an activation, divided
/// by 2ε — and with thousands of units some kink is that close at any ε f32 can resolve:
/// on the tiny galip fixture, errors of 3 to 30 times the gradient itself at relative steps
/// 1e-1 to 1e-4, in float64 PyTorch as well; exact only from 1e-6 on, where f32 cannot go.)
pub fn ma_gp(model: &Model, features: &Tensor, sent_emb: &Tensor, weight: f32, rel_step: f32) -> Result<MaGp> {
    let gpu = model.params.gpu();
    let b = features.shape().first().copied().unwrap_or(0);
    if b == 0 || sent_emb.shape().first() != Some(&b) {
        return Err(Error::shape("MA-GP", format!("features {:?} and sent_emb {:?}", features.shape(), sent_emb.shape())));
    }
    if !(rel_step > 0.0 && rel_step.is_finite()) {
        return Err(Error::Other(format!("MA-GP: the central difference's step must be positive, got {rel_step}")));
    }
    if weight == 0.0 {
        // Switched off: no term, no gradient, and none of the three passes below.
        return Ok(MaGp { value: 0.0, grads: BTreeMap::new(), step: 0.0 });
    }
    let w = weight as f64;
    // g: ∂ Σ out / ∂ (feats, s), parameters frozen for this pass.
    let slopes;
    let (gx, gs) = {
        let tape = Tape::new(gpu);
        let cx = Bind::new(&tape, &model.params, &[], true);
        cx.record_slopes();
        let x = tape.var(features.clone());
        let s = tape.var(sent_emb.clone());
        let out = model.judge(&cx, &x, &s)?;
        slopes = cx.take_slopes();
        drop(cx.finish());
        let mut g = tape.backward(&out)?;
        let missing = || Error::Other("MA-GP: no input gradient reached the features".into());
        (g.take(&x).ok_or_else(missing)?, g.take(&s).ok_or_else(missing)?)
    };
    let n2: Vec<f64> = sum_sq(&gx, 1)?.to_vec()?.iter().zip(sum_sq(&gs, 1)?.to_vec()?).map(|(&a, c)| a as f64 + c as f64).collect();
    let value = w * n2.iter().map(|q| q.powi(3)).sum::<f64>() / b as f64;
    // v_b = (6w/B) ‖g_b‖⁴ g_b; ‖v‖ fixes the absolute step from the relative one.
    let coef: Vec<f64> = n2.iter().map(|q| 6.0 * w / b as f64 * q * q).collect();
    let v_norm = coef.iter().zip(&n2).map(|(c, q)| c * c * q).sum::<f64>().sqrt();
    let in_norm = (scalar(&reduce::sum(&elementwise::mul(features, features)?, &(0..features.dims()).collect::<Vec<_>>(), false)?)? as f64
        + scalar(&reduce::sum(&elementwise::mul(sent_emb, sent_emb)?, &[0, 1], false)?)? as f64)
        .sqrt();
    if v_norm == 0.0 || !v_norm.is_finite() {
        return Ok(MaGp { value: value as f32, grads: BTreeMap::new(), step: 0.0 });
    }
    let eps = rel_step as f64 * in_norm.max(1e-12) / v_norm;
    // x ± ε v, with ε·coef_b folded into one per-sample factor on g.
    let k: Vec<f32> = coef.iter().map(|c| (eps * c) as f32).collect();
    let shift = |g: &Tensor| -> Result<Tensor> {
        let mut shape = vec![1usize; g.dims()];
        shape[0] = b;
        reduce::broadcast_binary(g, &Tensor::from_slice(gpu, &shape, &k)?, BinaryOp::Mul)
    };
    let (dx, ds) = (shift(&gx)?, shift(&gs)?);
    let tape = Tape::new(gpu);
    let cx = Bind::new(&tape, &model.params, &[NET_D, NET_C], true);
    cx.replay_slopes(slopes.clone());
    let plus = model.judge(&cx, &tape.constant(elementwise::add(features, &dx)?), &tape.constant(elementwise::add(sent_emb, &ds)?))?;
    cx.replay_slopes(slopes);
    let minus = model.judge(&cx, &tape.constant(elementwise::axpy(features, -1.0, &dx)?), &tape.constant(elementwise::axpy(sent_emb, -1.0, &ds)?))?;
    let diff = tape.axpy(&plus, -1.0, &minus)?;
    let vars = cx.finish();
    let seed = Tensor::full(gpu, diff.shape(), (0.5 / eps) as f32)?;
    let mut g = tape.backward_with(&diff, Some(seed), &[])?;
    Ok(MaGp { value: value as f32, grads: vars.gradients(&mut g), step: eps as f32 })
}

/// What the D step measured, and L_D's gradients (already applied by Adam).
pub struct DStep {
    pub loss_real: f32,
    pub loss_mis: f32,
    pub loss_fake: f32,
    /// mean relu(1 + NetC(NetD(feats_r), s̃)) over the rows with a contrast caption, when the
    /// batch has them (L_D adds hard_negative_w/2 × it).
    pub loss_contrast: Option<f32>,
    pub magp: f32,
    pub loss_d: f32,
    pub grads: BTreeMap<String, Tensor>,
    pub magp_grads: BTreeMap<String, Tensor>,
    pub magp_step: f32,
}

/// The mean over every axis, keepdim (a [1, …, 1] tensor of x's rank).
fn mean_all(t: &Tape, x: &Var) -> Result<Var> {
    let axes: Vec<usize> = (0..x.shape().len()).collect();
    t.mean(x, &axes, true)
}

fn hinge(t: &Tape, out: &Var, sign: f32) -> Result<Var> {
    // relu(1 + sign · out), averaged over everything (keepdim: losses stay [1, 1, 1, 1]).
    let h = t.activation(&t.activation(out, Activation::Scale(sign, 1.0))?, Activation::Relu)?;
    mean_all(t, &h)
}

/// Rows `rows` of `t` (along axis 0), gathered on the host: a few images' features.
fn rows_of(t: &Tensor, rows: &[usize]) -> Result<Tensor> {
    let n = t.numel() / t.shape()[0];
    let v = t.to_vec()?;
    let picked: Vec<f32> = rows.iter().flat_map(|&r| v[r * n..(r + 1) * n].iter().copied()).collect();
    let mut shape = t.shape().to_vec();
    shape[0] = rows.len();
    Tensor::from_slice(t.gpu(), &shape, &picked)
}

/// The D step's losses and NetD/NetC gradients, without updating anything; `terms` weighs
/// MA-GP and the hard-negative hinge (released: [`DTerms::RELEASED`]).
///
/// `hard_negative_w` (released: 0, i.e. absent) adds hard_negative_w/2 · mean relu(1 +
/// NetC(NetD(feats_r), s̃)) over the real images that have a contrast caption s̃: L_mis with
/// the caption's own contrast in place of the next image's caption, NegCLIP's hard negative
/// (Yuksekgonul et al. 2023) given to the matching-aware discriminator. Not in GALIP or
/// RATLIP. It exists because the released L_mis pairs an image with a random other caption,
/// which differs in hair, age or background long before it differs only in a smile or a pair
/// of glasses, so NetC never needs those few pixels and G is never asked to draw them
/// (docs/evaluation.md). Each contrast is a real image with a caption that is wrong in
/// exactly one attribute; across the data both values of it stand on both sides, so NetC can
/// only score it by looking at the image. Measured (docs/evaluation.md): with in-house CLIPs
/// whose text side puts a caption and its contrast at cosine 0.97–0.998, NetC scores the two
/// alike (real + contrast hinges sum to 2.0), the term only lowers every real score, and FD
/// worsens; it needs a text side that tells the two apart.
pub fn d_losses(model: &Model, batch: &Batch, fake: &Fake, terms: &DTerms) -> Result<DStep> {
    let b = batch.check(model)?;
    let d = model.discriminator()?;
    let gpu = model.params.gpu();
    let scratch = Tape::new(gpu);
    // CLIP is frozen and the images are data: nothing is recorded.
    let real = match &batch.shifts {
        Some(sh) => shape::translate(&batch.images, &sh.real)?,
        None => batch.images.clone(),
    };
    let (feats_r, _) = model.clip_features(&scratch, &scratch.constant(real))?;
    let feats_r = feats_r.value().clone();

    let tape = Tape::new(gpu);
    let cx = Bind::new(&tape, &model.params, &[NET_D, NET_C], true);
    let s = tape.constant(batch.sent_emb.clone());
    let s_mis = tape.constant(roll0(&batch.sent_emb, b - 1)?);
    let real = d.netd.forward(&cx, &tape.constant(feats_r.clone()))?;
    let l_real = hinge(&tape, &d.netc.forward(&cx, &real, &s)?, -1.0)?;
    let l_mis = hinge(&tape, &d.netc.forward(&cx, &real, &s_mis)?, 1.0)?;
    let detached = tape.constant(fake.features.value().clone());
    let l_fake = hinge(&tape, &d.netc.forward(&cx, &d.netd.forward(&cx, &detached)?, &s)?, 1.0)?;
    let half = tape.axpy(&l_real, 0.5, &l_fake)?;
    let mut l_hinge = tape.axpy(&half, 0.5, &l_mis)?;
    let mut loss_contrast = None;
    // Without `contrast`, no caption of this batch names an attribute a contrast can reverse:
    // no term.
    if let Some(con) = &batch.contrast {
        let feats = tape.constant(rows_of(&feats_r, &con.rows)?);
        let out = d.netc.forward(&cx, &d.netd.forward(&cx, &feats)?, &tape.constant(con.sent_emb.clone()))?;
        let l_con = hinge(&tape, &out, 1.0)?;
        loss_contrast = Some(scalar(l_con.value())?);
        if terms.hard_negative_w > 0.0 {
            l_hinge = tape.axpy(&l_hinge, terms.hard_negative_w / 2.0, &l_con)?;
        }
    }
    let vars = cx.finish();
    let (loss_real, loss_mis, loss_fake, hinge_sum) = (scalar(l_real.value())?, scalar(l_mis.value())?, scalar(l_fake.value())?, scalar(l_hinge.value())?);
    let mut g = tape.backward(&l_hinge)?;
    let mut grads = vars.gradients(&mut g);

    let gp = ma_gp(model, &feats_r, &batch.sent_emb, terms.magp_w, MAGP_STEP)?;
    for (name, t) in &gp.grads {
        let sum = match grads.remove(name) {
            Some(h) => elementwise::add(&h, t)?,
            None => t.clone(),
        };
        grads.insert(name.clone(), sum);
    }
    Ok(DStep { loss_real, loss_mis, loss_fake, loss_contrast, magp: gp.value, loss_d: hinge_sum + gp.value, grads, magp_grads: gp.grads, magp_step: gp.step })
}

/// D step: losses, gradients, then Adam on NetD + NetC.
pub fn d_step(model: &mut Model, opt_d: &mut Adam, batch: &Batch, fake: &Fake, lr: f32) -> Result<DStep> {
    let out = d_losses(model, batch, fake, &DTerms::RELEASED)?;
    opt_d.step(&mut model.params, &out.grads, lr)?;
    Ok(out)
}

/// cos(a_b, s_b) per row, [B]: a on the tape, s data. B × embed numbers, so host-side math.
fn cosine_rows(t: &Tape, a: &Var, s: &Tensor) -> Result<Var> {
    let shape = a.shape().to_vec();
    if shape.len() != 2 || s.shape() != shape.as_slice() {
        return Err(Error::shape("cosine", format!("{:?} vs {:?}", shape, s.shape())));
    }
    let (b, n) = (shape[0], shape[1]);
    let (av, sv) = (a.value().to_vec()?, s.to_vec()?);
    let norm = |r: &[f32]| r.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
    let mut cos = vec![0f32; b];
    // torch.cosine_similarity: x·y / max(‖x‖‖y‖, 1e-8).
    let mut parts = Vec::with_capacity(b);
    for i in 0..b {
        let (x, y) = (&av[i * n..(i + 1) * n], &sv[i * n..(i + 1) * n]);
        let dot: f64 = x.iter().zip(y).map(|(&p, &q)| p as f64 * q as f64).sum();
        let (nx, ny) = (norm(x), norm(y));
        let den = (nx * ny).max(1e-8);
        cos[i] = (dot / den) as f32;
        parts.push((dot, nx, den));
    }
    let out = Tensor::from_slice(a.value().gpu(), &[b], &cos)?;
    Ok(t.record1("cosine_rows", &[a], out, move |c| {
        let dy = c.grad(0)?.to_vec()?;
        let mut ga = vec![0f32; b * n];
        for i in 0..b {
            let (dot, nx, den) = parts[i];
            let (x, y) = (&av[i * n..(i + 1) * n], &sv[i * n..(i + 1) * n]);
            // d/dx [x·y / (‖x‖‖y‖)] = y/den − (x·y) x / (‖x‖² den)
            let k = if nx > 0.0 { dot / (nx * nx * den) } else { 0.0 };
            for j in 0..n {
                ga[i * n + j] = (dy[i] as f64 * (y[j] as f64 / den - k * x[j] as f64)) as f32;
            }
        }
        Ok(vec![Some(Tensor::from_slice(c.gpu(), &[b, n], &ga)?)])
    }))
}

/// What the G step measured, and L_G's gradients (already applied by Adam).
pub struct GStep {
    pub loss_g: f32,
    /// −mean NetC(NetD(feats_f), s).
    pub loss_adv: f32,
    /// mean cos(emb_f, s) (L_G subtracts sim_w × it).
    pub cos: f32,
    /// mean |G(z, s) − x| over the batch's pixels (L_G adds pixel_w × it; measured either way).
    pub pixel: f32,
    /// mean |G(z₁, s) − G(z₂, s)| / mean |z₁ − z₂|, when the batch has a second noise (L_G
    /// subtracts div_w × min(it, div_tau)).
    pub diversity: Option<f32>,
    pub grads: BTreeMap<String, Tensor>,
}

/// mean |a − b| on the tape; |d| = relu(d) + relu(−d), from ops the tape already has.
fn mean_abs_diff(t: &Tape, a: &Var, b: &Var) -> Result<Var> {
    let d = t.axpy(a, -1.0, b)?;
    let neg = t.activation(&d, Activation::Scale(-1.0, 0.0))?;
    let abs = t.add(&t.activation(&d, Activation::Relu)?, &t.activation(&neg, Activation::Relu)?)?;
    t.reshape(&mean_all(t, &abs)?, &[1])
}

/// L_G and G's gradients through the fake's tape, with NetD/NetC as they are now (after
/// the D step, as in the released loop) and frozen here; `terms` weighs L_G's parts
/// (released: [`GTerms::RELEASED`]).
///
/// `pixel_w` (released: 0, i.e. absent) adds pixel_w · mean |G(z, s) − x|: an L1 pull of each
/// fake towards the batch's real image of the same caption, as pix2pix (Isola et al. 2017)
/// pairs L1 with its adversarial term. Not in GALIP or RATLIP. It exists because G learns
/// otherwise only through the frozen CLIP: with a small CLIP of our own and a critic that
/// stays nearly linear in its features, G drifts to images that raise those features but do
/// not look like faces (docs/evaluation.md); the L1 term asks for the caption's typical
/// picture (the per-pixel median of its images) and leaves sharpness to the critic. The real
/// image is the one the loader gave, before any DiffAugment shift (that move is for CLIP).
///
/// `div_w` (released: 0) subtracts div_w · min(mean |G(z₁, s) − G(z₂, s)| / mean |z₁ − z₂|,
/// div_tau): DSGAN's diversity-sensitive term (Yang et al. 2019; MSGAN's ratio, Mao et al.
/// 2019), both fakes on one tape so the gradient reaches G through each. Not in GALIP or
/// RATLIP either. It exists because G here learns to ignore its noise (a per-pixel L1 to a
/// random image of the caption even rewards that: its optimum is one median image per
/// caption), so every seed of a prompt drew the same picture. Past the cap the reward is
/// constant and gives no gradient, so spread is asked for, not pushed without bound.
pub fn g_losses(model: &Model, batch: &Batch, fake: Fake, terms: &GTerms) -> Result<GStep> {
    batch.check(model)?;
    let Fake { tape, g_vars, features, embedding, images, images2 } = fake;
    let cx = Bind::new(&tape, &model.params, &[], true);
    let s = tape.constant(batch.sent_emb.clone());
    let out = model.judge(&cx, &features, &s)?;
    drop(cx.finish());
    let adv = tape.activation(&tape.reshape(&mean_all(&tape, &out)?, &[1])?, Activation::Scale(-1.0, 0.0))?;
    let cos = tape.mean(&cosine_rows(&tape, &embedding, &batch.sent_emb)?, &[0], true)?;
    let mut l_g = tape.axpy(&adv, -terms.sim_w, &cos)?;
    let pixel = mean_abs_diff(&tape, &images, &tape.constant(batch.images.clone()))?;
    let pixel_v = scalar(pixel.value())?;
    if terms.pixel_w > 0.0 {
        l_g = tape.axpy(&l_g, terms.pixel_w, &pixel)?;
    }
    // A clamped diversity term is a constant: it moves L_G's value, not its gradient.
    let mut constant = 0.0;
    let diversity = match (&images2, &batch.noise2) {
        (Some(images2), Some(z2)) => {
            let (z1, z2) = (batch.noise.to_vec()?, z2.to_vec()?);
            let dz = z1.iter().zip(&z2).map(|(a, b)| (a - b).abs() as f64).sum::<f64>() / z1.len().max(1) as f64;
            if !(dz > 0.0) {
                return Err(Error::Other("diversity term: the two noises are equal".into()));
            }
            let spread = mean_abs_diff(&tape, &images, images2)?;
            let ratio = (scalar(spread.value())? as f64 / dz) as f32;
            if terms.div_w > 0.0 {
                if ratio < terms.div_tau {
                    l_g = tape.axpy(&l_g, -terms.div_w / dz as f32, &spread)?;
                } else {
                    constant = -terms.div_w * terms.div_tau;
                }
            }
            Some(ratio)
        }
        _ if terms.div_w > 0.0 => return Err(Error::Other("diversity term: div_w > 0 needs a batch with a second noise (Batch::noise2)".into())),
        _ => None,
    };
    let (loss_g, loss_adv, cos_v) = (scalar(l_g.value())? + constant, scalar(adv.value())?, scalar(cos.value())?);
    let mut g = tape.backward(&l_g)?;
    Ok(GStep { loss_g, loss_adv, cos: cos_v, pixel: pixel_v, diversity, grads: g_vars.gradients(&mut g) })
}

/// G step: L_G, gradients, then Adam on G.
pub fn g_step(model: &mut Model, opt_g: &mut Adam, batch: &Batch, fake: Fake, lr: f32) -> Result<GStep> {
    let out = g_losses(model, batch, fake, &GTerms::RELEASED)?;
    opt_g.step(&mut model.params, &out.grads, lr)?;
    Ok(out)
}

/// Every loss term of one step, and the global L2 norms of the gradients applied.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    pub loss_real: f32,
    pub loss_mis: f32,
    pub loss_fake: f32,
    pub loss_contrast: Option<f32>,
    pub magp: f32,
    pub loss_d: f32,
    pub loss_g: f32,
    pub loss_g_adv: f32,
    pub cos: f32,
    pub pixel: f32,
    pub diversity: Option<f32>,
    pub grad_norm_d: f32,
    pub grad_norm_g: f32,
    pub magp_step: f32,
}

impl Metrics {
    /// A step's figures from its two halves and their gradient norms.
    pub fn new(d: &DStep, g: &GStep, grad_norm_d: f32, grad_norm_g: f32) -> Metrics {
        Metrics {
            loss_real: d.loss_real,
            loss_mis: d.loss_mis,
            loss_fake: d.loss_fake,
            loss_contrast: d.loss_contrast,
            magp: d.magp,
            loss_d: d.loss_d,
            loss_g: g.loss_g,
            loss_g_adv: g.loss_adv,
            cos: g.cos,
            pixel: g.pixel,
            diversity: g.diversity,
            grad_norm_d,
            grad_norm_g,
            magp_step: d.magp_step,
        }
    }
}

/// √Σ g² over every tensor (one small read-back per tensor).
pub fn grad_norm(grads: &BTreeMap<String, Tensor>) -> Result<f32> {
    // Each tensor's Σg² stays on the GPU; the sums are gathered and read back once (one
    // read-back per tensor was hundreds of GPU round trips per step, much of a tiny step).
    let sums: Vec<Tensor> = grads.values().map(|g| sum_sq(&g.reshape(&[1, g.numel()])?, 1)).collect::<Result<_>>()?;
    if sums.is_empty() {
        return Ok(0.0);
    }
    let all = shape::concat(&sums.iter().collect::<Vec<_>>(), 0)?;
    Ok(all.to_vec()?.iter().map(|&x| x as f64).sum::<f64>().sqrt() as f32)
}

/// One whole step, as the released loop: fake once, D step, then G step on the same fake.
pub fn train_step(model: &mut Model, opt_d: &mut Adam, opt_g: &mut Adam, batch: &Batch) -> Result<Metrics> {
    let fake = generate_fake(model, batch)?;
    let d = d_step(model, opt_d, batch, &fake, LR_D)?;
    let g = g_step(model, opt_g, batch, fake, LR_G)?;
    Ok(Metrics::new(&d, &g, grad_norm(&d.grads)?, grad_norm(&g.grads)?))
}
