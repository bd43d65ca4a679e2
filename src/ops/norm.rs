//! Normalisation layers with PyTorch semantics (shaders/norm.wgsl): LayerNorm over the last
//! dim (CLIP), BatchNorm2d (ConvSA in G) and GroupNorm (ShuffleAttention, where groups ==
//! channels), forward and backward, and their tape ops.
//!
//! All three save the mean and rstd = 1/sqrt(biased var + eps) of each normalised set, as
//! PyTorch's native kernels do, so that backward never recomputes statistics. LayerNorm and
//! GroupNorm are per sample and run once per batch chunk when a tensor outgrows a storage
//! binding. BatchNorm's statistics span the batch: per-plane (mean, M2) are merged across
//! chunks with Chan's formula before any chunk is normalised, and its backward sums
//! Σdy, Σdy·x̂ over every chunk before computing dx.

use bytemuck::{Pod, Zeroable};

use crate::autograd::{Tape, Var};
use crate::ensure_shape;
use crate::error::Result;
use crate::gpu::{grid, Gpu, Kernel};
use crate::kernel;
use crate::ops::batch_chunks;
use crate::tensor::Tensor;

static KERNEL: Kernel = kernel!("norm");

const ACCUMULATE: u32 = 1;
const WG: u64 = 256;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct Params {
    rows: u32,
    len: u32,
    seg: u32,
    hw: u32,
    channels: u32,
    groups: u32,
    cpg: u32,
    flags: u32,
    eps: f32,
    momentum: f32,
    inv_count: f32,
    stat_n: u32,
}

/// What a normalisation forward returns: the output and the statistics its backward needs
/// (one mean and rstd per normalised set: LayerNorm rows `x.shape[..-1]`, GroupNorm `[N, G]`,
/// BatchNorm `[C]`).
#[derive(Clone, Debug)]
pub struct NormOutput {
    pub y: Tensor,
    pub mean: Tensor,
    pub rstd: Tensor,
}

/// Gradients of a normalisation; `None` where not asked for.
#[derive(Clone, Debug, Default)]
pub struct NormGrads {
    pub dx: Option<Tensor>,
    pub dweight: Option<Tensor>,
    pub dbias: Option<Tensor>,
}

/// Threads per row: about 8 values per thread, at most a workgroup. Short segments keep the
/// reduction tree (log2(seg) barrier steps over seg lanes) from dominating: with one
/// workgroup per 512-value row, lavapipe spent most of its time in the tree. 32–128 lanes
/// per LayerNorm row is also what GPU LayerNorm kernels use (a warp or two per row).
fn seg_width(len: usize) -> u32 {
    len.div_ceil(8).next_power_of_two().min(WG as usize) as u32
}

/// Dispatches a segmented-row entry over `rows` rows of `len` values.
fn dispatch_rows(g: &Gpu, entry: &str, mut p: Params, rows: usize, len: usize, tensors: &[&Tensor]) -> Result<()> {
    p.rows = rows as u32;
    p.len = len as u32;
    p.seg = seg_width(len);
    g.dispatch(&KERNEL, entry, &p, tensors, grid(g, rows as u64, WG / p.seg as u64))
}

fn f32_bytes(n: usize) -> u64 {
    (n * 4) as u64
}

// ---- LayerNorm ------------------------------------------------------------------------

fn check_affine(op: &'static str, what: &str, t: &Tensor, n: usize) -> Result<()> {
    ensure_shape!(t.shape() == [n], op, "{what} {:?} must be [{n}]", t.shape());
    Ok(())
}

/// LayerNorm over the last dim of x [..., D]: y = (x − mean)/sqrt(var + eps)·weight + bias.
/// Saved statistics have x's shape without its last dim.
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f32) -> Result<NormOutput> {
    ensure_shape!(x.dims() >= 1 && x.numel() > 0, "layer_norm", "x {:?} must be non-empty [..., D]", x.shape());
    let d = x.dim(x.dims() - 1);
    check_affine("layer_norm", "weight", weight, d)?;
    check_affine("layer_norm", "bias", bias, d)?;
    let g = x.gpu();
    let rows = x.numel() / d;
    let x2 = x.reshape(&[rows, d])?;
    let y = Tensor::empty(g, &[rows, d])?;
    let mean = Tensor::empty(g, &[rows])?;
    let rstd = Tensor::empty(g, &[rows])?;
    let p = Params { hw: 1, channels: d as u32, groups: 1, cpg: d as u32, eps, ..Default::default() };
    for r in batch_chunks(g, "layer_norm", rows, &[f32_bytes(d), f32_bytes(1)])? {
        let n = r.len();
        let (xc, yc) = (x2.narrow0(r.start, n)?, y.narrow0(r.start, n)?);
        let (mc, rc) = (mean.narrow0(r.start, n)?, rstd.narrow0(r.start, n)?);
        dispatch_rows(g, "row_forward", p, n, d, &[&xc, weight, bias, &mc, &rc, &yc])?;
    }
    let lead = &x.shape()[..x.dims() - 1];
    Ok(NormOutput { y: y.reshape(x.shape())?, mean: mean.reshape(lead)?, rstd: rstd.reshape(lead)? })
}

/// Gradients of `layer_norm` given dy and its saved statistics. `needs` = (x, weight, bias).
pub fn layer_norm_backward(
    x: &Tensor,
    dy: &Tensor,
    weight: &Tensor,
    mean: &Tensor,
    rstd: &Tensor,
    needs: [bool; 3],
) -> Result<NormGrads> {
    ensure_shape!(x.dims() >= 1 && x.numel() > 0, "layer_norm_backward", "x {:?} must be non-empty [..., D]", x.shape());
    ensure_shape!(x.shape() == dy.shape(), "layer_norm_backward", "x {:?} vs dy {:?}", x.shape(), dy.shape());
    let d = x.dim(x.dims() - 1);
    let rows = x.numel() / d;
    check_affine("layer_norm_backward", "weight", weight, d)?;
    for (what, t) in [("mean", mean), ("rstd", rstd)] {
        ensure_shape!(t.numel() == rows, "layer_norm_backward", "{what} {:?} must hold one value per row of x {:?}", t.shape(), x.shape());
    }
    let g = x.gpu();
    let (x2, dy2) = (x.reshape(&[rows, d])?, dy.reshape(&[rows, d])?);
    let (mean, rstd) = (mean.reshape(&[rows])?, rstd.reshape(&[rows])?);
    let dx = if needs[0] { Some(Tensor::empty(g, &[rows, d])?) } else { None };
    let params = needs[1] || needs[2];
    let (dw, db) = if params { (Some(Tensor::empty(g, &[d])?), Some(Tensor::empty(g, &[d])?)) } else { (None, None) };
    let p = Params { hw: 1, channels: d as u32, groups: 1, cpg: d as u32, ..Default::default() };
    let chunks = batch_chunks(g, "layer_norm_backward", rows, &[f32_bytes(d), f32_bytes(1)])?;
    for (k, r) in chunks.into_iter().enumerate() {
        let n = r.len();
        let (xc, dyc) = (x2.narrow0(r.start, n)?, dy2.narrow0(r.start, n)?);
        let (mc, rc) = (mean.narrow0(r.start, n)?, rstd.narrow0(r.start, n)?);
        if let Some(dx) = &dx {
            let dxc = dx.narrow0(r.start, n)?;
            dispatch_rows(g, "row_backward", p, n, d, &[&xc, &dyc, weight, &mc, &rc, &dxc])?;
        }
        if let (Some(dw), Some(db)) = (&dw, &db) {
            let q = Params { rows: n as u32, flags: if k > 0 { ACCUMULATE } else { 0 }, ..p };
            g.dispatch(&KERNEL, "ln_param_sums", &q, &[&xc, &dyc, &mc, &rc, dw, db], [d.div_ceil(16) as u32, 1, 1])?;
        }
    }
    Ok(NormGrads {
        dx: dx.map(|t| t.reshape(x.shape())).transpose()?,
        dweight: if needs[1] { dw } else { None },
        dbias: if needs[2] { db } else { None },
    })
}

// ---- GroupNorm ------------------------------------------------------------------------

fn check_nchw(op: &'static str, x: &Tensor) -> Result<(usize, usize, usize)> {
    ensure_shape!(x.dims() >= 2 && x.numel() > 0, op, "x {:?} must be non-empty [N, C, *]", x.shape());
    Ok((x.dim(0), x.dim(1), x.shape()[2..].iter().product()))
}

fn check_groups(op: &'static str, x: &Tensor, groups: usize) -> Result<(usize, usize, usize)> {
    let (n, c, hw) = check_nchw(op, x)?;
    ensure_shape!(groups > 0 && c % groups == 0, op, "{groups} groups do not divide the {c} channels of x {:?}", x.shape());
    Ok((n, c, hw))
}

/// nn.GroupNorm(groups, C, eps, affine) on x [N, C, *]: each sample's channels are split
/// into `groups` consecutive sets normalised together; weight/bias are per channel.
/// groups == C is ShuffleAttention's per-channel (instance) norm: each row is one H·W plane,
/// and short planes share a workgroup. Saved statistics are [N, groups].
pub fn group_norm(x: &Tensor, groups: usize, weight: &Tensor, bias: &Tensor, eps: f32) -> Result<NormOutput> {
    let (n, c, hw) = check_groups("group_norm", x, groups)?;
    check_affine("group_norm", "weight", weight, c)?;
    check_affine("group_norm", "bias", bias, c)?;
    let g = x.gpu();
    let cpg = c / groups;
    let y = Tensor::empty(g, x.shape())?;
    let mean = Tensor::empty(g, &[n, groups])?;
    let rstd = Tensor::empty(g, &[n, groups])?;
    let p = Params { hw: hw as u32, channels: c as u32, groups: groups as u32, cpg: cpg as u32, eps, ..Default::default() };
    for r in batch_chunks(g, "group_norm", n, &[f32_bytes(c * hw), f32_bytes(groups)])? {
        let k = r.len();
        let (xc, yc) = (x.narrow0(r.start, k)?, y.narrow0(r.start, k)?);
        let (mc, rc) = (mean.narrow0(r.start, k)?, rstd.narrow0(r.start, k)?);
        dispatch_rows(g, "row_forward", p, k * groups, cpg * hw, &[&xc, weight, bias, &mc, &rc, &yc])?;
    }
    Ok(NormOutput { y, mean, rstd })
}

/// Gradients of `group_norm` given dy and its saved statistics. `needs` = (x, weight, bias).
pub fn group_norm_backward(
    x: &Tensor,
    dy: &Tensor,
    groups: usize,
    weight: &Tensor,
    mean: &Tensor,
    rstd: &Tensor,
    needs: [bool; 3],
) -> Result<NormGrads> {
    let (n, c, hw) = check_groups("group_norm_backward", x, groups)?;
    ensure_shape!(x.shape() == dy.shape(), "group_norm_backward", "x {:?} vs dy {:?}", x.shape(), dy.shape());
    check_affine("group_norm_backward", "weight", weight, c)?;
    for (what, t) in [("mean", mean), ("rstd", rstd)] {
        ensure_shape!(t.shape() == [n, groups], "group_norm_backward", "{what} {:?} must be [{n}, {groups}]", t.shape());
    }
    let g = x.gpu();
    let cpg = c / groups;
    let dx = if needs[0] { Some(Tensor::empty(g, x.shape())?) } else { None };
    let params = needs[1] || needs[2];
    let (dw, db) = if params { (Some(Tensor::empty(g, &[c])?), Some(Tensor::empty(g, &[c])?)) } else { (None, None) };
    let p = Params {
        hw: hw as u32,
        channels: c as u32,
        groups: groups as u32,
        cpg: cpg as u32,
        stat_n: groups as u32,
        ..Default::default()
    };
    let chunks = batch_chunks(g, "group_norm_backward", n, &[f32_bytes(c * hw), f32_bytes(groups), f32_bytes(2 * c)])?;
    for (i, r) in chunks.into_iter().enumerate() {
        let k = r.len();
        let (xc, dyc) = (x.narrow0(r.start, k)?, dy.narrow0(r.start, k)?);
        let (mc, rc) = (mean.narrow0(r.start, k)?, rstd.narrow0(r.start, k)?);
        if let Some(dx) = &dx {
            let dxc = dx.narrow0(r.start, k)?;
            dispatch_rows(g, "row_backward", p, k * groups, cpg * hw, &[&xc, &dyc, weight, &mc, &rc, &dxc])?;
        }
        if let (Some(dw), Some(db)) = (&dw, &db) {
            param_sums(g, p, &xc, &dyc, &mc, &rc, k, c, hw, i > 0, dw, db)?;
        }
    }
    Ok(NormGrads { dx, dweight: if needs[1] { dw } else { None }, dbias: if needs[2] { db } else { None } })
}

/// sum_w[c] (+)= Σ dy·x̂, sum_b[c] (+)= Σ dy over the k samples of one chunk: per plane,
/// then across samples (two stages keep N·C planes in flight rather than C channels).
#[allow(clippy::too_many_arguments)]
fn param_sums(
    g: &Gpu,
    p: Params,
    x: &Tensor,
    dy: &Tensor,
    mean: &Tensor,
    rstd: &Tensor,
    k: usize,
    c: usize,
    hw: usize,
    accumulate: bool,
    sum_w: &Tensor,
    sum_b: &Tensor,
) -> Result<()> {
    let partial = Tensor::empty(g, &[k, c, 2])?;
    dispatch_rows(g, "plane_sums", p, k * c, hw, &[x, dy, mean, rstd, &partial])?;
    let q = Params { rows: k as u32, channels: c as u32, flags: if accumulate { ACCUMULATE } else { 0 }, ..Default::default() };
    g.dispatch(&KERNEL, "column_sums", &q, &[&partial, sum_w, sum_b], [c.div_ceil(16) as u32, 1, 1])
}

// ---- BatchNorm2d ----------------------------------------------------------------------

/// An nn.BatchNorm2d's buffers and hyper-parameters (PyTorch defaults: running mean 0,
/// running var 1, momentum 0.1, eps 1e-5). The running statistics are updated in place by
/// every training-mode forward.
#[derive(Clone, Debug)]
pub struct BatchNormState {
    pub running_mean: Tensor,
    pub running_var: Tensor,
    pub momentum: f32,
    pub eps: f32,
}

impl BatchNormState {
    pub fn new(gpu: &Gpu, channels: usize) -> Result<BatchNormState> {
        Ok(BatchNormState {
            running_mean: Tensor::zeros(gpu, &[channels])?,
            running_var: Tensor::full(gpu, &[channels], 1.0)?,
            momentum: 0.1,
            eps: 1e-5,
        })
    }

    pub fn forward(&self, x: &Tensor, weight: &Tensor, bias: &Tensor, training: bool) -> Result<NormOutput> {
        batch_norm(x, weight, bias, &self.running_mean, &self.running_var, training, self.momentum, self.eps)
    }
}

/// nn.BatchNorm2d on x [N, C, *] (affine). Training: normalise with the batch statistics
/// (biased variance) over (N, H, W) per channel, and update the running statistics in place:
/// r ← (1 − momentum)·r + momentum·batch (running_var takes the unbiased variance). Eval:
/// normalise with the running statistics. Saved statistics are [C].
#[allow(clippy::too_many_arguments)]
pub fn batch_norm(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    training: bool,
    momentum: f32,
    eps: f32,
) -> Result<NormOutput> {
    let (n, c, hw) = check_nchw("batch_norm", x)?;
    for (what, t) in [("weight", weight), ("bias", bias), ("running_mean", running_mean), ("running_var", running_var)] {
        check_affine("batch_norm", what, t, c)?;
    }
    ensure_shape!(
        !training || n * hw > 1,
        "batch_norm",
        "training needs more than one value per channel, x is {:?}",
        x.shape()
    );
    let g = x.gpu();
    let mean = Tensor::empty(g, &[c])?;
    let rstd = Tensor::empty(g, &[c])?;
    let p = Params { hw: hw as u32, channels: c as u32, eps, momentum, ..Default::default() };
    let per_channel = grid(g, c as u64, 64);
    let chunks = batch_chunks(g, "batch_norm", n, &[f32_bytes(c * hw), f32_bytes(2 * c)])?;
    if training {
        let acc = Tensor::empty(g, &[c, 4])?;
        for (i, r) in chunks.iter().enumerate() {
            let k = r.len();
            let xc = x.narrow0(r.start, k)?;
            let partial = Tensor::empty(g, &[k, c, 2])?;
            dispatch_rows(g, "plane_moments", p, k * c, hw, &[&xc, &partial])?;
            let q = Params { rows: k as u32, len: hw as u32, flags: if i > 0 { ACCUMULATE } else { 0 }, ..p };
            g.dispatch(&KERNEL, "bn_combine", &q, &[&partial, &acc], per_channel)?;
        }
        g.dispatch(&KERNEL, "bn_finalize_train", &p, &[&mean, &rstd, &acc, running_mean, running_var], per_channel)?;
    } else {
        g.dispatch(&KERNEL, "bn_eval_stats", &p, &[&mean, &rstd, running_mean, running_var], per_channel)?;
    }
    let y = Tensor::empty(g, x.shape())?;
    for r in &chunks {
        let k = r.len();
        let (xc, yc) = (x.narrow0(r.start, k)?, y.narrow0(r.start, k)?);
        dispatch_rows(g, "bn_normalize", p, k * c, hw, &[&xc, weight, bias, &mean, &rstd, &yc])?;
    }
    Ok(NormOutput { y, mean, rstd })
}

/// Gradients of `batch_norm` given dy and its saved statistics, in the mode of the forward.
/// Training differentiates through the batch mean and variance; eval treats the running
/// statistics as constants. `needs` = (x, weight, bias).
pub fn batch_norm_backward(
    x: &Tensor,
    dy: &Tensor,
    weight: &Tensor,
    mean: &Tensor,
    rstd: &Tensor,
    training: bool,
    needs: [bool; 3],
) -> Result<NormGrads> {
    let (n, c, hw) = check_nchw("batch_norm_backward", x)?;
    ensure_shape!(x.shape() == dy.shape(), "batch_norm_backward", "x {:?} vs dy {:?}", x.shape(), dy.shape());
    for (what, t) in [("weight", weight), ("mean", mean), ("rstd", rstd)] {
        check_affine("batch_norm_backward", what, t, c)?;
    }
    let g = x.gpu();
    let chunks = batch_chunks(g, "batch_norm_backward", n, &[f32_bytes(c * hw), f32_bytes(2 * c)])?;
    let p = Params { hw: hw as u32, channels: c as u32, cpg: 1, stat_n: 0, ..Default::default() };
    // Σ dy·x̂ and Σ dy are dweight and dbias, and training-mode dx needs them too.
    let sums = needs[1] || needs[2] || (training && needs[0]);
    let (sum_w, sum_b) = (Tensor::zeros(g, &[c])?, Tensor::zeros(g, &[c])?);
    if sums {
        for (i, r) in chunks.iter().enumerate() {
            let k = r.len();
            let (xc, dyc) = (x.narrow0(r.start, k)?, dy.narrow0(r.start, k)?);
            param_sums(g, p, &xc, &dyc, mean, rstd, k, c, hw, i > 0, &sum_w, &sum_b)?;
        }
    }
    let dx = if needs[0] {
        let dx = Tensor::empty(g, x.shape())?;
        let inv_count = if training { 1.0 / (n * hw) as f32 } else { 0.0 };
        for r in &chunks {
            let k = r.len();
            let (xc, dyc, dxc) = (x.narrow0(r.start, k)?, dy.narrow0(r.start, k)?, dx.narrow0(r.start, k)?);
            let q = Params { inv_count, ..p };
            dispatch_rows(g, "bn_backward_dx", q, k * c, hw, &[&xc, &dyc, weight, mean, rstd, &sum_w, &sum_b, &dxc])?;
        }
        Some(dx)
    } else {
        None
    };
    Ok(NormGrads { dx, dweight: needs[1].then_some(sum_w), dbias: needs[2].then_some(sum_b) })
}

// ---- on the tape ----------------------------------------------------------------------

fn grads_vec(gr: NormGrads) -> Vec<Option<Tensor>> {
    vec![gr.dx, gr.dweight, gr.dbias]
}

fn needs3(c: &crate::autograd::BackwardCtx) -> [bool; 3] {
    [c.needs[0], c.needs[1], c.needs[2]]
}

impl Tape {
    pub fn layer_norm(&self, x: &Var, weight: &Var, bias: &Var, eps: f32) -> Result<Var> {
        let o = layer_norm(x.value(), weight.value(), bias.value(), eps)?;
        let (xs, ws, mean, rstd) = (x.value().clone(), weight.value().clone(), o.mean, o.rstd);
        Ok(self.record1("layer_norm", &[x, weight, bias], o.y, move |c| {
            Ok(grads_vec(layer_norm_backward(&xs, &c.grad(0)?, &ws, &mean, &rstd, needs3(c))?))
        }))
    }

    pub fn group_norm(&self, x: &Var, groups: usize, weight: &Var, bias: &Var, eps: f32) -> Result<Var> {
        let o = group_norm(x.value(), groups, weight.value(), bias.value(), eps)?;
        let (xs, ws, mean, rstd) = (x.value().clone(), weight.value().clone(), o.mean, o.rstd);
        Ok(self.record1("group_norm", &[x, weight, bias], o.y, move |c| {
            Ok(grads_vec(group_norm_backward(&xs, &c.grad(0)?, groups, &ws, &mean, &rstd, needs3(c))?))
        }))
    }

    /// BatchNorm2d; a training-mode call updates `running_mean`/`running_var` in place now
    /// (at forward time, as PyTorch), and its backward goes through the batch statistics.
    #[allow(clippy::too_many_arguments)]
    pub fn batch_norm(
        &self,
        x: &Var,
        weight: &Var,
        bias: &Var,
        running_mean: &Tensor,
        running_var: &Tensor,
        training: bool,
        momentum: f32,
        eps: f32,
    ) -> Result<Var> {
        let o = batch_norm(x.value(), weight.value(), bias.value(), running_mean, running_var, training, momentum, eps)?;
        let (xs, ws, mean, rstd) = (x.value().clone(), weight.value().clone(), o.mean, o.rstd);
        Ok(self.record1("batch_norm", &[x, weight, bias], o.y, move |c| {
            Ok(grads_vec(batch_norm_backward(&xs, &c.grad(0)?, &ws, &mean, &rstd, training, needs3(c))?))
        }))
    }
}

// ---- CPU reference --------------------------------------------------------------------

/// Plain f64 references on row-major slices (what the tests compare with and differentiate
/// by finite differences).
pub mod cpu {
    fn moments(v: impl Iterator<Item = f64> + Clone) -> (f64, f64) {
        let n = v.clone().count() as f64;
        let mean = v.clone().sum::<f64>() / n;
        let var = v.map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
        (mean, var)
    }

    /// LayerNorm over rows of `d` values.
    pub fn layer_norm(x: &[f64], d: usize, w: &[f64], b: &[f64], eps: f64) -> Vec<f64> {
        let mut y = vec![0.0; x.len()];
        for (xr, yr) in x.chunks(d).zip(y.chunks_mut(d)) {
            let (mean, var) = moments(xr.iter().copied());
            let rstd = 1.0 / (var + eps).sqrt();
            for i in 0..d {
                yr[i] = (xr[i] - mean) * rstd * w[i] + b[i];
            }
        }
        y
    }

    /// GroupNorm on x [n, c, hw].
    #[allow(clippy::too_many_arguments)]
    pub fn group_norm(x: &[f64], n: usize, c: usize, hw: usize, groups: usize, w: &[f64], b: &[f64], eps: f64) -> Vec<f64> {
        let cpg = c / groups;
        let len = cpg * hw;
        let mut y = vec![0.0; x.len()];
        for r in 0..n * groups {
            let xr = &x[r * len..(r + 1) * len];
            let (mean, var) = moments(xr.iter().copied());
            let rstd = 1.0 / (var + eps).sqrt();
            for i in 0..len {
                let ch = (r % groups) * cpg + i / hw;
                y[r * len + i] = (xr[i] - mean) * rstd * w[ch] + b[ch];
            }
        }
        y
    }

    /// Per-channel (mean, biased var) of x [n, c, hw].
    pub fn channel_moments(x: &[f64], n: usize, c: usize, hw: usize) -> Vec<(f64, f64)> {
        (0..c)
            .map(|ch| moments((0..n).flat_map(move |s| (0..hw).map(move |i| (s * c + ch) * hw + i)).map(|i| x[i])))
            .collect()
    }

    /// BatchNorm2d on x [n, c, hw]. Training uses the batch statistics and updates
    /// `running` (mean, var) in place with the unbiased variance; eval uses `running`.
    #[allow(clippy::too_many_arguments)]
    pub fn batch_norm(
        x: &[f64],
        n: usize,
        c: usize,
        hw: usize,
        w: &[f64],
        b: &[f64],
        running: (&mut [f64], &mut [f64]),
        training: bool,
        momentum: f64,
        eps: f64,
    ) -> Vec<f64> {
        let stats: Vec<(f64, f64)> = if training {
            let m = channel_moments(x, n, c, hw);
            let count = (n * hw) as f64;
            for (ch, &(mean, var)) in m.iter().enumerate() {
                running.0[ch] = (1.0 - momentum) * running.0[ch] + momentum * mean;
                running.1[ch] = (1.0 - momentum) * running.1[ch] + momentum * var * count / (count - 1.0);
            }
            m
        } else {
            (0..c).map(|ch| (running.0[ch], running.1[ch])).collect()
        };
        let mut y = vec![0.0; x.len()];
        for (i, v) in y.iter_mut().enumerate() {
            let ch = (i / hw) % c;
            let (mean, var) = stats[ch];
            *v = (x[i] - mean) / (var + eps).sqrt() * w[ch] + b[ch];
        }
        y
    }
}
