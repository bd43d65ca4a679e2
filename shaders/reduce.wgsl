// Sum over the middle axis of a tensor viewed as [outer, red, inner]:
//   out[o·inner + i] = scale · Σ_r x[(o·red + r)·inner + i]
// or, with `dot`, of the products x ⊙ y of two same-shaped tensors (the gradient of a
// broadcast factor, Σ_hw dy ⊙ x, without materialising dy ⊙ x).
// Multi-axis reductions are a sequence of these (the host merges adjacent reduced dims
// first). A workgroup of 256 threads serves 256/tpo outputs with tpo lanes each; lanes
// stride through the reduced axis and are combined by a tree in workgroup memory.
// Row mode (inner = 1): lanes of one output are adjacent threads, so they read adjacent
// addresses. Column mode (inner > 1): adjacent threads take adjacent outputs, which are
// adjacent in memory, and the lanes are the slower index.
// A workgroup sums at most `chunk` elements of the reduced axis; when one output needs
// several chunks (very long reductions), each writes a partial sum to
// out[out_base + chunk·n_out + o] and the host reduces those partials in another pass.
// `in_base` / `out_base` locate this dispatch's window inside bindings that start at an
// aligned offset below the data.

struct Params {
    outer: u32,
    red: u32,
    inner: u32,
    tpo: u32,
    chunk: u32,
    nchunks: u32,
    in_base: u32,
    out_base: u32,
    scale: f32,
    col: u32,
    y_base: u32,
    dot: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

var<workgroup> sm: array<f32, 256>;

@compute @workgroup_size(256)
fn reduce_axis(
    @builtin(local_invocation_index) t: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let w = wg.x + wg.y * nwg.x;
    let chunk = w % p.nchunks;
    let group = w / p.nchunks;
    let opw = 256u / p.tpo;
    var oi: u32;
    var ri: u32;
    if p.col != 0u {
        oi = t % opw;
        ri = t / opw;
    } else {
        oi = t / p.tpo;
        ri = t % p.tpo;
    }
    let o = group * opw + oi;
    let n_out = p.outer * p.inner;
    var acc = 0.0;
    if o < n_out {
        let rel = (o / p.inner) * p.red * p.inner + o % p.inner;
        let base = p.in_base + rel;
        let ybase = p.y_base + rel;
        let start = chunk * p.chunk;
        let end = min(start + p.chunk, p.red);
        if p.dot != 0u {
            for (var r = start + ri; r < end; r += p.tpo) {
                acc += x[base + r * p.inner] * y[ybase + r * p.inner];
            }
        } else {
            for (var r = start + ri; r < end; r += p.tpo) {
                acc += x[base + r * p.inner];
            }
        }
    }
    let s0 = oi * p.tpo;
    sm[s0 + ri] = acc;
    workgroupBarrier();
    for (var s = p.tpo >> 1u; s > 0u; s = s >> 1u) {
        if ri < s {
            sm[s0 + ri] += sm[s0 + ri + s];
        }
        workgroupBarrier();
    }
    if ri == 0u && o < n_out {
        if p.nchunks == 1u {
            out[p.out_base + o] = p.scale * sm[s0];
        } else {
            out[p.out_base + chunk * n_out + o] = sm[s0];
        }
    }
}
