//! CLIP throughput: prompts/s through the text tower to the sentence embedding, images/s
//! through the image tower to the projected embedding (`ratlip bench clip`). The PyTorch
//! figure for the same model comes from `tools/reference/clip_bench.py`.

use super::time;
use crate::autograd::Tape;
use crate::clip::model::Clip;
use crate::error::Result;
use crate::tensor::Tensor;

pub struct ClipRates {
    pub batch: usize,
    pub prompts_per_s: f64,
    pub images_per_s: f64,
    /// Multiply-adds ×2 per prompt and per image, counted from the config.
    pub gflop_per_prompt: f64,
    pub gflop_per_image: f64,
}

/// GFLOP of one transformer tower over `t` tokens: QKV, out-proj and the 4w MLP (12·w²
/// multiply-adds per token) plus the two attention products (2·t·w), 2 FLOP each.
fn tower_gflop(t: usize, w: usize, layers: usize) -> f64 {
    let macs_per_token = 12.0 * (w * w) as f64 + 2.0 * (t * w) as f64;
    2.0 * macs_per_token * t as f64 * layers as f64 / 1e9
}

pub fn rates(clip: &Clip, batch: usize, reps: usize) -> Result<ClipRates> {
    let c = &clip.config;
    let gpu = &clip.gpu;
    let ids: Vec<Vec<u32>> = (0..batch)
        .map(|b| {
            let mut row: Vec<u32> = (0..c.text.context_length).map(|i| ((b * 131 + i * 17) % 40000 + 1) as u32).collect();
            row[c.text.context_length - 1] = (c.text.vocab_size - 1) as u32;
            row
        })
        .collect();
    let text_ms = time(gpu, reps, || {
        let tape = Tape::new(gpu);
        clip.encode_text(&tape, &ids).map(|_| ())
    })?;
    let s = c.vision.image_size;
    let px: Vec<f32> = (0..batch * 3 * s * s).map(|i| ((i % 255) as f32 / 127.0) - 1.0).collect();
    let px = Tensor::from_slice(gpu, &[batch, 3, s, s], &px)?;
    let image_ms = time(gpu, reps, || {
        let tape = Tape::new(gpu);
        clip.encode_image(&tape, &tape.constant(px.clone()), &[]).map(|_| ())
    })?;
    let tokens = c.vision.grid() * c.vision.grid() + 1;
    let patch = 2.0 * (3 * c.vision.patch_size * c.vision.patch_size * c.vision.width * (tokens - 1)) as f64 / 1e9;
    Ok(ClipRates {
        batch,
        prompts_per_s: batch as f64 / (text_ms / 1e3),
        images_per_s: batch as f64 / (image_ms / 1e3),
        gflop_per_prompt: tower_gflop(c.text.context_length, c.text.width, c.text.layers),
        gflop_per_image: tower_gflop(tokens, c.vision.width, c.vision.layers) + patch,
    })
}
