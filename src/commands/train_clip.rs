//! `ratlip train-clip`: contrastive training of a small in-house CLIP in RUN_DIR, or
//! `--resume`; at the end, zero-shot attribute accuracy on the held-out images.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use ratlip::clip::config::ClipConfig;
use ratlip::train::attribute_head::Side;
use ratlip::train::clip::{ClipRun, ClipRunConfig, ClipStepReport, Outcome};
use ratlip::train::zero_shot::Report;
use ratlip::Gpu;

use super::train::{fmt_time, install_ctrl_c, STOP};

#[derive(clap::Args)]
pub struct TrainClipArgs {
    /// Dataset folder (as `ratlip dataset synth` writes: images/X.png + X.txt, attributes.jsonl).
    #[arg(long, required_unless_present = "resume")]
    data: Option<PathBuf>,
    /// Run folder to create: config.json, metrics.jsonl, checkpoints/, zero_shot.json.
    #[arg(long, required_unless_present = "resume", conflicts_with = "resume")]
    out: Option<PathBuf>,
    /// Continue the run in this folder from its newest checkpoint, bit-exactly.
    #[arg(long, value_name = "RUN_DIR")]
    resume: Option<PathBuf>,
    /// CLIP config JSON for a fresh CLIP ({"text": {...}, "vision": {...}, "embed_dim", "layer_norm_eps"},
    /// as in a checkpoint's clip_config). Default: 64 px, patch 8, widths 128, 4 + 4 layers, context 32.
    #[arg(long, value_name = "FILE.json", conflicts_with_all = ["init", "resume"])]
    config: Option<PathBuf>,
    /// Start from this CLIP file (e.g. an earlier run's checkpoint) instead of a fresh init;
    /// a ratlip model file (e.g. assets/default.safetensors) gives its CLIP.
    #[arg(long, value_name = "CLIP.safetensors", conflicts_with = "resume")]
    init: Option<PathBuf>,
    /// Image-caption pairs per step (the loss contrasts each image with the batch's captions).
    #[arg(long, default_value_t = 32, conflicts_with = "resume")]
    batch: usize,
    /// Total steps (with --resume: a new total for the run).
    #[arg(long)]
    steps: Option<u64>,
    /// Adam learning rate.
    #[arg(long, default_value_t = ratlip::train::clip::LR, conflicts_with = "resume")]
    lr: f32,
    /// Seed of the init, data order and augmentation.
    #[arg(long, default_value_t = 0, conflicts_with = "resume")]
    seed: u64,
    /// Write a checkpoint every K steps (0: only at the end or on Ctrl-C).
    #[arg(long, default_value_t = 500, conflicts_with = "resume")]
    checkpoint_every: u64,
    /// Checkpoints to keep (the newest N).
    #[arg(long, default_value_t = 3, conflicts_with = "resume")]
    keep: usize,
    /// The last N images (file order) are held out of training for the zero-shot evaluation.
    #[arg(long, default_value_t = 200, conflicts_with = "resume")]
    holdout: usize,
    /// Also flip images horizontally at random (off: captions may say left or right).
    #[arg(long, conflicts_with = "resume")]
    flip: bool,
    /// Beside each caption, its contrast (one attribute said the other way round: smiling ↔
    /// frowning, glasses ↔ no glasses, a beard ↔ no beard) joins the batch as a text its image
    /// must not match, as in NegCLIP. Knows the synthetic faces' words; other captions get none.
    #[arg(long, conflicts_with = "resume")]
    hard_negatives: bool,
    /// Beside each image, the renderer's twin with one attribute reversed (smile, glasses or
    /// beard; every other pixel equal) joins the batch with the contrast caption, so CLIP must
    /// read those pixels to tell the pair apart. Needs a `dataset synth --kind faces` folder.
    #[arg(long, conflicts_with_all = ["resume", "hard_negatives"])]
    twins: bool,
    /// Also train a linear read-out of the image embedding per attribute of attributes.jsonl
    /// (cross-entropy, this weight; 0: off, CLIP's loss alone). For attributes contrastive
    /// training alone leaves unread (the faces' smile); the head is not part of the CLIP file.
    #[arg(long, default_value_t = 0.0, conflicts_with = "resume")]
    attribute_w: f32,
    /// The same read-out on each caption's sentence embedding (its own W; the caption is
    /// labelled with its image's classes), so the text side says attributes it would barely
    /// move for otherwise (the faces' mood). 0: off.
    #[arg(long, default_value_t = 0.0, conflicts_with = "resume")]
    text_attribute_w: f32,
    /// The attributes the heads read, comma-separated (default: every attribute of
    /// attributes.jsonl). A head's loss is the mean over its attributes, so `--attribute-w 5
    /// --head-attributes expression` weighs the smile 5 where all nine attributes give it 5/9.
    #[arg(long, value_delimiter = ',', conflicts_with = "resume")]
    head_attributes: Vec<String>,
    /// Train the text side (and the temperature, and a text head) only; the image tower stays
    /// as --init has it, so a GAN built around that CLIP's vision blocks stays valid.
    #[arg(long, conflicts_with_all = ["resume", "attribute_w"])]
    freeze_vision: bool,
    /// Images decoded ahead on this many threads (default: the cores, at most 4).
    #[arg(long, conflicts_with = "resume")]
    workers: Option<usize>,
}

fn clip_config(path: &Path) -> Result<ClipConfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let c: ClipConfig = serde_json::from_str(&text).with_context(|| format!("{}: not a CLIP config", path.display()))?;
    c.validate()?;
    Ok(c)
}

pub fn train_clip(gpu: &Gpu, a: &TrainClipArgs) -> Result<()> {
    let mut run = match &a.resume {
        Some(dir) => {
            let mut run = ClipRun::resume(gpu, dir).with_context(|| format!("resuming {}", dir.display()))?;
            if let Some(n) = a.steps {
                run.set_steps(n)?;
            }
            eprintln!("resuming {} at step {} of {}", dir.display(), run.step, run.config.steps);
            run
        }
        None => {
            let (data, out) = (a.data.clone().context("--data is required")?, a.out.clone().context("--out is required")?);
            let mut config = ClipRunConfig::new(data);
            if let Some(p) = &a.config {
                config.clip = clip_config(p)?;
            }
            config.batch = a.batch;
            config.steps = a.steps.unwrap_or(2000);
            config.lr = a.lr;
            config.seed = a.seed;
            config.checkpoint_every = a.checkpoint_every;
            config.keep = a.keep;
            config.holdout = a.holdout;
            config.flip = a.flip;
            config.hard_negatives = a.hard_negatives;
            config.twins = a.twins;
            config.attribute_w = a.attribute_w;
            config.text_attribute_w = a.text_attribute_w;
            config.head_attributes = a.head_attributes.clone();
            config.freeze_vision = a.freeze_vision;
            config.workers = a.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()).min(4));
            ClipRun::create(gpu, &out, config, a.init.as_deref()).with_context(|| format!("starting a run in {}", out.display()))?
        }
    };
    describe(&run);
    install_ctrl_c();
    let started_at = run.step;
    let t0 = std::time::Instant::now();
    let outcome = run.train(&STOP, |r| progress(r, started_at, t0.elapsed().as_secs_f64()));
    eprintln!();
    let outcome = outcome.with_context(|| format!("training in {}", run.dir.display()))?;
    if !run.truncated_captions().is_empty() {
        eprintln!("{} caption(s) were longer than the context of {} tokens and were cut", run.truncated_captions().len(), run.config.clip.text.context_length);
    }
    let ckpt = run.last_checkpoint().map(Path::display).map(|d| d.to_string()).unwrap_or_default();
    match outcome {
        Outcome::Finished => {
            println!("finished step {} in {}; CLIP checkpoint {ckpt}", run.step, run.dir.display());
            if run.holdout.items.is_empty() {
                eprintln!("no zero-shot evaluation: --holdout 0 kept no images out of training");
            } else if !run.config.data.join("attributes.jsonl").is_file() {
                eprintln!("no zero-shot evaluation: {} has no attributes.jsonl (only `ratlip dataset synth` sets have one)", run.config.data.display());
            } else {
                eprintln!("zero-shot evaluation on the {} held-out images…", run.holdout.items.len());
                let report = run.evaluate().context("zero-shot evaluation")?;
                print_report(&report);
                println!("wrote {}", run.dir.join("zero_shot.json").display());
            }
        }
        Outcome::Interrupted => {
            println!("interrupted at step {}: wrote {ckpt}; continue with `ratlip train-clip --resume {}`", run.step, run.dir.display());
            std::process::exit(130);
        }
    }
    Ok(())
}

fn describe(run: &ClipRun) {
    let c = &run.config;
    let (t, v) = (&c.clip.text, &c.clip.vision);
    let params: usize = run.trainer.params().values().map(|t| t.numel()).sum();
    eprintln!(
        "data: {} ({} images for training, {} held out); CLIP {} px / patch {}, vision {}×{}, text {}×{} (context {}), embed {} ({:.1} M parameters); batch {}, {} steps, lr {}, seed {}{}{}",
        c.data.display(),
        run.dataset.items.len(),
        run.holdout.items.len(),
        v.image_size,
        v.patch_size,
        v.layers,
        v.width,
        t.layers,
        t.width,
        t.context_length,
        c.clip.embed_dim,
        params as f64 / 1e6,
        c.batch,
        c.steps,
        c.lr,
        c.seed,
        if c.hard_negatives { ", hard negatives" } else if c.twins { ", twins" } else { "" },
        [("image attribute head", c.attribute_w), ("text attribute head", c.text_attribute_w)]
            .iter()
            .filter(|(_, w)| *w > 0.0)
            .map(|(n, w)| format!(", {n} × {w}"))
            .collect::<String>()
            + &if c.head_attributes.is_empty() { String::new() } else { format!(" ({})", c.head_attributes.join(", ")) }
            + if c.freeze_vision { ", image tower frozen" } else { "" }
    );
}

fn progress(r: &ClipStepReport, started_at: u64, elapsed: f64) {
    let done = (r.step - started_at) as f64;
    let eta = elapsed / done.max(1.0) * (r.steps - r.step) as f64;
    let head: String = r.heads.iter().map(|h| format!("  {} attributes {:.3} acc {:.2}", if h.side == Side::Image { "image" } else { "text" }, h.loss, h.accuracy)).collect();
    eprint!(
        "\rstep {}/{}  loss {:.3}  scale {:.1}  acc i→t {:.2} t→i {:.2}{head}  {:.1} img/s  ETA {}   ",
        r.step,
        r.steps,
        r.loss,
        r.scale,
        r.acc_i2t,
        r.acc_t2i,
        r.images_per_s,
        fmt_time(eta)
    );
}

pub fn print_report(r: &Report) {
    println!("zero-shot on {} {} images ({}):", r.images, r.kind, r.data.display());
    println!("  {:<12} {:>5} {:>9} {:>7} {:>9} {:>7}  (probe: the image embeddings alone, a linear discriminant, balanced: chance is chance)", "attribute", "n", "accuracy", "chance", "majority", "probe");
    for (name, a) in &r.attributes {
        let probe = a.probe.map_or("-".to_string(), |p| format!("{p:.3}"));
        println!("  {:<12} {:>5} {:>9.3} {:>7.3} {:>9.3} {:>7}", name, a.n, a.accuracy, a.chance, a.majority, probe);
    }
    println!("  {:<12} {:>5} {:>9.3} {:>7.3} {:>9.3}", "mean", "", r.mean_accuracy, r.mean_chance, r.mean_majority);
    if !r.contrasts.is_empty() {
        println!("own caption over its contrast (the same caption with one attribute reversed; chance 0.5):");
        println!("  {:<12} {:>5} {:>9} {:>9} {:>9}  by the image's truth", "reversed", "pairs", "accuracy", "balanced", "text cos");
        for (name, c) in &r.contrasts {
            let by: Vec<String> = c.by_truth.iter().map(|(t, (n, a))| format!("{t} {a:.3} ({n})")).collect();
            println!("  {:<12} {:>5} {:>9.3} {:>9.3} {:>9.4}  {}", name.to_lowercase(), c.n, c.accuracy, c.balanced, c.text_cos, by.join(", "));
        }
        if let Some(o) = r.other_face_text_cos {
            println!("  text cos: the caption's and its contrast's text embeddings; two faces' captions of one template: {o:.4}");
        }
    }
}
