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
    /// Datasets: `dataset synth` writes a synthetic captioned one (shapes or cartoon faces).
    Dataset {
        #[command(subcommand)]
        what: DatasetWhat,
    },
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        what: BenchWhat,
    },
}

#[derive(Subcommand)]
enum ClipWhat {
    /// Token ids and sentence embedding of a prompt.
    Text {
        /// CLIP weights: a folder (config.json + model.safetensors) or a .safetensors file.
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
enum DatasetWhat {
    /// Images with ten captions each, in the folder layout `ratlip train` reads.
    Synth(commands::dataset::SynthArgs),
}

#[derive(Subcommand)]
enum BenchWhat {
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
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let gpu = || Gpu::new(&GpuOptions { adapter: cli.adapter.clone() });
    match cli.command {
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
        Command::Bench { what: BenchWhat::Kernels { peak_gflops, reps } } => {
            let g = gpu()?;
            ratlip::bench::kernels(&g, peak_gflops, reps)?;
        }
    }
    Ok(())
}
