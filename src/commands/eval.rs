//! `ratlip eval`: FD, CLIP score, R-precision and attribute accuracy of a model's images
//! under an evaluator CLIP that did not train it (recipe: `ratlip::eval` module docs).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use ratlip::eval::{self, Options, Report};
use ratlip::Gpu;

#[derive(clap::Args)]
pub struct EvalArgs {
    /// The model to evaluate (default: ./ratlip.safetensors, then assets/default.safetensors).
    #[arg(long)]
    model: Option<PathBuf>,
    /// A `ratlip dataset synth --kind faces` folder the model did NOT train on (another --seed),
    /// or any captioned folder `ratlip train` reads (then no attribute accuracy).
    #[arg(long)]
    data: PathBuf,
    /// The evaluator CLIP (a CLIP file, or a ratlip model file's CLIP): one that did not
    /// train the model (another seed or config).
    #[arg(long)]
    evaluator: PathBuf,
    /// Images to evaluate (the folder's first N).
    #[arg(long, default_value_t = 500)]
    count: usize,
    /// Noise seed: image i uses seed_noise(seed, i); also draws the R-precision rivals.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Take FD against these statistics (from `--write-stats`, e.g. of a real dataset
    /// evaluated with the same evaluator) instead of the --data images.
    #[arg(long, value_name = "STATS.safetensors")]
    reference_stats: Option<PathBuf>,
    /// Also save the --data images' feature statistics under this evaluator.
    #[arg(long, value_name = "STATS.safetensors")]
    write_stats: Option<PathBuf>,
    /// The CLIP that scores "asked for, then not" (smile, glasses): one that reads them on
    /// real faces, e.g. a `train-clip --hard-negatives` checkpoint (default: the evaluator).
    #[arg(long)]
    judge: Option<PathBuf>,
    /// Prompt pairs per attribute for "asked for, then not" (0: skip it).
    #[arg(long, default_value_t = 200)]
    contrast_pairs: usize,
    /// Report folder: report.json, report.md, samples.png, real.png.
    #[arg(long)]
    out: PathBuf,
}

pub fn eval(gpu: &Gpu, a: &EvalArgs) -> Result<()> {
    let t0 = Instant::now();
    let model_path = super::model::resolve_model(a.model.clone())?;
    let model = super::model::open(gpu, &model_path)?;
    let evaluator = super::clip::load_or_from_model(gpu, &a.evaluator)?;
    let opts = Options { count: a.count, seed: a.seed, batch: a.batch, ..Options::default() };
    let examples = eval::load_examples(&a.data, a.count).with_context(|| format!("reading {}", a.data.display()))?;
    let reference = match &a.reference_stats {
        Some(p) => {
            let (g, meta) = eval::load_stats(p)?;
            let dim = evaluator.config.embed_dim;
            anyhow::ensure!(g.dim() == dim, "{}: statistics of {}-dimensional features; this evaluator embeds in {dim}", p.display(), g.dim());
            let theirs = meta.get("evaluator").map(String::as_str).unwrap_or("?");
            if theirs != a.evaluator.display().to_string() {
                eprintln!("note: {} was written with evaluator {theirs}; FD is only comparable under the same evaluator", p.display());
            }
            Some(g)
        }
        None => None,
    };
    eprintln!("evaluating {} on {} faces from {} with evaluator {}", model_path.display(), examples.len(), a.data.display(), a.evaluator.display());
    let started = Instant::now();
    let generated = eval::generate(&model, &examples, &opts, &|done, total| {
        let per = started.elapsed().as_secs_f64() / done as f64;
        eprint!("\rgenerating {done}/{total}, {:.2} s/image, ETA {:.0} s   ", per, per * (total - done) as f64);
    })?;
    eprintln!();
    eprintln!("measuring (evaluator features of {} real and {} generated images)", examples.len(), generated.len());
    let scores = eval::evaluate(&evaluator, &examples, &generated, reference.as_ref(), &opts)?;
    eprintln!("variety: {} prompts × {} seeds", examples.len().min(eval::VARIETY_PROMPTS), eval::VARIETY_SEEDS);
    let variety = eval::variety(&evaluator, &eval::generate_variety(&model, &examples, &opts)?)?;
    let judge_path = a.judge.clone().unwrap_or_else(|| a.evaluator.clone());
    let faces = examples.iter().all(|e| e.attrs.is_some());
    let contrast = if faces && a.contrast_pairs > 0 {
        eprintln!("asked for, then not: {} prompt pairs per attribute, judged by {}", a.contrast_pairs, judge_path.display());
        let judge = match &a.judge {
            Some(p) => super::clip::load_or_from_model(gpu, p)?,
            None => evaluator,
        };
        eval::contrast::measure(&model, &judge, a.contrast_pairs, a.seed, a.batch)?
    } else {
        Vec::new()
    };
    if let Some(p) = &a.write_stats {
        let meta = [("evaluator", a.evaluator.display().to_string()), ("data", a.data.display().to_string())];
        eval::save_stats(p, &scores.real_stats, &meta)?;
        eprintln!("wrote the statistics of {} images to {}", examples.len(), p.display());
    }
    let report = Report {
        model: model_path.display().to_string(),
        evaluator: a.evaluator.display().to_string(),
        data: a.data.display().to_string(),
        count: examples.len(),
        seed: a.seed,
        r_candidates: eval::r_candidates(&examples, &opts),
        fd: scores.fd,
        reference_stats: a.reference_stats.as_ref().map(|p| p.display().to_string()),
        fd_real_halves: scores.fd_real_halves,
        generated: scores.generated,
        real: scores.real,
        chance: eval::chance(),
        variety,
        judge: judge_path.display().to_string(),
        contrast,
        seconds: t0.elapsed().as_secs_f64(),
    };
    let files = eval::write_report(&a.out, &report, &examples, &generated)?;
    print!("{}", report.markdown());
    eprintln!("wrote {}", files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "));
    Ok(())
}
