//! Shared test machinery: the one GPU of the test process, a seeded RNG, comparisons that
//! report the worst element, and central finite differences on the f64 CPU references.
#![allow(dead_code)]

use std::sync::OnceLock;

use ratlip::{Gpu, GpuOptions, Tensor};

/// The test process's device. Panics (fails the test) when there is no adapter: GPU tests
/// must run, in CI on lavapipe, never skip.
pub fn gpu() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| match Gpu::new(&GpuOptions::default()) {
        Ok(g) => g,
        Err(e) => panic!("GPU tests need an adapter (lavapipe is enough): {e}"),
    })
}

/// xorshift64*: reproducible data without a dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    pub fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.uniform()).collect()
    }
    /// Integer in lo..=hi.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }
}

pub fn upload(shape: &[usize], data: &[f32]) -> Tensor {
    Tensor::from_slice(gpu(), shape, data).unwrap()
}

pub fn random(rng: &mut Rng, shape: &[usize]) -> (Tensor, Vec<f32>) {
    let n: usize = shape.iter().product();
    let v = rng.vec(n);
    (upload(shape, &v), v)
}

pub fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// Asserts |got - want| <= atol + rtol·|want| elementwise, reporting the worst element.
pub fn assert_close(what: &str, got: &[f32], want: &[f64], rtol: f64, atol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length {} vs {}", got.len(), want.len());
    let mut worst = (0usize, 0.0f64);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let g = g as f64;
        assert!(g.is_finite(), "{what}: element {i} is {g}");
        let excess = (g - w).abs() - (atol + rtol * w.abs());
        if excess > worst.1 {
            worst = (i, excess);
        }
    }
    if worst.1 > 0.0 {
        let i = worst.0;
        panic!("{what}: element {i}: got {} want {} (rtol {rtol}, atol {atol})", got[i], want[i]);
    }
}

/// Max |got-want| / max|want|: a scale-free error for reports.
pub fn rel_err(got: &[f32], want: &[f64]) -> f64 {
    let scale = want.iter().fold(0.0f64, |m, w| m.max(w.abs())).max(1e-30);
    got.iter().zip(want).fold(0.0f64, |m, (&g, &w)| m.max((g as f64 - w).abs())) / scale
}

/// Checks an analytic gradient (from GPU backward kernels) against central finite
/// differences of a scalar f64 function of the same input, at up to `samples` coordinates.
/// The f64 reference makes the differences exact to ~1e-9, so the tolerance only has to
/// cover the f32 arithmetic of the GPU side.
pub fn check_grad(what: &str, f: &dyn Fn(&[f64]) -> f64, x: &[f32], analytic: &[f32], samples: usize, rtol: f64) {
    assert_eq!(x.len(), analytic.len(), "{what}: gradient length");
    let x64 = to_f64(x);
    let scale = analytic.iter().fold(0.0f64, |m, g| m.max(g.abs() as f64)).max(1e-6);
    let stride = (x.len() / samples.max(1)).max(1);
    let eps = 1e-4;
    let mut idx: Vec<usize> = (0..x.len()).step_by(stride).collect();
    idx.push(x.len() - 1);
    for i in idx {
        let mut xp = x64.clone();
        xp[i] += eps;
        let mut xm = x64.clone();
        xm[i] -= eps;
        let fd = (f(&xp) - f(&xm)) / (2.0 * eps);
        let a = analytic[i] as f64;
        assert!(
            (fd - a).abs() <= rtol * scale,
            "{what}: d/dx[{i}]: backward {a} vs finite difference {fd} (tolerance {rtol}·{scale:.3e})"
        );
    }
}

/// Σ out ⊙ w: the scalar the gradient checks differentiate (w random, so every output
/// element matters and errors cannot cancel by symmetry).
pub fn dot(out: &[f64], w: &[f32]) -> f64 {
    out.iter().zip(w).map(|(o, &w)| o * w as f64).sum()
}
