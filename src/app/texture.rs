//! G's output → an Rgba8Unorm texture on the same device, by a compute pass encoded into the
//! engine's pending command stream (so it runs after the generator's dispatches with no
//! extra submission and no readback). egui's wgpu renderer then shows the texture as is.

use crate::error::{Error, Result};
use crate::{Gpu, Tensor};

/// A grid of K square images of side `size`, `cols` per row, in one texture.
pub struct Atlas {
    pub texture: wgpu::Texture,
    pub size: usize,
    pub count: usize,
    pub cols: usize,
    pub rows: usize,
}

pub struct ToTexture {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
}

impl ToTexture {
    pub fn new(gpu: &Gpu) -> Result<ToTexture> {
        let device = gpu.device();
        let source = include_str!("../../shaders/app_texture.wgsl");
        crate::gpu::validate_wgsl("app_texture", source)?;
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("app_texture"),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        });
        let entry = |binding, ty| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty,
            count: None,
        };
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("app_texture"),
            entries: &[
                entry(0, wgpu::BindingType::Buffer { ty: wgpu::BufferBindingType::Uniform, has_dynamic_offset: false, min_binding_size: None }),
                entry(
                    1,
                    wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage { read_only: true },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                ),
                entry(
                    2,
                    wgpu::BindingType::StorageTexture {
                        access: wgpu::StorageTextureAccess::WriteOnly,
                        format: wgpu::TextureFormat::Rgba8Unorm,
                        view_dimension: wgpu::TextureViewDimension::D2,
                    },
                ),
            ],
        });
        let pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("app_texture"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some("app_texture"),
            layout: Some(&pl),
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
        Ok(ToTexture { pipeline, layout })
    }

    /// A texture for `k` images of side `s`, `cols` per row (filled by [`ToTexture::encode`]).
    pub fn atlas(&self, gpu: &Gpu, k: usize, s: usize, cols: usize) -> Result<Atlas> {
        if k == 0 || s == 0 {
            return Err(Error::Other("an image atlas needs at least one image".into()));
        }
        let max = gpu.limits().max_texture_dimension_2d as usize;
        let cols = cols.clamp(1, k).min((max / s).max(1));
        let rows = k.div_ceil(cols);
        if rows * s > max {
            return Err(Error::Other(format!(
                "{k} images of {s}×{s} do not fit one {max}×{max} texture; generate fewer at a time"
            )));
        }
        let device = gpu.device();
        let texture = device.create_texture(&wgpu::TextureDescriptor {
            label: Some("ratlip image"),
            size: wgpu::Extent3d { width: (cols * s) as u32, height: (rows * s) as u32, depth_or_array_layers: 1 },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: wgpu::TextureFormat::Rgba8Unorm,
            usage: wgpu::TextureUsages::STORAGE_BINDING | wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_SRC,
            view_formats: &[],
        });
        Ok(Atlas { texture, size: s, count: k, cols, rows })
    }

    /// Encodes the conversion of `images` [n, 3, S, S] into tiles `first..first + n` of
    /// `atlas`. The tiles are ready once the engine's pending work is submitted (`gpu.flush`).
    pub fn encode(&self, gpu: &Gpu, images: &Tensor, atlas: &Atlas, first: usize) -> Result<()> {
        let &[k, 3, s, s2] = images.shape() else {
            return Err(Error::shape("app_texture", format!("expected [K, 3, S, S], got {:?}", images.shape())));
        };
        if s != s2 || k == 0 || s != atlas.size || first + k > atlas.count {
            return Err(Error::shape(
                "app_texture",
                format!("images {:?} at tile {first} do not fit an atlas of {} images of {}", images.shape(), atlas.count, atlas.size),
            ));
        }
        let device = gpu.device();
        let view = atlas.texture.create_view(&Default::default());
        let params: [u32; 4] = [s as u32, k as u32, atlas.cols as u32, first as u32];
        let uniform = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("app_texture params"),
            size: 16,
            usage: wgpu::BufferUsages::UNIFORM,
            mapped_at_creation: true,
        });
        uniform
            .get_mapped_range_mut(..)
            .map_err(|e| Error::Gpu(format!("mapping the texture parameters: {e}")))?
            .copy_from_slice(bytemuck::cast_slice(&params));
        uniform.unmap();
        let (_, offset, size) = images.binding_window();
        let bind = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("app_texture"),
            layout: &self.layout,
            entries: &[
                wgpu::BindGroupEntry { binding: 0, resource: uniform.as_entire_binding() },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: images.buffer(),
                        offset,
                        size: wgpu::BufferSize::new(size),
                    }),
                },
                wgpu::BindGroupEntry { binding: 2, resource: wgpu::BindingResource::TextureView(&view) },
            ],
        });
        gpu.with_encoder(|encoder| {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("app_texture"), timestamp_writes: None });
            pass.set_pipeline(&self.pipeline);
            pass.set_bind_group(0, &bind, &[]);
            pass.dispatch_workgroups(s.div_ceil(8) as u32, s.div_ceil(8) as u32, k as u32);
        });
        Ok(())
    }
}
