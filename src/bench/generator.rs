//! The generator's cost, counted from the config (multiply–adds × 2), so benchmarks can
//! report GFLOP/s. MODEL.md §6 quotes ≈ 64 GFLOP per image at ngf 64, S 224.

use crate::model::config::{Arch, ModelConfig};

fn conv(cin: usize, cout: usize, k: usize, hw: usize) -> f64 {
    2.0 * (cin * cout * k * k * hw * hw) as f64
}

fn linear(inp: usize, out: usize) -> f64 {
    2.0 * (inp * out) as f64
}

/// One ViT block on n tokens of width w: q, k, v, out projections, the MLP, and attention's
/// two n×n products.
fn vit_block(n: usize, w: usize) -> f64 {
    let n = n as f64;
    let w = w as f64;
    2.0 * n * (4.0 * w * w + 8.0 * w * w) + 4.0 * n * n * w
}

pub fn generator_gflop(c: &ModelConfig) -> f64 {
    let cond = c.cond_width();
    let g = c.code_size();
    let w = c.clip_width();
    let mut f = linear(c.z_dim, c.code_ch * g * g);
    let affine = |ch: usize, inp: usize| 2.0 * (linear(inp, ch) + linear(ch, ch));
    let bridge_in = if c.arch == Arch::Galip { cond } else { c.lstm_hidden };
    for _ in 0..c.bridge_blocks {
        f += conv(c.code_ch, c.mid_ch, 3, g) + conv(c.mid_ch, c.code_ch, 3, g);
        f += 2.0 * (affine(c.mid_ch, bridge_in) + affine(c.code_ch, bridge_in));
    }
    f += conv(c.code_ch, w, 5, g) + conv(w, 8 * c.ngf, 5, g) + linear(cond, w * c.prompts);
    let tokens = g * g + 1;
    for i in 0..c.clip.vision.layers {
        f += vit_block(if (1..=c.prompts).contains(&i) { tokens + 1 } else { tokens }, w);
    }
    for (i, (cin, cout)) in c.image_channels().into_iter().enumerate() {
        let s = c.image_block_size(i);
        f += conv(cin, cout, 3, s) + conv(cout, cout, 3, s);
        if cin != cout {
            f += conv(cin, cout, 1, s);
        }
        f += 2.0 * (affine(cin, cond) + affine(cout, cond));
    }
    f += conv(c.ngf, 3, 3, c.image_size);
    f / 1e9
}
