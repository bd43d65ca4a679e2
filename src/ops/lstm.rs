//! Pointwise part of an LSTM cell (shaders/lstm.wgsl): RATLIP's recurrent affine
//! transformation, MODEL.md §4. The caller computes gates = W·s + U·h(t−1) + b with
//! matmuls ([B, 4H], PyTorch gate order i, f, g, o, as in `nn.LSTM` checkpoints); this op
//! turns them and c(t−1) into h(t) and c(t).

use bytemuck::{Pod, Zeroable};

use crate::autograd::{Tape, Var};
use crate::ensure_shape;
use crate::error::Result;
use crate::gpu::{grid, Gpu, Kernel};
use crate::kernel;
use crate::ops::batch_chunks;
use crate::tensor::Tensor;

static KERNEL: Kernel = kernel!("lstm");

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    h: u32,
    pad0: u32,
    pad1: u32,
}

/// (B, H) after checking gates [B, 4H] against c_prev [B, H].
fn dims(op: &'static str, gates: &Tensor, c_prev: &Tensor) -> Result<(usize, usize)> {
    ensure_shape!(
        gates.dims() == 2 && c_prev.dims() == 2 && gates.dim(0) == c_prev.dim(0) && gates.dim(1) == 4 * c_prev.dim(1),
        op,
        "gates {:?} vs c_prev {:?} (want [B, 4H] and [B, H])",
        gates.shape(),
        c_prev.shape()
    );
    Ok((c_prev.dim(0), c_prev.dim(1)))
}

/// Samples are independent; split a batch too large for one binding.
fn chunks(gpu: &Gpu, op: &'static str, b: usize, h: usize) -> Result<Vec<std::ops::Range<usize>>> {
    batch_chunks(gpu, op, b, &[(16 * h) as u64, (4 * h) as u64])
}

fn params(b: usize, h: usize) -> Params {
    Params { n: (b * h) as u32, h: h as u32, pad0: 0, pad1: 0 }
}

/// (h, c) = the LSTM cell update from pre-activation `gates` [B, 4H] and `c_prev` [B, H].
pub fn lstm_cell(gates: &Tensor, c_prev: &Tensor) -> Result<(Tensor, Tensor)> {
    let (b, hid) = dims("lstm_cell", gates, c_prev)?;
    let g = gates.gpu();
    let h = Tensor::empty(g, &[b, hid])?;
    let c = Tensor::empty(g, &[b, hid])?;
    for r in chunks(g, "lstm_cell", b, hid)? {
        let v = |x: &Tensor| x.narrow0(r.start, r.len());
        g.dispatch(
            &KERNEL,
            "lstm_forward",
            &params(r.len(), hid),
            &[&v(gates)?, &v(c_prev)?, &v(&h)?, &v(&c)?],
            grid(g, (r.len() * hid) as u64, 256),
        )?;
    }
    Ok((h, c))
}

/// (dgates [B, 4H], dc_prev [B, H]) from the gradients of both outputs, `dh` and `dc`.
pub fn lstm_cell_backward(gates: &Tensor, c_prev: &Tensor, dh: &Tensor, dc: &Tensor) -> Result<(Tensor, Tensor)> {
    let (b, hid) = dims("lstm_cell_backward", gates, c_prev)?;
    ensure_shape!(dh.shape() == c_prev.shape(), "lstm_cell_backward", "dh {:?} vs c_prev {:?}", dh.shape(), c_prev.shape());
    ensure_shape!(dc.shape() == c_prev.shape(), "lstm_cell_backward", "dc {:?} vs c_prev {:?}", dc.shape(), c_prev.shape());
    let g = gates.gpu();
    let dgates = Tensor::empty(g, &[b, 4 * hid])?;
    let dc_prev = Tensor::empty(g, &[b, hid])?;
    for r in chunks(g, "lstm_cell_backward", b, hid)? {
        let v = |x: &Tensor| x.narrow0(r.start, r.len());
        g.dispatch(
            &KERNEL,
            "lstm_backward",
            &params(r.len(), hid),
            &[&v(gates)?, &v(c_prev)?, &v(dh)?, &v(dc)?, &v(&dgates)?, &v(&dc_prev)?],
            grid(g, (r.len() * hid) as u64, 256),
        )?;
    }
    Ok((dgates, dc_prev))
}

impl Tape {
    /// The LSTM cell on the tape, returning (h, c). Either output may go unused downstream
    /// (the last step's c usually does); its gradient then counts as zero.
    pub fn lstm_cell(&self, gates: &Var, c_prev: &Var) -> Result<(Var, Var)> {
        let (h, c) = lstm_cell(gates.value(), c_prev.value())?;
        let (gs, cs) = (gates.value().clone(), c_prev.value().clone());
        let mut outs = self.record("lstm_cell", &[gates, c_prev], vec![h, c], move |ctx| {
            let (dgates, dc_prev) = lstm_cell_backward(&gs, &cs, &ctx.grad(0)?, &ctx.grad(1)?)?;
            Ok(vec![ctx.needs[0].then_some(dgates), ctx.needs[1].then_some(dc_prev)])
        });
        let c = outs.pop().unwrap();
        let h = outs.pop().unwrap();
        Ok((h, c))
    }
}

// ---- CPU reference --------------------------------------------------------------------

pub mod cpu {
    fn sigmoid(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }

    /// (h, c) for gates [b, 4h] and c_prev [b, h], row-major.
    pub fn lstm_cell(gates: &[f64], c_prev: &[f64], hid: usize) -> (Vec<f64>, Vec<f64>) {
        let b = c_prev.len() / hid;
        let mut h = vec![0.0; b * hid];
        let mut c = vec![0.0; b * hid];
        for s in 0..b {
            for k in 0..hid {
                let g = |j: usize| gates[s * 4 * hid + j * hid + k];
                let (i, f, gg, o) = (sigmoid(g(0)), sigmoid(g(1)), g(2).tanh(), sigmoid(g(3)));
                let e = s * hid + k;
                c[e] = f * c_prev[e] + i * gg;
                h[e] = o * c[e].tanh();
            }
        }
        (h, c)
    }
}
