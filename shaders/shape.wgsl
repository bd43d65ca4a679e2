// Data movement without arithmetic: every op of the shape family (concat, slice, permute,
// channel shuffle, and their backwards) is one or more strided box copies. Element c of a box
// of up to 6 dims (row-major over `shape`) goes from src[src_base + c·src_stride] to
// dst[dst_base + c·dst_stride]. The host merges dims that stay adjacent in both tensors first,
// so most copies reach the shader with 2 or 3 dims.

struct Params {
    n: u32,
    rank: u32,
    src_base: u32,
    dst_base: u32,
    // Six entries each, packed four to a vec4 (uniform arrays need 16-byte elements).
    shape: array<vec4<u32>, 2>,
    src_stride: array<vec4<u32>, 2>,
    dst_stride: array<vec4<u32>, 2>,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

// One thread per element of the box; the index is split into coordinates innermost first.
@compute @workgroup_size(256)
fn copy_strided(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if i >= p.n { return; }
    var rest = i;
    var s = p.src_base;
    var d = p.dst_base;
    for (var k = 0u; k < p.rank; k++) {
        let dim = p.rank - 1u - k;
        let size = p.shape[dim / 4u][dim % 4u];
        let c = rest % size;
        rest = rest / size;
        s += c * p.src_stride[dim / 4u][dim % 4u];
        d += c * p.dst_stride[dim / 4u][dim % 4u];
    }
    dst[d] = src[s];
}

// The same copy when the last box dim is contiguous in both tensors (concat and slice along
// an outer dim, channel shuffle, head splits): one thread per 4 consecutive elements of a
// row, so the index arithmetic is paid once per 4 elements. `n` counts threads here and the
// last entry of `shape` counts groups of 4; `len` is the true row length.
@compute @workgroup_size(256)
fn copy_rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if i >= p.n { return; }
    let last = p.rank - 1u;
    let groups = p.shape[last / 4u][last % 4u];
    let len = p.src_stride[last / 4u][last % 4u];
    var rest = i / groups;
    let c0 = (i % groups) * 4u;
    var s = p.src_base + c0;
    var d = p.dst_base + c0;
    for (var k = 1u; k < p.rank; k++) {
        let dim = p.rank - 1u - k;
        let size = p.shape[dim / 4u][dim % 4u];
        let c = rest % size;
        rest = rest / size;
        s += c * p.src_stride[dim / 4u][dim % 4u];
        d += c * p.dst_stride[dim / 4u][dim % 4u];
    }
    let m = min(4u, len - c0);
    for (var j = 0u; j < m; j++) {
        dst[d + j] = src[s + j];
    }
}

// Batched transpose through workgroup memory: dst[b, r, c] = src[b, c, r], where r is the
// contiguous axis of src and c that of dst. A naive copy reads or writes with a large stride;
// here both the 32-wide loads and the 32-wide stores are contiguous.
//   shape = (batches, rows, cols)   src_stride = (batch, 1, col)   dst_stride = (batch, row, 1)
// Grid: (ceil(cols/32), ceil(rows/32), batches); 32×8 threads, 4 elements each.
const TILE: u32 = 32u;
// One extra column so that the column-wise reads of the tile hit distinct banks.
var<workgroup> tile: array<f32, 1056>; // TILE × (TILE + 1)

@compute @workgroup_size(32, 8)
fn transpose_tiled(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let rows = p.shape[0].y;
    let cols = p.shape[0].z;
    let b = wg.z;
    let r0 = wg.y * TILE;
    let c0 = wg.x * TILE;
    let sbase = p.src_base + b * p.src_stride[0].x;
    let dbase = p.dst_base + b * p.dst_stride[0].x;
    // Load: consecutive threads take consecutive r (contiguous in src).
    for (var k = 0u; k < TILE; k += 8u) {
        let r = r0 + lid.x;
        let c = c0 + lid.y + k;
        if r < rows && c < cols {
            tile[(lid.y + k) * (TILE + 1u) + lid.x] = src[sbase + c * p.src_stride[0].z + r];
        }
    }
    workgroupBarrier();
    // Store: consecutive threads take consecutive c (contiguous in dst).
    for (var k = 0u; k < TILE; k += 8u) {
        let r = r0 + lid.y + k;
        let c = c0 + lid.x;
        if r < rows && c < cols {
            dst[dbase + r * p.dst_stride[0].y + c] = tile[lid.x * (TILE + 1u) + lid.y + k];
        }
    }
}
