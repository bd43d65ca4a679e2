//! Kernels: a `.wgsl` file from `shaders/`, compiled once per entry point and cached.
//!
//! Binding layouts are not written by hand: naga reflects each entry point and we build the
//! layout from the globals that entry really uses. The convention every shader follows:
//! `@group(0)`, one `var<uniform>` of parameters (bound with a dynamic offset into the
//! per-submission uniform arena), and storage buffers in binding order — one per tensor
//! argument of `Gpu::dispatch`, in the same order.

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::{Error, Result};

/// A shader file. Construct with `kernel!("name")`, which embeds `shaders/name.wgsl`.
pub struct Kernel {
    pub name: &'static str,
    pub source: &'static str,
}

/// `kernel!("matmul")` embeds `shaders/matmul.wgsl` into the binary.
#[macro_export]
macro_rules! kernel {
    ($file:literal) => {
        $crate::gpu::Kernel {
            name: $file,
            source: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/", $file, ".wgsl")),
        }
    };
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Slot {
    Uniform,
    Storage { read_only: bool },
}

/// One compiled entry point and what it binds.
pub(crate) struct Entry {
    pub id: u64,
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
    /// (binding number, kind, variable name), ascending binding numbers.
    pub slots: Vec<(u32, Slot, String)>,
}

#[derive(Default)]
pub(crate) struct KernelCache {
    entries: HashMap<(&'static str, String), Arc<Entry>>,
    /// Parsed and validated files: one parse per file, however many entries it holds (the
    /// generated conv files are large, and naga is slow in debug builds).
    modules: HashMap<&'static str, Arc<(naga::Module, naga::valid::ModuleInfo)>>,
    pub bind_groups: HashMap<BindKey, wgpu::BindGroup>,
    next_id: u64,
}

/// Identity of a bind group: the entry and, per storage slot, (buffer id, offset, size).
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct BindKey {
    pub entry: u64,
    /// Size of the uniform window into the arena (the arena itself never changes).
    pub uniform: Option<u64>,
    pub buffers: Vec<(u64, u64, u64)>,
}

/// Parses and validates a WGSL source with naga, as wgpu will. Used by the cache and by the
/// test that checks every file in `shaders/`.
pub fn validate_wgsl(name: &str, source: &str) -> Result<(naga::Module, naga::valid::ModuleInfo)> {
    let module = naga::front::wgsl::parse_str(source)
        .map_err(|e| Error::Other(format!("shaders/{name}.wgsl: {}", e.emit_to_string(source))))?;
    let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all())
        .validate(&module)
        .map_err(|e| Error::Other(format!("shaders/{name}.wgsl: {}", e.emit_to_string(source))))?;
    Ok((module, info))
}

impl KernelCache {
    pub fn get(&mut self, device: &wgpu::Device, kernel: &Kernel, entry: &str) -> Result<(Arc<Entry>, bool)> {
        if let Some(e) = self.entries.get(&(kernel.name, entry.to_string())) {
            return Ok((e.clone(), false));
        }
        let parsed = match self.modules.get(kernel.name) {
            Some(m) => m.clone(),
            None => {
                let m = Arc::new(validate_wgsl(kernel.name, kernel.source)?);
                self.modules.insert(kernel.name, m.clone());
                m
            }
        };
        let (module, info) = (&parsed.0, &parsed.1);
        let (ep_index, _) = module
            .entry_points
            .iter()
            .enumerate()
            .find(|(_, ep)| ep.name == entry)
            .ok_or_else(|| Error::Other(format!("shaders/{}.wgsl has no entry point {entry:?}", kernel.name)))?;
        let ep_info = info.get_entry_point(ep_index);
        let mut slots = Vec::new();
        for (handle, var) in module.global_variables.iter() {
            let Some(binding) = &var.binding else { continue };
            if ep_info[handle].is_empty() {
                continue;
            }
            if binding.group != 0 {
                return Err(Error::Other(format!("shaders/{}.wgsl: only @group(0) is supported", kernel.name)));
            }
            let slot = match var.space {
                naga::AddressSpace::Uniform => Slot::Uniform,
                naga::AddressSpace::Storage { access } => {
                    Slot::Storage { read_only: !access.contains(naga::StorageAccess::STORE) }
                }
                other => {
                    return Err(Error::Other(format!(
                        "shaders/{}.wgsl: unsupported binding space {other:?}",
                        kernel.name
                    )))
                }
            };
            slots.push((binding.binding, slot, var.name.clone().unwrap_or_default()));
        }
        slots.sort_by_key(|s| s.0);
        let layout_entries: Vec<wgpu::BindGroupLayoutEntry> = slots
            .iter()
            .map(|(b, slot, _)| wgpu::BindGroupLayoutEntry {
                binding: *b,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: match slot {
                    Slot::Uniform => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: true,
                        min_binding_size: None,
                    },
                    Slot::Storage { read_only } => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage { read_only: *read_only },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                },
                count: None,
            })
            .collect();
        let label = format!("{}::{entry}", kernel.name);
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(&label),
            entries: &layout_entries,
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(&label),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let shader = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(kernel.name),
            source: wgpu::ShaderSource::Wgsl(kernel.source.into()),
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&label),
            layout: Some(&pipeline_layout),
            module: &shader,
            entry_point: Some(entry),
            compilation_options: Default::default(),
            cache: None,
        });
        self.next_id += 1;
        let e = Arc::new(Entry { id: self.next_id, pipeline, layout, slots });
        self.entries.insert((kernel.name, entry.to_string()), e.clone());
        Ok((e, true))
    }
}
