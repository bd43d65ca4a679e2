// Contrastive-loss pieces (CLIP training): exp, L2 row normalisation, and softmax
// cross-entropy of rows against integer targets, each with its backward.
//
// Row ops run one thread per row: they serve B×B logits and B×E embeddings (B, E in the
// hundreds at most), where a row loop is cheaper than a workgroup reduction on every adapter.
// Targets are u32 ids stored in an f32-typed tensor by bit pattern (as ops::embedding's ids);
// the host checks them against the row width.

struct Params {
    n: u32,    // elements (exp) or rows
    d: u32,    // row width
    eps: f32,  // l2 normalisation: norms below eps divide by eps (F.normalize)
    pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> ids: array<u32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 64u;
}

// out = exp(x), one thread per element (the backward is dy·out, an elementwise mul).
@compute @workgroup_size(64)
fn exp_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    out[i] = exp(x[i]);
}

fn row_norm(base: u32) -> f32 {
    var s = 0.0;
    for (var j = 0u; j < p.d; j++) {
        let v = x[base + j];
        s += v * v;
    }
    return max(sqrt(s), p.eps);
}

// out[r] = x[r] / max(‖x[r]‖, eps)
@compute @workgroup_size(64)
fn l2norm_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = index(gid, nwg);
    if r >= p.n { return; }
    let base = r * p.d;
    let inv = 1.0 / row_norm(base);
    for (var j = 0u; j < p.d; j++) {
        out[base + j] = x[base + j] * inv;
    }
}

// dx = (dy − y·⟨dy, y⟩) / ‖x‖ with y = x/‖x‖; where the norm was clamped to eps the map is
// x/eps, so dx = dy/eps.
@compute @workgroup_size(64)
fn l2norm_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = index(gid, nwg);
    if r >= p.n { return; }
    let base = r * p.d;
    let nrm = row_norm(base);
    let inv = 1.0 / nrm;
    var dot = 0.0;
    for (var j = 0u; j < p.d; j++) {
        dot += dy[base + j] * x[base + j] * inv;
    }
    if nrm <= p.eps { dot = 0.0; }
    for (var j = 0u; j < p.d; j++) {
        out[base + j] = (dy[base + j] - x[base + j] * inv * dot) * inv;
    }
}

fn row_max(base: u32) -> f32 {
    var m = x[base];
    for (var j = 1u; j < p.d; j++) {
        m = max(m, x[base + j]);
    }
    return m;
}

fn row_sum_exp(base: u32, m: f32) -> f32 {
    var s = 0.0;
    for (var j = 0u; j < p.d; j++) {
        s += exp(x[base + j] - m);
    }
    return s;
}

// out[r] = logsumexp(x[r]) − x[r, ids[r]]
@compute @workgroup_size(64)
fn ce_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = index(gid, nwg);
    if r >= p.n { return; }
    let base = r * p.d;
    let m = row_max(base);
    let t = min(ids[r], p.d - 1u);
    out[r] = m + log(row_sum_exp(base, m)) - x[base + t];
}

// dx[r] = dy[r]·(softmax(x[r]) − onehot(ids[r]))
@compute @workgroup_size(64)
fn ce_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = index(gid, nwg);
    if r >= p.n { return; }
    let base = r * p.d;
    let m = row_max(base);
    let inv = 1.0 / row_sum_exp(base, m);
    let t = ids[r];
    let g = dy[r];
    for (var j = 0u; j < p.d; j++) {
        let hot = select(0.0, 1.0, j == t);
        out[base + j] = g * (exp(x[base + j] - m) * inv - hot);
    }
}
