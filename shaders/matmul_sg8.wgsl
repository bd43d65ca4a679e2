// C = op(A)·op(B) (+ bias) for devices whose subgroups are exactly 8 invocations wide: Mesa's
// lavapipe and other CPU drivers, which run one 8-lane subgroup as one AVX2 vector.
//
// Why a second kernel: on such a driver every load or store whose address differs per
// invocation (all of them, workgroup memory included) is a loop over the 8 lanes, roughly
// twenty times dearer than a vector FMA, while subgroup broadcasts with a constant lane are
// single shuffles and barriers are coroutine switches that save all live registers. The
// workgroup-memory tiling of matmul.wgsl therefore pays three memory operations per operand
// element and two barriers per k-tile. Here the workgroup is one subgroup and its registers
// are the tile: per k step each lane loads 8 values of A and 16 of B (each element of the
// 64×128 tile's k-slice is loaded exactly once), the A values are broadcast across the
// subgroup, and every lane does 64×16 FMAs. The accumulators (32 KiB per subgroup) cannot
// stay in registers, so k steps go in pairs: each accumulator is loaded and stored once per
// two FMAs. On lavapipe this runs 1024³ about 17× faster than matmul.wgsl (figures in
// src/ops/matmul.rs).
//
// Same Params and bindings as matmul.wgsl; one entry point, with the transposes in `flags`
// (they only change strides here). Tile: 64 rows × 128 columns per workgroup; lane l owns
// columns 16l..16l+15 of all 64 rows. Rows and columns past the edge are clamped when
// loading (their results are never stored); past the end of K the second k of a pair loads
// zeros, so nothing outside op(A)·op(B) is ever summed.

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
    // 8: A is transposed   16: B is transposed
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

// acc[g][i][h]: row 8g+i of the tile, this lane's columns 4h..4h+3. Indexed only by
// constants (after inlining), so that it stays in (spilled) registers: a dynamic index would
// turn it into memory, and every access into a per-lane loop.
var<private> acc: array<array<array<vec4<f32>, 4>, 8>, 8>;
// This lane's 16 values of B at the pair of k (k and k + 1).
var<private> b_k0: array<vec4<f32>, 4>;
var<private> b_k1: array<vec4<f32>, 4>;

// Row 8g+i += x0·B[k] + x1·B[k+1], with x0, x1 that row's values of A.
fn row(g: u32, i: u32, x0: f32, x1: f32) {
    acc[g][i][0] = fma(vec4<f32>(x1), b_k1[0], fma(vec4<f32>(x0), b_k0[0], acc[g][i][0]));
    acc[g][i][1] = fma(vec4<f32>(x1), b_k1[1], fma(vec4<f32>(x0), b_k0[1], acc[g][i][1]));
    acc[g][i][2] = fma(vec4<f32>(x1), b_k1[2], fma(vec4<f32>(x0), b_k0[2], acc[g][i][2]));
    acc[g][i][3] = fma(vec4<f32>(x1), b_k1[3], fma(vec4<f32>(x0), b_k0[3], acc[g][i][3]));
}

// Rows 8g..8g+7: lane l loaded A's values for row 8g+l (a0 at k, a1 at k + 1); each lane
// takes all eight rows in turn.
fn rows8(g: u32, a0: f32, a1: f32) {
    row(g, 0u, subgroupBroadcast(a0, 0u), subgroupBroadcast(a1, 0u));
    row(g, 1u, subgroupBroadcast(a0, 1u), subgroupBroadcast(a1, 1u));
    row(g, 2u, subgroupBroadcast(a0, 2u), subgroupBroadcast(a1, 2u));
    row(g, 3u, subgroupBroadcast(a0, 3u), subgroupBroadcast(a1, 3u));
    row(g, 4u, subgroupBroadcast(a0, 4u), subgroupBroadcast(a1, 4u));
    row(g, 5u, subgroupBroadcast(a0, 5u), subgroupBroadcast(a1, 5u));
    row(g, 6u, subgroupBroadcast(a0, 6u), subgroupBroadcast(a1, 6u));
    row(g, 7u, subgroupBroadcast(a0, 7u), subgroupBroadcast(a1, 7u));
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

fn load4(base: u32, offsets: vec4<u32>) -> vec4<f32> {
    return vec4<f32>(b[base + offsets.x], b[base + offsets.y], b[base + offsets.z], b[base + offsets.w]);
}

@compute @workgroup_size(8)
fn gemm(@builtin(subgroup_invocation_id) lane: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let ta = (p.flags & 8u) != 0u;
    let tb = (p.flags & 16u) != 0u;
    let m0 = (wg.y + p.y_base) * 64u;
    let col = wg.x * 128u + 16u * lane;
    let z = wg.z + p.z_base;
    // op(A)[m][k] = a[m·a_ms + k·a_ks];  op(B)[k][n] = b[k·b_ks + n·b_ns].
    let a_ms = select(p.k, 1u, ta);
    let a_ks = select(1u, p.m, ta);
    let b_ns = select(1u, p.k, tb);
    let b_ks = select(p.n, 1u, tb);
    // Offsets of the rows this lane loads (m0 + lane + 8g) and of the columns it owns,
    // clamped into range.
    let last_m = vec4<u32>(p.m - 1u);
    let last_n = vec4<u32>(p.n - 1u);
    let rows_lo = min(vec4<u32>(m0 + lane) + vec4<u32>(0u, 8u, 16u, 24u), last_m) * a_ms;
    let rows_hi = min(vec4<u32>(m0 + lane) + vec4<u32>(32u, 40u, 48u, 56u), last_m) * a_ms;
    let cols0 = min(vec4<u32>(col) + vec4<u32>(0u, 1u, 2u, 3u), last_n) * b_ns;
    let cols1 = min(vec4<u32>(col) + vec4<u32>(4u, 5u, 6u, 7u), last_n) * b_ns;
    let cols2 = min(vec4<u32>(col) + vec4<u32>(8u, 9u, 10u, 11u), last_n) * b_ns;
    let cols3 = min(vec4<u32>(col) + vec4<u32>(12u, 13u, 14u, 15u), last_n) * b_ns;

    for (var r = 0u; r < p.nred; r++) {
        let a_base = (z + r) * p.a_stride;
        let b_base = (z + r) * p.b_stride;
        for (var k = 0u; k < p.k; k += 2u) {
            // The pair's second k; past the end of K it contributes 0·0.
            let more = k + 1u < p.k;
            let a0 = a_base + k * a_ks;
            let b0 = b_base + k * b_ks;
            let a1 = a_base + select(k, k + 1u, more) * a_ks;
            let b1 = b_base + select(k, k + 1u, more) * b_ks;
            let zero = vec4<f32>(0.0);
            b_k0[0] = load4(b0, cols0);
            b_k0[1] = load4(b0, cols1);
            b_k0[2] = load4(b0, cols2);
            b_k0[3] = load4(b0, cols3);
            b_k1[0] = select(zero, load4(b1, cols0), more);
            b_k1[1] = select(zero, load4(b1, cols1), more);
            b_k1[2] = select(zero, load4(b1, cols2), more);
            b_k1[3] = select(zero, load4(b1, cols3), more);
            rows8(0u, a[a0 + rows_lo.x], select(0.0, a[a1 + rows_lo.x], more));
            rows8(1u, a[a0 + rows_lo.y], select(0.0, a[a1 + rows_lo.y], more));
            rows8(2u, a[a0 + rows_lo.z], select(0.0, a[a1 + rows_lo.z], more));
            rows8(3u, a[a0 + rows_lo.w], select(0.0, a[a1 + rows_lo.w], more));
            rows8(4u, a[a0 + rows_hi.x], select(0.0, a[a1 + rows_hi.x], more));
            rows8(5u, a[a0 + rows_hi.y], select(0.0, a[a1 + rows_hi.y], more));
            rows8(6u, a[a0 + rows_hi.z], select(0.0, a[a1 + rows_hi.z], more));
            rows8(7u, a[a0 + rows_hi.w], select(0.0, a[a1 + rows_hi.w], more));
        }
    }
    // One row per iteration, always from acc[0][0]: the rows move up after each store, which
    // keeps every index into acc constant.
    for (var g = 0u; g < 8u; g++) {
        for (var i = 0u; i < 8u; i++) {
            let m = m0 + 8u * g + i;
            store4(z, m, col, acc[0][0][0]);
            store4(z, m, col + 4u, acc[0][0][1]);
            store4(z, m, col + 8u, acc[0][0][2]);
            store4(z, m, col + 12u, acc[0][0][3]);
            acc[0][0] = acc[0][1];
            acc[0][1] = acc[0][2];
            acc[0][2] = acc[0][3];
            acc[0][3] = acc[0][4];
            acc[0][4] = acc[0][5];
            acc[0][5] = acc[0][6];
            acc[0][6] = acc[0][7];
        }
        acc[0] = acc[1];
        acc[1] = acc[2];
        acc[2] = acc[3];
        acc[3] = acc[4];
        acc[4] = acc[5];
        acc[5] = acc[6];
        acc[6] = acc[7];
    }
}
