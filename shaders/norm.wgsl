// Normalisation layers: LayerNorm, GroupNorm (rows of one sample) and BatchNorm2d (per
// channel across the batch), forward and backward.
//
// LayerNorm and GroupNorm share one "row" formulation: a row is the set of elements that
// share one mean/rstd (LayerNorm: the last dim, len = D; GroupNorm: one group of one sample,
// len = (C/G)·H·W, contiguous in NCHW). Element i of row r uses affine channel
// (r % groups)·cpg + i / hw (LayerNorm: groups 1, cpg D, hw 1 gives channel i).
//
// A workgroup of 256 threads holds 256/seg rows, `seg` threads each (a power of two, about
// len/8, see `seg_width` in src/ops/norm.rs), so that short rows (GroupNorm with groups ==
// channels on 4×4 maps: 16 values) do not leave most of the workgroup idle and long planes
// get the whole workgroup. BatchNorm works on (sample, channel) planes the same way.
//
// Statistics are merged (count, mean, M2) summaries, never E[x²]−E[x]², which loses every
// digit when |mean| ≫ std.

struct Params {
    rows: u32,      // segments (rows, planes or channels) in this dispatch
    len: u32,       // elements per row
    seg: u32,       // threads per segment, power of two ≤ 256
    hw: u32,        // elements per channel plane (H·W; 1 for LayerNorm)
    channels: u32,  // C
    groups: u32,    // statistic rows per sample (GroupNorm G; LayerNorm 1)
    cpg: u32,       // channels per statistic row
    flags: u32,     // bit 0: accumulate into the outputs; bit 1: BatchNorm training
    eps: f32,
    momentum: f32,
    inv_count: f32, // 1 / values per BatchNorm channel (0 in eval: no batch-statistic terms)
    stat_n: u32,    // statistic rows per sample for `plane_sums` (GroupNorm G, BatchNorm 0)
}

const WG: u32 = 256u;
const ACCUMULATE: u32 = 1u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read> weight: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> mean_buf: array<f32>;
@group(0) @binding(6) var<storage, read_write> rstd_buf: array<f32>;
// Per-plane pairs: (mean, M2) for BatchNorm statistics, (Σ dy·x̂, Σ dy) for gradients.
@group(0) @binding(7) var<storage, read_write> partial: array<vec2<f32>>;
// BatchNorm running (count, mean, M2, unused) per channel across batch chunks.
@group(0) @binding(8) var<storage, read_write> acc: array<vec4<f32>>;
@group(0) @binding(9) var<storage, read_write> running_mean: array<f32>;
@group(0) @binding(10) var<storage, read_write> running_var: array<f32>;
// Σ dy·x̂ and Σ dy per channel: the weight and bias gradients.
@group(0) @binding(11) var<storage, read_write> sum_w: array<f32>;
@group(0) @binding(12) var<storage, read_write> sum_b: array<f32>;
@group(0) @binding(13) var<storage, read_write> out: array<f32>;

var<workgroup> red: array<vec2<f32>, 256>;

// Sums `v` over each segment of p.seg consecutive threads; every thread gets its segment's
// total. Must be reached by the whole workgroup (it has barriers).
fn segment_sum(li: u32, v: vec2<f32>) -> vec2<f32> {
    red[li] = v;
    workgroupBarrier();
    let lane = li % p.seg;
    var stride = p.seg / 2u;
    loop {
        if stride == 0u { break; }
        if lane < stride { red[li] += red[li + stride]; }
        workgroupBarrier();
        stride = stride / 2u;
    }
    let total = red[li - lane];
    workgroupBarrier();
    return total;
}

struct Seg {
    row: u32,
    lane: u32,
    live: bool,
}

fn segment_of(li: u32, wid: vec3<u32>, nwg: vec3<u32>) -> Seg {
    let row = (wid.x + wid.y * nwg.x) * (WG / p.seg) + li / p.seg;
    return Seg(row, li % p.seg, row < p.rows);
}

// Merges two (count, mean, M2) summaries of disjoint sets (Chan, Golub & LeVeque): exact in
// exact arithmetic and, unlike Σx² − (Σx)²/n, free of cancellation when |mean| ≫ std.
fn chan(a: vec3<f32>, b: vec3<f32>) -> vec3<f32> {
    if b.x == 0.0 { return a; }
    if a.x == 0.0 { return b; }
    let n = a.x + b.x;
    let delta = b.y - a.y;
    return vec3<f32>(n, a.y + delta * (b.x / n), a.z + b.z + delta * delta * (a.x * (b.x / n)));
}

var<workgroup> red_m: array<vec3<f32>, 256>;

// (mean, Σ (x − mean)²) of row `s.row` of x (rows of p.len values): Welford over each
// thread's strided elements (one read of x), then Chan merges up the segment's tree, so the
// statistics cost a single reduction.
fn row_moments(li: u32, s: Seg) -> vec2<f32> {
    let base = s.row * p.len;
    var m = vec3<f32>(0.0);
    if s.live {
        for (var i = s.lane; i < p.len; i += p.seg) {
            let v = x[base + i];
            m.x += 1.0;
            let d = v - m.y;
            m.y += d / m.x;
            m.z += d * (v - m.y);
        }
    }
    red_m[li] = m;
    workgroupBarrier();
    var stride = p.seg / 2u;
    loop {
        if stride == 0u { break; }
        if s.lane < stride { red_m[li] = chan(red_m[li], red_m[li + stride]); }
        workgroupBarrier();
        stride = stride / 2u;
    }
    return red_m[li - s.lane].yz;
}

// The affine channel of each of a thread's elements i = lane, lane + seg, ... of a row:
// (row % groups)·cpg + i / hw, advanced without a division per element (integer division
// is scalarised on CPU Vulkan and dominated these loops).
struct Chan {
    c: u32,   // channel of the current element
    s: u32,   // its position in the channel's plane, < hw
    dc: u32,  // seg / hw
    ds: u32,  // seg % hw
}

fn chan_start(s: Seg) -> Chan {
    return Chan((s.row % p.groups) * p.cpg + s.lane / p.hw, s.lane % p.hw, p.seg / p.hw, p.seg % p.hw);
}

fn chan_next(a: ptr<function, Chan>) {
    (*a).c += (*a).dc;
    (*a).s += (*a).ds;
    if (*a).s >= p.hw {
        (*a).s -= p.hw;
        (*a).c += 1u;
    }
}

// LayerNorm / GroupNorm forward: y = (x − mean)·rstd·w[c] + b[c]; saves mean and rstd
// (biased variance, as PyTorch) per row for the backward pass.
@compute @workgroup_size(256)
fn row_forward(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    let s = segment_of(li, wid, nwg);
    let m = row_moments(li, s);
    let rstd = inverseSqrt(m.y / f32(p.len) + p.eps);
    if !s.live { return; }
    if s.lane == 0u {
        mean_buf[s.row] = m.x;
        rstd_buf[s.row] = rstd;
    }
    let base = s.row * p.len;
    var ch = chan_start(s);
    for (var i = s.lane; i < p.len; i += p.seg) {
        out[base + i] = (x[base + i] - m.x) * rstd * weight[ch.c] + bias[ch.c];
        chan_next(&ch);
    }
}

// LayerNorm / GroupNorm input gradient, per row with g = dy·w[c], x̂ = (x − mean)·rstd:
// dx = rstd · (g − mean(g) − x̂ · mean(g·x̂)).
@compute @workgroup_size(256)
fn row_backward(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let s = segment_of(li, wid, nwg);
    let base = s.row * p.len;
    var mean = 0.0;
    var rstd = 0.0;
    var t = vec2<f32>(0.0);
    if s.live {
        mean = mean_buf[s.row];
        rstd = rstd_buf[s.row];
        var ch = chan_start(s);
        for (var i = s.lane; i < p.len; i += p.seg) {
            let g = dy[base + i] * weight[ch.c];
            let xh = (x[base + i] - mean) * rstd;
            t += vec2<f32>(g, g * xh);
            chan_next(&ch);
        }
    }
    let sums = segment_sum(li, t) / f32(p.len);
    if !s.live { return; }
    var ch = chan_start(s);
    for (var i = s.lane; i < p.len; i += p.seg) {
        let g = dy[base + i] * weight[ch.c];
        let xh = (x[base + i] - mean) * rstd;
        out[base + i] = rstd * (g - sums.x - xh * sums.y);
        chan_next(&ch);
    }
}

// BatchNorm statistics, stage 1: (mean, M2) of every (sample, channel) plane of p.len values.
@compute @workgroup_size(256)
fn plane_moments(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    let s = segment_of(li, wid, nwg);
    let m = row_moments(li, s);
    if s.live && s.lane == 0u { partial[s.row] = m; }
}

// Per (sample, channel) plane of p.len values: (Σ dy·x̂, Σ dy), with the statistics of the
// plane's row (n·stat_n + c / cpg): GroupNorm's group, or BatchNorm's channel (stat_n 0).
@compute @workgroup_size(256)
fn plane_sums(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>) {
    let s = segment_of(li, wid, nwg);
    let base = s.row * p.len;
    var t = vec2<f32>(0.0);
    if s.live {
        let stat = (s.row / p.channels) * p.stat_n + (s.row % p.channels) / p.cpg;
        let mean = mean_buf[stat];
        let rstd = rstd_buf[stat];
        for (var i = s.lane; i < p.len; i += p.seg) {
            let d = dy[base + i];
            t += vec2<f32>(d * (x[base + i] - mean) * rstd, d);
        }
    }
    let total = segment_sum(li, t);
    if s.live && s.lane == 0u { partial[s.row] = total; }
}

// Column sums over a 16-channel tile: 16 lanes per channel, then a tree across lanes.
fn tile_sum(li: u32, v: vec2<f32>) -> vec2<f32> {
    red[li] = v;
    workgroupBarrier();
    for (var stride = 128u; stride >= 16u; stride = stride / 2u) {
        if li < stride { red[li] += red[li + stride]; }
        workgroupBarrier();
    }
    return red[li];
}

fn store_param_sums(li: u32, c: u32, total: vec2<f32>) {
    if li < 16u && c < p.channels {
        if (p.flags & ACCUMULATE) != 0u {
            sum_w[c] += total.x;
            sum_b[c] += total.y;
        } else {
            sum_w[c] = total.x;
            sum_b[c] = total.y;
        }
    }
}

// Σ over p.rows samples of the per-plane pairs: sum_w[c] = Σ_n Σ dy·x̂, sum_b[c] = Σ_n Σ dy.
@compute @workgroup_size(256)
fn column_sums(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let c = wid.x * 16u + li % 16u;
    var t = vec2<f32>(0.0);
    if c < p.channels {
        for (var n = li / 16u; n < p.rows; n += 16u) { t += partial[n * p.channels + c]; }
    }
    store_param_sums(li, c, tile_sum(li, t));
}

// LayerNorm weight/bias gradients straight from x and dy ([rows, D]; no per-plane stage,
// every plane is one value): sum_w[d] = Σ_r dy·x̂, sum_b[d] = Σ_r dy.
@compute @workgroup_size(256)
fn ln_param_sums(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let c = wid.x * 16u + li % 16u;
    var t = vec2<f32>(0.0);
    if c < p.channels {
        for (var r = li / 16u; r < p.rows; r += 16u) {
            let i = r * p.channels + c;
            let d = dy[i];
            t += vec2<f32>(d * (x[i] - mean_buf[r]) * rstd_buf[r], d);
        }
    }
    store_param_sums(li, c, tile_sum(li, t));
}

// BatchNorm statistics, stage 2, one thread per channel: merges this chunk's planes (each of
// p.len values) into the running (count, mean, M2) with Chan et al.'s pairwise formula.
@compute @workgroup_size(64)
fn bn_combine(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    if c >= p.channels { return; }
    var a = vec3<f32>(0.0);
    if (p.flags & ACCUMULATE) != 0u { a = acc[c].xyz; }
    for (var n = 0u; n < p.rows; n++) {
        a = chan(a, vec3<f32>(f32(p.len), partial[n * p.channels + c]));
    }
    acc[c] = vec4<f32>(a, 0.0);
}

// BatchNorm statistics, stage 3 (training): batch mean and rstd (biased variance) for the
// normalisation, and the in-place running update with the UNBIASED variance, as PyTorch.
@compute @workgroup_size(64)
fn bn_finalize_train(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    if c >= p.channels { return; }
    let a = acc[c];
    mean_buf[c] = a.y;
    rstd_buf[c] = inverseSqrt(a.z / a.x + p.eps);
    let m = p.momentum;
    running_mean[c] = (1.0 - m) * running_mean[c] + m * a.y;
    running_var[c] = (1.0 - m) * running_var[c] + m * a.z / (a.x - 1.0);
}

// BatchNorm in eval mode normalises with the running statistics.
@compute @workgroup_size(64)
fn bn_eval_stats(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    if c >= p.channels { return; }
    mean_buf[c] = running_mean[c];
    rstd_buf[c] = inverseSqrt(running_var[c] + p.eps);
}

// BatchNorm forward, one segment per (sample, channel) plane of p.len values:
// y = (x − mean[c])·rstd[c]·w[c] + b[c].
@compute @workgroup_size(256)
fn bn_normalize(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let s = segment_of(li, wid, nwg);
    if !s.live { return; }
    let c = s.row % p.channels;
    let mean = mean_buf[c];
    let scale = rstd_buf[c] * weight[c];
    let b = bias[c];
    let base = s.row * p.len;
    // Centre first: x·scale + (b − mean·scale) would cancel when |mean| ≫ std.
    for (var i = s.lane; i < p.len; i += p.seg) { out[base + i] = (x[base + i] - mean) * scale + b; }
}

// BatchNorm input gradient, one segment per plane. Training (inv_count = 1/(N·H·W)) keeps
// the terms through the batch mean and variance:
//   dx = w·rstd·(dy − Σdy/n − x̂·Σ(dy·x̂)/n);
// eval (inv_count = 0) leaves dx = w·rstd·dy, the statistics being constants.
@compute @workgroup_size(256)
fn bn_backward_dx(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let s = segment_of(li, wid, nwg);
    if !s.live { return; }
    let c = s.row % p.channels;
    let rstd = rstd_buf[c];
    let mean = mean_buf[c];
    let k = weight[c] * rstd;
    let kb = p.inv_count * sum_b[c];
    let kw = p.inv_count * sum_w[c] * rstd;
    let base = s.row * p.len;
    for (var i = s.lane; i < p.len; i += p.seg) {
        out[base + i] = k * (dy[base + i] - kb - (x[base + i] - mean) * kw);
    }
}
