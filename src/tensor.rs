//! Tensors on the device: a shape, a dtype, and a window into a pooled buffer.
//!
//! Tensors are always row-major and contiguous. `reshape` and `narrow0` (a range of the
//! first dimension) are views that share the buffer; anything else (permute, slice of an
//! inner dimension) is a kernel that writes a new tensor. Dropping the last view returns the
//! buffer to the pool. Data stays on the GPU until `to_vec` is called.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::{Gpu, PooledBuffer};

/// Element type of the storage. Only f32 today; kernels and the byte accounting go through
/// `DType::size` so that f16 storage can be added without touching callers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    F32,
}

impl DType {
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
        }
    }
}

struct Storage {
    gpu: Gpu,
    buffer: Option<PooledBuffer>,
}

impl Drop for Storage {
    fn drop(&mut self) {
        if let Some(b) = self.buffer.take() {
            self.gpu.release(b);
        }
    }
}

#[derive(Clone)]
pub struct Tensor {
    storage: Arc<Storage>,
    shape: Vec<usize>,
    /// Offset of the first element, in elements.
    offset: usize,
    dtype: DType,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor{:?}", self.shape)
    }
}

pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

impl Tensor {
    /// A new tensor whose contents are undefined (every kernel output starts this way).
    pub fn empty(gpu: &Gpu, shape: &[usize]) -> Result<Tensor> {
        let dtype = DType::F32;
        let bytes = (numel(shape) * dtype.size()) as u64;
        let buffer = gpu.alloc(bytes, &|| format!("a tensor of shape {shape:?}"))?;
        Ok(Tensor {
            storage: Arc::new(Storage { gpu: gpu.clone(), buffer: Some(buffer) }),
            shape: shape.to_vec(),
            offset: 0,
            dtype,
        })
    }

    pub fn zeros(gpu: &Gpu, shape: &[usize]) -> Result<Tensor> {
        let t = Tensor::empty(gpu, shape)?;
        let bytes = t.byte_len().div_ceil(4) * 4;
        if bytes > 0 {
            gpu.with_encoder(|e| e.clear_buffer(t.buffer(), 0, Some(bytes)));
        }
        Ok(t)
    }

    pub fn from_slice(gpu: &Gpu, shape: &[usize], data: &[f32]) -> Result<Tensor> {
        if numel(shape) != data.len() {
            return Err(Error::shape(
                "Tensor::from_slice",
                format!("shape {shape:?} holds {} values, got {}", numel(shape), data.len()),
            ));
        }
        let t = Tensor::empty(gpu, shape)?;
        if !data.is_empty() {
            gpu.write(t.buffer(), 0, bytemuck::cast_slice(data))?;
        }
        Ok(t)
    }

    /// A tensor of `shape` with every element `value`.
    pub fn full(gpu: &Gpu, shape: &[usize], value: f32) -> Result<Tensor> {
        Tensor::from_slice(gpu, shape, &vec![value; numel(shape)])
    }

    /// Overwrites the contents (same number of elements), ordered after pending work.
    pub fn write(&self, data: &[f32]) -> Result<()> {
        if data.len() != self.numel() {
            return Err(Error::shape("Tensor::write", format!("{:?} holds {} values, got {}", self.shape, self.numel(), data.len())));
        }
        self.storage.gpu.write(self.buffer(), (self.offset * self.dtype.size()) as u64, bytemuck::cast_slice(data))
    }

    /// Reads the tensor back to the CPU; submits and waits for pending work.
    pub fn to_vec(&self) -> Result<Vec<f32>> {
        let bytes = self.storage.gpu.read(self.buffer(), (self.offset * self.dtype.size()) as u64, self.byte_len())?;
        Ok(bytemuck::cast_slice(&bytes).to_vec())
    }

    pub fn gpu(&self) -> &Gpu {
        &self.storage.gpu
    }
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn dims(&self) -> usize {
        self.shape.len()
    }
    pub fn dim(&self, i: usize) -> usize {
        self.shape[i]
    }
    pub fn numel(&self) -> usize {
        numel(&self.shape)
    }
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    pub fn byte_len(&self) -> u64 {
        (self.numel() * self.dtype.size()) as u64
    }

    /// The same data with another shape of the same size. No copy.
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        if numel(shape) != self.numel() {
            return Err(Error::shape("reshape", format!("{:?} ({} values) to {shape:?}", self.shape, self.numel())));
        }
        Ok(Tensor { shape: shape.to_vec(), ..self.clone() })
    }

    /// Rows `start..start+len` of the first dimension. No copy; the view can be bound only
    /// where its byte offset meets the device's alignment (see `Gpu::dispatch`).
    pub fn narrow0(&self, start: usize, len: usize) -> Result<Tensor> {
        if self.shape.is_empty() || start + len > self.shape[0] {
            return Err(Error::shape("narrow0", format!("rows {start}..{} of {:?}", start + len, self.shape)));
        }
        let row = numel(&self.shape[1..]);
        let mut shape = self.shape.clone();
        shape[0] = len;
        Ok(Tensor { shape, offset: self.offset + start * row, ..self.clone() })
    }

    /// True when both tensors are views of the same buffer.
    pub fn shares_buffer(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.storage, &other.storage)
    }

    pub(crate) fn buffer(&self) -> &wgpu::Buffer {
        &self.storage.buffer.as_ref().expect("live tensor").buffer
    }

    /// (pool buffer id, byte offset, byte size) of the binding window; size at least 4.
    pub(crate) fn binding_window(&self) -> (u64, u64, u64) {
        let b = self.storage.buffer.as_ref().expect("live tensor");
        let offset = (self.offset * self.dtype.size()) as u64;
        let size = self.byte_len().max(4).min(b.class - offset);
        (b.id, offset, size)
    }
}
