//! A pool of storage buffers, bucketed by size class.
//!
//! A forward pass allocates the same sizes every time, so after the first pass every request
//! is served from the free lists and `Stats::buffers_created` stops growing (a test checks
//! this). Size classes are a quarter-octave apart (≤ 19% waste) above 64 KiB and powers of
//! two below. Buffers are only released to the driver by `Gpu::trim_pool`.

use std::collections::HashMap;
use std::sync::Arc;

/// A buffer owned by the pool. `id` is stable for the buffer's life and keys bind groups.
pub(crate) struct PooledBuffer {
    pub id: u64,
    pub class: u64,
    pub buffer: Arc<wgpu::Buffer>,
}

#[derive(Default)]
pub(crate) struct BufferPool {
    free: HashMap<u64, Vec<PooledBuffer>>,
    next_id: u64,
    pub stats: Stats,
}

/// Counters for allocation behaviour; `Gpu::stats` returns a copy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// wgpu buffers ever created by the pool.
    pub buffers_created: u64,
    /// Bytes held by the pool (in use + free).
    pub bytes_held: u64,
    /// Bytes of pooled buffers currently owned by live tensors.
    pub bytes_in_use: u64,
    /// Compute pipelines compiled.
    pub pipelines_created: u64,
    /// Bind groups created (cache misses).
    pub bind_groups_created: u64,
    /// Dispatches encoded.
    pub dispatches: u64,
    /// Command buffers submitted.
    pub submits: u64,
}

/// The size class that serves a request of `bytes`.
pub(crate) fn size_class(bytes: u64) -> u64 {
    let b = bytes.max(256);
    let p = b.next_power_of_two();
    if p <= 65536 {
        return p;
    }
    let step = p / 8; // quarter octave steps within (p/2, p]
    b.div_ceil(step) * step
}

impl BufferPool {
    pub fn take(&mut self, class: u64) -> Option<PooledBuffer> {
        let b = self.free.get_mut(&class).and_then(|v| v.pop());
        if b.is_some() {
            self.stats.bytes_in_use += class;
        }
        b
    }

    pub fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub fn give_back(&mut self, b: PooledBuffer) {
        self.stats.bytes_in_use -= b.class;
        self.free.entry(b.class).or_default().push(b);
    }

    /// Drops every free buffer; returns their ids so cached bind groups can be evicted.
    pub fn trim(&mut self) -> Vec<u64> {
        let mut ids = Vec::new();
        for (_, v) in self.free.drain() {
            for b in v {
                self.stats.bytes_held -= b.class;
                ids.push(b.id);
                b.buffer.destroy();
            }
        }
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::size_class;

    #[test]
    fn size_classes_cover_request_with_bounded_waste() {
        for bytes in [1u64, 255, 256, 257, 4096, 65535, 65537, 100_000, 1 << 20, 3_000_001, 1 << 30] {
            let c = size_class(bytes);
            assert!(c >= bytes, "{bytes} -> {c}");
            if bytes > 65536 {
                assert!((c - bytes) as f64 / bytes as f64 <= 0.25, "{bytes} -> {c}");
            }
            assert_eq!(c % 256, 0);
        }
    }
}
