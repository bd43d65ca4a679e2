//! Matmul at the model's shapes: CLIP's MLP layers as x[M, K] · W[N, K]ᵀ (tokens × width →
//! hidden, the way nn.Linear stores W), and a square 1024³ for comparison with other
//! libraries. Backward is dx and dW together, twice the forward's FLOPs.

use super::{time, Row};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::ops::matmul::{matmul, matmul_backward};
use crate::tensor::Tensor;

/// (M, K, N, B transposed).
const CASES: [(usize, usize, usize, bool); 3] = [(50, 768, 3072, true), (77, 512, 2048, true), (1024, 1024, 1024, false)];

/// Deterministic values in [-1, 1): the timing does not depend on them.
fn filled(gpu: &Gpu, shape: &[usize], seed: u32) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n as u32).map(|i| ((i.wrapping_mul(2654435761) ^ seed) % 2001) as f32 / 1000.0 - 1.0).collect();
    Tensor::from_slice(gpu, shape, &v)
}

pub fn rows(gpu: &Gpu, reps: usize) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for (m, k, n, tb) in CASES {
        let x = filled(gpu, &[m, k], 1)?;
        let w = filled(gpu, &if tb { [n, k] } else { [k, n] }, 2)?;
        let dy = filled(gpu, &[m, n], 3)?;
        let gflop = 2.0 * (m * n * k) as f64 / 1e9;
        let fwd = time(gpu, reps, || matmul(&x, &w, false, tb, None).map(drop))?;
        rows.push(Row { name: format!("matmul {m}x{k}x{n} fwd"), gflop, ms: fwd });
        let bwd = time(gpu, reps, || matmul_backward(&x, &w, false, tb, &dy, [true, true, false]).map(drop))?;
        rows.push(Row { name: format!("matmul {m}x{k}x{n} bwd (dx+dW)"), gflop: 2.0 * gflop, ms: bwd });
    }
    Ok(rows)
}
