// Attention core for CPU adapters (lavapipe): one THREAD per (b, h, block of R = 8 rows),
// no workgroup memory and no barriers. Measured on llvmpipe: a storage or workgroup load
// costs about ten FMAs, a private-array access two to four, a barrier little. So a thread
// keeps its 8 rows' operands (8 rows × C = 32 head dims, as two arrays of vec4 = 4 rows)
// in private arrays and applies every value it loads from k, v, q or dout to all 8 rows:
// one storage load per 8 FMAs. Head dims beyond 32 run in chunks (scores and dP are
// accumulated across chunks in their output rows). Bigger private arrays ran no faster and
// compile far slower (R = 16: two minutes; C = 64: 18 s); this size takes ~7 s for the
// three entries, once (Mesa caches compiled shaders on disk).
// Same parameters, bindings, entry points and results as attention.wgsl.

struct Params {
    batch: u32,
    t: u32,
    w: u32,
    heads: u32,
    hd: u32,
    causal: u32,
    tiles: u32,   // ceil(t / R)
    scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> probs_out: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<storage, read> probs: array<f32>;
@group(0) @binding(7) var<storage, read> dout: array<f32>;
@group(0) @binding(8) var<storage, read_write> ds_out: array<f32>;
@group(0) @binding(9) var<storage, read_write> dq: array<f32>;
@group(0) @binding(10) var<storage, read> ds: array<f32>;
@group(0) @binding(11) var<storage, read_write> dk: array<f32>;
@group(0) @binding(12) var<storage, read_write> dv: array<f32>;

const R: u32 = 8u;     // rows per thread
const C: u32 = 32u;    // head dims per chunk

struct Rows {
    bh: u32,
    r0: u32,
    b: u32,
    col0: u32,
    ok: bool,
}

fn rows(gid: vec3<u32>, nwg: vec3<u32>) -> Rows {
    let g = gid.x + gid.y * nwg.x * 64u;
    let bh = g / p.tiles;
    return Rows(bh, (g % p.tiles) * R, bh / p.heads, (bh % p.heads) * p.hd, g < p.batch * p.heads * p.tiles);
}

fn at(b: u32, i: u32, col0: u32, d: u32) -> u32 {
    return (b * p.t + i) * p.w + col0 + d;
}

fn row_keys(i: u32) -> u32 {
    if i >= p.t { return 0u; }
    return select(p.t, i + 1u, p.causal != 0u);
}

fn block_keys(r0: u32) -> u32 {
    return select(p.t, min(p.t, r0 + R), p.causal != 0u);
}

@compute @workgroup_size(64)
fn attention_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let blk = rows(gid, nwg);
    if !blk.ok { return; }
    let b = blk.b;
    let col0 = blk.col0;
    let r0 = blk.r0;
    let pbase = blk.bh * p.t * p.t;
    let kend = block_keys(r0);
    let nr = min(R, p.t - r0);
    var a: array<vec4<f32>, 32>;   // C head dims × rows 0..3
    var a2: array<vec4<f32>, 32>;  // rows 4..7

    // 1. Scores, accumulated over head-dim chunks in probs_out.
    for (var c0 = 0u; c0 < p.hd; c0 += C) {
        let dc = min(C, p.hd - c0);
        for (var d = 0u; d < dc; d++) {
            var x = vec4(0.0);
            var y = vec4(0.0);
            for (var r = 0u; r < min(nr, 4u); r++) { x[r] = q[at(b, r0 + r, col0, c0 + d)]; }
            for (var r = 4u; r < nr; r++) { y[r - 4u] = q[at(b, r0 + r, col0, c0 + d)]; }
            a[d] = x;
            a2[d] = y;
        }
        for (var j = 0u; j < kend; j++) {
            var s = vec4(0.0);
            var s2 = vec4(0.0);
            for (var d = 0u; d < dc; d++) {
                let kd = k[at(b, j, col0, c0 + d)];
                s += a[d] * kd;
                s2 += a2[d] * kd;
            }
            s *= p.scale;
            s2 *= p.scale;
            for (var r = 0u; r < nr; r++) {
                let o = pbase + (r0 + r) * p.t + j;
                var prev = 0.0;
                if c0 > 0u { prev = probs_out[o]; }
                probs_out[o] = prev + select(s2[r & 3u], s[r & 3u], r < 4u);
            }
        }
    }

    // 2. Softmax of each row, max-subtracted; masked keys get exactly 0.
    for (var r = 0u; r < nr; r++) {
        let i = r0 + r;
        let jmax = row_keys(i);
        let row = pbase + i * p.t;
        var m = -3.0e38;
        for (var j = 0u; j < jmax; j++) { m = max(m, probs_out[row + j]); }
        var sum = 0.0;
        for (var j = 0u; j < jmax; j++) {
            let e = exp(probs_out[row + j] - m);
            probs_out[row + j] = e;
            sum += e;
        }
        let inv = 1.0 / sum;
        for (var j = 0u; j < jmax; j++) { probs_out[row + j] *= inv; }
        for (var j = jmax; j < p.t; j++) { probs_out[row + j] = 0.0; }
    }

    // 3. out = P v, chunk by chunk of head dims.
    for (var c0 = 0u; c0 < p.hd; c0 += C) {
        let dc = min(C, p.hd - c0);
        for (var d = 0u; d < dc; d++) {
            a[d] = vec4(0.0);
            a2[d] = vec4(0.0);
        }
        for (var j = 0u; j < kend; j++) {
            var pr = vec4(0.0);
            var pr2 = vec4(0.0);
            for (var r = 0u; r < min(nr, 4u); r++) { pr[r] = probs_out[pbase + (r0 + r) * p.t + j]; }
            for (var r = 4u; r < nr; r++) { pr2[r - 4u] = probs_out[pbase + (r0 + r) * p.t + j]; }
            for (var d = 0u; d < dc; d++) {
                let vd = v[at(b, j, col0, c0 + d)];
                a[d] += pr * vd;
                a2[d] += pr2 * vd;
            }
        }
        for (var r = 0u; r < nr; r++) {
            for (var d = 0u; d < dc; d++) { out[at(b, r0 + r, col0, c0 + d)] = select(a2[d][r & 3u], a[d][r & 3u], r < 4u); }
        }
    }
}

// Backward, part 1, per block of query rows:
//   dP = dout vᵀ;  dS = scale · P ⊙ (dP − rowsum(P ⊙ dP))  (ds_out);  dq = dS k.
@compute @workgroup_size(64)
fn attention_backward_dq(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let blk = rows(gid, nwg);
    if !blk.ok { return; }
    let b = blk.b;
    let col0 = blk.col0;
    let r0 = blk.r0;
    let pbase = blk.bh * p.t * p.t;
    let kend = block_keys(r0);
    let nr = min(R, p.t - r0);
    var a: array<vec4<f32>, 32>;
    var a2: array<vec4<f32>, 32>;

    // 1. dP, accumulated over head-dim chunks in ds_out.
    for (var c0 = 0u; c0 < p.hd; c0 += C) {
        let dc = min(C, p.hd - c0);
        for (var d = 0u; d < dc; d++) {
            var x = vec4(0.0);
            var y = vec4(0.0);
            for (var r = 0u; r < min(nr, 4u); r++) { x[r] = dout[at(b, r0 + r, col0, c0 + d)]; }
            for (var r = 4u; r < nr; r++) { y[r - 4u] = dout[at(b, r0 + r, col0, c0 + d)]; }
            a[d] = x;
            a2[d] = y;
        }
        for (var j = 0u; j < kend; j++) {
            var s = vec4(0.0);
            var s2 = vec4(0.0);
            for (var d = 0u; d < dc; d++) {
                let vd = v[at(b, j, col0, c0 + d)];
                s += a[d] * vd;
                s2 += a2[d] * vd;
            }
            for (var r = 0u; r < nr; r++) {
                let o = pbase + (r0 + r) * p.t + j;
                var prev = 0.0;
                if c0 > 0u { prev = ds_out[o]; }
                ds_out[o] = prev + select(s2[r & 3u], s[r & 3u], r < 4u);
            }
        }
    }

    // 2. The softmax Jacobian, row by row.
    for (var r = 0u; r < nr; r++) {
        let i = r0 + r;
        let jmax = row_keys(i);
        let row = pbase + i * p.t;
        var pd = 0.0;
        for (var j = 0u; j < jmax; j++) { pd += probs[row + j] * ds_out[row + j]; }
        for (var j = 0u; j < jmax; j++) { ds_out[row + j] = p.scale * probs[row + j] * (ds_out[row + j] - pd); }
        for (var j = jmax; j < p.t; j++) { ds_out[row + j] = 0.0; }
    }

    // 3. dq = dS k.
    for (var c0 = 0u; c0 < p.hd; c0 += C) {
        let dc = min(C, p.hd - c0);
        for (var d = 0u; d < dc; d++) {
            a[d] = vec4(0.0);
            a2[d] = vec4(0.0);
        }
        for (var j = 0u; j < kend; j++) {
            var g = vec4(0.0);
            var g2 = vec4(0.0);
            for (var r = 0u; r < min(nr, 4u); r++) { g[r] = ds_out[pbase + (r0 + r) * p.t + j]; }
            for (var r = 4u; r < nr; r++) { g2[r - 4u] = ds_out[pbase + (r0 + r) * p.t + j]; }
            for (var d = 0u; d < dc; d++) {
                let kd = k[at(b, j, col0, c0 + d)];
                a[d] += g * kd;
                a2[d] += g2 * kd;
            }
        }
        for (var r = 0u; r < nr; r++) {
            for (var d = 0u; d < dc; d++) { dq[at(b, r0 + r, col0, c0 + d)] = select(a2[d][r & 3u], a[d][r & 3u], r < 4u); }
        }
    }
}

// Backward, part 2, per block of key rows j0 .. j0+3:  dk = dSᵀ q,  dv = Pᵀ dout.
// Under the causal mask only queries i ≥ j contribute, so the query loop starts at j0.
@compute @workgroup_size(64)
fn attention_backward_dkv(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let blk = rows(gid, nwg);
    if !blk.ok { return; }
    let b = blk.b;
    let col0 = blk.col0;
    let j0 = blk.r0;
    let pbase = blk.bh * p.t * p.t;
    let nr = min(R, p.t - j0);
    let istart = select(0u, j0, p.causal != 0u);
    var ak: array<vec4<f32>, 32>;
    var av: array<vec4<f32>, 32>;
    var ak2: array<vec4<f32>, 32>;
    var av2: array<vec4<f32>, 32>;

    for (var c0 = 0u; c0 < p.hd; c0 += C) {
        let dc = min(C, p.hd - c0);
        for (var d = 0u; d < dc; d++) {
            ak[d] = vec4(0.0);
            av[d] = vec4(0.0);
            ak2[d] = vec4(0.0);
            av2[d] = vec4(0.0);
        }
        for (var i = istart; i < p.t; i++) {
            var g = vec4(0.0);
            var pr = vec4(0.0);
            var g2 = vec4(0.0);
            var pr2 = vec4(0.0);
            for (var r = 0u; r < min(nr, 4u); r++) {
                g[r] = ds[pbase + i * p.t + j0 + r];
                pr[r] = probs[pbase + i * p.t + j0 + r];
            }
            for (var r = 4u; r < nr; r++) {
                g2[r - 4u] = ds[pbase + i * p.t + j0 + r];
                pr2[r - 4u] = probs[pbase + i * p.t + j0 + r];
            }
            for (var d = 0u; d < dc; d++) {
                let qd = q[at(b, i, col0, c0 + d)];
                let od = dout[at(b, i, col0, c0 + d)];
                ak[d] += g * qd;
                ak2[d] += g2 * qd;
                av[d] += pr * od;
                av2[d] += pr2 * od;
            }
        }
        for (var r = 0u; r < nr; r++) {
            for (var d = 0u; d < dc; d++) {
                dk[at(b, j0 + r, col0, c0 + d)] = select(ak2[d][r & 3u], ak[d][r & 3u], r < 4u);
                dv[at(b, j0 + r, col0, c0 + d)] = select(av2[d][r & 3u], av[d][r & 3u], r < 4u);
            }
        }
    }
}
