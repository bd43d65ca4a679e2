//! `ratlip interpolate` and `ratlip compare`: walking the latent space and holding the noise
//! fixed while the prompt changes, the two ways to see what G learnt.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Result};
use ratlip::images::{self, Rgb8};
use ratlip::latent::{lerp, seed_noise, slerp};
use ratlip::weights::HostTensor;
use ratlip::Gpu;

use super::font;
use super::model::{embed_prompts, open, render, resolve_model, save_raw, software};


#[derive(clap::Args)]
pub struct InterpolateArgs {
    /// Model file (default: ./ratlip.safetensors or assets/default.safetensors).
    #[arg(long)]
    model: Option<PathBuf>,
    /// One prompt (with --seeds A,B), or two prompts (with --seed) to interpolate their CLIP
    /// sentence embeddings linearly at fixed noise.
    #[arg(long = "prompt", value_name = "PROMPT")]
    prompts: Vec<String>,
    /// The two seeds whose noises (each seed's image 0 in `ratlip generate`) are the endpoints;
    /// the path between them is spherical (slerp).
    #[arg(long, value_delimiter = ',', value_name = "A,B")]
    seeds: Vec<u64>,
    /// Seed of the fixed noise when interpolating two prompts (default 0).
    #[arg(long)]
    seed: Option<u64>,
    /// Images along the path, both endpoints included.
    #[arg(long, default_value_t = 8)]
    steps: usize,
    /// Images per GPU pass.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// The path as one strip PNG; default ratlip-interpolate.png unless --anim or
    /// --save-tensor is given.
    #[arg(short, long)]
    out: Option<PathBuf>,
    /// The path as an animated PNG, looping there and back.
    #[arg(long, value_name = "OUT.png")]
    anim: Option<PathBuf>,
    /// Also write the raw float images [steps, 3, S, S] (+ noise, sent_emb) as safetensors.
    #[arg(long)]
    save_tensor: Option<PathBuf>,
    /// Enlarge every image K times, each pixel a K×K block (the model's pixels, easier to see).
    #[arg(long, default_value_t = 1)]
    zoom: usize,
}

/// What an interpolation walks between.
enum Walk {
    Seeds(u64, u64),
    Prompts(u64),
}

impl InterpolateArgs {
    /// Everything that can be wrong with the arguments, before a model is loaded or a file
    /// written.
    fn check(&self) -> Result<Walk> {
        if self.steps < 2 {
            bail!("--steps is {}; it must be at least 2 (the two endpoints)", self.steps);
        }
        if self.out.is_some() && self.out == self.anim {
            bail!("-o and --anim name the same file");
        }
        match (self.prompts.len(), self.seeds.as_slice(), self.seed) {
            (0, ..) => bail!("give a prompt: --prompt P --seeds A,B, or --prompt P1 --prompt P2 [--seed N]"),
            (1, [a, b], None) => Ok(Walk::Seeds(*a, *b)),
            (1, _, Some(_)) => bail!("one prompt interpolates between two noises: give --seeds A,B, not --seed"),
            (1, s, None) => bail!("--seeds wants exactly two seeds A,B; got {}", s.len()),
            (2, [], seed) => Ok(Walk::Prompts(seed.unwrap_or(0))),
            (2, ..) => bail!("two prompts interpolate at one fixed noise: give --seed N, not --seeds"),
            (n, ..) => bail!("interpolate takes one or two prompts; got {n} (see `ratlip compare` for more)"),
        }
    }
}

pub fn interpolate(gpu: &Gpu, a: &InterpolateArgs) -> Result<()> {
    let path = a.check()?;
    let model = resolve_model(a.model.clone())?;
    let m = open(gpu, &model)?;
    let c = &m.config;
    let n = a.steps;
    let ts: Vec<f64> = (0..n).map(|i| i as f64 / (n - 1) as f64).collect();
    let embs = embed_prompts(&m, &a.prompts)?;
    let (z, sent, how, seeds): (Vec<f32>, Vec<f32>, &str, String) = match path {
        Walk::Seeds(sa, sb) => {
            let (za, zb) = (seed_noise(sa, 0, c.z_dim), seed_noise(sb, 0, c.z_dim));
            let z = ts.iter().flat_map(|&t| slerp(&za, &zb, t)).collect();
            (z, embs[0].repeat(n), "slerp between the seeds' noises", format!("{sa},{sb}"))
        }
        Walk::Prompts(seed) => {
            let z = seed_noise(seed, 0, c.z_dim).repeat(n);
            let sent = ts.iter().flat_map(|&t| lerp(&embs[0], &embs[1], t)).collect();
            (z, sent, "linear between the prompts' sentence embeddings", seed.to_string())
        }
    };
    let started = Instant::now();
    let pixels = render(gpu, &m, &z, &sent, a.batch)?;
    let ms = started.elapsed().as_secs_f64() * 1e3 / n as f64;

    let mut meta = vec![("prompt", a.prompts[0].clone())];
    if let Some(p) = a.prompts.get(1) {
        meta.push(("prompt_end", p.clone()));
    }
    meta.extend([
        (if a.prompts.len() == 1 { "seeds" } else { "seed" }, seeds),
        ("steps", n.to_string()),
        ("interpolation", how.to_string()),
        ("model", model.display().to_string()),
        ("arch", c.arch.name().to_string()),
    ]);
    if let Some(p) = &a.save_tensor {
        save_raw(p, c, &pixels, &z, HostTensor::new(vec![n, c.cond_dim], sent.clone()), &meta)?;
    }
    meta.push(software());
    let s = c.image_size;
    let imgs = images::from_chw_zoomed(&pixels, &[n, 3, s, s], a.zoom)?;
    let out = a.out.clone().or_else(|| (a.anim.is_none() && a.save_tensor.is_none()).then(|| "ratlip-interpolate.png".into()));
    if let Some(out) = out {
        images::save_png(&out, &images::grid(&imgs, n, 2)?, &meta)?;
        println!("wrote {} ({n} images of {s}×{s} in a row, {how}; {ms:.0} ms per image)", out.display());
    }
    if let Some(anim) = &a.anim {
        // There and back again, so the loop has no jump; the endpoints are held longer since
        // they are the images one can reproduce with `ratlip generate`.
        let order: Vec<usize> = (0..n).chain((1..n - 1).rev()).collect();
        let frames: Vec<Rgb8> = order.iter().map(|&i| imgs[i].clone()).collect();
        let delays: Vec<u16> = order.iter().map(|&i| if i == 0 || i == n - 1 { 600 } else { 120 }).collect();
        images::save_apng(anim, &frames, &delays, &meta)?;
        println!("wrote {} (animated PNG, {} frames looping)", anim.display(), frames.len());
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct CompareArgs {
    /// Model file (default: ./ratlip.safetensors or assets/default.safetensors).
    #[arg(long)]
    model: Option<PathBuf>,
    /// A row of the grid; repeat for each prompt to compare.
    #[arg(long = "prompt", value_name = "PROMPT")]
    prompts: Vec<String>,
    /// A column each: every prompt gets the same noise in a column (the seed's image 0 in
    /// `ratlip generate`).
    #[arg(long, value_delimiter = ',', default_value = "1,2,3,4")]
    seeds: Vec<u64>,
    /// Images per GPU pass.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// The labelled grid; default ratlip-compare.png unless --save-tensor is given.
    #[arg(short, long)]
    out: Option<PathBuf>,
    /// Also write the raw float images [prompts × seeds, 3, S, S], row by row (+ noise,
    /// sent_emb), as safetensors.
    #[arg(long)]
    save_tensor: Option<PathBuf>,
    /// Enlarge every image K times, each pixel a K×K block (the model's pixels, easier to see).
    #[arg(long, default_value_t = 1)]
    zoom: usize,
}

pub fn compare(gpu: &Gpu, a: &CompareArgs) -> Result<()> {
    if a.prompts.is_empty() {
        bail!("give the prompts to compare: --prompt \"...\" --prompt \"...\" (one row each)");
    }
    if a.seeds.is_empty() {
        bail!("give at least one seed: --seeds 1,2,3,4 (one column each)");
    }
    let model = resolve_model(a.model.clone())?;
    let m = open(gpu, &model)?;
    let c = &m.config;
    let (rows, cols) = (a.prompts.len(), a.seeds.len());
    let noises: Vec<Vec<f32>> = a.seeds.iter().map(|&s| seed_noise(s, 0, c.z_dim)).collect();
    let embs = embed_prompts(&m, &a.prompts)?;
    let z: Vec<f32> = (0..rows).flat_map(|_| noises.iter().flatten().copied()).collect();
    let sent: Vec<f32> = embs.iter().flat_map(|e| e.repeat(cols)).collect();
    let started = Instant::now();
    let pixels = render(gpu, &m, &z, &sent, a.batch)?;
    let k = rows * cols;
    let ms = started.elapsed().as_secs_f64() * 1e3 / k as f64;

    let seeds = a.seeds.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    let mut meta = vec![
        ("prompt", a.prompts.join("\n")),
        ("seeds", seeds),
        ("layout", format!("{rows} rows (prompts) × {cols} columns (seeds)")),
        ("model", model.display().to_string()),
        ("arch", c.arch.name().to_string()),
    ];
    if let Some(p) = &a.save_tensor {
        save_raw(p, c, &pixels, &z, HostTensor::new(vec![k, c.cond_dim], sent.clone()), &meta)?;
    }
    meta.push(software());
    if let Some(out) = a.out.clone().or_else(|| a.save_tensor.is_none().then(|| "ratlip-compare.png".into())) {
        let s = c.image_size;
        let imgs = images::from_chw_zoomed(&pixels, &[k, 3, s, s], a.zoom)?;
        let grid = labelled_grid(&imgs, &a.prompts, &a.seeds);
        images::save_png(&out, &grid, &meta)?;
        println!("wrote {} ({rows} prompts × {cols} seeds of {s}×{s}; {ms:.0} ms per image)", out.display());
    }
    Ok(())
}

const SCALE: usize = 2;
const GAP: usize = 2;
const PAD: usize = 6;
const INK: [u8; 3] = [40, 40, 40];
/// Prompts wrap at this many characters, so a long one makes its row taller, not the grid
/// wider.
const WRAP: usize = 32;

/// Images row-major (rows = prompts, columns = seeds) with each row's prompt on its left and
/// each column's seed above it.
fn labelled_grid(imgs: &[Rgb8], prompts: &[String], seeds: &[u64]) -> Rgb8 {
    let s = imgs[0].width;
    let line_h = font::CELL_H * SCALE;
    let labels: Vec<Vec<String>> = prompts.iter().map(|p| font::wrap(p, WRAP)).collect();
    let corner = "seed";
    let label_w = labels.iter().flatten().map(|l| font::text_width(l, SCALE)).chain([font::text_width(corner, SCALE)]).max().unwrap_or(0) + 2 * PAD;
    let col_w = seeds.iter().map(|n| font::text_width(&n.to_string(), SCALE)).max().unwrap_or(0).max(s);
    let row_h: Vec<usize> = labels.iter().map(|l| (l.len() * line_h).max(s)).collect();
    let head_h = line_h + 2 * PAD;
    let width = label_w + GAP + seeds.len() * (col_w + GAP);
    let height = head_h + GAP + row_h.iter().map(|h| h + GAP).sum::<usize>();
    let mut out = Rgb8 { width, height, data: vec![255; width * height * 3] };

    font::draw_text(&mut out, PAD, PAD, corner, SCALE, INK);
    for (j, n) in seeds.iter().enumerate() {
        let n = n.to_string();
        let x = label_w + GAP + j * (col_w + GAP) + (col_w - font::text_width(&n, SCALE)) / 2;
        font::draw_text(&mut out, x, PAD, &n, SCALE, INK);
    }
    let mut y = head_h + GAP;
    for (i, lines) in labels.iter().enumerate() {
        let text_y = y + (row_h[i] - lines.len() * line_h) / 2;
        for (l, line) in lines.iter().enumerate() {
            font::draw_text(&mut out, PAD, text_y + l * line_h, line, SCALE, INK);
        }
        for j in 0..seeds.len() {
            let x = label_w + GAP + j * (col_w + GAP) + (col_w - s) / 2;
            images::paste(&mut out, &imgs[i * seeds.len() + j], x, y + (row_h[i] - s) / 2);
        }
        y += row_h[i] + GAP;
    }
    out
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labelled_grid_is_larger_than_the_bare_images_and_keeps_them() {
        let img = |v: u8| Rgb8 { width: 8, height: 8, data: vec![v; 8 * 8 * 3] };
        let imgs = [img(10), img(20), img(30), img(50), img(60), img(70)];
        let prompts = ["He is young, receding hairline".to_string(), "He is old, receding hairline".to_string()];
        let g = labelled_grid(&imgs, &prompts, &[1, 2, 123456]);
        assert!(g.width > 3 * 8 + 4 * GAP + font::text_width("He is young,", SCALE));
        assert!(g.height > 2 * 8 + 3 * GAP + font::CELL_H * SCALE);
        for v in [10u8, 20, 30, 50, 60, 70] {
            let n = g.data.chunks(3).filter(|p| p == &[v, v, v]).count();
            assert_eq!(n, 64, "image of value {v} pasted whole and once");
        }
        assert!(g.data.chunks(3).any(|p| p == INK), "labels drawn");
    }
}
