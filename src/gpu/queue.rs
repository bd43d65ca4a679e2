//! Encoding and submission: many dispatches go into one command encoder, their parameters
//! into one uniform arena, and nothing is submitted until someone reads a result, uploads
//! into a buffer that pending work may still read, or the arena fills up.

use std::sync::Arc;

use crate::error::{Error, Result};

use super::context::Gpu;
use super::kernel::{BindKey, Kernel, Slot};
use super::pool::{size_class, PooledBuffer, Stats};
use crate::tensor::Tensor;

const ARENA_BYTES: u64 = 4 << 20;
/// Largest parameter block a kernel may declare.
const MAX_PARAMS: usize = 256;

pub(crate) struct Pending {
    encoder: Option<wgpu::CommandEncoder>,
    arena: Arc<wgpu::Buffer>,
    arena_bytes: Vec<u8>,
    align: u64,
    /// Dispatches encoded since the last submission (for [`Gpu::set_pace`]).
    dispatches: usize,
    /// The last submission made by `flush`, for [`Gpu::wait`].
    last_submit: Option<wgpu::SubmissionIndex>,
}

impl Pending {
    pub fn new(device: &wgpu::Device, align: u64) -> Pending {
        let arena = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("uniform arena"),
            size: ARENA_BYTES,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Pending { encoder: None, arena: Arc::new(arena), arena_bytes: Vec::new(), align: align.max(16), dispatches: 0, last_submit: None }
    }
}

/// Number of workgroups for `n` items at `per_group` items each, folded into x and y so
/// that no dimension exceeds the device limit. Shaders recover the flat group index as
/// `wg.x + wg.y * num_workgroups.x`.
pub fn grid(gpu: &Gpu, n: u64, per_group: u64) -> [u32; 3] {
    let groups = n.div_ceil(per_group).max(1);
    let max = gpu.limits().max_compute_workgroups_per_dimension as u64;
    if groups <= max {
        [groups as u32, 1, 1]
    } else {
        let y = groups.div_ceil(max);
        let x = groups.div_ceil(y);
        [x as u32, y as u32, 1]
    }
}

impl Gpu {
    /// Allocates an uninitialised tensor buffer of at least `bytes` from the pool.
    pub(crate) fn alloc(&self, bytes: u64, what: &dyn Fn() -> String) -> Result<PooledBuffer> {
        let class = size_class(bytes);
        if class > self.limits().max_buffer_size {
            return Err(Error::Other(format!(
                "{} needs {bytes} bytes, more than this device's max_buffer_size ({})",
                what(),
                self.limits().max_buffer_size
            )));
        }
        let mut pool = self.inner.pool.lock().unwrap();
        if let Some(b) = pool.take(class) {
            return Ok(b);
        }
        let device = &self.inner.device;
        let scope = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let buffer = device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: class,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        if pollster::block_on(scope.pop()).is_some() {
            // Free cached buffers and tell the caller; the pool may be holding the memory.
            drop(pool);
            self.trim_pool();
            return Err(Error::OutOfMemory { bytes: class, what: what() });
        }
        pool.stats.buffers_created += 1;
        pool.stats.bytes_held += class;
        pool.stats.bytes_in_use += class;
        let id = pool.new_id();
        Ok(PooledBuffer { id, class, buffer: Arc::new(buffer) })
    }

    pub(crate) fn release(&self, b: PooledBuffer) {
        self.inner.pool.lock().unwrap().give_back(b);
    }

    /// Releases every cached free buffer to the driver.
    pub fn trim_pool(&self) {
        let _ = self.flush();
        let ids = self.inner.pool.lock().unwrap().trim();
        if !ids.is_empty() {
            let mut k = self.inner.kernels.lock().unwrap();
            k.bind_groups.retain(|key, _| !key.buffers.iter().any(|(id, _, _)| ids.contains(id)));
        }
    }

    pub fn stats(&self) -> Stats {
        self.inner.pool.lock().unwrap().stats
    }

    /// Encodes one compute dispatch. `tensors` fill the entry's storage bindings in binding
    /// order; `params` fills its uniform (pass `&()` when it has none).
    pub fn dispatch<P: bytemuck::Pod>(
        &self,
        kernel: &Kernel,
        entry: &str,
        params: &P,
        tensors: &[&Tensor],
        workgroups: [u32; 3],
    ) -> Result<()> {
        self.dispatch_raw(kernel, entry, bytemuck::bytes_of(params), tensors, workgroups)
    }

    fn dispatch_raw(
        &self,
        kernel: &Kernel,
        entry: &str,
        params: &[u8],
        tensors: &[&Tensor],
        workgroups: [u32; 3],
    ) -> Result<()> {
        if self.inner.profile.lock().unwrap().is_none() {
            return self.encode_dispatch(kernel, entry, params, tensors, workgroups);
        }
        // Profiling: everything before is finished (each dispatch waits), so the time from
        // here to the end of this dispatch's own wait is its encoding plus execution.
        let t0 = std::time::Instant::now();
        self.encode_dispatch(kernel, entry, params, tensors, workgroups)?;
        self.sync()?;
        let secs = t0.elapsed().as_secs_f64();
        if let Some(map) = self.inner.profile.lock().unwrap().as_mut() {
            let e = map.entry(format!("{}::{entry}", kernel.name)).or_default();
            e.0 += 1;
            e.1 += secs;
        }
        Ok(())
    }

    /// From now on every dispatch waits for the device and its time is counted per kernel
    /// entry, until `take_profile`. Slow (one submission per dispatch); for finding hot spots.
    pub fn start_profile(&self) -> Result<()> {
        self.sync()?;
        *self.inner.profile.lock().unwrap() = Some(Default::default());
        Ok(())
    }

    /// Stops profiling: (kernel::entry, dispatches, seconds), most time first.
    pub fn take_profile(&self) -> Vec<(String, u64, f64)> {
        let map = self.inner.profile.lock().unwrap().take().unwrap_or_default();
        let mut rows: Vec<(String, u64, f64)> = map.into_iter().map(|(k, (n, s))| (k, n, s)).collect();
        rows.sort_by(|a, b| b.2.total_cmp(&a.2));
        rows
    }

    fn encode_dispatch(
        &self,
        kernel: &Kernel,
        entry: &str,
        params: &[u8],
        tensors: &[&Tensor],
        workgroups: [u32; 3],
    ) -> Result<()> {
        assert!(params.len() <= MAX_PARAMS, "{}::{entry}: parameter block too large", kernel.name);
        let max = self.limits().max_compute_workgroups_per_dimension;
        if workgroups.iter().any(|&w| w > max) {
            return Err(Error::Other(format!(
                "{}::{entry}: {workgroups:?} workgroups exceed the device limit {max} per dimension",
                kernel.name
            )));
        }
        if workgroups.contains(&0) {
            return Ok(());
        }
        let (entry_ref, created) = self.inner.kernels.lock().unwrap().get(&self.inner.device, kernel, entry)?;
        if created {
            self.inner.pool.lock().unwrap().stats.pipelines_created += 1;
        }
        let storage_slots = entry_ref.slots.iter().filter(|s| matches!(s.1, Slot::Storage { .. })).count();
        if storage_slots != tensors.len() {
            let names: Vec<&str> = entry_ref.slots.iter().map(|s| s.2.as_str()).collect();
            return Err(Error::Other(format!(
                "{}::{entry} binds {names:?} but was given {} tensors",
                kernel.name,
                tensors.len()
            )));
        }
        // Storage bindings: each tensor's byte window.
        let align = self.limits().min_storage_buffer_offset_alignment as u64;
        let max_binding = self.max_binding_bytes();
        let mut buffers = Vec::with_capacity(tensors.len());
        for t in tensors {
            let (id, offset, size) = t.binding_window();
            if offset % align != 0 {
                return Err(Error::Other(format!(
                    "{}::{entry}: a view of shape {:?} starts at byte {offset}, not a multiple of the \
                     device's storage offset alignment {align}; copy it first",
                    kernel.name,
                    t.shape()
                )));
            }
            if size > max_binding {
                return Err(Error::BindingTooLarge {
                    what: format!("bound to {}::{entry}", kernel.name),
                    shape: t.shape().to_vec(),
                    bytes: size,
                    limit: max_binding,
                });
            }
            buffers.push((id, offset, size));
        }

        let mut pending = self.inner.pending.lock().unwrap();
        let has_uniform = entry_ref.slots.iter().any(|s| s.1 == Slot::Uniform);
        let mut dyn_offset = None;
        if has_uniform {
            let start = (pending.arena_bytes.len() as u64).div_ceil(pending.align) * pending.align;
            if start + MAX_PARAMS as u64 > ARENA_BYTES {
                drop(pending);
                self.flush()?;
                return self.encode_dispatch(kernel, entry, params, tensors, workgroups);
            }
            pending.arena_bytes.resize(start as usize, 0);
            pending.arena_bytes.extend_from_slice(params);
            // Uniform blocks are read in 16-byte units; pad so the bound range is in the arena.
            let padded = params.len().div_ceil(16).max(1) * 16;
            pending.arena_bytes.resize(start as usize + padded, 0);
            dyn_offset = Some((start as u32, padded as u64));
        }
        let key = BindKey {
            entry: entry_ref.id,
            uniform: dyn_offset.map(|(_, size)| size),
            buffers: buffers.clone(),
        };
        let bind_group = {
            let mut k = self.inner.kernels.lock().unwrap();
            if let Some(bg) = k.bind_groups.get(&key) {
                bg.clone()
            } else {
                let mut entries = Vec::new();
                let mut ti = 0;
                for (binding, slot, _) in &entry_ref.slots {
                    let resource = match slot {
                        Slot::Uniform => wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                            buffer: &pending.arena,
                            offset: 0,
                            size: std::num::NonZeroU64::new(dyn_offset.unwrap().1),
                        }),
                        Slot::Storage { .. } => {
                            let (_, offset, size) = buffers[ti];
                            let buffer = tensors[ti].buffer();
                            ti += 1;
                            wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                                buffer,
                                offset,
                                size: std::num::NonZeroU64::new(size),
                            })
                        }
                    };
                    entries.push(wgpu::BindGroupEntry { binding: *binding, resource });
                }
                let bg = self.inner.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: None,
                    layout: &entry_ref.layout,
                    entries: &entries,
                });
                if k.bind_groups.len() > 8192 {
                    k.bind_groups.clear();
                }
                k.bind_groups.insert(key, bg.clone());
                self.inner.pool.lock().unwrap().stats.bind_groups_created += 1;
                bg
            }
        };
        let device = &self.inner.device;
        let encoder = pending
            .encoder
            .get_or_insert_with(|| device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None }));
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes: None });
            pass.set_pipeline(&entry_ref.pipeline);
            let offsets: Vec<u32> = dyn_offset.map(|(o, _)| vec![o]).unwrap_or_default();
            pass.set_bind_group(0, &bind_group, &offsets);
            pass.dispatch_workgroups(workgroups[0], workgroups[1], workgroups[2]);
        }
        pending.dispatches += 1;
        let due = pending.dispatches;
        drop(pending);
        self.inner.pool.lock().unwrap().stats.dispatches += 1;
        let pace = self.inner.pace.load(std::sync::atomic::Ordering::Relaxed);
        if pace > 0 && due >= pace {
            self.wait()?;
        }
        Ok(())
    }

    /// Splits work into submissions of at most `dispatches` dispatches, each waited for
    /// before more is encoded (0, the default: one submission until a readback, as fast as
    /// the engine goes). For a device shared with a renderer whose queue runs submissions in
    /// order (lavapipe, and most drivers' single graphics queue): without it, a long job is
    /// one submission that every frame queues behind. Only waiting makes room: a submission
    /// not waited for is just queued ahead of the frame again.
    pub fn set_pace(&self, dispatches: usize) {
        self.inner.pace.store(dispatches, std::sync::atomic::Ordering::Relaxed);
    }

    /// Submits pending work and blocks until that submission has finished (unlike
    /// [`Gpu::sync`], not until later submissions by other users of the device have).
    pub fn wait(&self) -> Result<()> {
        self.flush()?;
        let index = self.inner.pending.lock().unwrap().last_submit.take();
        if let Some(index) = index {
            self.inner
                .device
                .poll(wgpu::PollType::Wait { submission_index: Some(index), timeout: None })
                .map_err(|e| Error::Gpu(format!("waiting for the GPU: {e}")))?;
        }
        self.take_fault()
    }

    /// Runs `f` with the pending command encoder (created if needed), for copies and clears
    /// that must stay ordered with the dispatches around them.
    pub(crate) fn with_encoder<R>(&self, f: impl FnOnce(&mut wgpu::CommandEncoder) -> R) -> R {
        let mut pending = self.inner.pending.lock().unwrap();
        let device = &self.inner.device;
        let encoder = pending
            .encoder
            .get_or_insert_with(|| device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None }));
        f(encoder)
    }

    /// Submits everything encoded so far. Does not wait.
    pub fn flush(&self) -> Result<()> {
        let mut pending = self.inner.pending.lock().unwrap();
        if let Some(encoder) = pending.encoder.take() {
            if !pending.arena_bytes.is_empty() {
                self.inner.queue.write_buffer(&pending.arena, 0, &pending.arena_bytes);
            }
            pending.last_submit = Some(self.inner.queue.submit([encoder.finish()]));
            self.inner.pool.lock().unwrap().stats.submits += 1;
        }
        pending.arena_bytes.clear();
        pending.dispatches = 0;
        drop(pending);
        self.take_fault()
    }

    /// Submits pending work and blocks until the GPU has finished it.
    pub fn sync(&self) -> Result<()> {
        self.flush()?;
        self.inner
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(format!("waiting for the GPU: {e}")))?;
        self.take_fault()
    }

    /// Writes bytes into a buffer at `offset`, after all work encoded before this call.
    pub(crate) fn write(&self, buffer: &wgpu::Buffer, offset: u64, bytes: &[u8]) -> Result<()> {
        let mut pending = self.inner.pending.lock().unwrap();
        match pending.encoder.as_mut() {
            // queue.write_buffer would land before the pending dispatches, which may still read
            // the old contents of a recycled buffer: copy from a staging buffer in stream order
            // instead, so an upload never forces a submission.
            Some(encoder) if !bytes.is_empty() => {
                let staging = self.inner.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("upload"),
                    size: bytes.len() as u64,
                    usage: wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: true,
                });
                staging
                    .slice(..)
                    .get_mapped_range_mut()
                    .map_err(|e| Error::Gpu(format!("mapping an upload buffer: {e}")))?
                    .copy_from_slice(bytes);
                staging.unmap();
                encoder.copy_buffer_to_buffer(&staging, 0, buffer, offset, bytes.len() as u64);
            }
            _ => self.inner.queue.write_buffer(buffer, offset, bytes),
        }
        Ok(())
    }

    /// Copies `size` bytes at `offset` of `buffer` back to the CPU. Waits.
    pub(crate) fn read(&self, buffer: &wgpu::Buffer, offset: u64, size: u64) -> Result<Vec<u8>> {
        let padded = size.div_ceil(4) * 4;
        let staging = self.inner.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: padded.max(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        if padded > 0 {
            self.with_encoder(|e| e.copy_buffer_to_buffer(buffer, offset, &staging, 0, padded));
        }
        self.flush()?;
        let slice = staging.slice(..);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.inner
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(format!("waiting for the GPU: {e}")))?;
        self.take_fault()?;
        rx.recv()
            .map_err(|_| Error::Gpu("readback was never completed".into()))?
            .map_err(|e| Error::Gpu(format!("mapping a readback buffer: {e}")))?;
        let view = slice.get_mapped_range().map_err(|e| Error::Gpu(format!("mapping a readback buffer: {e}")))?;
        let out = view[..size as usize].to_vec();
        drop(view);
        staging.unmap();
        Ok(out)
    }
}
