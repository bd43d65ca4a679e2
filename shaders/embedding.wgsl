// Embedding lookup and its gradient.
//
// ids are u32 token ids stored in an f32-typed tensor buffer by bit pattern. An id outside
// the table (the host rejects those when it builds the ids tensor) reads as a zero row and
// receives no gradient, so a stray id can never index past the table.

struct Params {
    n: u32,        // tokens
    d: u32,        // embedding width
    v: u32,        // table rows
    buckets: u32,  // backward: threads per column
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> table: array<f32>;
@group(0) @binding(2) var<storage, read> ids: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read> dout: array<f32>;
@group(0) @binding(5) var<storage, read_write> dtable: array<f32>;

fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 256u;
}

// out[n, :] = table[ids[n], :], one thread per output element.
@compute @workgroup_size(256)
fn embedding_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.n * p.d { return; }
    let tok = i / p.d;
    let col = i % p.d;
    let id = ids[tok];
    var x = 0.0;
    if id < p.v { x = table[id * p.d + col]; }
    out[i] = x;
}

// dtable[ids[n], :] += dout[n, :]. Deterministic without float atomics: thread (bucket,
// column) owns the rows id ≡ bucket (mod buckets) of that column and walks the tokens in
// order, so repeated ids accumulate in a fixed order and no two threads touch one element.
@compute @workgroup_size(256)
fn embedding_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.d * p.buckets { return; }
    let col = i % p.d;
    let bucket = i / p.d;
    for (var tok = 0u; tok < p.n; tok++) {
        let id = ids[tok];
        if id < p.v && id % p.buckets == bucket {
            dtable[id * p.d + col] += dout[tok * p.d + col];
        }
    }
}
