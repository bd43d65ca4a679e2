//! Contrastive training of a small in-house CLIP on a captioned image folder (`ratlip
//! train-clip`), and its zero-shot attribute accuracy on held-out synthetic images.
//!
//! Here rather than in `src/clip/` because it stands on training's pieces (the data loader and
//! its augmentation, Adam), which sit above CLIP in the layering.
//!
//! The loss is CLIP's: logits = e^s · norm(img) · norm(txt)ᵀ (B×B, s the learned
//! `logit_scale`, initialised to ln(1/0.07) and clamped to [0, ln 100] after every update as
//! open_clip does), L = (CE(logits, arange) + CE(logitsᵀ, arange)) / 2. Every CLIP tensor and
//! `logit_scale` is trained by Adam (betas 0.9/0.98, eps 1e-6, CLIP's; no weight decay).
//! Data: `ratlip train`'s loader and augmentation (resize, random crop) without the horizontal
//! flip unless asked for (a caption saying "left" would be wrong half the time).
//!
//! ```text
//! RUN_DIR/config.json                                  the run's config (CLIP config included)
//! RUN_DIR/metrics.jsonl                                one JSON object per step
//! RUN_DIR/checkpoints/step_NNNNNN.safetensors          the CLIP (OpenAI names + logit_scale,
//!                                                      clip_config header): `Clip::load` reads it
//! RUN_DIR/checkpoints/train_state_NNNNNN.safetensors   Adam state, step, data position
//! RUN_DIR/zero_shot.json                               held-out zero-shot accuracy (at the end)
//! ```
//! A batch is a pure function of (seed, data position), the only state besides weights and
//! Adam, so N steps straight and N/2 + resume + N/2 give bit-identical weights.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::adam::Adam;
use super::attribute_head::{head_loss, Side, Spans};
use super::checkpoints::{checkpoint_paths, drive, io, keep_newest, Steps};
use super::data::{augment_like, Dataset, Loader, Position};
use super::hard_negatives;
use super::objective::grad_norm;
use super::twins::Twins;
use super::zero_shot::{attribute_labels, AttributeLabels};
use crate::autograd::Tape;
use crate::clip::config::{ClipConfig, TextConfig, VisionConfig};
use crate::clip::model::{Clip, TrainVars, Weights};
use crate::clip::preprocess::{MEAN, STD};
use crate::clip::tokenizer::ClipTokenizer;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::ops::loss::targets_tensor;
use crate::ops::elementwise;
use crate::rng::Rng;
use crate::tensor::Tensor;
use crate::weights::{save_safetensors, write_atomic, HostTensor, WeightFile};

/// CLIP's optimiser settings (Radford et al. 2021, table 19).
pub const BETAS: (f32, f32) = (0.9, 0.98);
pub const EPS: f32 = 1e-6;
pub const LR: f32 = 5e-4;
/// ln(1/0.07): CLIP's initial temperature.
pub const LOGIT_SCALE_INIT: f32 = 2.659_26;
/// ln 100: logits are never scaled by more than 100.
pub const LOGIT_SCALE_MAX: f32 = 2.0 * std::f32::consts::LN_10;
pub const LOGIT_SCALE: &str = "logit_scale";
/// The image tower's tensor names start so (OpenAI's names).
pub const VISION_PREFIX: &str = "visual.";
/// Keeps the hard negatives' draws apart from every other stream of the run's seed.
const NEGATIVES_STREAM: u64 = 0x6e65_6761_7469_7665;

/// The default in-house CLIP: 64 px images in 8 px patches, 4 + 4 layers of width 128, and a
/// 32-token context (the synthetic captions are at most ~25 tokens).
pub fn default_config() -> ClipConfig {
    ClipConfig {
        text: TextConfig { width: 128, layers: 4, heads: 4, context_length: 32, vocab_size: 49408 },
        vision: VisionConfig { width: 128, layers: 4, heads: 4, patch_size: 8, image_size: 64 },
        embed_dim: 128,
        layer_norm_eps: 1e-5,
    }
}

/// Pixels in [-1, 1] (the loader's) → CLIP's normalisation, [B, 3, S, S] in place.
pub fn normalise_pixels(pixels: &mut [f32], size: usize) {
    let plane = size * size;
    for (i, p) in pixels.iter_mut().enumerate() {
        let c = (i / plane) % 3;
        *p = ((*p + 1.0) * 0.5 - MEAN[c]) / STD[c];
    }
}

/// One contrastive forward + backward.
pub struct StepOutput {
    pub loss: f32,
    /// Fraction of images whose own caption has the largest logit in their row, and of
    /// captions whose own image has it in their column.
    pub acc_i2t: f32,
    pub acc_t2i: f32,
    /// Per attribute head: its loss (unweighted), accuracy, and accuracy per attribute the
    /// batch has (`attribute_head::head_loss`).
    pub heads: Vec<HeadReport>,
    /// Gradients by OpenAI name (q/k/v split, see `clip::model`) plus `logit_scale` (and
    /// `attribute_head` with a head).
    pub grads: BTreeMap<String, Tensor>,
}

/// The auxiliary attribute losses of a step (`attribute_head`): W's columns, the labels of
/// the batch's first `labels.len()` images and captions (twins beyond them go unlabelled),
/// and per head its side, W and weight.
pub struct HeadInput<'a> {
    pub spans: &'a Spans,
    pub labels: &'a [Vec<Option<u32>>],
    pub heads: Vec<(Side, &'a Tensor, f32)>,
}

/// One head's figures on one batch.
#[derive(Clone, Debug)]
pub struct HeadReport {
    pub side: Side,
    pub loss: f32,
    pub accuracy: f32,
    pub by_attribute: Vec<(String, f32)>,
}

/// The symmetric contrastive loss of `pixels` [B, 3, S, S] (CLIP-normalised) against the
/// captions `ids` (row i describes image i), with gradients for every CLIP tensor and for
/// `logit_scale` ([1]).
///
/// `negatives` (K ≥ 0 more captions, `hard_negatives`) are texts no image in the batch should
/// match: they widen each image's row to B + K columns (image → text), while each caption's
/// column still ranges over the B images (text → image), as in NegCLIP. K = 0 is CLIP's loss.
/// `head` adds its weight × the attribute head's loss (None: CLIP's loss alone).
pub fn contrastive_grads(clip: &Clip, logit_scale: &Tensor, pixels: &Tensor, ids: &[Vec<u32>], negatives: &[Vec<u32>], head: Option<HeadInput>) -> Result<StepOutput> {
    let b = ids.len();
    if b == 0 || pixels.shape().first() != Some(&b) {
        return Err(Error::shape("clip contrastive loss", format!("{} captions for pixels {:?}", b, pixels.shape())));
    }
    let n = b + negatives.len();
    let gpu = &clip.gpu;
    let tape = Tape::new(gpu);
    let tv = TrainVars::new();
    let w = Weights::Trained(&tv);
    let img = clip.encode_image_with(w, &tape, &tape.constant(pixels.clone()), &[])?.embedding;
    let texts: Vec<Vec<u32>> = ids.iter().chain(negatives).cloned().collect();
    let txt = clip.encode_text_with(w, &tape, &texts)?.sent_emb;
    let scale_var = tape.var(logit_scale.clone());
    let sims = tape.matmul(&tape.l2_normalize(&img)?, &tape.l2_normalize(&txt)?, false, true)?;
    let scale = tape.reshape(&tape.exp(&scale_var)?, &[1, 1])?;
    // [B, B + K]: image i against its caption (column i), the others, then the negatives.
    let logits = tape.mul_b(&sims, &scale)?;
    let targets = targets_tensor(gpu, &(0..b as u32).collect::<Vec<_>>(), n)?;
    let ce_i = tape.mean(&tape.cross_entropy(&logits, &targets)?, &[0], false)?;
    let captions = if negatives.is_empty() { logits.clone() } else { tape.slice(&logits, 1, 0, b)? };
    let ce_t = tape.mean(&tape.cross_entropy(&tape.permute(&captions, &[1, 0])?, &targets)?, &[0], false)?;
    let mut loss = tape.activation(&tape.add(&ce_i, &ce_t)?, elementwise::Activation::Scale(0.5, 0.0))?;
    let loss_value = loss.value().to_vec()?[0];
    let mut reports = Vec::new();
    let mut head_vars = Vec::new();
    if let Some(h) = head {
        let rows = h.labels.len();
        for (side, w, weight) in h.heads {
            let w = tape.var(w.clone());
            let emb = match side {
                Side::Image => &img,
                Side::Text => &txt,
            };
            let labelled = if emb.shape()[0] == rows { emb.clone() } else { tape.slice(emb, 0, 0, rows)? };
            let out = head_loss(&tape, &labelled, &w, h.spans, h.labels)?;
            reports.push(HeadReport { side, loss: out.loss.value().to_vec()?[0], accuracy: out.accuracy, by_attribute: out.by_attribute });
            loss = tape.axpy(&loss, weight, &out.loss)?;
            head_vars.push((side, w));
        }
    }
    let l = logits.value().to_vec()?;
    let mut grads = tape.backward(&loss)?;
    let mut named = tv.gradients(&mut grads);
    let g = grads.take(&scale_var).ok_or_else(|| Error::Other("logit_scale received no gradient".into()))?;
    named.insert(LOGIT_SCALE.into(), g);
    for (side, w) in head_vars {
        let g = grads.take(&w).ok_or_else(|| Error::Other(format!("{} received no gradient", side.name())))?;
        named.insert(side.name().into(), g);
    }
    let argmax = |it: &mut dyn Iterator<Item = f32>| it.enumerate().fold((0, f32::NEG_INFINITY), |m, (i, v)| if v > m.1 { (i, v) } else { m }).0;
    let i2t = (0..b).filter(|&i| argmax(&mut (0..n).map(|j| l[i * n + j])) == i).count();
    let t2i = (0..b).filter(|&j| argmax(&mut (0..b).map(|i| l[i * n + j])) == j).count();
    Ok(StepOutput { loss: loss_value, acc_i2t: i2t as f32 / b as f32, acc_t2i: t2i as f32 / b as f32, heads: reports, grads: named })
}

/// A CLIP with its `logit_scale` and Adam: what a training run steps.
pub struct ClipTrainer {
    pub clip: Clip,
    pub logit_scale: Tensor,
    pub adam: Adam,
    /// The auxiliary attribute heads (`attribute_head`), when trained with any.
    pub heads: Option<Heads>,
    /// CLIP's tensors (sharing its buffers), `logit_scale` and the head's W, by name: what
    /// Adam updates.
    params: BTreeMap<String, Tensor>,
}

/// The attribute heads' columns, and per head its side, W and the weight of its loss.
pub struct Heads {
    pub spans: Spans,
    pub heads: Vec<(Side, Tensor, f32)>,
}

impl ClipTrainer {
    pub fn new(clip: Clip, logit_scale: f32) -> Result<ClipTrainer> {
        let logit_scale = Tensor::from_slice(&clip.gpu, &[1], &[logit_scale])?;
        let mut params = clip.tensors();
        params.insert(LOGIT_SCALE.into(), logit_scale.clone());
        Ok(ClipTrainer { clip, logit_scale, adam: Adam::new(&[""], BETAS, EPS), heads: None, params })
    }

    /// Trains attribute heads (W zero, `attribute_head`) beside CLIP from now on: one on the
    /// image side with `image_w` > 0, one on the text side with `text_w` > 0.
    pub fn add_heads(&mut self, spans: Spans, image_w: f32, text_w: f32) -> Result<()> {
        let e = self.clip.config.embed_dim;
        let mut heads = Vec::new();
        for (side, weight) in [(Side::Image, image_w), (Side::Text, text_w)] {
            if weight > 0.0 {
                let w = Tensor::from_slice(&self.clip.gpu, &[e, spans.columns()], &vec![0.0; e * spans.columns()])?;
                self.params.insert(side.name().into(), w.clone());
                heads.push((side, w, weight));
            }
        }
        self.heads = (!heads.is_empty()).then_some(Heads { spans, heads });
        Ok(())
    }

    /// A fresh CLIP (OpenAI's init, seeded) at temperature 0.07.
    pub fn init(gpu: &Gpu, config: ClipConfig, seed: u64) -> Result<ClipTrainer> {
        config.validate()?;
        let mut w = WeightFile::from_tensors("(fresh CLIP)", crate::clip::init::random_state_dict(&config, seed));
        let clip = Clip::from_weights(gpu, &mut w, "", config)?;
        w.finish()?;
        ClipTrainer::new(clip, LOGIT_SCALE_INIT)
    }

    /// A CLIP file as `save` writes it (`logit_scale` included; 0.07 when the file has none),
    /// a Hugging Face or OpenAI CLIP, or a ratlip model file, whose frozen CLIP is taken (e.g.
    /// to go on from the shipped model's CLIP A) at temperature 0.07, since it holds none.
    pub fn load(gpu: &Gpu, path: &Path) -> Result<ClipTrainer> {
        if crate::model::is_model_file(path) {
            return ClipTrainer::new(crate::model::Model::load(gpu, path)?.clip, LOGIT_SCALE_INIT);
        }
        let clip = Clip::load(gpu, path)?;
        // Clip::load reads folders too (Hugging Face layout); only a single file carries ours.
        let s = if path.is_file() { WeightFile::load(path)?.take_any(LOGIT_SCALE).and_then(|t| t.data.first().copied()) } else { None };
        ClipTrainer::new(clip, s.unwrap_or(LOGIT_SCALE_INIT))
    }

    pub fn params(&self) -> &BTreeMap<String, Tensor> {
        &self.params
    }

    /// Stops training the tensors whose names start with `prefix` (`visual.`: the image
    /// tower, `--freeze-vision`): they leave Adam's map, and their gradients are dropped.
    pub fn freeze(&mut self, prefix: &str) {
        self.params.retain(|name, _| !name.starts_with(prefix));
    }

    pub fn logit_scale_value(&self) -> Result<f32> {
        Ok(self.logit_scale.to_vec()?[0])
    }

    /// Forward, backward, Adam, then the clamp of `logit_scale` to [0, ln 100]. Checks the loss
    /// and gradients before the update (NaN/Inf leaves the weights as they were). `labels`
    /// (the first images' classes) are needed exactly when the trainer has a head.
    pub fn step(&mut self, pixels: &Tensor, ids: &[Vec<u32>], negatives: &[Vec<u32>], labels: Option<&[Vec<Option<u32>>]>, lr: f32) -> Result<StepOutput> {
        let head = match (&self.heads, labels) {
            (Some(h), Some(labels)) => Some(HeadInput { spans: &h.spans, labels, heads: h.heads.iter().map(|(s, w, k)| (*s, w, *k)).collect() }),
            (None, None) => None,
            (Some(_), None) => return Err(Error::Other("this CLIP trains an attribute head: every step needs the images' labels".into())),
            (None, Some(_)) => return Err(Error::Other("labels given to a CLIP trained without an attribute head".into())),
        };
        let mut out = contrastive_grads(&self.clip, &self.logit_scale, pixels, ids, negatives, head)?;
        // Frozen tensors (`freeze`) still pass gradient through; they just never take a step.
        out.grads.retain(|name, _| self.params.contains_key(name));
        if !out.loss.is_finite() {
            return Err(Error::Other(format!("the contrastive loss is {}", out.loss)));
        }
        if let Some(h) = out.heads.iter().find(|h| !h.loss.is_finite()) {
            return Err(Error::Other(format!("{}'s loss is {}", h.side.name(), h.loss)));
        }
        let norm = grad_norm(&out.grads)?;
        if !norm.is_finite() {
            return Err(Error::Other(format!("the gradient norm is {norm}")));
        }
        self.adam.step_tensors(&self.params, &out.grads, lr)?;
        let s = self.logit_scale_value()?;
        let clamped = s.clamp(0.0, LOGIT_SCALE_MAX);
        if clamped != s {
            self.logit_scale.write(&[clamped])?;
        }
        Ok(out)
    }

    /// The CLIP as one safetensors: OpenAI names, `logit_scale`, `clip_config` in the header.
    pub fn save(&self, path: &Path, extra: &[(&str, String)]) -> Result<()> {
        let mut t = self.clip.state_dict()?;
        t.insert(LOGIT_SCALE.into(), HostTensor::new(vec![], vec![self.logit_scale_value()?]));
        let mut meta = HashMap::new();
        meta.insert("clip_config".to_string(), serde_json::to_string(&self.clip.config).map_err(|e| Error::Other(e.to_string()))?);
        meta.insert("format".to_string(), "ratlip-clip".to_string());
        for (k, v) in extra {
            meta.insert(k.to_string(), v.clone());
        }
        save_safetensors(path, &t, &meta)
    }
}


/// Caption → ids at the CLIP's context length, tokenised once per caption. Captions that do
/// not fit are cut (EOS kept last) and reported once each.
pub struct Captions {
    tok: ClipTokenizer,
    context: usize,
    cache: HashMap<String, Vec<u32>>,
    /// Captions that were cut, with their full token count.
    pub truncated: BTreeMap<String, usize>,
}

impl Captions {
    pub fn new(context: usize) -> Result<Captions> {
        Ok(Captions { tok: ClipTokenizer::bundled()?, context, cache: HashMap::new(), truncated: BTreeMap::new() })
    }

    pub fn ids(&mut self, caption: &str) -> Result<Vec<u32>> {
        if let Some(ids) = self.cache.get(caption) {
            return Ok(ids.clone());
        }
        let e = self.tok.encode(caption, self.context)?;
        if e.truncated {
            eprintln!("\nnote: caption cut to the context of {} tokens (it needs {}): {caption:?}", self.context, e.original_len);
            self.truncated.insert(caption.to_string(), e.original_len);
        }
        self.cache.insert(caption.to_string(), e.ids.clone());
        Ok(e.ids)
    }
}

// ---- the run folder ---------------------------------------------------------------------

/// Everything that defines a run; written to RUN_DIR/config.json.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClipRunConfig {
    pub data: PathBuf,
    pub clip: ClipConfig,
    pub batch: usize,
    pub steps: u64,
    pub seed: u64,
    pub lr: f32,
    /// Every K steps (0: only at the end and on Ctrl-C).
    pub checkpoint_every: u64,
    pub keep: usize,
    pub workers: usize,
    /// The last `holdout` images (in file order) are never trained on; zero-shot accuracy is
    /// measured on them.
    pub holdout: usize,
    /// Random horizontal flips (off by default: captions may say left or right).
    #[serde(default)]
    pub flip: bool,
    /// Each caption's contrast (`hard_negatives`) joins its batch as a negative text. Off in
    /// runs made before the option.
    #[serde(default)]
    pub hard_negatives: bool,
    /// Each image's twin (`twins`: the renderer's same face with the contrast's attribute
    /// reversed) joins the batch with the contrast caption. Off in runs made before the option.
    #[serde(default)]
    pub twins: bool,
    /// Weight of the auxiliary attribute loss (`attribute_head`; needs attributes.jsonl). 0,
    /// CLIP's loss alone, in runs made before the option.
    #[serde(default)]
    pub attribute_w: f32,
    /// The same on the caption's side (`--text-attribute-w`). 0 in runs made before it.
    #[serde(default)]
    pub text_attribute_w: f32,
    /// The attributes both heads read (`--head-attributes`); empty: all of attributes.jsonl,
    /// as in runs made before the option. A head's loss is the mean over its attributes, so
    /// naming one gives it the whole weight.
    #[serde(default)]
    pub head_attributes: Vec<String>,
    /// The image tower (`visual.*`) is not trained (`--freeze-vision`): a CLIP whose image
    /// side a GAN is built around (G's mapper and D's features are its vision blocks) can
    /// retrain its text side alone. Off in runs made before it.
    #[serde(default)]
    pub freeze_vision: bool,
    #[serde(default)]
    pub ratlip_version: String,
}

impl ClipRunConfig {
    pub fn new(data: PathBuf) -> ClipRunConfig {
        ClipRunConfig {
            data,
            clip: default_config(),
            batch: 32,
            steps: 2000,
            seed: 0,
            lr: LR,
            checkpoint_every: 500,
            keep: 3,
            workers: 2,
            holdout: 200,
            flip: false,
            hard_negatives: false,
            twins: false,
            attribute_w: 0.0,
            text_attribute_w: 0.0,
            head_attributes: Vec::new(),
            freeze_vision: false,
            ratlip_version: env!("CARGO_PKG_VERSION").into(),
        }
    }

    fn validate(&self) -> Result<()> {
        if self.batch < 2 {
            return Err(Error::Other("--batch must be at least 2 (the loss contrasts the images of a batch)".into()));
        }
        if self.keep == 0 {
            return Err(Error::Other("--keep must be at least 1 (resume needs a checkpoint)".into()));
        }
        if self.twins && self.hard_negatives {
            return Err(Error::Other("--twins already puts each caption's contrast in the batch (as its twin's caption); drop --hard-negatives".into()));
        }
        if !(self.attribute_w.is_finite() && self.attribute_w >= 0.0) {
            return Err(Error::Other(format!("--attribute-w must be finite and ≥ 0, got {}", self.attribute_w)));
        }
        if self.freeze_vision && self.attribute_w > 0.0 {
            return Err(Error::Other("--attribute-w trains the image side, which --freeze-vision keeps as it is: use one or the other".into()));
        }
        if !(self.text_attribute_w.is_finite() && self.text_attribute_w >= 0.0) {
            return Err(Error::Other(format!("--text-attribute-w must be finite and ≥ 0, got {}", self.text_attribute_w)));
        }
        if !self.head_attributes.is_empty() && self.attribute_w == 0.0 && self.text_attribute_w == 0.0 {
            return Err(Error::Other("--head-attributes chooses what the attribute heads read: give --attribute-w or --text-attribute-w too".into()));
        }
        if !(self.lr.is_finite() && self.lr >= 0.0) {
            return Err(Error::Other(format!("--lr must be finite and ≥ 0, got {}", self.lr)));
        }
        self.clip.validate()
    }
}

#[derive(Serialize, Deserialize)]
struct StateMeta {
    step: u64,
    position: Position,
    opt_steps: BTreeMap<String, u32>,
    skipped: BTreeMap<usize, String>,
    wall_s: f64,
}

/// One finished step.
#[derive(Clone, Debug)]
pub struct ClipStepReport {
    pub step: u64,
    pub steps: u64,
    pub loss: f32,
    /// e^logit_scale after the update.
    pub scale: f32,
    pub acc_i2t: f32,
    pub acc_t2i: f32,
    /// Each attribute head's loss and accuracy on the batch.
    pub heads: Vec<HeadReport>,
    pub step_s: f64,
    pub images_per_s: f64,
    pub wall_s: f64,
    pub epoch: u64,
}

pub use super::checkpoints::{checkpoint_steps, Outcome};

pub struct ClipRun {
    pub dir: PathBuf,
    pub config: ClipRunConfig,
    pub trainer: ClipTrainer,
    pub step: u64,
    pub dataset: Arc<Dataset>,
    /// The held-out items (never trained on).
    pub holdout: Arc<Dataset>,
    loader: Loader,
    captions: Captions,
    /// The renderer's twins of the data, with `config.twins`.
    twins: Option<Twins>,
    /// Every image's classes, with `config.attribute_w` > 0.
    labels: Option<AttributeLabels>,
    wall_s: f64,
    session_start: Instant,
    last_checkpoint: Option<(u64, PathBuf)>,
}

/// The data folder split into (training items, the last `holdout` held out).
fn split(data: &Path, holdout: usize) -> Result<(Dataset, Dataset)> {
    let all = Dataset::open(data)?;
    let n = all.items.len();
    if holdout + 2 > n {
        return Err(Error::Other(format!("{}: {n} images cannot spare {holdout} for held-out evaluation and still train (lower --holdout)", data.display())));
    }
    let mut train = all;
    let held = train.items.split_off(n - holdout);
    let holdout = Dataset { root: train.root.clone(), layout: train.layout, items: held, without_captions: 0 };
    Ok((train, holdout))
}

const PREFETCH_BATCHES: usize = 4;

impl ClipRun {
    /// A new run in `dir` (which must not hold one), from a fresh CLIP (`init` None) or a CLIP file.
    pub fn create(gpu: &Gpu, dir: &Path, mut config: ClipRunConfig, init: Option<&Path>) -> Result<ClipRun> {
        if dir.join("config.json").exists() {
            return Err(Error::Other(format!("{} already holds a run (config.json exists): continue it with --resume, or choose another --out", dir.display())));
        }
        let trainer = match init {
            Some(p) => ClipTrainer::load(gpu, p)?,
            None => ClipTrainer::init(gpu, config.clip.clone(), config.seed)?,
        };
        config.clip = trainer.clip.config.clone();
        config.ratlip_version = env!("CARGO_PKG_VERSION").into();
        config.validate()?;
        if !config.head_attributes.is_empty() {
            // Checked before anything is written: a misspelt attribute leaves no half-made run.
            attribute_labels(&config.data)?.only(&config.head_attributes)?;
        }
        std::fs::create_dir_all(dir.join("checkpoints")).map_err(|e| io(&dir.join("checkpoints"), e))?;
        write_atomic(&dir.join("config.json"), (serde_json::to_string_pretty(&config).map_err(|e| Error::Other(e.to_string()))? + "\n").as_bytes())?;
        write_atomic(&dir.join("metrics.jsonl"), b"")?;
        ClipRun::assemble(dir, config, trainer, Position::default(), 0, BTreeMap::new(), 0.0)
    }

    /// Continues the run in `dir` from its newest complete checkpoint.
    pub fn resume(gpu: &Gpu, dir: &Path) -> Result<ClipRun> {
        let cfg_path = dir.join("config.json");
        let text = std::fs::read_to_string(&cfg_path).map_err(|e| io(&cfg_path, format!("{e} (is this a train-clip run folder?)")))?;
        let config: ClipRunConfig = serde_json::from_str(&text).map_err(|e| io(&cfg_path, e))?;
        let step = *checkpoint_steps(dir)
            .last()
            .ok_or_else(|| Error::Other(format!("{}: no complete checkpoint to resume from in checkpoints/", dir.display())))?;
        let (model_path, state_path) = checkpoint_paths(dir, step);
        let trainer = ClipTrainer::load(gpu, &model_path)?;
        if trainer.clip.config != config.clip {
            return Err(Error::Other(format!("{}: its CLIP config differs from the run's config.json", model_path.display())));
        }
        let mut w = WeightFile::load(&state_path)?;
        let meta: StateMeta = w
            .metadata
            .get("ratlip_clip_train_state")
            .and_then(|j| serde_json::from_str(j).ok())
            .ok_or_else(|| Error::Other(format!("{}: no readable ratlip_clip_train_state in its header", state_path.display())))?;
        if meta.step != step {
            return Err(Error::Other(format!("{}: says step {}, its name step {step}", state_path.display(), meta.step)));
        }
        let mut run = ClipRun::assemble(dir, config, trainer, meta.position, step, meta.skipped, meta.wall_s)?;
        if let Some(h) = &run.trainer.heads {
            for (side, t, _) in &h.heads {
                t.write(&w.take(side.name(), t.shape())?.data)?;
            }
        }
        run.trainer.adam.load_state_tensors(&run.trainer.params, &mut w, "opt.", &meta.opt_steps)?;
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

    fn assemble(dir: &Path, config: ClipRunConfig, mut trainer: ClipTrainer, position: Position, step: u64, skipped: BTreeMap<usize, String>, wall_s: f64) -> Result<ClipRun> {
        let (train, holdout) = split(&config.data, config.holdout)?;
        let labels = if config.attribute_w > 0.0 || config.text_attribute_w > 0.0 {
            let mut labels = attribute_labels(&config.data)?;
            if !config.head_attributes.is_empty() {
                labels = labels.only(&config.head_attributes)?;
            }
            if let Some(item) = train.items.iter().find(|i| !labels.by_image.contains_key(&i.image)) {
                return Err(Error::Other(format!("--attribute-w: {} has no line in {}", item.image.display(), config.data.join("attributes.jsonl").display())));
            }
            trainer.add_heads(Spans::new(&labels.attributes), config.attribute_w, config.text_attribute_w)?;
            Some(labels)
        } else {
            None
        };
        let dataset = Arc::new(train);
        let mut loader = Loader::with_flip(dataset.clone(), config.clip.vision.image_size, config.seed, position, config.workers, PREFETCH_BATCHES * config.batch, config.flip);
        loader.skipped = skipped;
        if config.freeze_vision {
            trainer.freeze(VISION_PREFIX);
        }
        let captions = Captions::new(config.clip.text.context_length)?;
        let twins = if config.twins { Some(Twins::open(&config.data)?) } else { None };
        Ok(ClipRun {
            twins,
            labels,
            dir: dir.to_path_buf(),
            config,
            trainer,
            step,
            dataset,
            holdout: Arc::new(holdout),
            loader,
            captions,
            wall_s,
            session_start: Instant::now(),
            last_checkpoint: None,
        })
    }

    /// Changes the run's total steps (e.g. a resumed run going further) and records it.
    pub fn set_steps(&mut self, steps: u64) -> Result<()> {
        self.config.steps = steps;
        write_atomic(&self.dir.join("config.json"), (serde_json::to_string_pretty(&self.config).map_err(|e| Error::Other(e.to_string()))? + "\n").as_bytes())
    }

    fn wall(&self) -> f64 {
        self.wall_s + self.session_start.elapsed().as_secs_f64()
    }

    /// Captions cut to the context length so far.
    pub fn truncated_captions(&self) -> &BTreeMap<String, usize> {
        &self.captions.truncated
    }

    /// One step: batch (one random caption of each image, and with `hard_negatives` each
    /// caption's contrast, with `twins` each image's twin and that contrast), contrastive loss,
    /// Adam, metrics line.
    pub fn step(&mut self) -> Result<ClipStepReport> {
        let t0 = Instant::now();
        let (b, s) = (self.config.batch, self.config.clip.vision.image_size);
        let samples = self.loader.next_batch(b)?;
        let mut ids: Vec<Vec<u32>> = samples.iter().map(|x| self.captions.ids(&x.caption)).collect::<Result<_>>()?;
        let step = self.step + 1;
        // Each caption's contrast: which attribute it flips is a pure function of (seed, step,
        // row), so a resumed run flips the same ones, and --hard-negatives and --twins choose
        // alike (they differ only in whether the contrast gets an image).
        let contrasts = if self.config.hard_negatives || self.twins.is_some() {
            hard_negatives::contrasts(samples.iter().map(|x| x.caption.as_str()), &mut Rng::stream(self.config.seed ^ NEGATIVES_STREAM, step))
        } else {
            Vec::new()
        };
        let mut negatives = Vec::new();
        let mut pixels: Vec<f32> = samples.iter().flat_map(|x| x.pixels.iter().copied()).collect();
        let mut twins = 0usize;
        for (row, flip, c) in contrasts {
            let x = &samples[row];
            match &self.twins {
                Some(tw) => {
                    let Some(img) = tw.twin(&self.dataset.items[x.item].image, flip) else { continue };
                    ids.push(self.captions.ids(&c)?);
                    pixels.extend(augment_like(img, s, x.crop));
                    twins += 1;
                }
                None => negatives.push(self.captions.ids(&c)?),
            }
        }
        normalise_pixels(&mut pixels, s);
        let gpu = self.trainer.clip.gpu.clone();
        let pixels = Tensor::from_slice(&gpu, &[b + twins, 3, s, s], &pixels)?;
        let labels: Option<Vec<Vec<Option<u32>>>> =
            self.labels.as_ref().map(|l| samples.iter().map(|x| l.by_image[&self.dataset.items[x.item].image].clone()).collect());
        let out = self.trainer.step(&pixels, &ids, &negatives, labels.as_deref(), self.config.lr).map_err(|e| {
            let good = self.last_checkpoint.as_ref().map_or("none yet".to_string(), |(_, p)| p.display().to_string());
            Error::Other(format!("step {step}: {e}; the run stopped without saving this step (last good checkpoint: {good})"))
        })?;
        self.step = step;
        let step_s = t0.elapsed().as_secs_f64();
        let r = ClipStepReport {
            step,
            steps: self.config.steps,
            loss: out.loss,
            scale: self.trainer.logit_scale_value()?.exp(),
            acc_i2t: out.acc_i2t,
            acc_t2i: out.acc_t2i,
            heads: out.heads.clone(),
            step_s,
            images_per_s: b as f64 / step_s,
            wall_s: self.wall(),
            epoch: self.loader.position().epoch,
        };
        let line = serde_json::json!({
            "step": r.step, "loss": r.loss, "logit_scale": r.scale.ln(), "scale": r.scale, "acc_i2t": r.acc_i2t, "acc_t2i": r.acc_t2i,
            "images_per_s": r.images_per_s, "step_s": r.step_s, "wall_s": r.wall_s, "epoch": r.epoch, "lr": self.config.lr,
            "negatives": negatives.len(), "twins": twins,
        });
        let mut line = line;
        for h in &out.heads {
            let prefix = match h.side {
                Side::Image => "attribute",
                Side::Text => "text_attribute",
            };
            line[format!("{prefix}_loss")] = h.loss.into();
            line[format!("{prefix}_acc")] = h.accuracy.into();
            line[format!("{prefix}_acc_by")] = h.by_attribute.iter().map(|(n, a)| (n.clone(), serde_json::Value::from(*a))).collect::<serde_json::Map<_, _>>().into();
        }
        let path = self.dir.join("metrics.jsonl");
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(|e| io(&path, e))?;
        writeln!(f, "{line}").map_err(|e| io(&path, e))?;
        Ok(r)
    }

    /// Writes checkpoint `step` (the CLIP file, then the train state that completes it) and
    /// removes all but the newest `keep`.
    pub fn checkpoint(&mut self) -> Result<PathBuf> {
        let (model_path, state_path) = checkpoint_paths(&self.dir, self.step);
        let provenance = serde_json::json!({
            "made_by": "ratlip train-clip", "run": self.dir.display().to_string(), "step": self.step,
            "seed": self.config.seed, "data": self.config.data.display().to_string(), "ratlip_version": env!("CARGO_PKG_VERSION"),
        });
        self.trainer.save(&model_path, &[("ratlip_provenance", provenance.to_string())])?;
        let (mut tensors, opt_steps) = self.trainer.adam.state_to_host("opt.")?;
        if let Some(h) = &self.trainer.heads {
            for (side, t, _) in &h.heads {
                tensors.insert(side.name().into(), HostTensor::new(t.shape().to_vec(), t.to_vec()?));
            }
        }
        let meta = StateMeta { step: self.step, position: self.loader.position(), opt_steps, skipped: self.loader.skipped.clone(), wall_s: self.wall() };
        let mut header = HashMap::new();
        header.insert("ratlip_clip_train_state".to_string(), serde_json::to_string(&meta).map_err(|e| Error::Other(e.to_string()))?);
        header.insert("format".to_string(), "ratlip-clip-train-state".to_string());
        save_safetensors(&state_path, &tensors, &header)?;
        keep_newest(&self.dir, self.config.keep)?;
        self.last_checkpoint = Some((self.step, model_path.clone()));
        Ok(model_path)
    }

    /// Steps until `config.steps` (or until `stop` is set: then a checkpoint and
    /// `Outcome::Interrupted`), with checkpoints on schedule and at the end.
    pub fn train(&mut self, stop: &AtomicBool, on_step: impl FnMut(&ClipStepReport)) -> Result<Outcome> {
        drive(self, stop, on_step)
    }

    /// The newest checkpoint this session wrote or resumed from.
    pub fn last_checkpoint(&self) -> Option<&Path> {
        self.last_checkpoint.as_ref().map(|c| c.1.as_path())
    }

    /// Zero-shot attribute accuracy of the CLIP as it is now on the held-out images, written
    /// to RUN_DIR/zero_shot.json.
    pub fn evaluate(&self) -> Result<super::zero_shot::Report> {
        let files: Vec<PathBuf> = self.holdout.items.iter().map(|i| i.image.clone()).collect();
        let report = super::zero_shot::evaluate(&self.trainer.clip, &self.config.data, Some(&files))?;
        let path = self.dir.join("zero_shot.json");
        write_atomic(&path, (serde_json::to_string_pretty(&report).map_err(|e| Error::Other(e.to_string()))? + "\n").as_bytes())?;
        Ok(report)
    }
}

impl Steps for ClipRun {
    type Report = ClipStepReport;
    fn progress(&self) -> (u64, u64) {
        (self.step, self.config.steps)
    }
    fn checkpoint_every(&self) -> u64 {
        self.config.checkpoint_every
    }
    fn checkpointed_at(&self) -> Option<u64> {
        self.last_checkpoint.as_ref().map(|c| c.0)
    }
    fn step(&mut self) -> Result<ClipStepReport> {
        ClipRun::step(self)
    }
    fn checkpoint(&mut self) -> Result<PathBuf> {
        ClipRun::checkpoint(self)
    }
}
