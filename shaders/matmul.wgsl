// C = op(A)·op(B) (+ bias), batched, tiled in workgroup memory: the kernel for GPUs.
// (CPU drivers with 8-wide subgroups get matmul_sg8.wgsl, which shares Params and entries.)
//
// op(A) is [M, K]: A itself, or A stored [K, M] when transposed (entries mm_t*).
// op(B) is [K, N]: B itself, or B stored [N, K] when transposed (entries mm_*t).
// Each workgroup computes a 64×64 tile of C with 256 invocations, each a 4×4 block held in
// four vec4 registers. Per k-tile of 16, every invocation copies one vec4 of each operand
// into workgroup memory (the transposes are absorbed here: the copy walks memory in the
// operand's own order, so neighbouring invocations read neighbouring addresses) and then
// does 16 × 16 FMAs from it. Elements past M, N or K are loaded as zeros.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    // Number of batch items summed into one output (the gradient of a weight shared across
    // a batch whose A is transposed); 1 otherwise.
    nred: u32,
    // Elements between consecutive batch items (0: the operand is shared by the batch).
    a_stride: u32,
    b_stride: u32,
    c_stride: u32,
    // 1: add bias[n]   2: add to what c holds   4: store C transposed ([N, M])
    flags: u32,
    // Offsets of this dispatch's first batch item and first row tile (grids are capped at
    // 65535 workgroups per dimension, so large problems take several dispatches).
    z_base: u32,
    y_base: u32,
    pad0: u32,
    pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

const TILE: u32 = 64u;
const BK: u32 = 16u;

// [k][m/4] and [k][n/4]: invocation (tx, ty) reads rows 4ty..4ty+3 and columns 4tx..4tx+3
// of k-slice kk as one vec4 each.
var<workgroup> a_tile: array<vec4<f32>, 256>;
var<workgroup> b_tile: array<vec4<f32>, 256>;

// op(A)[m][k] and op(B)[k][n] of the batch item starting at `base`, zero outside.
fn load_a(ta: bool, base: u32, m: u32, k: u32) -> f32 {
    if m >= p.m || k >= p.k {
        return 0.0;
    }
    if ta {
        return a[base + k * p.m + m];
    }
    return a[base + m * p.k + k];
}

fn load_b(tb: bool, base: u32, k: u32, n: u32) -> f32 {
    if n >= p.n || k >= p.k {
        return 0.0;
    }
    if tb {
        return b[base + n * p.k + k];
    }
    return b[base + k * p.n + n];
}

fn store4(z: u32, gm: u32, gn0: u32, v: vec4<f32>) {
    if gm >= p.m {
        return;
    }
    for (var q = 0u; q < 4u; q++) {
        let gn = gn0 + q;
        if gn < p.n {
            var x = v[q];
            if (p.flags & 1u) != 0u {
                x += bias[gn];
            }
            var idx = z * p.c_stride + gm * p.n + gn;
            if (p.flags & 4u) != 0u {
                idx = z * p.c_stride + gn * p.m + gm;
            }
            if (p.flags & 2u) != 0u {
                x += c[idx];
            }
            c[idx] = x;
        }
    }
}

fn gemm(ta: bool, tb: bool, lid: u32, wg: vec3<u32>) {
    let tx = lid % 16u;
    let ty = lid / 16u;
    let m0 = (wg.y + p.y_base) * TILE;
    let n0 = wg.x * TILE;
    let z = wg.z + p.z_base;
    // This invocation's slot in each tile copy: k-slice and group of 4 rows (columns).
    // The index that runs fastest across invocations follows the operand's memory order.
    var a_kk = lid % BK;
    var a_mq = lid / BK;
    if ta {
        a_kk = lid / 16u;
        a_mq = lid % 16u;
    }
    var b_kk = lid / 16u;
    var b_nq = lid % 16u;
    if tb {
        b_kk = lid % BK;
        b_nq = lid / BK;
    }
    let am = m0 + 4u * a_mq;
    let bn = n0 + 4u * b_nq;

    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var r = 0u; r < p.nred; r++) {
        let a_base = (z + r) * p.a_stride;
        let b_base = (z + r) * p.b_stride;
        for (var k0 = 0u; k0 < p.k; k0 += BK) {
            let ak = k0 + a_kk;
            a_tile[a_kk * 16u + a_mq] = vec4<f32>(
                load_a(ta, a_base, am, ak),
                load_a(ta, a_base, am + 1u, ak),
                load_a(ta, a_base, am + 2u, ak),
                load_a(ta, a_base, am + 3u, ak),
            );
            let bk = k0 + b_kk;
            b_tile[b_kk * 16u + b_nq] = vec4<f32>(
                load_b(tb, b_base, bk, bn),
                load_b(tb, b_base, bk, bn + 1u),
                load_b(tb, b_base, bk, bn + 2u),
                load_b(tb, b_base, bk, bn + 3u),
            );
            workgroupBarrier();
            for (var kk = 0u; kk < BK; kk++) {
                let av = a_tile[kk * 16u + ty];
                let bv = b_tile[kk * 16u + tx];
                acc0 = fma(vec4<f32>(av.x), bv, acc0);
                acc1 = fma(vec4<f32>(av.y), bv, acc1);
                acc2 = fma(vec4<f32>(av.z), bv, acc2);
                acc3 = fma(vec4<f32>(av.w), bv, acc3);
            }
            workgroupBarrier();
        }
    }
    let gm = m0 + 4u * ty;
    let gn = n0 + 4u * tx;
    store4(z, gm, gn, acc0);
    store4(z, gm + 1u, gn, acc1);
    store4(z, gm + 2u, gn, acc2);
    store4(z, gm + 3u, gn, acc3);
}

@compute @workgroup_size(256)
fn mm_nn(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    gemm(false, false, lid, wg);
}

@compute @workgroup_size(256)
fn mm_nt(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    gemm(false, true, lid, wg);
}

@compute @workgroup_size(256)
fn mm_tn(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    gemm(true, false, lid, wg);
}

@compute @workgroup_size(256)
fn mm_tt(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    gemm(true, true, lid, wg);
}

// ---- bias gradient: column sums of dy [p.m rows, p.n columns] -------------------------
// 64 columns per workgroup, four invocations per column summing every fourth row, then a
// tree over the four in workgroup memory. flags & 2 adds to what c holds (split batches).

var<workgroup> partial: array<f32, 256>;

@compute @workgroup_size(256)
fn column_sums(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let col = (wg.x + wg.y * nwg.x) * 64u + lid % 64u;
    let lane = lid / 64u;
    var s = 0.0;
    if col < p.n {
        for (var r = lane; r < p.m; r += 4u) {
            s += a[r * p.n + col];
        }
    }
    partial[lid] = s;
    workgroupBarrier();
    if lane == 0u && col < p.n {
        var total = partial[lid] + partial[lid + 64u] + partial[lid + 128u] + partial[lid + 192u];
        if (p.flags & 2u) != 0u {
            total += c[col];
        }
        c[col] = total;
    }
}
