//! Opening a device: adapter choice, the limits we ask for, and error capture.
//!
//! The adapter is chosen discrete GPU first, then integrated, virtual, and CPU (lavapipe)
//! last; `--adapter NAME` or `RATLIP_ADAPTER=NAME` picks by case-insensitive substring.
//! We ask for the adapter's own limits (not wgpu's defaults, which cap buffers at 256 MiB)
//! because CLIP's and G's tensors are large.

use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

use super::kernel::KernelCache;
use super::pool::BufferPool;
use super::queue::Pending;

/// A shared handle on one device; cheap to clone, usable from several threads.
#[derive(Clone)]
pub struct Gpu {
    pub(crate) inner: Arc<GpuInner>,
}

pub(crate) struct GpuInner {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub adapter_info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    pub pool: Mutex<BufferPool>,
    pub kernels: Mutex<KernelCache>,
    pub pending: Mutex<Pending>,
    /// First uncaptured error or device loss, reported by the next call that waits on the GPU.
    pub fault: Arc<Mutex<Option<Error>>>,
    /// Test hook: a smaller binding limit than the device's, so that the code paths that
    /// split oversized tensors can be exercised with small tensors. 0 = the device's.
    pub binding_limit_override: std::sync::atomic::AtomicU64,
    /// Per-entry dispatch count and seconds while profiling (`Gpu::start_profile`).
    pub profile: Mutex<Option<std::collections::BTreeMap<String, (u64, f64)>>>,
    /// Dispatches per submission when pacing (`Gpu::set_pace`); 0 = off.
    pub pace: std::sync::atomic::AtomicUsize,
}

/// How to pick an adapter.
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    /// Case-insensitive substring of the adapter name; falls back to `RATLIP_ADAPTER`.
    pub adapter: Option<String>,
}

impl Gpu {
    /// Opens the best adapter (see module docs). Blocks until the device is ready.
    pub fn new(options: &GpuOptions) -> Result<Gpu> {
        pollster::block_on(Self::new_async(options))
    }

    async fn new_async(options: &GpuOptions) -> Result<Gpu> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all());
        let adapters = instance.enumerate_adapters(backends).await;
        let wanted = options.adapter.clone().or_else(|| std::env::var("RATLIP_ADAPTER").ok());
        let adapter = choose_adapter(adapters, wanted.as_deref(), backends)?;
        Self::from_adapter(adapter).await
    }

    async fn from_adapter(adapter: wgpu::Adapter) -> Result<Gpu> {
        let info = adapter.get_info();
        let available = adapter.features();
        // Only features we use or report: timestamps for benchmarks, f16 storage and subgroups later.
        let wanted = wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP;
        let features = available & wanted;
        let limits = adapter.limits();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("ratlip"),
                required_features: features,
                required_limits: limits.clone(),
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| Error::RequestDevice { adapter: info.name.clone(), message: e.to_string() })?;
        Ok(Self::from_device(device, queue, info))
    }

    /// Wraps a device someone else opened (the desktop app shares eframe's device).
    pub fn from_device(device: wgpu::Device, queue: wgpu::Queue, adapter_info: wgpu::AdapterInfo) -> Gpu {
        let fault: Arc<Mutex<Option<Error>>> = Arc::new(Mutex::new(None));
        let f = fault.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let err = match e {
                wgpu::Error::OutOfMemory { .. } => {
                    Error::OutOfMemory { bytes: 0, what: "a GPU operation".into() }
                }
                other => Error::Gpu(other.to_string()),
            };
            let mut slot = f.lock().unwrap();
            if slot.is_none() {
                *slot = Some(err);
            }
        }));
        let f = fault.clone();
        device.set_device_lost_callback(move |reason, message| {
            let mut slot = f.lock().unwrap();
            if slot.is_none() {
                *slot = Some(Error::DeviceLost(format!("{reason:?}: {message}")));
            }
        });
        let limits = device.limits();
        let features = device.features();
        let uniform_align = limits.min_uniform_buffer_offset_alignment as u64;
        let pending = Pending::new(&device, uniform_align);
        Gpu {
            inner: Arc::new(GpuInner {
                device,
                queue,
                adapter_info,
                limits,
                features,
                pool: Mutex::new(BufferPool::default()),
                kernels: Mutex::new(KernelCache::default()),
                pending: Mutex::new(pending),
                fault,
                binding_limit_override: Default::default(),
                profile: Mutex::new(None),
                pace: Default::default(),
            }),
        }
    }

    pub fn device(&self) -> &wgpu::Device {
        &self.inner.device
    }
    pub fn queue(&self) -> &wgpu::Queue {
        &self.inner.queue
    }
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.inner.adapter_info
    }
    pub fn limits(&self) -> &wgpu::Limits {
        &self.inner.limits
    }
    pub fn features(&self) -> wgpu::Features {
        self.inner.features
    }

    /// Largest number of bytes one storage binding may cover on this device.
    pub fn max_binding_bytes(&self) -> u64 {
        let device = (self.inner.limits.max_storage_buffer_binding_size as u64).min(self.inner.limits.max_buffer_size);
        match self.inner.binding_limit_override.load(std::sync::atomic::Ordering::Relaxed) {
            0 => device,
            n => n.min(device),
        }
    }

    /// Pretends the device's largest storage binding is `bytes` (0 restores the real limit).
    /// For tests of the splitting paths; use a private `Gpu` so that other users see no change.
    #[doc(hidden)]
    pub fn set_binding_limit_for_tests(&self, bytes: u64) {
        self.inner.binding_limit_override.store(bytes, std::sync::atomic::Ordering::Relaxed);
    }

    /// Returns (and clears) the first error the device reported asynchronously.
    pub(crate) fn take_fault(&self) -> Result<()> {
        match self.inner.fault.lock().unwrap().take() {
            Some(Error::DeviceLost(m)) => {
                // A lost device stays lost: keep reporting it.
                *self.inner.fault.lock().unwrap() = Some(Error::DeviceLost(m.clone()));
                Err(Error::DeviceLost(m))
            }
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// A human-readable report of the adapter, the limits that matter to ratlip, and the
    /// optional features (printed by `ratlip info`).
    pub fn describe(&self) -> String {
        let i = &self.inner.adapter_info;
        let l = &self.inner.limits;
        let f = self.inner.features;
        let mib = |b: u64| format!("{} MiB", b >> 20);
        let yes = |b: bool| if b { "yes" } else { "no" };
        
        let mut s = String::new();
        s += &format!("adapter:      {}\n", i.name);
        s += &format!("backend:      {:?}\n", i.backend);
        s += &format!("device type:  {:?}\n", i.device_type);
        s += &format!("driver:       {} {}\n", i.driver, i.driver_info);
        s += &format!("vendor/device: {:#06x}/{:#06x}\n", i.vendor, i.device);
        s += "limits:\n";
        s += &format!("  max_buffer_size:                     {}\n", mib(l.max_buffer_size));
        s += &format!("  max_storage_buffer_binding_size:     {}\n", mib(l.max_storage_buffer_binding_size as u64));
        s += &format!("  max_storage_buffers_per_shader_stage: {}\n", l.max_storage_buffers_per_shader_stage);
        s += &format!("  max_compute_workgroup_storage_size:  {} bytes\n", l.max_compute_workgroup_storage_size);
        s += &format!("  max_compute_invocations_per_workgroup: {}\n", l.max_compute_invocations_per_workgroup);
        s += &format!("  max_compute_workgroups_per_dimension: {}\n", l.max_compute_workgroups_per_dimension);
        s += &format!("  min_storage_buffer_offset_alignment: {}\n", l.min_storage_buffer_offset_alignment);
        s += "features:\n";
        s += &format!("  shader f16:      {}\n", yes(f.contains(wgpu::Features::SHADER_F16)));
        s += &format!("  subgroups:       {}\n", yes(f.contains(wgpu::Features::SUBGROUP)));
        s += &format!("  timestamp query: {}\n", yes(f.contains(wgpu::Features::TIMESTAMP_QUERY)));
        s
    }
}

fn rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    }
}

fn choose_adapter(
    adapters: Vec<wgpu::Adapter>,
    wanted: Option<&str>,
    backends: wgpu::Backends,
) -> Result<wgpu::Adapter> {
    // GL adapters cannot run our compute shaders with storage buffers reliably; skip them.
    let mut usable: Vec<wgpu::Adapter> =
        adapters.into_iter().filter(|a| a.get_info().backend != wgpu::Backend::Gl).collect();
    if usable.is_empty() {
        return Err(Error::NoAdapter { backends: format!("{backends:?}") });
    }
    if let Some(name) = wanted {
        let needle = name.to_lowercase();
        let listing = usable
            .iter()
            .map(|a| {
                let i = a.get_info();
                format!("  {} ({:?}, {:?})", i.name, i.backend, i.device_type)
            })
            .collect::<Vec<_>>()
            .join("\n");
        return usable
            .into_iter()
            .find(|a| a.get_info().name.to_lowercase().contains(&needle))
            .ok_or(Error::AdapterNotFound { wanted: name.to_string(), available: listing });
    }
    usable.sort_by_key(|a| {
        let i = a.get_info();
        // Vulkan before others on the same device type: it is the backend we test most.
        (rank(i.device_type), (i.backend != wgpu::Backend::Vulkan) as u8)
    });
    Ok(usable.remove(0))
}
