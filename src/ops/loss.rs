//! Contrastive-loss pieces (shaders/loss.wgsl): `exp`, L2 row normalisation and row-wise
//! softmax cross-entropy against integer targets — what CLIP's training loss needs beyond
//! matmul and broadcasting arithmetic (`clip::train`).

use bytemuck::{Pod, Zeroable};

use crate::autograd::{Tape, Var};
use crate::ensure_shape;
use crate::error::{Error, Result};
use crate::gpu::{grid, Gpu, Kernel};
use crate::kernel;
use crate::ops::{batch_chunks, elementwise};
use crate::tensor::Tensor;

static KERNEL: Kernel = kernel!("loss");

/// F.normalize's default: a row with a smaller norm is divided by this instead.
pub const NORM_EPS: f32 = 1e-12;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    d: u32,
    eps: f32,
    pad: u32,
}

fn rows_of(op: &'static str, x: &Tensor) -> Result<(usize, usize)> {
    ensure_shape!(x.dims() == 2 && x.dim(1) > 0, op, "expected [rows, width] with width > 0, got {:?}", x.shape());
    Ok((x.dim(0), x.dim(1)))
}

/// Runs a row entry over `[rows, d]` tensors (and `[rows]` ones where `per_row` says so), in
/// bindable pieces of whole rows.
fn rows(entry: &'static str, op: &'static str, n: usize, d: usize, tensors: &[(&Tensor, bool)], eps: f32) -> Result<()> {
    let g = tensors[0].0.gpu();
    let widths: Vec<u64> = tensors.iter().map(|(_, per_row)| if *per_row { 4 } else { 4 * d as u64 }).collect();
    for r in batch_chunks(g, op, n, &widths)? {
        let views: Vec<Tensor> = tensors
            .iter()
            .map(|(t, per_row)| if *per_row { t.reshape(&[n])?.narrow0(r.start, r.len()) } else { t.reshape(&[n, d])?.narrow0(r.start, r.len()) })
            .collect::<Result<_>>()?;
        let refs: Vec<&Tensor> = views.iter().collect();
        let p = Params { n: r.len() as u32, d: d as u32, eps, pad: 0 };
        g.dispatch(&KERNEL, entry, &p, &refs, grid(g, r.len() as u64, 64))?;
    }
    Ok(())
}

/// e^x elementwise.
pub fn exp(x: &Tensor) -> Result<Tensor> {
    let n = x.numel();
    let out = Tensor::empty(x.gpu(), x.shape())?;
    if n > 0 {
        rows("exp_forward", "exp", n, 1, &[(x, true), (&out, true)], 0.0)?;
    }
    Ok(out)
}

/// Each row divided by its L2 norm (at least `NORM_EPS`), as `F.normalize(x, dim=-1)`.
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let (n, d) = rows_of("l2_normalize", x)?;
    let out = Tensor::empty(x.gpu(), x.shape())?;
    rows("l2norm_forward", "l2_normalize", n, d, &[(x, false), (&out, false)], NORM_EPS)?;
    Ok(out)
}

pub fn l2_normalize_backward(x: &Tensor, dy: &Tensor) -> Result<Tensor> {
    let (n, d) = rows_of("l2_normalize_backward", x)?;
    ensure_shape!(dy.shape() == x.shape(), "l2_normalize_backward", "dy {:?} vs x {:?}", dy.shape(), x.shape());
    let out = Tensor::empty(x.gpu(), x.shape())?;
    rows("l2norm_backward", "l2_normalize_backward", n, d, &[(x, false), (dy, false), (&out, false)], NORM_EPS)?;
    Ok(out)
}

/// Targets for `cross_entropy` over rows of width `classes`: fails naming the first target
/// out of range (checked here, on the CPU, so the kernel never reads past a row).
pub fn targets_tensor(gpu: &Gpu, targets: &[u32], classes: usize) -> Result<Tensor> {
    if let Some((i, t)) = targets.iter().enumerate().find(|(_, &t)| t as usize >= classes) {
        return Err(Error::Other(format!("cross_entropy: target {t} of row {i} is out of range for {classes} classes")));
    }
    Tensor::from_slice(gpu, &[targets.len()], bytemuck::cast_slice::<u32, f32>(targets))
}

fn check_targets(op: &'static str, n: usize, targets: &Tensor) -> Result<()> {
    ensure_shape!(targets.shape() == [n], op, "targets {:?} for {n} rows (build them with targets_tensor)", targets.shape());
    Ok(())
}

/// Per-row loss [N] of logits [N, C]: logsumexp(x[r]) − x[r, t[r]] (torch's
/// `F.cross_entropy(x, t, reduction='none')`).
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let (n, c) = rows_of("cross_entropy", logits)?;
    check_targets("cross_entropy", n, targets)?;
    let out = Tensor::empty(logits.gpu(), &[n])?;
    rows("ce_forward", "cross_entropy", n, c, &[(logits, false), (targets, true), (&out, true)], 0.0)?;
    Ok(out)
}

/// d logits [N, C] = dy[r]·(softmax(x[r]) − onehot(t[r])).
pub fn cross_entropy_backward(logits: &Tensor, targets: &Tensor, dy: &Tensor) -> Result<Tensor> {
    let (n, c) = rows_of("cross_entropy_backward", logits)?;
    check_targets("cross_entropy_backward", n, targets)?;
    ensure_shape!(dy.shape() == [n], "cross_entropy_backward", "dy {:?} for {n} rows", dy.shape());
    let out = Tensor::empty(logits.gpu(), logits.shape())?;
    rows("ce_backward", "cross_entropy_backward", n, c, &[(logits, false), (targets, true), (dy, true), (&out, false)], 0.0)?;
    Ok(out)
}

// ---- on the tape ------------------------------------------------------------------------

impl Tape {
    pub fn exp(&self, x: &Var) -> Result<Var> {
        let y = exp(x.value())?;
        let ys = y.clone();
        Ok(self.record1("exp", &[x], y, move |c| Ok(vec![Some(elementwise::mul(&c.grad(0)?, &ys)?)])))
    }

    pub fn l2_normalize(&self, x: &Var) -> Result<Var> {
        let y = l2_normalize(x.value())?;
        let xs = x.value().clone();
        Ok(self.record1("l2_normalize", &[x], y, move |c| Ok(vec![Some(l2_normalize_backward(&xs, &c.grad(0)?)?)])))
    }

    /// Per-row cross-entropy [N]; `targets` (from `targets_tensor`) are data.
    pub fn cross_entropy(&self, logits: &Var, targets: &Tensor) -> Result<Var> {
        let y = cross_entropy(logits.value(), targets)?;
        let (xs, ts) = (logits.value().clone(), targets.clone());
        Ok(self.record1("cross_entropy", &[logits], y, move |c| Ok(vec![Some(cross_entropy_backward(&xs, &ts, &c.grad(0)?)?)])))
    }
}

// ---- CPU reference --------------------------------------------------------------------

pub mod cpu {
    use super::NORM_EPS;

    /// Rows of width d, each over max(‖row‖, eps).
    pub fn l2_normalize(x: &[f64], d: usize) -> Vec<f64> {
        x.chunks(d)
            .flat_map(|r| {
                let n = r.iter().map(|v| v * v).sum::<f64>().sqrt().max(NORM_EPS as f64);
                r.iter().map(move |v| v / n)
            })
            .collect()
    }

    /// Per-row logsumexp − the target's logit.
    pub fn cross_entropy(x: &[f64], d: usize, targets: &[u32]) -> Vec<f64> {
        x.chunks(d)
            .zip(targets)
            .map(|(r, &t)| {
                let m = r.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                m + r.iter().map(|v| (v - m).exp()).sum::<f64>().ln() - r[t as usize]
            })
            .collect()
    }
}
