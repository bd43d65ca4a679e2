// The desktop app's display path: G's output [K, 3, S, S] (tanh, roughly [-1, 1]) written
// straight into an Rgba8Unorm storage texture that egui's renderer samples, so an image goes
// from the generator to the screen without a CPU round trip. Image k lands at tile
// (k % cols, k / cols) of the atlas; a call fills images first..first + count. egui treats texture samples as sRGB-encoded values,
// which is what G's [-1, 1] → [0, 1] mapping already is (the same bytes images::from_chw
// writes to a PNG), so no transfer function is applied here.

struct Params {
    size: u32,
    count: u32,
    cols: u32,
    first: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var dst: texture_storage_2d<rgba8unorm, write>;

@compute @workgroup_size(8, 8, 1)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
    if (g.x >= p.size || g.y >= p.size || g.z >= p.count) {
        return;
    }
    let plane = p.size * p.size;
    let base = g.z * 3u * plane + g.y * p.size + g.x;
    let v = vec3<f32>(src[base], src[base + plane], src[base + 2u * plane]);
    // Rounded like images::from_chw, so the screen shows the bytes a saved PNG holds.
    let rgb = round((clamp(v, vec3<f32>(-1.0), vec3<f32>(1.0)) + 1.0) * 127.5) / 255.0;
    let t = p.first + g.z;
    let tile = vec2<u32>(t % p.cols, t / p.cols) * p.size;
    textureStore(dst, tile + g.xy, vec4<f32>(rgb, 1.0));
}
