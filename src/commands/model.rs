//! `ratlip model info|new|average`, `ratlip import`, `ratlip export`, `ratlip generate`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ratlip::clip::tokenizer::ClipTokenizer;
use ratlip::app::DEFAULT_MODEL_PATHS;
use ratlip::images;
use ratlip::latent::seed_noise;
use ratlip::model::{pytorch, Arch, Model, ModelConfig};
use ratlip::rng::Rng;
use ratlip::weights::{save_safetensors, HostTensor, WeightFile};
use ratlip::{Gpu, Tape, Tensor};

pub fn open(gpu: &Gpu, path: &Path) -> Result<Model> {
    Model::load(gpu, path).with_context(|| format!("opening model {}", path.display()))
}

fn millions(n: usize) -> String {
    format!("{:.2} M ({n})", n as f64 / 1e6)
}

pub fn info(gpu: &Gpu, path: &Path, json: bool) -> Result<()> {
    let m = open(gpu, path)?;
    let c = &m.config;
    let (g, d, nc) = m.parameter_counts();
    let clip = m.clip.state_dict()?.values().map(|t| t.data.len()).sum::<usize>();
    if json {
        let v = serde_json::json!({
            "file": path.display().to_string(),
            "config": c,
            "parameters": {"netG": g, "netD": d, "netC": nc, "clip": clip},
            "training_checkpoint": m.d.is_some(),
            "provenance": m.provenance,
        });
        println!("{v}");
        return Ok(());
    }
    println!("file:        {}", path.display());
    println!("arch:        {}", c.arch.name());
    println!(
        "generator:   z {} + sentence {} → {}×{} image; ngf {}, {} image blocks {:?}",
        c.z_dim,
        c.cond_dim,
        c.image_size,
        c.image_size,
        c.ngf,
        c.image_blocks,
        c.image_channels()
    );
    println!(
        "bridge:      {} blocks on a {}×{}×{} code (mid {}); text fusion {}; shuffle attention {}",
        c.bridge_blocks,
        c.code_ch,
        c.code_size(),
        c.code_size(),
        c.mid_ch,
        // GALIP's config keeps lstm_hidden (its file format does), but no LSTM reads it.
        match c.arch {
            Arch::Galip => "affine from (z, sentence), no LSTM".to_string(),
            Arch::Ratlip => format!("one RAT LSTM shared by every block, hidden {}", c.lstm_hidden),
            Arch::RatlipRelease => format!("an LSTM in each block, hidden {}", c.lstm_hidden),
        },
        if c.shuffle_attention() { format!("{} groups", c.sa_groups) } else { "no".into() }
    );
    let v = &c.clip.vision;
    let t = &c.clip.text;
    println!(
        "CLIP:        text {}×{} ({} heads, vocab {}), vision {}×{} patch {} at {}, embed {}; mapper prompts {}, D features {:?}",
        t.layers, t.width, t.heads, t.vocab_size, v.layers, v.width, v.patch_size, v.image_size, c.clip.embed_dim, c.prompts, c.clip_features
    );
    println!("parameters:  netG {}", millions(g));
    if m.d.is_some() {
        println!("             netD {}", millions(d));
        println!("             netC {}", millions(nc));
    } else {
        println!("             (no NetD/NetC: not a training checkpoint)");
    }
    println!("             CLIP {} (frozen)", millions(clip));
    let p = &m.provenance;
    println!("provenance:  {} (ratlip {})", p.origin, p.ratlip_version);
    for s in &p.sources {
        println!("             from {s}");
    }
    for (k, v) in &p.detail {
        println!("             {k}: {v}");
    }
    Ok(())
}

pub fn new(gpu: &Gpu, arch: &str, size: &str, clip: Option<&Path>, seed: u64, generator_only: bool, out: &Path) -> Result<()> {
    let arch = Arch::parse(arch)?;
    let mut config = match size {
        "released" => ModelConfig::released(arch),
        "tiny" => ModelConfig::tiny(arch),
        other => bail!("unknown size {other:?}: expected released or tiny"),
    };
    let clip = match clip {
        Some(p) => {
            let c = super::clip::load(gpu, p)?;
            config.clip = c.config.clone();
            config.cond_dim = c.config.embed_dim;
            Some(c)
        }
        None => None,
    };
    let m = Model::init(gpu, config, clip, seed, !generator_only)?;
    m.save(out)?;
    let (g, d, c) = m.parameter_counts();
    println!("wrote {} ({}; netG {g}, netD {d}, netC {c} parameters)", out.display(), m.config.arch.name());
    Ok(())
}

pub fn average(gpu: &Gpu, files: &[PathBuf], out: &Path) -> Result<()> {
    let avg = ratlip::model::average::average(files).context("averaging G")?;
    avg.save(out)?;
    // Opening it checks every name and shape, as `generate` will.
    let m = open(gpu, out)?;
    println!(
        "wrote {}: netG ({} parameters) averaged over {} checkpoints (steps {}); netD, netC and CLIP from {}",
        out.display(),
        m.parameter_counts().0,
        files.len(),
        avg.provenance.detail.get("averaged_steps").map_or("?", String::as_str),
        files.last().expect("at least two").display()
    );
    Ok(())
}

pub fn import(gpu: &Gpu, checkpoint: &Path, clip: &Path, image_size: usize, out: &Path) -> Result<()> {
    let imp = pytorch::import_checkpoint(gpu, checkpoint, clip, image_size)
        .with_context(|| format!("importing {}", checkpoint.display()))?;
    imp.model.save(out)?;
    let (g, d, c) = imp.model.parameter_counts();
    println!(
        "imported {} (arch {}, epoch {}) → {}\n  netG {g}, netD {d}, netC {c} parameters; mapper ViT matches the CLIP given to {:.1e}",
        checkpoint.display(),
        imp.model.config.arch.name(),
        imp.epoch.as_deref().unwrap_or("?"),
        out.display(),
        imp.mapper_vit_difference
    );
    Ok(())
}

pub fn export(gpu: &Gpu, model: &Path, out: &Path, epoch: Option<i64>) -> Result<()> {
    let m = open(gpu, model)?;
    let epoch = epoch.or_else(|| m.provenance.detail.get("epoch").and_then(|e| e.parse().ok())).unwrap_or(0);
    pytorch::export_checkpoint(&m, out, epoch)?;
    println!(
        "wrote {} for PyTorch: {{'model': {{'netG'{}}}, 'epoch': {epoch}}} in the released code's names (arch {})",
        out.display(),
        if m.d.is_some() { ", 'netD', 'netC'" } else { "" },
        m.config.arch.name()
    );
    Ok(())
}

/// How a generate call picks its noise.
pub struct NoiseSpec {
    pub file: Option<PathBuf>,
    pub seed: u64,
    pub count: usize,
}

/// Noise [K, z]: from a file (tensor "noise", or its only tensor) or sample i of a seed, each
/// sample its own stream so image i is the same whatever K and the batch size.
pub fn noise(spec: &NoiseSpec, z_dim: usize) -> Result<(Vec<f32>, usize)> {
    match &spec.file {
        Some(path) => {
            let mut w = WeightFile::load(path)?;
            let names: Vec<String> = w.names().map(str::to_string).collect();
            let name = if w.contains("noise") {
                "noise".to_string()
            } else if names.len() == 1 {
                names[0].clone()
            } else {
                bail!("{}: expected a tensor named \"noise\" (or a single tensor); found {names:?}", path.display())
            };
            let t = w.take_any(&name).expect("present");
            match t.shape.as_slice() {
                [k, z] if *z == z_dim => Ok((t.data, *k)),
                [z] if *z == z_dim => Ok((t.data, 1)),
                s => bail!("{}: noise tensor {name} is {s:?}; this model wants [K, {z_dim}]", path.display()),
            }
        }
        None => {
            let data = (0..spec.count).flat_map(|i| seed_noise(spec.seed, i as u64, z_dim)).collect();
            Ok((data, spec.count))
        }
    }
}

/// Sentence embeddings of prompts, telling the user when one was cut to CLIP's context.
pub fn embed_prompts(m: &Model, prompts: &[String]) -> Result<Vec<Vec<f32>>> {
    let tok = ClipTokenizer::bundled()?;
    let ctx = m.config.clip.text.context_length;
    let mut ids = Vec::new();
    for p in prompts {
        let enc = tok.encode(p, ctx)?;
        if enc.truncated {
            eprintln!("note: the prompt {p:?} is {} tokens; CLIP reads {ctx}, so it was truncated", enc.original_len);
        }
        ids.push(enc.ids);
    }
    let tape = Tape::new(&m.clip.gpu);
    let out = m.clip.encode_text(&tape, &ids).context("encoding the prompt (does this model's CLIP use CLIP's tokenizer?)")?;
    let flat = out.sent_emb.value().to_vec()?;
    Ok(flat.chunks(m.config.cond_dim).map(<[f32]>::to_vec).collect())
}

/// G in eval mode on noise [K, z] and one sentence embedding per image [K, cond], `batch`
/// images per GPU pass → [K, 3, S, S]. With more than one pass a progress line with an ETA
/// goes to stderr, since released-size models take seconds per image on a CPU.
pub fn render(gpu: &Gpu, m: &Model, z: &[f32], sent: &[f32], batch: usize) -> Result<Vec<f32>> {
    let c = &m.config;
    let k = z.len() / c.z_dim;
    debug_assert_eq!(sent.len(), k * c.cond_dim);
    let mut pixels = Vec::with_capacity(k * 3 * c.image_size * c.image_size);
    let batch = batch.max(1);
    let started = std::time::Instant::now();
    for start in (0..k).step_by(batch) {
        let n = batch.min(k - start);
        let zt = Tensor::from_slice(gpu, &[n, c.z_dim], &z[start * c.z_dim..(start + n) * c.z_dim])?;
        let st = Tensor::from_slice(gpu, &[n, c.cond_dim], &sent[start * c.cond_dim..(start + n) * c.cond_dim])?;
        pixels.extend(m.generate(&zt, &st)?.to_vec()?);
        if k > batch {
            let done = start + n;
            let el = started.elapsed().as_secs_f64();
            eprint!("\r{done}/{k} images, {:.2} s/image, ETA {:.0} s   ", el / done as f64, el / done as f64 * (k - done) as f64);
        }
    }
    if k > batch {
        eprintln!();
    }
    Ok(pixels)
}

/// `--save-tensor`: the raw float images [K, 3, S, S] with the noise [K, z] and sentence
/// embedding(s) that made them, so a run can be checked number for number or fed back.
pub fn save_raw(path: &Path, c: &ModelConfig, pixels: &[f32], z: &[f32], sent: HostTensor, meta: &[(&str, String)]) -> Result<()> {
    let s = c.image_size;
    let k = z.len() / c.z_dim;
    let mut t = std::collections::BTreeMap::new();
    t.insert("images".to_string(), HostTensor::new(vec![k, 3, s, s], pixels.to_vec()));
    t.insert("noise".to_string(), HostTensor::new(vec![k, c.z_dim], z.to_vec()));
    t.insert("sent_emb".to_string(), sent);
    let meta = meta.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    save_safetensors(path, &t, &meta)?;
    println!("wrote {} (images [{k}, 3, {s}, {s}], raw floats)", path.display());
    Ok(())
}

/// The `Software` text chunk every image ratlip writes carries.
pub fn software() -> (&'static str, String) {
    ("Software", format!("ratlip {}", env!("CARGO_PKG_VERSION")))
}

/// The model to use: the one given, else the first default that exists, else a plain
/// explanation of how to get one (no trained model is bundled yet).
pub fn resolve_model(given: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p);
    }
    if let Some(p) = DEFAULT_MODEL_PATHS.iter().map(PathBuf::from).find(|p| p.exists()) {
        eprintln!("using {}", p.display());
        return Ok(p);
    }
    bail!(
        "no --model given, and there is no model at {}.\n\
         ratlip ships a small model of cartoon faces as assets/default.safetensors in its source folder: run from that folder, or pass --model PATH/assets/default.safetensors.\n\
         Other models:\n\
         - import the authors' checkpoint: ratlip import --checkpoint state_epoch_1480.pth --clip ViT-B-32/ -o ratlip.safetensors\n\
         - or train one on captioned images: ratlip train --data DIR --out RUN (checkpoints in RUN/checkpoints/)\n\
         - or make an untrained toy model to try the commands: ratlip model new --size tiny -o ratlip.safetensors",
        DEFAULT_MODEL_PATHS.join(" or ")
    )
}

pub struct GenerateArgs {
    pub model: PathBuf,
    pub prompt: String,
    pub noise: NoiseSpec,
    pub batch: usize,
    pub out: Option<PathBuf>,
    pub save_tensor: Option<PathBuf>,
    /// Output size (default: the model's S).
    pub size: Option<usize>,
    /// One numbered PNG per image instead of a grid.
    pub separate: bool,
    /// Each pixel of the PNG as a zoom×zoom block.
    pub zoom: usize,
}

pub fn generate(gpu: &Gpu, a: &GenerateArgs) -> Result<()> {
    let mut m = open(gpu, &a.model)?;
    if let Some(s) = a.size {
        m.set_output_size(s)?;
    }
    let c = &m.config;
    let (z, k) = noise(&a.noise, c.z_dim)?;
    if k == 0 {
        bail!("nothing to generate: count is 0");
    }
    let sent = embed_prompts(&m, std::slice::from_ref(&a.prompt))?.remove(0);
    let s = c.image_size;
    let started = std::time::Instant::now();
    let pixels = render(gpu, &m, &z, &sent.repeat(k), a.batch)?;
    let ms = started.elapsed().as_secs_f64() * 1e3 / k as f64;
    if let Some(path) = &a.save_tensor {
        let sent = HostTensor::new(vec![c.cond_dim], sent.clone());
        let meta = [("prompt", a.prompt.clone()), ("model", a.model.display().to_string()), ("arch", c.arch.name().to_string())];
        save_raw(path, c, &pixels, &z, sent, &meta)?;
    }
    let out = match (&a.out, &a.save_tensor) {
        (Some(o), _) => Some(o.clone()),
        (None, None) => Some(PathBuf::from("ratlip.png")),
        (None, Some(_)) => None,
    };
    if let Some(out) = out {
        let imgs = images::from_chw_zoomed(&pixels, &[k, 3, s, s], a.zoom)?;
        let seed = match &a.noise.file {
            Some(f) => format!("noise file {}", f.display()),
            None => a.noise.seed.to_string(),
        };
        let text = |index: Option<usize>| {
            let mut t = vec![
                ("prompt", a.prompt.clone()),
                ("seed", seed.clone()),
                ("model", a.model.display().to_string()),
                ("arch", c.arch.name().to_string()),
                software(),
            ];
            if let Some(i) = index {
                // Image i of a seed is sample i of its stream: `--seed N --count i+1` remakes it.
                t.push(("index", i.to_string()));
            }
            t
        };
        if a.separate && k > 1 {
            let stem = out.file_stem().and_then(|s| s.to_str()).unwrap_or("ratlip").to_string();
            let dir = out.parent().map(Path::to_path_buf).unwrap_or_default();
            let digits = (k - 1).to_string().len().max(3);
            for (i, img) in imgs.iter().enumerate() {
                images::save_png(&dir.join(format!("{stem}_{i:0digits$}.png")), img, &text(Some(i)))?;
            }
            println!("wrote {k} images {stem}_{:0digits$}.png … {stem}_{:0digits$}.png of {s}×{s}{} ({ms:.0} ms per image)", 0, k - 1, zoomed(a.zoom));
        } else {
            let cols = (k as f64).sqrt().ceil() as usize;
            let img = if k == 1 { imgs[0].clone() } else { images::grid(&imgs, cols, 2)? };
            images::save_png(&out, &img, &text(None))?;
            println!("wrote {} ({k} image{} of {s}×{s}{}, {ms:.0} ms per image)", out.display(), if k == 1 { "" } else { "s" }, zoomed(a.zoom));
        }
    }
    Ok(())
}

fn zoomed(k: usize) -> String {
    if k > 1 {
        format!(" px shown {k}× larger")
    } else {
        " px".into()
    }
}

/// `ratlip bench generator`: eval-mode G at each batch size, after one warm-up pass (which
/// compiles the pipelines), timing `reps` passes including the readback.
pub fn bench(gpu: &Gpu, model: Option<&Path>, arch: &str, batches: &[usize], reps: usize) -> Result<()> {
    let m = match model {
        Some(p) => open(gpu, p)?,
        None => Model::init(gpu, ModelConfig::released(Arch::parse(arch)?), None, 0, false)?,
    };
    let c = &m.config;
    let gflop = ratlip::bench::generator_gflop(c);
    println!("adapter: {}", gpu.adapter_info().name);
    println!("G ({}, ngf {}, {}×{}): {gflop:.1} GFLOP per image", c.arch.name(), c.ngf, c.image_size, c.image_size);
    for &b in batches {
        let z = Tensor::from_slice(gpu, &[b, c.z_dim], &Rng::new(1).normals(b * c.z_dim))?;
        let s = Tensor::from_slice(gpu, &[b, c.cond_dim], &Rng::new(2).normals(b * c.cond_dim))?;
        m.generate(&z, &s)?.to_vec()?;
        let t0 = std::time::Instant::now();
        for _ in 0..reps.max(1) {
            m.generate(&z, &s)?.to_vec()?;
        }
        let per = t0.elapsed().as_secs_f64() / (reps.max(1) * b) as f64;
        println!(
            "batch {b:>3}: {:.1} ms per image, {:.3} images/s, {:.1} GFLOP/s",
            per * 1e3,
            1.0 / per,
            gflop / per
        );
    }
    Ok(())
}
