// Multi-head scaled dot-product attention core, forward and backward, for GPUs
// (Strategy::Tiled). CPU adapters run attention_rows.wgsl: same entries, same results.
//
// q, k, v, out: [B, T, W] row-major, head h owns columns h·hd .. (h+1)·hd.
// probs (the softmax, saved for backward) and ds (its score gradient): [B, heads, T, T].
//
// One workgroup of 16×16 threads per (b, h, block of 16 rows). Each phase is a small tiled
// matmul through workgroup memory (16×16 tiles, padded to 17 columns so that column reads
// do not collide in shared-memory banks), and the softmax row reductions run between them
// on the block's own rows of probs in global memory. T and hd are arbitrary: tiles are
// zero-filled past the ends, so nothing assumes a multiple of 16. With a causal mask a
// query block only visits key tiles up to its last query.
//
// The flat workgroup index is wg.x + wg.y·num_workgroups.x (the host folds large grids).

struct Params {
    batch: u32,
    t: u32,
    w: u32,
    heads: u32,
    hd: u32,
    causal: u32,
    tiles: u32,   // ceil(t / 16)
    scale: f32,   // 1 / sqrt(hd)
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

const TS: u32 = 16u;
const PAD: u32 = 17u;

var<workgroup> ta: array<f32, 272>;
var<workgroup> tb: array<f32, 272>;
var<workgroup> tc: array<f32, 272>;
var<workgroup> td: array<f32, 272>;
var<workgroup> red: array<f32, 256>;

// Which (b·heads + h, first row) a workgroup handles; `ok` is false for padding groups.
struct Block {
    bh: u32,
    r0: u32,
    b: u32,
    col0: u32,
    ok: bool,
}

fn block(wid: vec3<u32>, nwg: vec3<u32>) -> Block {
    let g = wid.x + wid.y * nwg.x;
    let bh = g / p.tiles;
    let b = bh / p.heads;
    let h = bh % p.heads;
    return Block(bh, (g % p.tiles) * TS, b, h * p.hd, g < p.batch * p.heads * p.tiles);
}

// Index of element (token i, head column d) of a [B, T, W] tensor.
fn at(b: u32, i: u32, col0: u32, d: u32) -> u32 {
    return (b * p.t + i) * p.w + col0 + d;
}

// Keys row i may see: all of them, or 0..=i under the causal mask.
fn row_keys(i: u32) -> u32 {
    if i >= p.t { return 0u; }
    return select(p.t, i + 1u, p.causal != 0u);
}

// Keys a block of rows starting at r0 may see (a bound on row_keys over the block).
fn block_keys(r0: u32) -> u32 {
    return select(p.t, min(p.t, r0 + TS), p.causal != 0u);
}

// Reduces x over the 16 threads of one tile row (threads li - tx .. li - tx + 15).
fn row_reduce(x: f32, li: u32, tx: u32, is_max: bool) -> f32 {
    red[li] = x;
    workgroupBarrier();
    for (var s = 8u; s > 0u; s = s >> 1u) {
        if tx < s {
            let o = red[li + s];
            red[li] = select(red[li] + o, max(red[li], o), is_max);
        }
        workgroupBarrier();
    }
    let r = red[li - tx];
    workgroupBarrier();
    return r;
}

// out = softmax(scale · q kᵀ (masked)) v; probs_out = the softmax.
@compute @workgroup_size(256)
fn attention_forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let blk = block(wid, nwg);
    if !blk.ok { return; }
    let tx = li % TS;
    let ty = li / TS;
    let b = blk.b;
    let col0 = blk.col0;
    let r0 = blk.r0;
    let pbase = blk.bh * p.t * p.t;
    let kend = block_keys(r0);

    // 1. Scores S[r0+ty, k0+tx] = scale · q·k, written into probs_out.
    for (var k0 = 0u; k0 < kend; k0 += TS) {
        var acc = 0.0;
        for (var d0 = 0u; d0 < p.hd; d0 += TS) {
            let d = d0 + tx;
            var a = 0.0;
            var c = 0.0;
            if r0 + ty < p.t && d < p.hd { a = q[at(b, r0 + ty, col0, d)]; }
            if k0 + ty < p.t && d < p.hd { c = k[at(b, k0 + ty, col0, d)]; }
            ta[ty * PAD + tx] = a;
            tb[ty * PAD + tx] = c;
            workgroupBarrier();
            for (var e = 0u; e < TS; e++) {
                acc += ta[ty * PAD + e] * tb[tx * PAD + e];
            }
            workgroupBarrier();
        }
        if r0 + ty < p.t && k0 + tx < p.t {
            probs_out[pbase + (r0 + ty) * p.t + k0 + tx] = acc * p.scale;
        }
    }
    storageBarrier();

    // 2. Softmax of each row, max-subtracted; masked keys get exactly 0.
    let i = r0 + ty;
    let jmax = row_keys(i);
    let row = pbase + i * p.t;
    var m = -3.0e38;
    for (var j = tx; j < jmax; j += TS) {
        m = max(m, probs_out[row + j]);
    }
    m = row_reduce(m, li, tx, true);
    var s = 0.0;
    for (var j = tx; j < jmax; j += TS) {
        let e = exp(probs_out[row + j] - m);
        probs_out[row + j] = e;
        s += e;
    }
    s = row_reduce(s, li, tx, false);
    if i < p.t {
        let inv = 1.0 / s;
        for (var j = tx; j < p.t; j += TS) {
            var pr = 0.0;
            if j < jmax { pr = probs_out[row + j] * inv; }
            probs_out[row + j] = pr;
        }
    }
    storageBarrier();

    // 3. out[r0+ty, d0+tx] = Σ_j P[r0+ty, j] · v[j, d0+tx].
    for (var d0 = 0u; d0 < p.hd; d0 += TS) {
        var acc = 0.0;
        for (var k0 = 0u; k0 < kend; k0 += TS) {
            var a = 0.0;
            var c = 0.0;
            if r0 + ty < p.t && k0 + tx < p.t { a = probs_out[pbase + (r0 + ty) * p.t + k0 + tx]; }
            if k0 + ty < p.t && d0 + tx < p.hd { c = v[at(b, k0 + ty, col0, d0 + tx)]; }
            ta[ty * PAD + tx] = a;
            tb[ty * PAD + tx] = c;
            workgroupBarrier();
            for (var e = 0u; e < TS; e++) {
                acc += ta[ty * PAD + e] * tb[e * PAD + tx];
            }
            workgroupBarrier();
        }
        if r0 + ty < p.t && d0 + tx < p.hd {
            out[at(b, r0 + ty, col0, d0 + tx)] = acc;
        }
    }
}

// Backward, part 1, per block of query rows:
//   dP = dout vᵀ;  dS = scale · P ⊙ (dP − rowsum(P ⊙ dP))  (written to ds_out, kept for part 2);
//   dq = dS k.
// Masked entries have P = 0, so their dS is 0 without a test.
@compute @workgroup_size(256)
fn attention_backward_dq(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let blk = block(wid, nwg);
    if !blk.ok { return; }
    let tx = li % TS;
    let ty = li / TS;
    let b = blk.b;
    let col0 = blk.col0;
    let r0 = blk.r0;
    let pbase = blk.bh * p.t * p.t;
    let kend = block_keys(r0);

    // 1. dP[r0+ty, k0+tx] = dout[r0+ty, :] · v[k0+tx, :], into ds_out.
    for (var k0 = 0u; k0 < kend; k0 += TS) {
        var acc = 0.0;
        for (var d0 = 0u; d0 < p.hd; d0 += TS) {
            let d = d0 + tx;
            var a = 0.0;
            var c = 0.0;
            if r0 + ty < p.t && d < p.hd { a = dout[at(b, r0 + ty, col0, d)]; }
            if k0 + ty < p.t && d < p.hd { c = v[at(b, k0 + ty, col0, d)]; }
            ta[ty * PAD + tx] = a;
            tb[ty * PAD + tx] = c;
            workgroupBarrier();
            for (var e = 0u; e < TS; e++) {
                acc += ta[ty * PAD + e] * tb[tx * PAD + e];
            }
            workgroupBarrier();
        }
        if r0 + ty < p.t && k0 + tx < p.t {
            ds_out[pbase + (r0 + ty) * p.t + k0 + tx] = acc;
        }
    }
    storageBarrier();

    // 2. The softmax Jacobian, row by row.
    let i = r0 + ty;
    let jmax = row_keys(i);
    let row = pbase + i * p.t;
    var pd = 0.0;
    for (var j = tx; j < jmax; j += TS) {
        pd += probs[row + j] * ds_out[row + j];
    }
    pd = row_reduce(pd, li, tx, false);
    if i < p.t {
        for (var j = tx; j < p.t; j += TS) {
            var g = 0.0;
            if j < jmax { g = p.scale * probs[row + j] * (ds_out[row + j] - pd); }
            ds_out[row + j] = g;
        }
    }
    storageBarrier();

    // 3. dq[r0+ty, d0+tx] = Σ_j dS[r0+ty, j] · k[j, d0+tx].
    for (var d0 = 0u; d0 < p.hd; d0 += TS) {
        var acc = 0.0;
        for (var k0 = 0u; k0 < kend; k0 += TS) {
            var a = 0.0;
            var c = 0.0;
            if r0 + ty < p.t && k0 + tx < p.t { a = ds_out[pbase + (r0 + ty) * p.t + k0 + tx]; }
            if k0 + ty < p.t && d0 + tx < p.hd { c = k[at(b, k0 + ty, col0, d0 + tx)]; }
            ta[ty * PAD + tx] = a;
            tb[ty * PAD + tx] = c;
            workgroupBarrier();
            for (var e = 0u; e < TS; e++) {
                acc += ta[ty * PAD + e] * tb[e * PAD + tx];
            }
            workgroupBarrier();
        }
        if r0 + ty < p.t && d0 + tx < p.hd {
            dq[at(b, r0 + ty, col0, d0 + tx)] = acc;
        }
    }
}

// Backward, part 2, per block of key rows j0 .. j0+15:
//   dk = dSᵀ q,  dv = Pᵀ dout.
// Under the causal mask only queries i ≥ j contribute, so the query loop starts at j0.
@compute @workgroup_size(256)
fn attention_backward_dkv(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let blk = block(wid, nwg);
    if !blk.ok { return; }
    let tx = li % TS;
    let ty = li / TS;
    let b = blk.b;
    let col0 = blk.col0;
    let j0 = blk.r0;
    let pbase = blk.bh * p.t * p.t;
    let istart = select(0u, j0, p.causal != 0u);

    for (var d0 = 0u; d0 < p.hd; d0 += TS) {
        var acc_k = 0.0;
        var acc_v = 0.0;
        for (var i0 = istart; i0 < p.t; i0 += TS) {
            let i = i0 + ty;
            let d = d0 + tx;
            var a = 0.0;
            var c = 0.0;
            var e = 0.0;
            var f = 0.0;
            if i < p.t && j0 + tx < p.t {
                a = ds[pbase + i * p.t + j0 + tx];
                c = probs[pbase + i * p.t + j0 + tx];
            }
            if i < p.t && d < p.hd {
                e = q[at(b, i, col0, d)];
                f = dout[at(b, i, col0, d)];
            }
            ta[ty * PAD + tx] = a;
            tb[ty * PAD + tx] = c;
            tc[ty * PAD + tx] = e;
            td[ty * PAD + tx] = f;
            workgroupBarrier();
            for (var r = 0u; r < TS; r++) {
                acc_k += ta[r * PAD + ty] * tc[r * PAD + tx];
                acc_v += tb[r * PAD + ty] * td[r * PAD + tx];
            }
            workgroupBarrier();
        }
        if j0 + ty < p.t && d0 + tx < p.hd {
            dk[at(b, j0 + ty, col0, d0 + tx)] = acc_k;
            dv[at(b, j0 + ty, col0, d0 + tx)] = acc_v;
        }
    }
}
