// Nearest-neighbour resize of [N, H, W] planes (N = batch·channels), exactly as PyTorch's
// F.interpolate(mode='nearest') with an output size: scale = in/out rounded to f32 on the
// host, src = min(floor(f32(dst) · scale), in − 1). The product is a single f32 multiply,
// so every device rounds it the same way PyTorch's CPU and CUDA kernels do.

struct Params {
    n: u32,
    in_h: u32,
    in_w: u32,
    out_h: u32,
    out_w: u32,
    scale_h: f32,
    scale_w: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 256u;
}

fn source(d: u32, scale: f32, n_in: u32) -> u32 {
    return min(u32(floor(f32(d) * scale)), n_in - 1u);
}

// The first output position that reads input position i or a later one. Because `source`
// never decreases, input i is read by exactly the outputs first_reader(i)..first_reader(i+1).
// The division only guesses; the two loops settle it with the forward formula itself, so
// forward and backward agree on every boundary (a step or two at most).
fn first_reader(i: u32, scale: f32, n_in: u32, n_out: u32) -> u32 {
    if i == 0u { return 0u; }
    if i >= n_in { return n_out; }
    var d = min(u32(f32(i) / scale), n_out);
    loop {
        if d == 0u || source(d - 1u, scale, n_in) < i { break; }
        d -= 1u;
    }
    loop {
        if d >= n_out || source(d, scale, n_in) >= i { break; }
        d += 1u;
    }
    return d;
}

// One thread per output element.  src: x [N, in_h, in_w]   dst: y [N, out_h, out_w]
@compute @workgroup_size(256)
fn resize_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    let ox = i % p.out_w;
    let t = i / p.out_w;
    let oy = t % p.out_h;
    let plane = t / p.out_h;
    let sy = source(oy, p.scale_h, p.in_h);
    let sx = source(ox, p.scale_w, p.in_w);
    dst[i] = src[(plane * p.in_h + sy) * p.in_w + sx];
}

// One thread per INPUT element: the sum of the output gradients that read it, gathered in a
// fixed order (no atomics, so the result is deterministic).
//   src: dy [N, out_h, out_w]   dst: dx [N, in_h, in_w]
@compute @workgroup_size(256)
fn resize_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    let ix = i % p.in_w;
    let t = i / p.in_w;
    let iy = t % p.in_h;
    let plane = t / p.in_h;
    let y0 = first_reader(iy, p.scale_h, p.in_h, p.out_h);
    let y1 = first_reader(iy + 1u, p.scale_h, p.in_h, p.out_h);
    let x0 = first_reader(ix, p.scale_w, p.in_w, p.out_w);
    let x1 = first_reader(ix + 1u, p.scale_w, p.in_w, p.out_w);
    var acc = 0.0;
    for (var oy = y0; oy < y1; oy++) {
        let row = (plane * p.out_h + oy) * p.out_w;
        for (var ox = x0; ox < x1; ox++) {
            acc += src[row + ox];
        }
    }
    dst[i] = acc;
}
