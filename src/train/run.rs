//! A training run around [`train_step`](super::train_step)'s semantics: a run folder with its
//! config, per-step metrics, fixed-noise sample grids and checkpoints that resume bit-exactly.
//!
//! ```text
//! RUN_DIR/config.json                               the run's full config (model config included)
//! RUN_DIR/metrics.jsonl                             one JSON object per step
//! RUN_DIR/samples/step_NNNNNN.png                   fixed noise × fixed captions, prompts in the PNG
//! RUN_DIR/checkpoints/step_NNNNNN.safetensors       the model file with NetD/NetC (Model::save)
//! RUN_DIR/checkpoints/train_state_NNNNNN.safetensors  both Adam states, step, RNG, data position
//! RUN_DIR/text_cache.safetensors                    sentence embeddings of the captions seen
//! ```
//! A checkpoint is complete once its train_state file exists (written after the model file);
//! resume takes the newest complete one. Everything a step consumes — the batch (a pure
//! function of seed and data position), the noise (one RNG whose state is saved), the cached
//! caption embeddings (saved with every checkpoint) — is restored, so N steps straight and
//! N/2 + resume + N/2 give bit-identical parameters.
//!
//! A step checks every loss term and each gradient norm before the optimiser update that
//! would use it: the run stops naming the step, the term and the first parameter whose
//! gradient went bad, writes nothing more, and the newest checkpoint stays the last good one.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::adam::{Adam, BETAS, EPS, LR_D, LR_G};
use super::checkpoints::{checkpoint_paths, drive, io, keep_newest, Steps};
pub use super::checkpoints::{checkpoint_steps, Outcome};
use super::data::{Dataset, Loader, Position, TextCache};
use super::hard_negatives;
use super::objective::{d_losses, g_losses, generate_fake, grad_norm, Batch, Contrast, DTerms, GTerms, Metrics, Shifts, DIV_TAU, DIV_W, HARD_NEGATIVE_W, MAGP_W, PIXEL_W, SIM_W};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::images;
use crate::model::{Model, ModelConfig, Provenance, NET_C, NET_D, NET_G};
use crate::rng::Rng;
use crate::tensor::Tensor;
use crate::weights::{save_safetensors, write_atomic, WeightFile};

/// A run folder written before `sim_w` was a setting trained with the released weight.
fn default_sim_w() -> f32 {
    SIM_W
}

/// Likewise for MA-GP's weight.
fn default_magp_w() -> f32 {
    MAGP_W
}

/// Runs from before the diversity term have it off; the cap is then never read.
fn default_div_tau() -> f32 {
    DIV_TAU
}

/// Everything that defines a run; written to RUN_DIR/config.json.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunConfig {
    pub data: PathBuf,
    /// The model file training started from, if any (else a fresh init from `seed`).
    pub init: Option<PathBuf>,
    /// The CLIP file that replaced `init`'s CLIP, if any (`ratlip train --model M --clip C`).
    #[serde(default)]
    pub clip: Option<PathBuf>,
    pub model: ModelConfig,
    pub batch: usize,
    /// Total steps of the run (a resumed run continues up to this).
    pub steps: u64,
    pub seed: u64,
    /// Every K steps (0: never; a last one at the end either way).
    pub sample_every: u64,
    pub checkpoint_every: u64,
    /// Checkpoints kept (the newest N).
    pub keep: usize,
    pub lr_g: f32,
    pub lr_d: f32,
    /// Weight of L_G's text–image cosine term (the released `sim_w`, 4).
    #[serde(default = "default_sim_w")]
    pub sim_w: f32,
    /// Weight of L_D's MA-GP term (the released 2).
    #[serde(default = "default_magp_w")]
    pub magp_w: f32,
    /// Weight of L_G's L1 pixel term (0: off, as released; see `objective::g_losses`).
    #[serde(default)]
    pub pixel_w: f32,
    /// Weight of L_G's diversity reward (0: off, as released; see `objective::g_losses`).
    #[serde(default)]
    pub div_w: f32,
    /// The noise-to-image ratio the diversity reward is capped at.
    #[serde(default = "default_div_tau")]
    pub div_tau: f32,
    /// Weight of L_D's hinge on real images with their contrast captions (0: off, as released;
    /// see `objective::d_losses`).
    #[serde(default)]
    pub hard_negative_w: f32,
    /// DiffAugment translation before CLIP: each real and fake image moves by up to this many
    /// pixels a step (0: off, as released; see `objective::Shifts`).
    #[serde(default)]
    pub augment_shift: usize,
    /// Images in the sample grid (fixed noise, fixed captions).
    pub samples: usize,
    /// Decoding threads.
    pub workers: usize,
    #[serde(default)]
    pub ratlip_version: String,
}

impl RunConfig {
    pub fn new(data: PathBuf, model: ModelConfig) -> RunConfig {
        RunConfig {
            data,
            init: None,
            clip: None,
            model,
            batch: 8,
            steps: 1000,
            seed: 0,
            sample_every: 100,
            checkpoint_every: 500,
            keep: 3,
            lr_g: LR_G,
            lr_d: LR_D,
            sim_w: SIM_W,
            magp_w: MAGP_W,
            pixel_w: PIXEL_W,
            div_w: DIV_W,
            div_tau: DIV_TAU,
            hard_negative_w: HARD_NEGATIVE_W,
            augment_shift: 0,
            samples: 8,
            workers: 2,
            ratlip_version: env!("CARGO_PKG_VERSION").into(),
        }
    }

    /// L_G's weights as this run sets them.
    pub fn g_terms(&self) -> GTerms {
        GTerms { sim_w: self.sim_w, pixel_w: self.pixel_w, div_w: self.div_w, div_tau: self.div_tau }
    }

    /// L_D's weights as this run sets them.
    pub fn d_terms(&self) -> DTerms {
        DTerms { magp_w: self.magp_w, hard_negative_w: self.hard_negative_w }
    }

    fn validate(&self) -> Result<()> {
        if self.batch == 0 {
            return Err(Error::Other("--batch must be at least 1".into()));
        }
        if self.keep == 0 {
            return Err(Error::Other("--keep must be at least 1 (resume needs a checkpoint)".into()));
        }
        if !(self.lr_g.is_finite() && self.lr_d.is_finite() && self.lr_g >= 0.0 && self.lr_d >= 0.0) {
            return Err(Error::Other(format!("learning rates must be finite and ≥ 0, got G {} D {}", self.lr_g, self.lr_d)));
        }
        if !(self.sim_w.is_finite() && self.sim_w >= 0.0) {
            return Err(Error::Other(format!("sim_w must be finite and ≥ 0, got {}", self.sim_w)));
        }
        if !(self.magp_w.is_finite() && self.magp_w >= 0.0) {
            return Err(Error::Other(format!("magp_w must be finite and ≥ 0, got {}", self.magp_w)));
        }
        if !(self.pixel_w.is_finite() && self.pixel_w >= 0.0) {
            return Err(Error::Other(format!("pixel_w must be finite and ≥ 0, got {}", self.pixel_w)));
        }
        if !(self.div_w.is_finite() && self.div_w >= 0.0 && self.div_tau.is_finite() && self.div_tau > 0.0) {
            return Err(Error::Other(format!("div_w must be finite and ≥ 0 and div_tau finite and > 0, got {} and {}", self.div_w, self.div_tau)));
        }
        if !(self.hard_negative_w.is_finite() && self.hard_negative_w >= 0.0) {
            return Err(Error::Other(format!("hard_negative_w must be finite and ≥ 0, got {}", self.hard_negative_w)));
        }
        if self.augment_shift >= self.model.image_size {
            return Err(Error::Other(format!("--augment-shift {} must be below the image size {}", self.augment_shift, self.model.image_size)));
        }
        self.model.validate()
    }
}

/// What a checkpoint keeps besides the model file and the Adam tensors.
#[derive(Serialize, Deserialize)]
struct StateMeta {
    step: u64,
    /// The noise RNG's four words, as strings (JSON numbers lose u64 precision).
    rng: Vec<String>,
    position: Position,
    opt_d_steps: BTreeMap<String, u32>,
    opt_g_steps: BTreeMap<String, u32>,
    skipped: BTreeMap<usize, String>,
    wall_s: f64,
}

/// One finished step.
#[derive(Clone, Debug)]
pub struct StepReport {
    pub step: u64,
    pub steps: u64,
    pub metrics: Metrics,
    pub step_s: f64,
    pub images_per_s: f64,
    /// Seconds of training so far, over every session of the run.
    pub wall_s: f64,
    pub epoch: u64,
    pub skipped: usize,
}

pub struct Run {
    pub dir: PathBuf,
    pub config: RunConfig,
    pub model: Model,
    pub opt_d: Adam,
    pub opt_g: Adam,
    pub step: u64,
    pub dataset: Arc<Dataset>,
    rng: Rng,
    loader: Loader,
    cache: TextCache,
    fixed_noise: Vec<f32>,
    fixed_prompts: Vec<String>,
    wall_s: f64,
    session_start: Instant,
    last_checkpoint: Option<(u64, PathBuf)>,
    last_sample: Option<u64>,
}

const NOISE_STREAM: u64 = 0x4E01_5E00;
const SAMPLE_STREAM: u64 = 0x5A3B_1E00;
/// Which attribute each caption's contrast flips: a stream of its own per step, so the noise
/// RNG (and a run without hard negatives) is untouched and resume needs no more state.
const CONTRAST_STREAM: u64 = 0xC047_7A57;
const PREFETCH_BATCHES: usize = 4;

impl Run {
    /// A new run in `dir` (which must not hold one) training `model` (with NetD/NetC).
    pub fn create(dir: &Path, mut config: RunConfig, model: Model) -> Result<Run> {
        if dir.join("config.json").exists() {
            return Err(Error::Other(format!("{} already holds a run (config.json exists): continue it with --resume, or choose another --out", dir.display())));
        }
        model.discriminator().map_err(|_| Error::Other("the initial model holds no NetD/NetC: training needs a training checkpoint (`ratlip model new` without --generator-only)".into()))?;
        config.model = model.config.clone();
        config.ratlip_version = env!("CARGO_PKG_VERSION").into();
        config.validate()?;
        let dataset = Arc::new(Dataset::open(&config.data)?);
        if config.hard_negative_w > 0.0 {
            // Refused before anything is written: a run whose term could never engage.
            if !dataset.items.iter().flat_map(|x| &x.captions).any(|c| !hard_negatives::flippable(c).is_empty()) {
                return Err(Error::Other(format!(
                    "--hard-negative-w: no caption in {} names a mood, glasses or a beard the way the synthetic faces' captions do, so no image would get a contrast",
                    config.data.display()
                )));
            }
        }
        for sub in ["checkpoints", "samples"] {
            std::fs::create_dir_all(dir.join(sub)).map_err(|e| io(&dir.join(sub), e))?;
        }
        write_atomic(&dir.join("config.json"), (serde_json::to_string_pretty(&config).map_err(|e| Error::Other(e.to_string()))? + "\n").as_bytes())?;
        write_atomic(&dir.join("metrics.jsonl"), b"")?;
        let rng = Rng::new(config.seed ^ NOISE_STREAM);
        Run::assemble(dir, config, dataset, model, rng, Position::default(), 0, BTreeMap::new(), 0.0)
    }

    /// Continues the run in `dir` from its newest complete checkpoint.
    pub fn resume(gpu: &Gpu, dir: &Path) -> Result<Run> {
        let cfg_path = dir.join("config.json");
        let text = std::fs::read_to_string(&cfg_path).map_err(|e| io(&cfg_path, format!("{e} (is this a run folder?)")))?;
        let config: RunConfig = serde_json::from_str(&text).map_err(|e| io(&cfg_path, e))?;
        let step = *checkpoint_steps(dir)
            .last()
            .ok_or_else(|| Error::Other(format!("{}: no complete checkpoint to resume from in checkpoints/", dir.display())))?;
        let (model_path, state_path) = checkpoint_paths(dir, step);
        let model = Model::load(gpu, &model_path)?;
        if model.config != config.model {
            return Err(Error::Other(format!("{}: its model config differs from the run's config.json", model_path.display())));
        }
        let mut w = WeightFile::load(&state_path)?;
        let meta: StateMeta = w
            .metadata
            .get("ratlip_train_state")
            .and_then(|j| serde_json::from_str(j).ok())
            .ok_or_else(|| Error::Other(format!("{}: no readable ratlip_train_state in its header", state_path.display())))?;
        if meta.step != step {
            return Err(Error::Other(format!("{}: says step {}, its name step {step}", state_path.display(), meta.step)));
        }
        let words: Vec<u64> = meta.rng.iter().filter_map(|s| s.parse().ok()).collect();
        let rng: [u64; 4] = words.try_into().map_err(|_| Error::Other(format!("{}: malformed RNG state", state_path.display())))?;
        let dataset = Arc::new(Dataset::open(&config.data)?);
        let mut run = Run::assemble(dir, config, dataset, model, Rng::from_state(rng), meta.position, step, meta.skipped, meta.wall_s)?;
        run.opt_d.load_state(&run.model.params, &mut w, "opt_d.", &meta.opt_d_steps)?;
        run.opt_g.load_state(&run.model.params, &mut w, "opt_g.", &meta.opt_g_steps)?;
        w.finish()?;
        run.last_checkpoint = Some((step, model_path));
        // Lines the interrupted session wrote after this checkpoint are re-done now.
        let mpath = dir.join("metrics.jsonl");
        if let Ok(old) = std::fs::read_to_string(&mpath) {
            let kept: String = old
                .lines()
                .filter(|l| serde_json::from_str::<serde_json::Value>(l).ok().and_then(|v| v["step"].as_u64()).is_some_and(|s| s <= step))
                .map(|l| format!("{l}\n"))
                .collect();
            write_atomic(&mpath, kept.as_bytes())?;
        }
        Ok(run)
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(dir: &Path, config: RunConfig, dataset: Arc<Dataset>, model: Model, rng: Rng, position: Position, step: u64, skipped: BTreeMap<usize, String>, wall_s: f64) -> Result<Run> {
        let mut cache = TextCache::open(&dir.join("text_cache.safetensors"), &model)?;
        let n = dataset.items.len();
        let k = config.samples.clamp(1, n);
        // Captions spread over the dataset, each item's first: the same every run of this data.
        let fixed_prompts: Vec<String> = (0..k).map(|i| dataset.items[i * n / k].captions[0].clone()).collect();
        cache.embed(&model, &fixed_prompts)?;
        let z = model.config.z_dim;
        let fixed_noise = (0..k).flat_map(|i| Rng::stream(config.seed ^ SAMPLE_STREAM, i as u64).normals(z)).collect();
        let mut loader = Loader::new(dataset.clone(), model.config.image_size, config.seed, position, config.workers, PREFETCH_BATCHES * config.batch);
        loader.skipped = skipped;
        Ok(Run {
            dir: dir.to_path_buf(),
            opt_d: Adam::new(&[NET_D, NET_C], BETAS, EPS),
            opt_g: Adam::new(&[NET_G], BETAS, EPS),
            config,
            model,
            step,
            dataset,
            rng,
            loader,
            cache,
            fixed_noise,
            fixed_prompts,
            wall_s,
            session_start: Instant::now(),
            last_checkpoint: None,
            last_sample: None,
        })
    }

    /// Changes the run's total steps (e.g. a resumed run going further) and records it.
    pub fn set_steps(&mut self, steps: u64) -> Result<()> {
        self.config.steps = steps;
        write_atomic(&self.dir.join("config.json"), (serde_json::to_string_pretty(&self.config).map_err(|e| Error::Other(e.to_string()))? + "\n").as_bytes())
    }

    pub fn data_position(&self) -> Position {
        self.loader.position()
    }

    /// Unreadable images met so far: item index → reason.
    pub fn skipped(&self) -> &BTreeMap<usize, String> {
        &self.loader.skipped
    }

    fn wall(&self) -> f64 {
        self.wall_s + self.session_start.elapsed().as_secs_f64()
    }

    /// One step: batch, D step, G step (released order, on the same fake), metrics line.
    pub fn step(&mut self) -> Result<StepReport> {
        let t0 = Instant::now();
        let (b, s, z, cond) = (self.config.batch, self.model.config.image_size, self.model.config.z_dim, self.model.config.cond_dim);
        let samples = self.loader.next_batch(b)?;
        let captions: Vec<String> = samples.iter().map(|x| x.caption.clone()).collect();
        let sent = self.cache.embed(&self.model, &captions)?;
        let pixels: Vec<f32> = samples.iter().flat_map(|x| x.pixels.iter().copied()).collect();
        let noise = self.rng.normals(b * z);
        let gpu = self.model.params.gpu().clone();
        // Drawn after the noise and only when on, so a run without it keeps its noise stream.
        let k = self.config.augment_shift;
        let shifts = if k > 0 {
            let mut draw = || -> Result<Tensor> {
                let v: Vec<f32> = (0..2 * b).map(|_| self.rng.below(2 * k + 1) as f32 - k as f32).collect();
                Tensor::from_slice(&gpu, &[b, 2], &v)
            };
            // Fields are evaluated in order: real's shifts are drawn first.
            Some(Shifts { real: draw()?, fake: draw()? })
        } else {
            None
        };
        let batch = Batch {
            images: Tensor::from_slice(&gpu, &[b, 3, s, s], &pixels)?,
            sent_emb: Tensor::from_slice(&gpu, &[b, cond], &sent)?,
            noise: Tensor::from_slice(&gpu, &[b, z], &noise)?,
            shifts,
            // Drawn last and only when on, so runs without it keep their noise and shifts.
            noise2: if self.config.div_w > 0.0 { Some(Tensor::from_slice(&gpu, &[b, z], &self.rng.normals(b * z))?) } else { None },
            contrast: if self.config.hard_negative_w > 0.0 { self.contrast(&captions)? } else { None },
        };
        let step = self.step + 1;
        let good = self.last_checkpoint.as_ref().map_or("none yet".to_string(), |(_, p)| p.display().to_string());
        let fake = generate_fake(&mut self.model, &batch)?;
        let d = d_losses(&self.model, &batch, &fake, &self.config.d_terms())?;
        check_losses(
            step,
            &[("loss_real", d.loss_real), ("loss_mis", d.loss_mis), ("loss_fake", d.loss_fake), ("loss_contrast", d.loss_contrast.unwrap_or(0.0)), ("magp", d.magp), ("loss_d", d.loss_d)],
            &good,
        )?;
        let grad_norm_d = check_grads(step, "L_D", &d.grads, &good)?;
        self.opt_d.step(&mut self.model.params, &d.grads, self.config.lr_d)?;
        let g = g_losses(&self.model, &batch, fake, &self.config.g_terms())?;
        check_losses(step, &[("loss_g", g.loss_g), ("loss_g_adv", g.loss_adv), ("cos", g.cos), ("pixel", g.pixel), ("diversity", g.diversity.unwrap_or(0.0))], &good)?;
        let grad_norm_g = check_grads(step, "L_G", &g.grads, &good)?;
        self.opt_g.step(&mut self.model.params, &g.grads, self.config.lr_g)?;
        self.step = step;
        let metrics = Metrics::new(&d, &g, grad_norm_d, grad_norm_g);
        let step_s = t0.elapsed().as_secs_f64();
        let report = StepReport {
            step,
            steps: self.config.steps,
            metrics,
            step_s,
            images_per_s: b as f64 / step_s,
            wall_s: self.wall(),
            epoch: self.loader.position().epoch,
            skipped: self.loader.skipped.len(),
        };
        self.log(&report)?;
        Ok(report)
    }

    /// The contrast captions of the batch about to be stepped (which attribute each reverses is
    /// drawn from (seed, that step's number)), embedded; None when no caption names an
    /// attribute a contrast can reverse.
    fn contrast(&mut self, captions: &[String]) -> Result<Option<Contrast>> {
        let mut pick = Rng::stream(self.config.seed ^ CONTRAST_STREAM, self.step + 1);
        let (rows, texts): (Vec<usize>, Vec<String>) = hard_negatives::contrasts(captions.iter().map(String::as_str), &mut pick).into_iter().map(|(row, _, c)| (row, c)).unzip();
        if rows.is_empty() {
            return Ok(None);
        }
        let emb = self.cache.embed(&self.model, &texts)?;
        let sent_emb = Tensor::from_slice(self.model.params.gpu(), &[rows.len(), self.model.config.cond_dim], &emb)?;
        Ok(Some(Contrast { rows, sent_emb }))
    }

    fn log(&self, r: &StepReport) -> Result<()> {
        let m = &r.metrics;
        let mut line = serde_json::json!({
            "step": r.step, "loss_real": m.loss_real, "loss_mis": m.loss_mis, "loss_fake": m.loss_fake, "magp": m.magp,
            "loss_d": m.loss_d, "loss_g": m.loss_g, "loss_g_adv": m.loss_g_adv, "cos": m.cos, "pixel": m.pixel,
            "grad_norm_d": m.grad_norm_d, "grad_norm_g": m.grad_norm_g, "magp_step": m.magp_step,
            "images_per_s": r.images_per_s, "step_s": r.step_s, "wall_s": r.wall_s, "epoch": r.epoch, "skipped_images": r.skipped,
        });
        // Measured only with a second noise, i.e. when the run rewards diversity.
        if let Some(d) = m.diversity {
            line["diversity"] = d.into();
        }
        if let Some(c) = m.loss_contrast {
            line["loss_contrast"] = c.into();
        }
        let path = self.dir.join("metrics.jsonl");
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(|e| io(&path, e))?;
        writeln!(f, "{line}").map_err(|e| io(&path, e))
    }

    /// Writes checkpoint `step` (model file, then the train state that completes it), the
    /// caption cache, and removes all but the newest `keep` checkpoints.
    pub fn checkpoint(&mut self) -> Result<PathBuf> {
        let (model_path, state_path) = checkpoint_paths(&self.dir, self.step);
        self.model.provenance = {
            let mut p = Provenance::new("train");
            p.sources = vec![self.dir.display().to_string()];
            p.detail.insert("step".into(), self.step.to_string());
            p.detail.insert("seed".into(), self.config.seed.to_string());
            p.detail.insert("data".into(), self.config.data.display().to_string());
            p
        };
        self.model.save(&model_path)?;
        self.cache.save()?;
        let (mut tensors, opt_d_steps) = self.opt_d.state_to_host("opt_d.")?;
        let (g_tensors, opt_g_steps) = self.opt_g.state_to_host("opt_g.")?;
        tensors.extend(g_tensors);
        let meta = StateMeta {
            step: self.step,
            rng: self.rng.state().iter().map(u64::to_string).collect(),
            position: self.loader.position(),
            opt_d_steps,
            opt_g_steps,
            skipped: self.loader.skipped.clone(),
            wall_s: self.wall(),
        };
        let mut header = HashMap::new();
        header.insert("ratlip_train_state".to_string(), serde_json::to_string(&meta).map_err(|e| Error::Other(e.to_string()))?);
        header.insert("format".to_string(), "ratlip-train-state".to_string());
        save_safetensors(&state_path, &tensors, &header)?;
        keep_newest(&self.dir, self.config.keep)?;
        self.last_checkpoint = Some((self.step, model_path.clone()));
        Ok(model_path)
    }

    /// The fixed-noise, fixed-caption grid of the model as it is now.
    pub fn sample(&mut self) -> Result<PathBuf> {
        let c = &self.model.config;
        let k = self.fixed_prompts.len();
        let gpu = self.model.params.gpu().clone();
        let sent = self.cache.embed(&self.model, &self.fixed_prompts)?;
        let z = Tensor::from_slice(&gpu, &[k, c.z_dim], &self.fixed_noise)?;
        let st = Tensor::from_slice(&gpu, &[k, c.cond_dim], &sent)?;
        let pixels = self.model.generate(&z, &st)?.to_vec()?;
        let imgs = images::from_chw(&pixels, &[k, 3, c.image_size, c.image_size])?;
        let grid = images::grid(&imgs, (k as f64).sqrt().ceil() as usize, 2)?;
        let path = self.dir.join("samples").join(format!("step_{:06}.png", self.step));
        let prompts = self.fixed_prompts.iter().enumerate().map(|(i, p)| format!("{i}: {p}")).collect::<Vec<_>>().join("\n");
        let text = [
            ("prompt", prompts),
            ("seed", format!("{} (sample i: stream i of seed ^ 0x{SAMPLE_STREAM:x})", self.config.seed)),
            ("step", self.step.to_string()),
            ("arch", c.arch.name().to_string()),
            ("Software", format!("ratlip {}", env!("CARGO_PKG_VERSION"))),
        ];
        images::save_png(&path, &grid, &text)?;
        self.last_sample = Some(self.step);
        Ok(path)
    }

    /// Steps until `config.steps` (or until `stop` is set: then a checkpoint and
    /// `Outcome::Interrupted`), with checkpoints and samples on schedule and at the end.
    pub fn train(&mut self, stop: &AtomicBool, on_step: impl FnMut(&StepReport)) -> Result<Outcome> {
        drive(self, stop, on_step)
    }

    /// The newest checkpoint this session wrote or resumed from.
    pub fn last_checkpoint(&self) -> Option<&Path> {
        self.last_checkpoint.as_ref().map(|c| c.1.as_path())
    }
}

impl Steps for Run {
    type Report = StepReport;
    fn progress(&self) -> (u64, u64) {
        (self.step, self.config.steps)
    }
    fn checkpoint_every(&self) -> u64 {
        self.config.checkpoint_every
    }
    fn checkpointed_at(&self) -> Option<u64> {
        self.last_checkpoint.as_ref().map(|c| c.0)
    }
    fn step(&mut self) -> Result<StepReport> {
        Run::step(self)
    }
    fn checkpoint(&mut self) -> Result<PathBuf> {
        Run::checkpoint(self)
    }
    /// Sample grids every `sample_every` steps, and one of the final model.
    fn after_step(&mut self, last: bool) -> Result<()> {
        let every = self.config.sample_every;
        if (last && self.last_sample != Some(self.step)) || (!last && every > 0 && self.step % every == 0) {
            self.sample()?;
        }
        Ok(())
    }
}

fn check_losses(step: u64, terms: &[(&str, f32)], good: &str) -> Result<()> {
    for (name, v) in terms {
        if !v.is_finite() {
            return Err(Error::Other(format!("step {step}: {name} is {v}; the run stopped without saving this step (last good checkpoint: {good})")));
        }
    }
    Ok(())
}

/// The gradients' global norm; when it is not finite, names the first parameter (in name
/// order) holding a NaN/Inf.
fn check_grads(step: u64, loss: &str, grads: &BTreeMap<String, Tensor>, good: &str) -> Result<f32> {
    let norm = grad_norm(grads)?;
    if norm.is_finite() {
        return Ok(norm);
    }
    let mut first = "(none found: the norm itself overflowed)".to_string();
    for (name, g) in grads {
        if g.to_vec()?.iter().any(|v| !v.is_finite()) {
            first = name.clone();
            break;
        }
    }
    Err(Error::Other(format!(
        "step {step}: the gradient norm of {loss} is {norm}; first bad parameter gradient: {first}; the run stopped without saving this step (last good checkpoint: {good})"
    )))
}
