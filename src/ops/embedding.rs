//! Embedding lookup (shaders/embedding.wgsl): CLIP's token_embedding [49408, 512], MODEL.md §2.
//!
//! Token ids travel in an ordinary (f32-typed) tensor by bit pattern; the shader reads the
//! binding as `array<u32>`. They are range-checked once, on the CPU, when the tensor is
//! built, because reading them back from the GPU to check would stall the queue.

use bytemuck::{Pod, Zeroable};

use crate::autograd::{Tape, Var};
use crate::ensure_shape;
use crate::error::{Error, Result};
use crate::gpu::{grid, Gpu, Kernel};
use crate::kernel;
use crate::ops::batch_chunks;
use crate::tensor::Tensor;

static KERNEL: Kernel = kernel!("embedding");

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    d: u32,
    v: u32,
    buckets: u32,
}

/// A tensor of token ids for `embedding` into a table of `vocab` rows. Fails, naming the
/// id, its position and `vocab`, if an id is out of range.
pub fn ids_tensor(gpu: &Gpu, shape: &[usize], ids: &[u32], vocab: usize) -> Result<Tensor> {
    if let Some((pos, &id)) = ids.iter().enumerate().find(|(_, &id)| id as usize >= vocab) {
        return Err(Error::Other(format!(
            "embedding: token id {id} at position {pos} is out of range for a vocabulary of V = {vocab}"
        )));
    }
    Tensor::from_slice(gpu, shape, bytemuck::cast_slice::<u32, f32>(ids))
}

/// (V, D, number of tokens) after checking the table.
fn table_dims(op: &'static str, table: &Tensor, ids: &Tensor) -> Result<(usize, usize, usize)> {
    ensure_shape!(table.dims() == 2, op, "table must be [V, D], got {:?} (ids {:?})", table.shape(), ids.shape());
    Ok((table.dim(0), table.dim(1), ids.numel()))
}

/// Tokens are independent: ids and rows of the output split into bindable chunks. The
/// table itself is bound whole (CLIP's is 101 MB; a larger one is a BindingTooLarge error).
fn token_chunks(gpu: &Gpu, op: &'static str, n: usize, d: usize) -> Result<Vec<std::ops::Range<usize>>> {
    batch_chunks(gpu, op, n, &[4, (d * 4) as u64])
}

/// out[..., :] = table[ids[...], :]; out has shape ids.shape ++ [D].
pub fn embedding(table: &Tensor, ids: &Tensor) -> Result<Tensor> {
    let (v, d, n) = table_dims("embedding", table, ids)?;
    let g = table.gpu();
    let mut shape = ids.shape().to_vec();
    shape.push(d);
    let out = Tensor::empty(g, &shape)?;
    let (flat_ids, flat_out) = (ids.reshape(&[n])?, out.reshape(&[n, d])?);
    for r in token_chunks(g, "embedding", n, d)? {
        let p = Params { n: r.len() as u32, d: d as u32, v: v as u32, buckets: 1 };
        let (iv, ov) = (flat_ids.narrow0(r.start, r.len())?, flat_out.narrow0(r.start, r.len())?);
        g.dispatch(&KERNEL, "embedding_forward", &p, &[table, &iv, &ov], grid(g, (r.len() * d) as u64, 256))?;
    }
    Ok(out)
}

/// Gradient of the table: d_out's rows scatter-added into a zero [vocab, D] tensor, with
/// repeated ids accumulating (in token order, so the result is deterministic).
pub fn embedding_backward(ids: &Tensor, d_out: &Tensor, vocab: usize) -> Result<Tensor> {
    let d = d_out.shape().last().copied().unwrap_or(1).max(1);
    // Every backward thread reads every id, and only the buckets split the adds. A GPU
    // wants enough threads to fill it; on a CPU adapter (lavapipe) each id read costs as much
    // as an add, so more threads would only multiply the work (16 buckets: 15× slower there).
    let buckets = if d_out.gpu().adapter_info().device_type == wgpu::DeviceType::Cpu { 1 } else { 8192 / d };
    embedding_backward_with_buckets(ids, d_out, vocab, buckets)
}

/// `embedding_backward` with `buckets` threads per column (thread b owns the rows
/// id ≡ b mod buckets); any count gives the same bits. For tests.
#[doc(hidden)]
pub fn embedding_backward_with_buckets(ids: &Tensor, d_out: &Tensor, vocab: usize, buckets: usize) -> Result<Tensor> {
    ensure_shape!(
        d_out.dims() == ids.dims() + 1 && d_out.shape()[..ids.dims()] == *ids.shape(),
        "embedding_backward",
        "d_out {:?} vs ids {:?} (want ids.shape ++ [D])",
        d_out.shape(),
        ids.shape()
    );
    let d = d_out.shape()[ids.dims()];
    let n = ids.numel();
    let g = d_out.gpu();
    let dtable = Tensor::zeros(g, &[vocab, d])?;
    let buckets = buckets.clamp(1, vocab.max(1));
    let (flat_ids, flat_dout) = (ids.reshape(&[n])?, d_out.reshape(&[n, d])?);
    // Chunks run one after another, each adding into dtable, so the order stays fixed.
    for r in token_chunks(g, "embedding_backward", n, d)? {
        let p = Params { n: r.len() as u32, d: d as u32, v: vocab as u32, buckets: buckets as u32 };
        let (iv, dv) = (flat_ids.narrow0(r.start, r.len())?, flat_dout.narrow0(r.start, r.len())?);
        g.dispatch(&KERNEL, "embedding_backward", &p, &[&iv, &dv, &dtable], grid(g, (d * buckets) as u64, 256))?;
    }
    Ok(dtable)
}

impl Tape {
    /// Embedding lookup; `ids` (from `ids_tensor`) are data, never differentiated.
    pub fn embedding(&self, table: &Var, ids: &Tensor) -> Result<Var> {
        let out = embedding(table.value(), ids)?;
        let ids = ids.clone();
        let vocab = table.shape()[0];
        Ok(self.record1("embedding", &[table], out, move |c| Ok(vec![Some(embedding_backward(&ids, &c.grad(0)?, vocab)?)])))
    }
}

// ---- CPU reference --------------------------------------------------------------------

pub mod cpu {
    /// Rows of a [v, d] table (row-major) at `ids`, concatenated.
    pub fn embedding(table: &[f64], d: usize, ids: &[u32]) -> Vec<f64> {
        ids.iter().flat_map(|&id| table[id as usize * d..(id as usize + 1) * d].iter().copied()).collect()
    }
}
