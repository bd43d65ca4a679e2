use clap::{Parser, Subcommand};

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
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        what: BenchWhat,
    },
}

#[derive(Subcommand)]
enum BenchWhat {
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
        Command::Bench { what: BenchWhat::Kernels { peak_gflops, reps } } => {
            let g = gpu()?;
            ratlip::bench::kernels(&g, peak_gflops, reps)?;
        }
    }
    Ok(())
}
