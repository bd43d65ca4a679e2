//! Kernel families. Each module holds, side by side: the WGSL it embeds (`shaders/NAME.wgsl`),
//! forward and backward wrappers that check shapes at the boundary, the tape-recording
//! variant (`impl Tape`), and a plain CPU reference in `cpu` that the tests compare with.

use std::ops::Range;

use crate::error::{Error, Result};
use crate::gpu::Gpu;

pub mod attention;
pub mod conv2d;
pub mod elementwise;
pub mod embedding;
pub mod loss;
pub mod lstm;
pub mod matmul;
pub mod norm;
pub mod reduce;
pub mod shape;

/// Splits a batch of `batch` items into ranges such that, for every tensor taking part,
/// `bytes_per_item[i] · len` fits one storage binding and each chunk's first byte meets the
/// device's offset alignment (so `Tensor::narrow0` views can be bound without copies).
/// Returns one range when everything fits. Ops whose tensors can outgrow a binding (224²
/// feature maps at batch 16 are 205 MB; lavapipe binds 128 MiB) run once per range.
pub fn batch_chunks(gpu: &Gpu, op: &'static str, batch: usize, bytes_per_item: &[u64]) -> Result<Vec<Range<usize>>> {
    let limit = gpu.max_binding_bytes();
    let align = gpu.limits().min_storage_buffer_offset_alignment as u64;
    let widest = bytes_per_item.iter().copied().max().unwrap_or(0).max(1);
    if widest * batch as u64 <= limit {
        return Ok(vec![0..batch]);
    }
    // Chunks must start at multiples of `step` items so that every tensor's offset is aligned.
    let mut step = 1u64;
    for &b in bytes_per_item {
        if b > 0 {
            let g = gcd(b, align);
            step = lcm(step, align / g);
        }
    }
    let per_chunk = (limit / widest) / step * step;
    if per_chunk == 0 {
        return Err(Error::BindingTooLarge {
            what: format!("one item of {op} (split into aligned groups of {step})"),
            shape: vec![step as usize],
            bytes: widest * step,
            limit,
        });
    }
    let per_chunk = per_chunk as usize;
    Ok((0..batch).step_by(per_chunk).map(|s| s..(s + per_chunk).min(batch)).collect())
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn lcm(a: u64, b: u64) -> u64 {
    a / gcd(a, b) * b
}
