// Broadcasting (NumPy rules) over a collapsed shape of at most 6 dims, one thread per output
// element. The host merges adjacent dims along which every operand either varies or is
// broadcast the same way, so [B,C,1,1] ⊙ [B,C,H,W] arrives here as [B·C, H·W] with stride 0
// for the gamma operand along H·W. A broadcast dim has stride 0, so the same index map
// serves forward ops, the broadcast copy (expand) and the per-element gradient terms.
//   binary ops: 0 add   1 sub   2 mul   3 div
//   grad terms, g = gradient of the output; op = 2 (mul) or 3 (div), plus 4 for operand b:
//     mul: a ← g·b, b ← g·a        div: a ← g/b, b ← −g·a/b²

struct Params {
    n: u32,
    ndim: u32,
    op: u32,
    // broadcast_copy's output scale.
    alpha: f32,
    // Where this dispatch's data starts inside each binding (bindings start aligned).
    base: vec4<u32>,  // a, b, g, out
    shape: array<vec4<u32>, 2>,
    sa: array<vec4<u32>, 2>,
    sb: array<vec4<u32>, 2>,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> g: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 256u;
}

// Element offsets into a and b of output element i (row-major, innermost dim last).
fn offsets(i: u32) -> vec2<u32> {
    // The common patterns (same shape, scalar, [B·C, 1] against [B·C, H·W]) collapse to
    // one or two dims: spare them the general loop.
    if p.ndim == 1u {
        return vec2<u32>(p.base.x + i * p.sa[0].x, p.base.y + i * p.sb[0].x);
    }
    if p.ndim == 2u {
        let s = p.shape[0].y;
        let c0 = i / s;
        let c1 = i - c0 * s;
        return vec2<u32>(p.base.x + c0 * p.sa[0].x + c1 * p.sa[0].y, p.base.y + c0 * p.sb[0].x + c1 * p.sb[0].y);
    }
    var rem = i;
    var oa = 0u;
    var ob = 0u;
    for (var k = 0u; k < p.ndim; k++) {
        let d = p.ndim - 1u - k;
        let s = p.shape[d >> 2u][d & 3u];
        let c = rem % s;
        rem = rem / s;
        oa += c * p.sa[d >> 2u][d & 3u];
        ob += c * p.sb[d >> 2u][d & 3u];
    }
    return vec2<u32>(p.base.x + oa, p.base.y + ob);
}

@compute @workgroup_size(256)
fn broadcast_binary(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    let o = offsets(i);
    let x = a[o.x];
    let y = b[o.y];
    let j = p.base.w + i;
    switch p.op {
        case 0u: { out[j] = x + y; }
        case 1u: { out[j] = x - y; }
        case 2u: { out[j] = x * y; }
        default: { out[j] = x / y; }
    }
}

// out = alpha · a broadcast to the output shape (expand; the backward of sum and mean).
@compute @workgroup_size(256)
fn broadcast_copy(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    out[p.base.w + i] = p.alpha * a[offsets(i).x];
}

// The output-shaped gradient term of one operand before it is summed back to its own
// shape. Only mul and div need a kernel: add and sub pass g through (the host negates
// during that sum).
@compute @workgroup_size(256)
fn broadcast_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    let o = offsets(i);
    let x = a[o.x];
    let y = b[o.y];
    let dy = g[p.base.z + i];
    let for_b = (p.op & 4u) != 0u;
    let j = p.base.w + i;
    if (p.op & 3u) == 2u {
        out[j] = select(dy * y, dy * x, for_b);
    } else {
        out[j] = select(dy / y, -dy * x / (y * y), for_b);
    }
}
