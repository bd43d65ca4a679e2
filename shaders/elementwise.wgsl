// Elementwise maps and their derivatives, one thread per element.
// `op` selects the function so that one pipeline serves every activation.
//   0 relu   1 leaky relu (slope alpha)   2 sigmoid   3 tanh   4 QuickGELU x·σ(1.702x)
//   5 scale (alpha·x + beta)
// Binary ops on equal shapes: 0 add (a + alpha·b)   1 mul (a·b)

struct Params {
    n: u32,
    op: u32,
    alpha: f32,
    beta: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 256u;
}

fn sigmoid(x: f32) -> f32 {
    return 1.0 / (1.0 + exp(-x));
}

fn activation(x: f32) -> f32 {
    switch p.op {
        case 0u: { return max(x, 0.0); }
        case 1u: { return select(p.alpha * x, x, x > 0.0); }
        case 2u: { return sigmoid(x); }
        case 3u: {
            // tanh via exp of a non-positive argument: no overflow for large |x|.
            let e = exp(-2.0 * abs(x));
            return sign(x) * (1.0 - e) / (1.0 + e);
        }
        case 4u: { return x * sigmoid(1.702 * x); }
        default: { return p.alpha * x + p.beta; }
    }
}

// d activation / dx evaluated at the input x.
fn activation_grad(x: f32) -> f32 {
    switch p.op {
        case 0u: { return select(0.0, 1.0, x > 0.0); }
        case 1u: { return select(p.alpha, 1.0, x > 0.0); }
        case 2u: { let s = sigmoid(x); return s * (1.0 - s); }
        case 3u: {
            let e = exp(-2.0 * abs(x));
            let t = (1.0 - e) / (1.0 + e);
            return 1.0 - t * t;
        }
        case 4u: { let s = sigmoid(1.702 * x); return s + 1.702 * x * s * (1.0 - s); }
        default: { return p.alpha; }
    }
}

// out = f(a)
@compute @workgroup_size(256)
fn unary_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    out[i] = activation(a[i]);
}

// out = f'(a) · b      (a: forward input, b: gradient of the output)
@compute @workgroup_size(256)
fn unary_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    out[i] = activation_grad(a[i]) * b[i];
}

@compute @workgroup_size(256)
fn binary(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    switch p.op {
        case 0u: { out[i] = a[i] + p.alpha * b[i]; }
        default: { out[i] = a[i] * b[i]; }
    }
}
