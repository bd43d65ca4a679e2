//! Elementwise activations and same-shape arithmetic (shaders/elementwise.wgsl).
//!
//! Forward and backward side by side; the CPU reference (`cpu`) is what tests compare with.

use bytemuck::{Pod, Zeroable};

use crate::autograd::{Tape, Var};
use crate::ensure_shape;
use crate::error::Result;
use crate::gpu::{grid, Kernel};
use crate::kernel;
use crate::ops::batch_chunks;
use crate::tensor::Tensor;

static KERNEL: Kernel = kernel!("elementwise");

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    op: u32,
    alpha: f32,
    beta: f32,
}

/// The elementwise maps; the numbers match `op` in the shader.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    Relu,
    LeakyRelu(f32),
    Sigmoid,
    Tanh,
    /// CLIP's x·σ(1.702x).
    QuickGelu,
    /// alpha·x + beta.
    Scale(f32, f32),
}

impl Activation {
    fn code(self) -> (u32, f32, f32) {
        match self {
            Activation::Relu => (0, 0.0, 0.0),
            Activation::LeakyRelu(s) => (1, s, 0.0),
            Activation::Sigmoid => (2, 0.0, 0.0),
            Activation::Tanh => (3, 0.0, 0.0),
            Activation::QuickGelu => (4, 0.0, 0.0),
            Activation::Scale(a, b) => (5, a, b),
        }
    }
}

fn params(n: usize, op: u32, alpha: f32, beta: f32) -> Params {
    Params { n: n as u32, op, alpha, beta }
}

// ---- forward / backward kernels -------------------------------------------------------

/// Runs `entry` over equal-shaped tensors (inputs then the output, all flat), in pieces
/// when they are larger than one storage binding.
fn map(entry: &'static str, op: &'static str, inputs: &[&Tensor], code: (u32, f32, f32)) -> Result<Tensor> {
    let first = inputs[0];
    let g = first.gpu();
    let n = first.numel();
    let out = Tensor::empty(g, first.shape())?;
    let flat = |t: &Tensor| t.reshape(&[n]);
    let mut all: Vec<Tensor> = inputs.iter().map(|t| flat(t)).collect::<Result<_>>()?;
    all.push(flat(&out)?);
    for r in batch_chunks(g, op, n, &vec![4; all.len()])? {
        let views: Vec<Tensor> = all.iter().map(|t| t.narrow0(r.start, r.len())).collect::<Result<_>>()?;
        let refs: Vec<&Tensor> = views.iter().collect();
        g.dispatch(&KERNEL, entry, &params(r.len(), code.0, code.1, code.2), &refs, grid(g, r.len() as u64, 256))?;
    }
    Ok(out)
}

pub fn activation(x: &Tensor, f: Activation) -> Result<Tensor> {
    map("unary_forward", "activation", &[x], f.code())
}

/// dx = f'(x) ⊙ dy.
pub fn activation_backward(x: &Tensor, dy: &Tensor, f: Activation) -> Result<Tensor> {
    ensure_shape!(x.shape() == dy.shape(), "activation_backward", "x {:?} vs dy {:?}", x.shape(), dy.shape());
    map("unary_backward", "activation_backward", &[x, dy], f.code())
}

fn binary(a: &Tensor, b: &Tensor, op: u32, alpha: f32, name: &'static str) -> Result<Tensor> {
    ensure_shape!(a.shape() == b.shape(), name, "{:?} vs {:?} (use the broadcasting ops for different shapes)", a.shape(), b.shape());
    map("binary", name, &[a, b], (op, alpha, 0.0))
}

/// a + b (same shapes).
pub fn add(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    binary(a, b, 0, 1.0, "add")
}

/// a + alpha·b (same shapes).
pub fn axpy(a: &Tensor, alpha: f32, b: &Tensor) -> Result<Tensor> {
    binary(a, b, 0, alpha, "axpy")
}

/// a ⊙ b (same shapes).
pub fn mul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    binary(a, b, 1, 0.0, "mul")
}

// ---- on the tape ----------------------------------------------------------------------

impl Tape {
    pub fn activation(&self, x: &Var, f: Activation) -> Result<Var> {
        let y = activation(x.value(), f)?;
        let xs = x.value().clone();
        Ok(self.record1("activation", &[x], y, move |c| Ok(vec![Some(activation_backward(&xs, &c.grad(0)?, f)?)])))
    }

    pub fn add(&self, a: &Var, b: &Var) -> Result<Var> {
        let y = add(a.value(), b.value())?;
        Ok(self.record1("add", &[a, b], y, |c| {
            let g = c.grad(0)?;
            Ok(vec![c.needs[0].then(|| g.clone()), c.needs[1].then_some(g)])
        }))
    }

    /// a + alpha·b.
    pub fn axpy(&self, a: &Var, alpha: f32, b: &Var) -> Result<Var> {
        let y = axpy(a.value(), alpha, b.value())?;
        Ok(self.record1("axpy", &[a, b], y, move |c| {
            let g = c.grad(0)?;
            let gb = if c.needs[1] { Some(activation(&g, Activation::Scale(alpha, 0.0))?) } else { None };
            Ok(vec![c.needs[0].then_some(g), gb])
        }))
    }

    pub fn mul(&self, a: &Var, b: &Var) -> Result<Var> {
        let y = mul(a.value(), b.value())?;
        let (av, bv) = (a.value().clone(), b.value().clone());
        Ok(self.record1("mul", &[a, b], y, move |c| {
            let g = c.grad(0)?;
            let ga = if c.needs[0] { Some(mul(&g, &bv)?) } else { None };
            let gb = if c.needs[1] { Some(mul(&g, &av)?) } else { None };
            Ok(vec![ga, gb])
        }))
    }
}

// ---- CPU reference --------------------------------------------------------------------

pub mod cpu {
    use super::Activation;

    fn sigmoid(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }

    pub fn activation(x: f64, f: Activation) -> f64 {
        match f {
            Activation::Relu => x.max(0.0),
            Activation::LeakyRelu(s) => {
                if x > 0.0 {
                    x
                } else {
                    s as f64 * x
                }
            }
            Activation::Sigmoid => sigmoid(x),
            Activation::Tanh => x.tanh(),
            Activation::QuickGelu => x * sigmoid(1.702 * x),
            Activation::Scale(a, b) => a as f64 * x + b as f64,
        }
    }
}
