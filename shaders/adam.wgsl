// One Adam step in place, PyTorch's arithmetic (torch.optim.Adam, no weight decay):
//   m ← lerp(m, g, 1 − β1)      v ← β2·v + (1 − β2)·g²
//   p ← p − step_size · m / (sqrt(v) / sqrt(bc2) + eps),   step_size = lr / bc1
// with the bias corrections bc1 = 1 − β1^t, bc2 = 1 − β2^t computed on the host in f64.
// lerp follows PyTorch's two-branch form, so β1 = 0 gives m = g exactly.

struct Params {
    n: u32,
    _pad: u32,
    w1: f32,          // 1 − β1
    beta2: f32,
    w2: f32,          // 1 − β2
    step_size: f32,
    sqrt_bc2: f32,
    eps: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;

@compute @workgroup_size(256)
fn adam_step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if i >= p.n { return; }
    let g = grad[i];
    let m0 = m[i];
    var m1: f32;
    if p.w1 < 0.5 {
        m1 = m0 + p.w1 * (g - m0);
    } else {
        m1 = g - (g - m0) * (1.0 - p.w1);
    }
    let v1 = p.beta2 * v[i] + p.w2 * g * g;
    m[i] = m1;
    v[i] = v1;
    param[i] = param[i] - p.step_size * m1 / (sqrt(v1) / p.sqrt_bc2 + p.eps);
}
