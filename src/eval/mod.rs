//! `ratlip eval`: how good a model's images are, measured by a CLIP that did not train it.
//!
//! The recipe (everything that changes a number is here, so anyone gets the same ones):
//! - **Data**: the first `count` images of a `ratlip dataset synth --kind faces` folder that
//!   the model did not train on (a different `--seed`), with their true attributes from
//!   `attributes.jsonl`. Each image's prompt is [`faces::caption`] of its attributes. Any
//!   other captioned folder works too ([`load_examples`]: first caption as the prompt), with
//!   no attribute accuracy.
//! - **Reference statistics** (real datasets not at hand): `--write-stats` saves the real
//!   examples' feature Gaussian; `--reference-stats` takes FD against such a file instead.
//! - **Generation**: image i from `latent::seed_noise(seed, i)` and the model's own CLIP
//!   embedding of prompt i, G in eval mode, at the model's size.
//! - **Features**: the evaluator's projected image embedding (`ln_post(cls) @ proj`) of each
//!   image, preprocessed as `ratlip train-clip` shows images to its CLIP without the
//!   randomness (short side to S·76/64, triangle filter, centre S×S crop, CLIP's mean/std),
//!   for real and generated images alike.
//! - **FD**: Fréchet distance of Gaussians fitted to the real and generated features (f64,
//!   covariance with n − 1). Reported beside it: FD of the real set's two halves against each
//!   other ("real vs real": the floor this sample size allows).
//! - **CLIP score**: mean of 100 · max(cos(image, prompt), 0) under the evaluator.
//! - **R-precision**: prompt i against 99 prompts of other images (drawn with `seed`, distinct
//!   texts); a hit when prompt i has the highest cosine. Chance is 1%.
//! - **Attribute accuracy**: per attribute the prompt states, (a) zero-shot by the evaluator
//!   (`ratlip clip eval`'s prompt per class, highest cosine wins) and (b) by detectors that read
//!   the renderer's palette off the pixels ([`faces::detect`]). Real images get the same
//!   measures, as the ceiling.
//! - **Variety over seeds**: the first 16 prompts, 8 images each from their own noise stream
//!   ([`generate_variety`]); the mean |Δ| of every pair of one prompt's images (8-bit pixels
//!   read as [-1, 1]) and the mean 1 − cos of their evaluator embeddings. FD does not see a G
//!   that ignores its noise if its one image per prompt is good; this does. For scale: two
//!   real faces with every attribute equal (what these prompts state) differ by about 0.10,
//!   two at random by 0.42 (`tools/measure/real_pairs.py` on the training set).
//! - **Asked for, then not** (faces only): whether a smile and glasses appear because the
//!   prompt says so, on pairs of prompts that differ only there and one noise: scored by a
//!   judge CLIP (`--judge`, default the evaluator; the renderer's exact twins are its ceiling)
//!   and by the pixels, against the change the renderer makes ([`contrast`]).

pub mod contrast;
pub mod faces;
pub mod frechet;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::clip::model::Clip;
use crate::data::synth::FaceAttrs;
use crate::error::{Error, Result};
use crate::images::{self, Rgb8};
use crate::latent::seed_noise;
use crate::model::Model;
use crate::rng::Rng;
use crate::tensor::Tensor;
use crate::train::zero_shot::eval_pixels_rgb;

use frechet::{frechet_distance, Gaussian};

pub struct Options {
    pub count: usize,
    pub seed: u64,
    pub batch: usize,
    /// R-precision candidates per image, the true prompt included (AttnGAN's 100).
    pub r_candidates: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options { count: 500, seed: 0, batch: 16, r_candidates: 100 }
    }
}

/// The same measures for one set of images (generated, or the real ones as the ceiling).
#[derive(Debug, Clone, Serialize)]
pub struct Measures {
    pub clip_score: f64,
    pub r_precision: f64,
    /// attribute → accuracy of the evaluator's zero-shot reading.
    pub zero_shot: BTreeMap<String, f64>,
    /// attribute → accuracy of the renderer-aware detectors.
    pub detected: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub model: String,
    pub evaluator: String,
    pub data: String,
    pub count: usize,
    pub seed: u64,
    /// R-precision candidates per image, the true prompt included (fewer than asked when
    /// the set has fewer distinct prompts); chance is 1 / this.
    pub r_candidates: usize,
    pub fd: f64,
    /// The statistics file FD was taken against, when not the real examples.
    pub reference_stats: Option<String>,
    pub fd_real_halves: f64,
    pub generated: Measures,
    pub real: Measures,
    /// attribute → chance accuracy (1 / classes).
    pub chance: BTreeMap<String, f64>,
    /// How much the noise changes the generated image of one prompt.
    pub variety: Variety,
    /// The CLIP that scored [`Report::contrast`].
    pub judge: String,
    /// Per attribute: do G's images follow a prompt that asks for it and one that does not?
    pub contrast: Vec<contrast::Contrast>,
    pub seconds: f64,
}

/// One evaluated example: its attributes, prompt and real image.
pub struct Example {
    /// The true attributes (synthetic faces); None for other captioned folders.
    pub attrs: Option<FaceAttrs>,
    pub prompt: String,
    pub real: Rgb8,
}

/// The first `count` lines of a synth faces folder's attributes.jsonl: each image's file
/// (relative to the folder) and attributes.
pub(crate) fn face_rows(dir: &Path, count: usize) -> Result<Vec<(String, FaceAttrs)>> {
    let path = dir.join("attributes.jsonl");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::Other(format!("{}: {e} (a `ratlip dataset synth --kind faces` folder is needed)", path.display())))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate().take(count) {
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| Error::Other(format!("{} line {}: {e}", path.display(), n + 1)))?;
        if v["kind"] != "faces" {
            return Err(Error::Other(format!("{}: a faces dataset is needed; line {} is {}", path.display(), n + 1, v["kind"])));
        }
        let attrs = face_attrs(&v).ok_or_else(|| Error::Other(format!("{} line {}: missing or unknown attribute", path.display(), n + 1)))?;
        out.push((v["file"].as_str().unwrap_or_default().to_string(), attrs));
    }
    Ok(out)
}

/// The first `count` faces of a synth folder (its attributes.jsonl and images).
pub fn load_faces(dir: &Path, count: usize) -> Result<Vec<Example>> {
    let mut out = Vec::new();
    for (file, attrs) in face_rows(dir, count)? {
        let file = dir.join(file);
        let img = image::open(&file).map_err(|e| Error::Other(format!("cannot read {}: {e}", file.display())))?.to_rgb8();
        let real = Rgb8 { width: img.width() as usize, height: img.height() as usize, data: img.into_raw() };
        out.push(Example { prompt: faces::caption(&attrs), attrs: Some(attrs), real });
    }
    if out.len() < 4 {
        return Err(Error::Other(format!("{}: {} faces; the evaluation needs at least 4", dir.display(), out.len())));
    }
    Ok(out)
}

/// The examples of `dir`: a synthetic faces folder (attributes.jsonl of kind faces) gives
/// [`load_faces`]; any other captioned folder `ratlip train` reads (image + .txt pairs,
/// AttnGAN/CUB) gives its first `count` images, each prompted with its first caption, with no
/// attributes to score (the whole image; CUB's box crop is not applied).
pub fn load_examples(dir: &Path, count: usize) -> Result<Vec<Example>> {
    let attrs = dir.join("attributes.jsonl");
    let faces = std::fs::read_to_string(&attrs).ok().and_then(|t| t.lines().next().map(|l| l.contains("\"kind\":\"faces\""))).unwrap_or(false);
    if faces {
        return load_faces(dir, count);
    }
    let data = crate::train::data::Dataset::open(dir)?;
    let mut out = Vec::new();
    for item in data.items.iter().take(count) {
        let img = image::open(&item.image).map_err(|e| Error::Other(format!("cannot read {}: {e}", item.image.display())))?.to_rgb8();
        let real = Rgb8 { width: img.width() as usize, height: img.height() as usize, data: img.into_raw() };
        out.push(Example { attrs: None, prompt: item.captions[0].clone(), real });
    }
    if out.len() < 4 {
        return Err(Error::Other(format!("{}: {} captioned images; the evaluation needs at least 4", dir.display(), out.len())));
    }
    Ok(out)
}

/// Reference statistics: the Gaussian of an evaluator's features over a (real) image set,
/// saved so FD can be taken against a dataset that is not at hand (`--reference-stats`).
pub fn save_stats(path: &Path, g: &Gaussian, meta: &[(&str, String)]) -> Result<()> {
    let d = g.dim();
    let mut t = BTreeMap::new();
    t.insert("mean".to_string(), crate::weights::HostTensor::new(vec![d], g.mean.iter().map(|&x| x as f32).collect()));
    t.insert("cov".to_string(), crate::weights::HostTensor::new(vec![d, d], g.cov.iter().map(|&x| x as f32).collect()));
    let mut m: std::collections::HashMap<String, String> = meta.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    m.insert("format".into(), "ratlip-eval-stats".into());
    m.insert("count".into(), g.n.to_string());
    crate::weights::save_safetensors(path, &t, &m)
}

/// Reads [`save_stats`]' file: the Gaussian and the header (evaluator, data, count).
pub fn load_stats(path: &Path) -> Result<(Gaussian, std::collections::HashMap<String, String>)> {
    let mut w = crate::weights::WeightFile::load(path)?;
    if w.metadata.get("format").map(String::as_str) != Some("ratlip-eval-stats") {
        return Err(Error::Other(format!("{}: not a ratlip eval statistics file (write one with `ratlip eval ... --write-stats FILE`)", path.display())));
    }
    let mean = w.take_any("mean").ok_or_else(|| Error::Other(format!("{}: no tensor \"mean\"", path.display())))?;
    let d = mean.data.len();
    let cov = w.take("cov", &[d, d])?;
    let n = w.metadata.get("count").and_then(|c| c.parse().ok()).unwrap_or(0);
    let g = Gaussian { n, mean: mean.data.iter().map(|&x| x as f64).collect(), cov: cov.data.iter().map(|&x| x as f64).collect() };
    Ok((g, w.metadata.clone()))
}

/// Attribute values are interned against the renderer's own names, so a JSON from another
/// generator version with unknown values is an error, not a silent miss.
fn face_attrs(v: &serde_json::Value) -> Option<FaceAttrs> {
    fn pick(v: &serde_json::Value, key: &str, allowed: &[&'static str]) -> Option<&'static str> {
        let s = v.get(key)?.as_str()?;
        allowed.iter().find(|a| **a == s).copied()
    }
    let names = |t: &[(&'static str, [u8; 3])]| t.iter().map(|c| c.0).collect::<Vec<_>>();
    Some(FaceAttrs {
        gender: pick(v, "gender", &["man", "woman"])?,
        age: pick(v, "age", &["young", "old"])?,
        expression: pick(v, "expression", &["smiling", "sad"])?,
        hair_color: pick(v, "hair_color", &names(&crate::data::synth::HAIR))?,
        hair_style: pick(v, "hair_style", &["full", "receding", "bald"])?,
        glasses: v.get("glasses")?.as_bool()?,
        beard: v.get("beard")?.as_bool()?,
        skin: pick(v, "skin", &names(&crate::data::synth::SKINS))?,
        background: pick(v, "background", &names(&crate::data::synth::BACKGROUNDS))?,
    })
}

/// Projected image embeddings, each image preprocessed as `ratlip train-clip` shows images
/// to the CLIP it trains (`zero_shot::eval_pixels_rgb`).
pub fn embed_images(clip: &Clip, imgs: &[Rgb8]) -> Result<Vec<Vec<f32>>> {
    let size = clip.config.vision.image_size;
    let mut px = Vec::with_capacity(imgs.len() * 3 * size * size);
    for im in imgs {
        let rgb = image::RgbImage::from_raw(im.width as u32, im.height as u32, im.data.clone())
            .ok_or_else(|| Error::Other("image buffer of the wrong size".into()))?;
        px.extend(eval_pixels_rgb(&rgb, size));
    }
    clip.embed_pixels(&px)
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let n = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (n(a) * n(b)).max(1e-12)
}

/// G's images for the examples' prompts, image i from seed_noise(seed, i).
pub fn generate(model: &Model, examples: &[Example], opts: &Options, progress: &dyn Fn(usize, usize)) -> Result<Vec<Rgb8>> {
    let prompts: Vec<String> = examples.iter().map(|e| e.prompt.clone()).collect();
    draw(model, &prompts, &|i| seed_noise(opts.seed, i as u64, model.config.z_dim), opts.batch, progress)
}

/// G's image i for prompts[i] and noise(i), `batch` at a time (eval mode).
fn draw(model: &Model, prompts: &[String], noise: &dyn Fn(usize) -> Vec<f32>, batch: usize, progress: &dyn Fn(usize, usize)) -> Result<Vec<Rgb8>> {
    let c = &model.config;
    let sent = model.clip.embed_texts(prompts)?;
    let gpu = model.params.gpu();
    let mut out = Vec::with_capacity(prompts.len());
    for start in (0..prompts.len()).step_by(batch.max(1)) {
        let n = batch.max(1).min(prompts.len() - start);
        let z: Vec<f32> = (start..start + n).flat_map(noise).collect();
        let s: Vec<f32> = sent[start..start + n].iter().flatten().copied().collect();
        let img = model.generate(&Tensor::from_slice(gpu, &[n, c.z_dim], &z)?, &Tensor::from_slice(gpu, &[n, c.cond_dim], &s)?)?;
        out.extend(images::from_chw(&img.to_vec()?, img.shape())?);
        progress(start + n, prompts.len());
    }
    Ok(out)
}

/// Prompts (the examples' first) and seeds per prompt of the variety measure.
pub const VARIETY_PROMPTS: usize = 16;
pub const VARIETY_SEEDS: usize = 8;
/// The variety images' noise stream, apart from the main images' (seed ^ this).
const VARIETY_STREAM: u64 = 0x5641_5249_4554_5900;

/// How much the noise changes the image of one prompt.
#[derive(Debug, Clone, Serialize)]
pub struct Variety {
    pub prompts: usize,
    pub seeds: usize,
    /// mean |a − b| of two seeds' images of one prompt (pixels in [-1, 1]), over every pair.
    pub pixel_l1: f64,
    /// mean 1 − cos of the evaluator's embeddings of the same pairs.
    pub feature_distance: f64,
}

/// The variety images: for each of the first VARIETY_PROMPTS examples, VARIETY_SEEDS images,
/// image k of prompt p from seed_noise(seed ^ VARIETY_STREAM, p · VARIETY_SEEDS + k).
pub fn generate_variety(model: &Model, examples: &[Example], opts: &Options) -> Result<Vec<Vec<Rgb8>>> {
    let p = examples.len().min(VARIETY_PROMPTS);
    let prompts: Vec<String> = examples[..p].iter().flat_map(|e| std::iter::repeat(e.prompt.clone()).take(VARIETY_SEEDS)).collect();
    let imgs = draw(model, &prompts, &|i| seed_noise(opts.seed ^ VARIETY_STREAM, i as u64, model.config.z_dim), opts.batch, &|_, _| {})?;
    Ok(imgs.chunks(VARIETY_SEEDS).map(<[Rgb8]>::to_vec).collect())
}

/// [`Variety`] of groups of images (one group per prompt, one image per seed).
pub fn variety(evaluator: &Clip, groups: &[Vec<Rgb8>]) -> Result<Variety> {
    let (mut l1, mut dist, mut pairs) = (0.0, 0.0, 0usize);
    for g in groups {
        let feats = embed_images(evaluator, g)?;
        for a in 0..g.len() {
            for b in a + 1..g.len() {
                if g[a].data.len() != g[b].data.len() {
                    return Err(Error::shape("variety", format!("images of {} and {} values in one group", g[a].data.len(), g[b].data.len())));
                }
                let sum: u64 = g[a].data.iter().zip(&g[b].data).map(|(&x, &y)| x.abs_diff(y) as u64).sum();
                // Bytes 0..255 stand for [-1, 1]: one step is 2/255.
                l1 += sum as f64 * (2.0 / 255.0) / g[a].data.len().max(1) as f64;
                dist += 1.0 - cosine(&feats[a], &feats[b]);
                pairs += 1;
            }
        }
    }
    let n = pairs.max(1) as f64;
    Ok(Variety { prompts: groups.len(), seeds: groups.first().map_or(0, Vec::len), pixel_l1: l1 / n, feature_distance: dist / n })
}

/// The measures of one image set against the examples' prompts and attributes.
pub fn measure(evaluator: &Clip, examples: &[Example], imgs: &[Rgb8], feats: &[Vec<f32>], prompt_emb: &[Vec<f32>], opts: &Options) -> Result<Measures> {
    let n = examples.len();
    let clip_score = (0..n).map(|i| 100.0 * cosine(&feats[i], &prompt_emb[i]).max(0.0)).sum::<f64>() / n as f64;

    // R-precision: distinct prompt texts only, so a duplicate of the true prompt is no rival.
    let mut rng = Rng::new(opts.seed ^ 0x5250_5245_4349_5349);
    let mut hits = 0usize;
    for i in 0..n {
        let mut pool: Vec<usize> = (0..n).filter(|&j| examples[j].prompt != examples[i].prompt).collect();
        let mut picked = Vec::new();
        while picked.len() + 1 < opts.r_candidates && !pool.is_empty() {
            let k = rng.below(pool.len());
            picked.push(pool.swap_remove(k));
        }
        let own = cosine(&feats[i], &prompt_emb[i]);
        hits += picked.iter().all(|&j| cosine(&feats[i], &prompt_emb[j]) < own) as usize;
    }

    let mut zero_shot = BTreeMap::new();
    let mut detected = BTreeMap::new();
    let found: Vec<faces::Detected> = imgs.iter().map(|im| faces::detect(&im.data, im.width)).collect();
    for attr in faces::attributes() {
        let class_emb = evaluator.embed_texts(&attr.prompts)?;
        let (mut right, mut total, mut det_right) = (0usize, 0usize, 0usize);
        for i in 0..n {
            let Some(truth) = examples[i].attrs.as_ref().and_then(|a| faces::truth(a, attr.name)) else { continue };
            total += 1;
            let best = (0..attr.classes.len()).max_by(|&a, &b| cosine(&feats[i], &class_emb[a]).total_cmp(&cosine(&feats[i], &class_emb[b]))).unwrap_or(0);
            right += (attr.classes[best] == truth) as usize;
            det_right += (found[i].get(attr.name) == Some(truth)) as usize;
        }
        if total > 0 {
            zero_shot.insert(attr.name.to_string(), right as f64 / total as f64);
            if faces::DETECTED.contains(&attr.name) {
                detected.insert(attr.name.to_string(), det_right as f64 / total as f64);
            }
        }
    }
    Ok(Measures { clip_score, r_precision: hits as f64 / n as f64, zero_shot, detected })
}

/// What [`evaluate`] measures.
pub struct Scores {
    /// FD of the generated images against the reference: the real examples' features, or
    /// the reference statistics when given.
    pub fd: f64,
    /// FD of the real examples' two halves: the floor this sample size allows.
    pub fd_real_halves: f64,
    /// The Gaussian of the real examples' features (what `--write-stats` saves).
    pub real_stats: Gaussian,
    pub generated: Measures,
    pub real: Measures,
}

/// The whole evaluation; `generated` are the model's images for `examples` (from
/// [`generate`]); `reference`: FD against these statistics instead of the real examples'.
pub fn evaluate(evaluator: &Clip, examples: &[Example], generated: &[Rgb8], reference: Option<&Gaussian>, opts: &Options) -> Result<Scores> {
    let reals: Vec<Rgb8> = examples.iter().map(|e| e.real.clone()).collect();
    let real_feats = embed_images(evaluator, &reals)?;
    let fake_feats = embed_images(evaluator, generated)?;
    let real_stats = Gaussian::fit(&real_feats)?;
    let fd = frechet_distance(reference.unwrap_or(&real_stats), &Gaussian::fit(&fake_feats)?)?;
    let half = real_feats.len() / 2;
    let fd_real_halves = frechet_distance(&Gaussian::fit(&real_feats[..half])?, &Gaussian::fit(&real_feats[half..2 * half])?)?;
    let prompts: Vec<String> = examples.iter().map(|e| e.prompt.clone()).collect();
    let prompt_emb = evaluator.embed_texts(&prompts)?;
    let generated = measure(evaluator, examples, generated, &fake_feats, &prompt_emb, opts)?;
    let real = measure(evaluator, examples, &reals, &real_feats, &prompt_emb, opts)?;
    Ok(Scores { fd, fd_real_halves, real_stats, generated, real })
}

/// Candidates per image R-precision ranks: the true prompt and up to `r_candidates − 1`
/// others with different text.
pub fn r_candidates(examples: &[Example], opts: &Options) -> usize {
    let distinct: std::collections::BTreeSet<&str> = examples.iter().map(|e| e.prompt.as_str()).collect();
    opts.r_candidates.min(distinct.len())
}

/// attribute → 1 / number of classes.
pub fn chance() -> BTreeMap<String, f64> {
    faces::attributes().into_iter().map(|a| (a.name.to_string(), 1.0 / a.classes.len() as f64)).collect()
}

impl Report {
    /// The markdown report: the table, the recipe's parameters, and the files beside it.
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "# ratlip eval\n\nmodel `{}` · evaluator `{}` · data `{}` · {} images · seed {} · {:.0} s\n\n",
            self.model, self.evaluator, self.data, self.count, self.seed, self.seconds
        );
        s += "| measure | generated | real images (ceiling) |\n|---|---|---|\n";
        let against = self.reference_stats.as_ref().map_or(String::new(), |f| format!(", against `{f}`"));
        s += &format!("| FD (evaluator embedding{against}) ↓ | {:.4} | {:.4} (real half vs half) |\n", self.fd, self.fd_real_halves);
        s += &format!("| CLIP score ↑ | {:.2} | {:.2} |\n", self.generated.clip_score, self.real.clip_score);
        s += &format!("| R-precision (1 of {}) ↑ | {:.3} | {:.3} |\n", self.r_candidates, self.generated.r_precision, self.real.r_precision);
        for (attr, acc) in &self.generated.zero_shot {
            s += &format!("| {attr}, zero-shot (chance {:.2}) | {acc:.3} | {:.3} |\n", self.chance.get(attr).copied().unwrap_or(0.0), self.real.zero_shot.get(attr).copied().unwrap_or(f64::NAN));
        }
        for (attr, acc) in &self.generated.detected {
            s += &format!("| {attr}, detector (chance {:.2}) | {acc:.3} | {:.3} |\n", self.chance.get(attr).copied().unwrap_or(0.0), self.real.detected.get(attr).copied().unwrap_or(f64::NAN));
        }
        let v = &self.variety;
        s += &format!(
            "\nVariety over seeds ({} prompts × {} seeds, every pair of one prompt's images): mean |Δpixel| {:.4} (pixels in [-1, 1]), evaluator 1 − cos {:.4}.\n",
            v.prompts, v.seeds, v.pixel_l1, v.feature_distance
        );
        if !self.contrast.is_empty() {
            s += &format!("\nAsked for, then not (judge `{}`; pairs of prompts that differ only there, the same noise; chance 0.5):\n\n", self.judge);
            s += "| attribute | pairs | judge: generated | judge: real twins (ceiling) | pixels: generated follows | pixels: share of the change drawn |\n|---|---|---|---|---|---|\n";
            for c in &self.contrast {
                s += &format!("| {} | {} | {:.3} | {:.3} | {:.3} | {:.3} |\n", c.attribute, c.pairs, c.generated, c.real, c.pixel_follows, c.pixel_share);
            }
        }
        s += "\nRecipe: `src/eval/mod.rs` (module docs). Samples: `samples.png` (generated, first 32), `real.png` (the same prompts' real images).\n";
        s
    }
}

/// Writes report.json, report.md, samples.png and real.png into `dir` (atomically each).
pub fn write_report(dir: &Path, report: &Report, examples: &[Example], generated: &[Rgb8]) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Other(format!("{}: {e}", dir.display())))?;
    let json = serde_json::to_string_pretty(report).map_err(|e| Error::Other(e.to_string()))?;
    let paths: Vec<PathBuf> = ["report.json", "report.md", "samples.png", "real.png"].iter().map(|f| dir.join(f)).collect();
    crate::weights::write_atomic(&paths[0], json.as_bytes())?;
    crate::weights::write_atomic(&paths[1], report.markdown().as_bytes())?;
    let k = generated.len().min(32);
    let prompts: String = examples[..k].iter().map(|e| e.prompt.as_str()).collect::<Vec<_>>().join("\n");
    let meta = [("model", report.model.clone()), ("seed", report.seed.to_string()), ("prompts", prompts)];
    images::save_png(&paths[2], &images::grid(&generated[..k], 8, 2)?, &meta)?;
    let reals: Vec<Rgb8> = examples[..k].iter().map(|e| e.real.clone()).collect();
    images::save_png(&paths[3], &images::grid(&reals, 8, 2)?, &meta[2..])?;
    Ok(paths)
}
