//! `ratlip train` (also spelled `ratlip --train`): a training run in RUN_DIR, or `--resume`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Context, Result};
use ratlip::model::{Arch, Model, ModelConfig};
use ratlip::train::{Outcome, Run, RunConfig, StepReport};
use ratlip::Gpu;

#[derive(clap::Args)]
pub struct TrainArgs {
    /// Dataset folder: images/X.png + images/X.txt (as `ratlip dataset synth` writes), the
    /// pairs directly in DIR, or the AttnGAN/CUB layout (train/filenames.pickle, text/, images/).
    #[arg(long, required_unless_present = "resume")]
    data: Option<PathBuf>,
    /// Run folder to create: config.json, metrics.jsonl, samples/, checkpoints/.
    #[arg(long, required_unless_present = "resume", conflicts_with = "resume")]
    out: Option<PathBuf>,
    /// Continue the run in this folder from its newest checkpoint, bit-exactly.
    #[arg(long, value_name = "RUN_DIR")]
    resume: Option<PathBuf>,
    /// galip, ratlip (the paper's RAT) or ratlip-release (fresh models only).
    #[arg(long, default_value = "ratlip", conflicts_with_all = ["model", "resume"])]
    arch: String,
    /// tiny or released (fresh models only).
    #[arg(long, default_value = "tiny", conflicts_with_all = ["model", "config", "resume"])]
    size: String,
    /// Start from this model file (it must hold NetD/NetC) instead of a fresh init.
    #[arg(long, value_name = "INIT.safetensors", conflicts_with = "resume")]
    model: Option<PathBuf>,
    /// A fresh model's frozen CLIP from this file (e.g. a `ratlip train-clip` checkpoint, or a
    /// ratlip model file such as assets/default.safetensors, whose CLIP is taken): its sizes
    /// replace the config's CLIP and cond_dim becomes its embed_dim. With --model: replaces
    /// that model's CLIP (of the same sizes), to go on training G and D around a retrained CLIP.
    #[arg(long, value_name = "CLIP.safetensors", conflicts_with = "resume")]
    clip: Option<PathBuf>,
    /// A fresh ratlip/ratlip-release G with plain convs instead of ConvSA: the paper's ablation
    /// "RAT without shuffle attention".
    #[arg(long, conflicts_with_all = ["model", "resume"])]
    no_shuffle_attention: bool,
    /// Model config JSON for a fresh init (the "config" object `ratlip model info --json` prints).
    #[arg(long, value_name = "FILE.json", conflicts_with_all = ["model", "resume"])]
    config: Option<PathBuf>,
    /// Images per step.
    #[arg(long, default_value_t = 8, conflicts_with = "resume")]
    batch: usize,
    /// Total steps (with --resume: a new total for the run).
    #[arg(long)]
    steps: Option<u64>,
    /// Seed of the init, data order, augmentation and noise.
    #[arg(long, default_value_t = 0, conflicts_with = "resume")]
    seed: u64,
    /// Write a sample grid every K steps (0: only at the end).
    #[arg(long, default_value_t = 100, conflicts_with = "resume")]
    sample_every: u64,
    /// Write a checkpoint every K steps (0: only at the end or on Ctrl-C).
    #[arg(long, default_value_t = 500, conflicts_with = "resume")]
    checkpoint_every: u64,
    /// Checkpoints to keep (the newest N).
    #[arg(long, default_value_t = 3, conflicts_with = "resume")]
    keep: usize,
    /// Generator learning rate (released: 1e-4).
    #[arg(long, conflicts_with = "resume")]
    lr_g: Option<f32>,
    /// Discriminator (NetD + NetC) learning rate (released: 4e-4).
    #[arg(long, conflicts_with = "resume")]
    lr_d: Option<f32>,
    /// Weight of L_G's text–image cosine term (released: 4).
    #[arg(long, conflicts_with = "resume")]
    sim_w: Option<f32>,
    /// Weight of L_D's MA-GP term (released: 2; 0 switches the penalty off).
    #[arg(long, conflicts_with = "resume")]
    magp_w: Option<f32>,
    /// Weight of an L1 term in L_G pulling each fake towards the batch's real image of the
    /// same caption (pix2pix's pairing; not in the released code; default 0: off)
    #[arg(long, conflicts_with = "resume")]
    pixel_w: Option<f32>,
    /// Weight of a diversity reward in L_G: G draws a second fake for the same captions with
    /// other noise, and L_G subtracts W · min(mean|G(z1) − G(z2)| / mean|z1 − z2|, --div-tau)
    /// (DSGAN's term; not in the released code; default 0: off). Costs one more G pass.
    #[arg(long, conflicts_with = "resume")]
    div_w: Option<f32>,
    /// Where the diversity reward is capped (default 0.25).
    #[arg(long, conflicts_with = "resume")]
    div_tau: Option<f32>,
    /// Weight of a hard-negative hinge in L_D: each real image whose caption names a mood,
    /// glasses or a beard is also shown to D with that attribute said the other way round
    /// ("smiling" ↔ "frowning", "wearing glasses" ↔ "no glasses"), as a mismatched pair
    /// (NegCLIP's hard negatives given to the matching-aware D; not in the released code;
    /// default 0: off). Costs one more NetD/NetC pass on those images.
    #[arg(long, conflicts_with = "resume")]
    hard_negative_w: Option<f32>,
    /// Move each real and fake image by up to K pixels (random, per step) before CLIP sees
    /// it: DiffAugment's translation, not in the released code (default 0: off).
    #[arg(long, conflicts_with = "resume")]
    augment_shift: Option<usize>,
    /// Images decoded ahead on this many threads (default: the cores, at most 4).
    #[arg(long, conflicts_with = "resume")]
    workers: Option<usize>,
}

/// Set by SIGINT; the training loop checks it between steps and checkpoints before leaving.
pub(crate) static STOP: AtomicBool = AtomicBool::new(false);

#[cfg(unix)]
extern "C" fn on_sigint(_: libc::c_int) {
    if STOP.swap(true, Ordering::SeqCst) {
        // A second Ctrl-C: the user does not want to wait for the checkpoint.
        unsafe { libc::_exit(130) };
    }
}

pub(crate) fn install_ctrl_c() {
    #[cfg(unix)]
    unsafe {
        // The handler only touches an atomic (async-signal-safe).
        libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t);
    }
}

fn model_config(a: &TrainArgs) -> Result<ModelConfig> {
    match &a.config {
        Some(p) => read_model_config(p),
        None => preset(&a.arch, &a.size),
    }
}

/// A bare ModelConfig or `ratlip model info --json` output.
fn read_model_config(p: &Path) -> Result<ModelConfig> {
    let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{} is not JSON", p.display()))?;
    let obj = v.get("config").cloned().unwrap_or(v);
    Ok(ModelConfig::from_json(&obj.to_string()).with_context(|| format!("{}: not a model config", p.display()))?)
}

fn preset(arch: &str, size: &str) -> Result<ModelConfig> {
    let arch = Arch::parse(arch)?;
    Ok(match size {
        "tiny" => ModelConfig::tiny(arch),
        "released" => ModelConfig::released(arch),
        other => bail!("unknown size {other:?}: expected tiny or released"),
    })
}

/// `ratlip bench train`: one whole step at a preset, its parts, and what it asks of the device.
pub fn bench(gpu: &Gpu, arch: &str, size: &str, config_file: Option<&Path>, batch: usize, warmup: usize, reps: usize, profile: bool) -> Result<()> {
    let (config, name) = match config_file {
        Some(p) => (read_model_config(p)?, p.display().to_string()),
        None => (preset(arch, size)?, format!("{arch} {size}")),
    };
    println!("adapter: {}", gpu.adapter_info().name);
    println!("train step: {name} ({}×{} px), batch {batch}, {warmup} warm-up + {reps} timed steps", config.image_size, config.image_size);
    let t = ratlip::bench::train::step_timing(gpu, config, batch, warmup, reps, profile)?;
    println!(
        "{:.1} ms per step ({:.2} images/s): G + CLIP on the fake {:.1} ms, D step {:.1} ms, G step {:.1} ms; {:.0} dispatches, {:.0} submissions per step",
        t.ms_step,
        t.images_per_s(),
        t.ms_fake,
        t.ms_d,
        t.ms_g,
        t.dispatches_per_step,
        t.submits_per_step
    );
    if !t.profile.is_empty() {
        let total: f64 = t.profile.iter().map(|r| r.2).sum();
        println!("profile of one more step, every dispatch waited on ({:.1} ms in all):", total * 1e3);
        for (name, n, s) in t.profile.iter().take(25) {
            println!("  {:>8.1} ms {:>5.1}% {n:>6}×  {name}", s * 1e3, 100.0 * s / total);
        }
    }
    Ok(())
}

pub(crate) fn fmt_time(s: f64) -> String {
    let s = s.max(0.0) as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

pub fn train(gpu: &Gpu, a: &TrainArgs) -> Result<()> {
    let mut run = match &a.resume {
        Some(dir) => {
            let mut run = Run::resume(gpu, dir).with_context(|| format!("resuming {}", dir.display()))?;
            if let Some(n) = a.steps {
                run.set_steps(n)?;
            }
            eprintln!("resuming {} at step {} of {} (data epoch {}, position {})", dir.display(), run.step, run.config.steps, run.data_position().epoch, run.data_position().cursor);
            run
        }
        None => {
            let (data, out) = (a.data.clone().context("--data is required")?, a.out.clone().context("--out is required")?);
            // A fine-tune's config is its model's: the presets only describe fresh models.
            let init = match &a.model {
                Some(p) => Some(super::model::open(gpu, p)?),
                None => None,
            };
            let mut model_cfg = match &init {
                Some(m) => m.config.clone(),
                None => model_config(a)?,
            };
            if a.no_shuffle_attention {
                model_cfg.shuffle_attention = Some(false);
            }
            let clip = match &a.clip {
                Some(p) => {
                    let clip = super::clip::load_or_from_model(gpu, p)?;
                    model_cfg.clip = clip.config.clone();
                    model_cfg.cond_dim = clip.config.embed_dim;
                    Some(clip)
                }
                None => None,
            };
            model_cfg.validate().context("the model config with this CLIP (see `ratlip model info --json` for the fields; --config sets them)")?;
            let mut config = RunConfig::new(data, model_cfg);
            config.batch = a.batch;
            config.steps = a.steps.unwrap_or(1000);
            config.seed = a.seed;
            config.sample_every = a.sample_every;
            config.checkpoint_every = a.checkpoint_every;
            config.keep = a.keep;
            config.lr_g = a.lr_g.unwrap_or(config.lr_g);
            config.lr_d = a.lr_d.unwrap_or(config.lr_d);
            config.sim_w = a.sim_w.unwrap_or(config.sim_w);
            config.magp_w = a.magp_w.unwrap_or(config.magp_w);
            config.pixel_w = a.pixel_w.unwrap_or(config.pixel_w);
            config.div_w = a.div_w.unwrap_or(config.div_w);
            config.div_tau = a.div_tau.unwrap_or(config.div_tau);
            config.hard_negative_w = a.hard_negative_w.unwrap_or(config.hard_negative_w);
            config.augment_shift = a.augment_shift.unwrap_or(config.augment_shift);
            config.workers = a.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()).min(4));
            let model = match a.model.as_ref().zip(init) {
                Some((p, mut model)) => {
                    config.init = Some(p.clone());
                    if let Some(new) = clip {
                        if new.config != model.config.clip {
                            anyhow::bail!(
                                "--clip {}: its sizes {} differ from the CLIP of --model {} ({}); a model can only take a CLIP of its own sizes",
                                a.clip.as_ref().map(|c| c.display().to_string()).unwrap_or_default(),
                                serde_json::to_string(&new.config)?,
                                p.display(),
                                serde_json::to_string(&model.config.clip)?
                            );
                        }
                        config.clip = a.clip.clone();
                        model.clip = new;
                    }
                    model
                }
                None => Model::init(gpu, config.model.clone(), clip, a.seed, true)?,
            };
            Run::create(&out, config, model).with_context(|| format!("starting a run in {}", out.display()))?
        }
    };
    describe(&run);
    install_ctrl_c();
    let started_at = run.step;
    let t0 = std::time::Instant::now();
    let outcome = run.train(&STOP, |r| progress(r, started_at, t0.elapsed().as_secs_f64()));
    eprintln!();
    let outcome = outcome.with_context(|| format!("training in {}", run.dir.display()))?;
    if !run.skipped().is_empty() {
        eprintln!("{} unreadable image(s) skipped:", run.skipped().len());
        for (i, why) in run.skipped() {
            eprintln!("  {}: {why}", run.dataset.items[*i].image.display());
        }
    }
    let ckpt = run.last_checkpoint().map(Path::display).map(|d| d.to_string()).unwrap_or_default();
    match outcome {
        Outcome::Finished => println!("finished step {} in {}; checkpoint {ckpt}", run.step, run.dir.display()),
        Outcome::Interrupted => {
            println!("interrupted at step {}: wrote {ckpt}; continue with `ratlip train --resume {}`", run.step, run.dir.display());
            std::process::exit(130);
        }
    }
    Ok(())
}

fn describe(run: &Run) {
    let c = &run.config;
    let (g, d, nc) = run.model.parameter_counts();
    eprintln!(
        "data: {} ({} images, {} captions, {:?} layout{}); model {} {}×{} (netG {g}, netD {d}, netC {nc}); batch {}, {} steps, seed {}, lr G {} D {}, sim_w {}, magp_w {}{}{}{}{}",
        c.data.display(),
        run.dataset.items.len(),
        run.dataset.caption_count(),
        run.dataset.layout,
        if run.dataset.without_captions > 0 { format!(", {} images without captions left out", run.dataset.without_captions) } else { String::new() },
        c.model.arch.name(),
        c.model.image_size,
        c.model.image_size,
        c.batch,
        c.steps,
        c.seed,
        c.lr_g,
        c.lr_d,
        c.sim_w,
        c.magp_w,
        if c.pixel_w > 0.0 { format!(", pixel_w {}", c.pixel_w) } else { String::new() },
        if c.div_w > 0.0 { format!(", div_w {} (cap {})", c.div_w, c.div_tau) } else { String::new() },
        if c.hard_negative_w > 0.0 { format!(", hard_negative_w {}", c.hard_negative_w) } else { String::new() },
        if c.augment_shift > 0 { format!(", augment shift ±{} px", c.augment_shift) } else { String::new() }
    );
}

fn progress(r: &StepReport, started_at: u64, elapsed: f64) {
    let done = (r.step - started_at) as f64;
    let per = elapsed / done.max(1.0);
    let eta = per * (r.steps - r.step) as f64;
    let m = &r.metrics;
    eprint!(
        "\rstep {}/{}  L_D {:.3} (real {:.3} mis {:.3}{} fake {:.3} gp {:.3})  L_G {:.3} cos {:.3} L1 {:.3}{}  {:.2} img/s  ETA {}   ",
        r.step,
        r.steps,
        m.loss_d,
        m.loss_real,
        m.loss_mis,
        m.loss_contrast.map(|c| format!(" contrast {c:.3}")).unwrap_or_default(),
        m.loss_fake,
        m.magp,
        m.loss_g,
        m.cos,
        m.pixel,
        m.diversity.map(|d| format!(" div {d:.3}")).unwrap_or_default(),
        r.images_per_s,
        fmt_time(eta)
    );
}
