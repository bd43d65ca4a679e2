use std::path::PathBuf;

use clap::{Parser, Subcommand};

mod commands;

use ratlip::{Gpu, GpuOptions};

/// RATLIP text-to-image GAN on WGSL compute shaders (any Vulkan/Metal/DX12 GPU, or lavapipe).
#[derive(Parser)]
#[command(name = "ratlip", version, about)]
struct Cli {
    /// GPU adapter to use (case-insensitive substring of its name; also RATLIP_ADAPTER).
    #[arg(long, global = true)]
    adapter: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the GPU adapter, backend, driver, the limits that matter and optional features.
    Info,
    /// CLIP: prompt embeddings and image-prompt scores.
    Clip {
        #[command(subcommand)]
        what: ClipWhat,
    },
    /// Model files: describe one, or create a fresh one.
    Model {
        #[command(subcommand)]
        what: ModelWhat,
    },
    /// Convert an authors' GALIP/RATLIP checkpoint (.pth, read without running pickle code)
    /// into a ratlip model file.
    Import {
        /// The checkpoint, e.g. state_epoch_1480.pth ({'model': {'netG', 'netD', 'netC'}, ...}).
        #[arg(long)]
        checkpoint: PathBuf,
        /// CLIP weights it was trained with (HF folder/safetensors or OpenAI names), e.g. ViT-B/32.
        #[arg(long)]
        clip: PathBuf,
        /// Output size S of the last image block (the released code fixes 224).
        #[arg(long, default_value_t = 224)]
        image_size: usize,
        #[arg(short, long)]
        out: PathBuf,
    },
    /// Write a model as a checkpoint the released PyTorch code loads.
    Export {
        #[arg(long)]
        model: PathBuf,
        /// PyTorch .pth in the released layout {'model': {'netG', 'netD', 'netC'}, 'epoch': N}.
        #[arg(long, value_name = "OUT.pth")]
        pytorch: PathBuf,
        /// Epoch number to record (default: the imported one, else 0).
        #[arg(long)]
        epoch: Option<i64>,
    },
    /// The desktop app: prompt → images, interpolation, comparison, a training run (opens a window).
    App {
        /// Model file to open (default: ./ratlip.safetensors or assets/default.safetensors).
        #[arg(long)]
        model: Option<PathBuf>,
        /// Training run folder (RUN of `ratlip train --out RUN`) to show in the Run tab.
        #[arg(long, value_name = "RUN_DIR")]
        run: Option<PathBuf>,
    },
    /// Generate images for a prompt.
    Generate {
        /// Model file (default: ./ratlip.safetensors or assets/default.safetensors).
        #[arg(long)]
        model: Option<PathBuf>,
        #[arg(long)]
        prompt: String,
        /// Seed of the noise; image i uses its own stream of this seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Number of images.
        #[arg(long, default_value_t = 1)]
        count: usize,
        /// Noise from a safetensors file (tensor "noise" [K, z_dim]) instead of a seed.
        #[arg(long)]
        noise: Option<PathBuf>,
        /// Images per GPU pass.
        #[arg(long, default_value_t = 8)]
        batch: usize,
        /// PNG output (a grid when count > 1); default ratlip.png unless --save-tensor is given.
        #[arg(short, long)]
        out: Option<PathBuf>,
        /// Also write the raw float images [K, 3, S, S] (+ noise, sent_emb) as safetensors.
        #[arg(long)]
        save_tensor: Option<PathBuf>,
        /// Output size S (default: the model's; the image blocks are convolutional).
        #[arg(long)]
        size: Option<usize>,
        /// One numbered PNG per image (OUT_000.png, ...) instead of a grid.
        #[arg(long)]
        separate: bool,
        /// Enlarge the PNG K times, each pixel a K×K block (the model's pixels, easier to see).
        #[arg(long, default_value_t = 1)]
        zoom: usize,
    },
    /// Images along a path between two seeds' noises (slerp) or two prompts (linear in CLIP's
    /// sentence embedding, at one noise): a strip and/or a looping animated PNG.
    Interpolate(commands::explore::InterpolateArgs),
    /// A labelled grid: one row per prompt, one column per seed, the same noise down a column,
    /// so only the prompt differs along a column.
    Compare(commands::explore::CompareArgs),
    /// Datasets: `dataset synth` writes a synthetic captioned one (shapes or cartoon faces).
    Dataset {
        #[command(subcommand)]
        what: DatasetWhat,
    },
    /// Train a model on a captioned image folder (also `ratlip --train ...`): a run folder
    /// with config, metrics.jsonl, sample grids and checkpoints; `--resume RUN_DIR` continues it.
    Train(commands::train::TrainArgs),
    /// Evaluate a model on held-out synthetic faces with an evaluator CLIP: FD, CLIP score,
    /// R-precision, attribute accuracy (zero-shot and by pixel detectors); JSON + markdown report.
    Eval(commands::eval::EvalArgs),
    /// Train a small CLIP contrastively on a captioned image folder (a run folder like
    /// `train`'s; the checkpoints are CLIP files), then score it zero-shot on held-out images.
    TrainClip(commands::train_clip::TrainClipArgs),
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        what: BenchWhat,
    },
}

#[derive(Subcommand)]
enum ClipWhat {
    /// Zero-shot attribute accuracy on a `ratlip dataset synth` folder (one prompt per class).
    Eval {
        /// CLIP weights: a CLIP file or folder, or a ratlip model file (its CLIP).
        #[arg(long)]
        clip: PathBuf,
        /// The synthetic set (its attributes.jsonl gives the truth).
        #[arg(long)]
        data: PathBuf,
        /// Only the last N images (file order): e.g. the ones `train-clip --holdout N` kept out.
        #[arg(long)]
        limit: Option<usize>,
        /// Also write the report as JSON here.
        #[arg(long, value_name = "FILE.json")]
        out: Option<PathBuf>,
    },
    /// Token ids and sentence embedding of a prompt.
    Text {
        /// CLIP weights: a folder (config.json + model.safetensors), a .safetensors file, or a
        /// ratlip model file (its CLIP, e.g. assets/default.safetensors).
        #[arg(long)]
        clip: PathBuf,
        #[arg(long)]
        prompt: String,
        /// Machine-readable output with full vectors.
        #[arg(long)]
        json: bool,
    },
    /// CLIP score of an image for a prompt: 100 × cosine similarity, standard preprocessing.
    Score {
        /// CLIP weights: a CLIP file or folder, or a ratlip model file (its CLIP).
        #[arg(long)]
        clip: PathBuf,
        #[arg(long)]
        image: PathBuf,
        #[arg(long)]
        prompt: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ModelWhat {
    /// Arch, sizes, parameter counts per part, and provenance of a model file.
    Info {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// A freshly initialised model (for training from scratch, or tests).
    New {
        /// galip, ratlip (the paper's RAT) or ratlip-release.
        #[arg(long, default_value = "ratlip")]
        arch: String,
        /// released (ngf 64, 224 px, ViT-B/32 sizes) or tiny.
        #[arg(long, default_value = "released")]
        size: String,
        /// CLIP weights to build around (default: a freshly initialised CLIP of the size's shape).
        #[arg(long)]
        clip: Option<PathBuf>,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Leave out NetD/NetC.
        #[arg(long)]
        generator_only: bool,
        #[arg(short, long)]
        out: PathBuf,
    },    /// G averaged over checkpoints of one run (Polyak averaging; netD, netC and CLIP are the
    /// last file's): steadier than any one checkpoint, e.g. a run's last 8.
    Average {
        /// Model files of one run, e.g. run/checkpoints/step_0029*.safetensors ... step_003600.
        #[arg(required = true, num_args = 2..)]
        files: Vec<PathBuf>,
        #[arg(short, long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum DatasetWhat {
    /// Images with ten captions each, in the folder layout `ratlip train` reads.
    Synth(commands::dataset::SynthArgs),
}

#[derive(Subcommand)]
enum BenchWhat {
    /// Generator ms per image and images/s at several batch sizes.
    Generator {
        #[arg(long)]
        model: Option<PathBuf>,
        /// Without --model: a fresh model of this arch at the released size.
        #[arg(long, default_value = "ratlip")]
        arch: String,
        #[arg(long, value_delimiter = ',', default_value = "1,16")]
        batch: Vec<usize>,
        #[arg(long, default_value_t = 2)]
        reps: usize,
    },
    /// One training step (G, D step with MA-GP, G step, both Adam updates) on random data:
    /// ms per step, its parts, images/s (compare: tools/reference/train_bench.py).
    Train {
        /// galip, ratlip or ratlip-release.
        #[arg(long, default_value = "ratlip")]
        arch: String,
        /// tiny or released.
        #[arg(long, default_value = "tiny")]
        size: String,
        /// A model config JSON instead of a preset (e.g. tools/recipes/galip_faces32.json, the
        /// shipped model's): its arch and sizes.
        #[arg(long, conflicts_with_all = ["arch", "size"])]
        config: Option<PathBuf>,
        #[arg(long, default_value_t = 8)]
        batch: usize,
        /// Untimed steps first (pipelines compiled, pool filled, Adam state created).
        #[arg(long, default_value_t = 2)]
        warmup: usize,
        #[arg(long, default_value_t = 5)]
        reps: usize,
        /// Then time one more step dispatch by dispatch and list the costliest kernels.
        #[arg(long)]
        profile: bool,
    },
    /// CLIP prompts/s and images/s (compare: tools/reference/clip_bench.py).
    Clip {
        /// CLIP weights: a folder (config.json + model.safetensors) or a .safetensors file.
        #[arg(long)]
        clip: PathBuf,
        #[arg(long, default_value_t = 16)]
        batch: usize,
        #[arg(long, default_value_t = 3)]
        reps: usize,
    },
    /// Matmul and conv2d forward/backward at the model's shapes: ms, GFLOP/s, % of peak.
    Kernels {
        /// Peak GFLOP/s of the device used for the % column (default: estimated).
        #[arg(long)]
        peak_gflops: Option<f64>,
        /// Timed repetitions per case.
        #[arg(long, default_value_t = 3)]
        reps: usize,
    },
}

fn main() {
    let cli = Cli::parse_from(train_spelling(std::env::args_os().collect()));
    if let Err(e) = run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// `ratlip --train ...` is the spelling the project promised: it means `ratlip train ...` when
/// it stands where the subcommand goes (after global options only), never as another
/// option's value.
fn train_spelling(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut i = 1;
    while i < args.len() {
        let a = args[i].to_string_lossy();
        if a == "--train" {
            args[i] = "train".into();
            break;
        } else if a == "--adapter" {
            i += 2;
        } else if a.starts_with("--adapter=") {
            i += 1;
        } else {
            break;
        }
    }
    args
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let gpu = || Gpu::new(&GpuOptions { adapter: cli.adapter.clone() });
    match cli.command {
        Command::App { model, run } => {
            let options = ratlip::app::AppOptions { model, run, adapter: cli.adapter.clone(), ..Default::default() };
            ratlip::app::run(options).map_err(anyhow::Error::msg)?;
        }
        Command::Info => {
            print!("{}", gpu()?.describe());
        }
        Command::Clip { what: ClipWhat::Text { clip, prompt, json } } => {
            commands::clip::text(&gpu()?, &clip, &prompt, json)?;
        }
        Command::Clip { what: ClipWhat::Score { clip, image, prompt, json } } => {
            commands::clip::score(&gpu()?, &clip, &image, &prompt, json)?;
        }
        Command::Dataset { what: DatasetWhat::Synth(args) } => commands::dataset::synth(&args)?,
        Command::Train(args) => commands::train::train(&gpu()?, &args)?,
        Command::Eval(args) => commands::eval::eval(&gpu()?, &args)?,
        Command::TrainClip(args) => commands::train_clip::train_clip(&gpu()?, &args)?,
        Command::Clip { what: ClipWhat::Eval { clip, data, limit, out } } => {
            commands::clip::eval(&gpu()?, &clip, &data, limit, out.as_deref())?;
        }
        Command::Bench { what: BenchWhat::Clip { clip, batch, reps } } => {
            let g = gpu()?;
            let model = commands::clip::load(&g, &clip)?;
            let r = ratlip::bench::clip::rates(&model, batch, reps)?;
            println!("adapter: {}", g.adapter_info().name);
            println!(
                "text:  {:.2} prompts/s at batch {} ({:.1} GFLOP/s, {:.2} GFLOP per prompt)",
                r.prompts_per_s, r.batch, r.prompts_per_s * r.gflop_per_prompt, r.gflop_per_prompt
            );
            println!(
                "image: {:.2} images/s at batch {} ({:.1} GFLOP/s, {:.2} GFLOP per image)",
                r.images_per_s, r.batch, r.images_per_s * r.gflop_per_image, r.gflop_per_image
            );
        }
        Command::Model { what: ModelWhat::Info { file, json } } => {
            commands::model::info(&gpu()?, &file, json)?;
        }
        Command::Model { what: ModelWhat::New { arch, size, clip, seed, generator_only, out } } => {
            commands::model::new(&gpu()?, &arch, &size, clip.as_deref(), seed, generator_only, &out)?;
        }
        Command::Model { what: ModelWhat::Average { files, out } } => {
            commands::model::average(&gpu()?, &files, &out)?;
        }
        Command::Import { checkpoint, clip, image_size, out } => {
            commands::model::import(&gpu()?, &checkpoint, &clip, image_size, &out)?;
        }
        Command::Export { model, pytorch, epoch } => {
            commands::model::export(&gpu()?, &model, &pytorch, epoch)?;
        }
        Command::Generate { model, prompt, seed, count, noise, batch, out, save_tensor, size, separate, zoom } => {
            let model = commands::model::resolve_model(model)?;
            let noise = commands::model::NoiseSpec { file: noise, seed, count };
            let args = commands::model::GenerateArgs { model, prompt, noise, batch, out, save_tensor, size, separate, zoom };
            commands::model::generate(&gpu()?, &args)?;
        }
        Command::Interpolate(args) => commands::explore::interpolate(&gpu()?, &args)?,
        Command::Compare(args) => commands::explore::compare(&gpu()?, &args)?,
        Command::Bench { what: BenchWhat::Generator { model, arch, batch, reps } } => {
            let g = gpu()?;
            commands::model::bench(&g, model.as_deref(), &arch, &batch, reps)?;
        }
        Command::Bench { what: BenchWhat::Train { arch, size, config, batch, warmup, reps, profile } } => {
            let g = gpu()?;
            commands::train::bench(&g, &arch, &size, config.as_deref(), batch, warmup, reps, profile)?;
        }
        Command::Bench { what: BenchWhat::Kernels { peak_gflops, reps } } => {
            let g = gpu()?;
            ratlip::bench::kernels(&g, peak_gflops, reps)?;
        }
    }
    Ok(())
}
