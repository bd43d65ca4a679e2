// Per-sample translation of [B, C, H, W] images with zero fill (DiffAugment's translation):
//   y[b, c, i, j] = x[b, c, i − dy_b, j − dx_b]   where that lies inside the image, else 0.
// Its adjoint is the same map with the shifts negated, so the backward pass is this kernel
// with sign = −1: a gather either way, deterministic, no atomics.

struct Params {
    n: u32,
    planes_per_sample: u32,
    h: u32,
    w: u32,
    sign: i32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// [B, 2] as f32 integers: (dy, dx) per sample.
@group(0) @binding(1) var<storage, read> shifts: array<f32>;
@group(0) @binding(2) var<storage, read> src: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

// One thread per output element.
@compute @workgroup_size(256)
fn translate(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if i >= p.n { return; }
    let x = i32(i % p.w);
    let t = i / p.w;
    let y = i32(t % p.h);
    let plane = t / p.h;
    let b = plane / p.planes_per_sample;
    let sy = y - p.sign * i32(shifts[2u * b]);
    let sx = x - p.sign * i32(shifts[2u * b + 1u]);
    var v = 0.0;
    if sy >= 0 && sy < i32(p.h) && sx >= 0 && sx < i32(p.w) {
        v = src[(plane * p.h + u32(sy)) * p.w + u32(sx)];
    }
    dst[i] = v;
}
