//! Multi-head scaled dot-product attention core (shaders/attention.wgsl for GPUs,
//! shaders/attention_rows.wgsl for CPU adapters; see `Strategy`), MODEL.md §2.
//!
//! Only the softmax(q kᵀ / sqrt(hd)) v part: CLIP's fused in_proj and out_proj are matmuls
//! done by the caller, who reshapes nothing: q, k, v stay [B, T, W] and head h reads
//! columns h·hd .. (h+1)·hd, which is how PyTorch's MultiheadAttention splits them.
//! The softmax is kept (`probs`, [B, heads, T, T]) because backward needs it and T is small
//! (77 text tokens, 50 or 51 image tokens), so it costs less than recomputing.

use bytemuck::{Pod, Zeroable};

use crate::autograd::{Tape, Var};
use crate::ensure_shape;
use crate::error::Result;
use crate::gpu::{grid, Gpu, Kernel};
use crate::kernel;
use crate::ops::batch_chunks;
use crate::tensor::Tensor;

static TILED: Kernel = kernel!("attention");
static ROWS: Kernel = kernel!("attention_rows");

/// Which implementation of the same three entry points runs. Both give the same results
/// (to f32 rounding); they differ in how they use the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// shaders/attention.wgsl: a 16×16 workgroup per (sample, head, 16 rows), operands
    /// staged in workgroup memory. For real GPUs.
    Tiled,
    /// shaders/attention_rows.wgsl: one thread per (sample, head, 8 rows), operands in
    /// private arrays, no barriers. For CPU adapters (lavapipe), where every storage or
    /// workgroup load costs about ten FMAs: the tiled kernel ran 10–30× slower there.
    Rows,
}

impl Strategy {
    /// Rows on CPU adapters, Tiled elsewhere.
    pub fn for_device(gpu: &Gpu) -> Strategy {
        if gpu.adapter_info().device_type == wgpu::DeviceType::Cpu {
            Strategy::Rows
        } else {
            Strategy::Tiled
        }
    }

    fn kernel(self) -> &'static Kernel {
        match self {
            Strategy::Tiled => &TILED,
            Strategy::Rows => &ROWS,
        }
    }

    /// Rows handled by one workgroup (Tiled) or one thread (Rows).
    fn rows(self) -> usize {
        match self {
            Strategy::Tiled => 16,
            Strategy::Rows => 8,
        }
    }

    /// Workgroups for `p`: one per row block (Tiled) or one per 64 row blocks (Rows).
    fn groups(self, gpu: &Gpu, p: &Params) -> [u32; 3] {
        let blocks = p.batch as u64 * p.heads as u64 * p.tiles as u64;
        match self {
            Strategy::Tiled => grid(gpu, blocks, 1),
            Strategy::Rows => grid(gpu, blocks, 64),
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    batch: u32,
    t: u32,
    w: u32,
    heads: u32,
    hd: u32,
    causal: u32,
    tiles: u32,
    scale: f32,
}

/// (B, T, W) after checking that q, k, v agree and W splits into `heads`.
fn dims(op: &'static str, q: &Tensor, k: &Tensor, v: &Tensor, heads: usize) -> Result<(usize, usize, usize)> {
    ensure_shape!(q.dims() == 3, op, "q must be [B, T, W], got {:?}", q.shape());
    ensure_shape!(k.shape() == q.shape(), op, "k {:?} vs q {:?}", k.shape(), q.shape());
    ensure_shape!(v.shape() == q.shape(), op, "v {:?} vs q {:?}", v.shape(), q.shape());
    let (b, t, w) = (q.dim(0), q.dim(1), q.dim(2));
    ensure_shape!(heads > 0 && w % heads == 0, op, "width {} of {:?} does not split into {heads} heads", w, q.shape());
    Ok((b, t, w))
}

fn params(s: Strategy, batch: usize, t: usize, w: usize, heads: usize, causal: bool) -> Params {
    let hd = w / heads;
    Params {
        batch: batch as u32,
        t: t as u32,
        w: w as u32,
        heads: heads as u32,
        hd: hd as u32,
        causal: causal as u32,
        tiles: t.div_ceil(s.rows()) as u32,
        scale: 1.0 / (hd as f32).sqrt(),
    }
}

/// Samples are independent, so a batch whose q/k/v or probs outgrow one storage binding
/// runs in several dispatches over `narrow0` views.
fn chunks(gpu: &Gpu, op: &'static str, b: usize, t: usize, w: usize, heads: usize) -> Result<Vec<std::ops::Range<usize>>> {
    let act = (t * w * 4) as u64;
    let prob = (heads * t * t * 4) as u64;
    batch_chunks(gpu, op, b, &[act, prob])
}

fn view(x: &Tensor, r: &std::ops::Range<usize>) -> Result<Tensor> {
    x.narrow0(r.start, r.len())
}

/// softmax(q kᵀ / sqrt(hd), causal mask) v per head. Returns (out [B, T, W], probs
/// [B, heads, T, T]); `causal` lets query i see keys 0..=i (CLIP's text encoder).
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize, causal: bool) -> Result<(Tensor, Tensor)> {
    attention_with(Strategy::for_device(q.gpu()), q, k, v, heads, causal)
}

/// `attention` with a chosen implementation (tests run both on one device).
pub fn attention_with(s: Strategy, q: &Tensor, k: &Tensor, v: &Tensor, heads: usize, causal: bool) -> Result<(Tensor, Tensor)> {
    let (b, t, w) = dims("attention", q, k, v, heads)?;
    let g = q.gpu();
    let out = Tensor::empty(g, &[b, t, w])?;
    let probs = Tensor::empty(g, &[b, heads, t, t])?;
    if out.numel() == 0 {
        return Ok((out, probs));
    }
    for r in chunks(g, "attention", b, t, w, heads)? {
        let p = params(s, r.len(), t, w, heads, causal);
        let ts = [view(q, &r)?, view(k, &r)?, view(v, &r)?, view(&probs, &r)?, view(&out, &r)?];
        g.dispatch(s.kernel(), "attention_forward", &p, &ts.iter().collect::<Vec<_>>(), s.groups(g, &p))?;
    }
    Ok((out, probs))
}

/// Gradients (dq, dk, dv) of `attention` given its saved `probs` and the output gradient.
pub fn attention_backward(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    probs: &Tensor,
    d_out: &Tensor,
    heads: usize,
    causal: bool,
) -> Result<(Tensor, Tensor, Tensor)> {
    attention_backward_with(Strategy::for_device(q.gpu()), q, k, v, probs, d_out, heads, causal)
}

/// `attention_backward` with a chosen implementation.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward_with(
    s: Strategy,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    probs: &Tensor,
    d_out: &Tensor,
    heads: usize,
    causal: bool,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (b, t, w) = dims("attention_backward", q, k, v, heads)?;
    ensure_shape!(d_out.shape() == q.shape(), "attention_backward", "d_out {:?} vs q {:?}", d_out.shape(), q.shape());
    ensure_shape!(
        probs.shape() == [b, heads, t, t],
        "attention_backward",
        "probs {:?} vs expected {:?}",
        probs.shape(),
        [b, heads, t, t]
    );
    let g = q.gpu();
    let dq = Tensor::empty(g, &[b, t, w])?;
    let dk = Tensor::empty(g, &[b, t, w])?;
    let dv = Tensor::empty(g, &[b, t, w])?;
    if dq.numel() == 0 {
        return Ok((dq, dk, dv));
    }
    for r in chunks(g, "attention_backward", b, t, w, heads)? {
        let p = params(s, r.len(), t, w, heads, causal);
        // The score gradient lives only between the two passes of this chunk.
        let ds = Tensor::empty(g, &[r.len(), heads, t, t])?;
        let (qv, kv, vv, pv, dov) = (view(q, &r)?, view(k, &r)?, view(v, &r)?, view(probs, &r)?, view(d_out, &r)?);
        let (kernel, groups) = (s.kernel(), s.groups(g, &p));
        g.dispatch(kernel, "attention_backward_dq", &p, &[&kv, &vv, &pv, &dov, &ds, &view(&dq, &r)?], groups)?;
        g.dispatch(kernel, "attention_backward_dkv", &p, &[&qv, &pv, &dov, &ds, &view(&dk, &r)?, &view(&dv, &r)?], groups)?;
    }
    Ok((dq, dk, dv))
}

impl Tape {
    /// The attention core on the tape; the softmax it saves is freed with the tape.
    pub fn attention(&self, q: &Var, k: &Var, v: &Var, heads: usize, causal: bool) -> Result<Var> {
        let (out, probs) = attention(q.value(), k.value(), v.value(), heads, causal)?;
        let (qs, ks, vs) = (q.value().clone(), k.value().clone(), v.value().clone());
        Ok(self.record1("attention", &[q, k, v], out, move |c| {
            let (dq, dk, dv) = attention_backward(&qs, &ks, &vs, &probs, &c.grad(0)?, heads, causal)?;
            Ok(vec![c.needs[0].then_some(dq), c.needs[1].then_some(dk), c.needs[2].then_some(dv)])
        }))
    }
}

// ---- CPU reference --------------------------------------------------------------------

pub mod cpu {
    /// f64 attention on [b, t, w] row-major slices; returns (out, probs [b, heads, t, t]).
    #[allow(clippy::too_many_arguments)]
    pub fn attention(
        q: &[f64],
        k: &[f64],
        v: &[f64],
        b: usize,
        t: usize,
        w: usize,
        heads: usize,
        causal: bool,
    ) -> (Vec<f64>, Vec<f64>) {
        let hd = w / heads;
        let scale = 1.0 / (hd as f64).sqrt();
        let mut out = vec![0.0; b * t * w];
        let mut probs = vec![0.0; b * heads * t * t];
        let at = |bi: usize, i: usize, h: usize, d: usize| (bi * t + i) * w + h * hd + d;
        for bi in 0..b {
            for h in 0..heads {
                for i in 0..t {
                    let keys = if causal { i + 1 } else { t };
                    let scores: Vec<f64> = (0..keys)
                        .map(|j| (0..hd).map(|d| q[at(bi, i, h, d)] * k[at(bi, j, h, d)]).sum::<f64>() * scale)
                        .collect();
                    let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
                    let sum: f64 = e.iter().sum();
                    let row = ((bi * heads + h) * t + i) * t;
                    for j in 0..keys {
                        probs[row + j] = e[j] / sum;
                    }
                    for d in 0..hd {
                        out[at(bi, i, h, d)] = (0..keys).map(|j| probs[row + j] * v[at(bi, j, h, d)]).sum();
                    }
                }
            }
        }
        (out, probs)
    }
}
