// Pointwise part of an LSTM cell (PyTorch gate order i, f, g, o); the gate pre-activations
// W·s + U·h + b come from matmuls. One thread per (sample, hidden unit).
//   i, f, o = σ;  g = tanh;  c = f ⊙ c_prev + i ⊙ g;  h = o ⊙ tanh(c)
// Backward recomputes the activations from the saved gates and c_prev instead of storing
// them: five exps per element are cheaper than four more [B, H] tensors on the tape.

struct Params {
    n: u32,   // batch · hidden
    h: u32,   // hidden
    pad0: u32,
    pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> gates: array<f32>;
@group(0) @binding(2) var<storage, read> c_prev: array<f32>;
@group(0) @binding(3) var<storage, read_write> h_out: array<f32>;
@group(0) @binding(4) var<storage, read_write> c_out: array<f32>;
@group(0) @binding(5) var<storage, read> dh: array<f32>;
@group(0) @binding(6) var<storage, read> dc: array<f32>;
@group(0) @binding(7) var<storage, read_write> dgates: array<f32>;
@group(0) @binding(8) var<storage, read_write> dc_prev: array<f32>;

fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 256u;
}

fn sigmoid(x: f32) -> f32 {
    return 1.0 / (1.0 + exp(-x));
}

// tanh via exp of a non-positive argument: no overflow for large |x|.
fn tanh_(x: f32) -> f32 {
    let e = exp(-2.0 * abs(x));
    return sign(x) * (1.0 - e) / (1.0 + e);
}

struct Gates {
    i: f32,
    f: f32,
    g: f32,
    o: f32,
}

// Activated gates of element e = b·H + k: row b of gates holds [i | f | g | o], H each.
fn activated(e: u32) -> Gates {
    let b = e / p.h;
    let k = e % p.h;
    let base = b * 4u * p.h + k;
    return Gates(
        sigmoid(gates[base]),
        sigmoid(gates[base + p.h]),
        tanh_(gates[base + 2u * p.h]),
        sigmoid(gates[base + 3u * p.h]),
    );
}

@compute @workgroup_size(256)
fn lstm_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = index(gid, nwg);
    if e >= p.n { return; }
    let a = activated(e);
    let c = a.f * c_prev[e] + a.i * a.g;
    c_out[e] = c;
    h_out[e] = a.o * tanh_(c);
}

// Given dh and dc (gradients of both outputs): dgates (pre-activation) and dc_prev.
@compute @workgroup_size(256)
fn lstm_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = index(gid, nwg);
    if e >= p.n { return; }
    let a = activated(e);
    let cp = c_prev[e];
    let tc = tanh_(a.f * cp + a.i * a.g);
    // Total gradient reaching c: directly, and through h = o ⊙ tanh(c).
    let gc = dc[e] + dh[e] * a.o * (1.0 - tc * tc);
    let b = e / p.h;
    let k = e % p.h;
    let base = b * 4u * p.h + k;
    dgates[base] = gc * a.g * a.i * (1.0 - a.i);
    dgates[base + p.h] = gc * cp * a.f * (1.0 - a.f);
    dgates[base + 2u * p.h] = gc * a.i * (1.0 - a.g * a.g);
    dgates[base + 3u * p.h] = dh[e] * tc * a.o * (1.0 - a.o);
    dc_prev[e] = gc * a.f;
}
