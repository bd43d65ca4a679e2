//! Kernel benchmarks at the model's real shapes (`ratlip bench kernels`).
//!
//! Each case is timed on the GPU queue: one warm-up run (pipelines compiled, pool filled),
//! then `reps` runs encoded back to back and one wait, so the figure is device time plus
//! encoding, not readback. GFLOP/s counts 2 FLOP per multiply-add.

use std::time::Instant;

use crate::error::Result;
use crate::gpu::Gpu;

pub mod clip;
pub mod conv;
pub mod generator;
pub mod matmul;
pub mod train;

pub struct Row {
    pub name: String,
    pub gflop: f64,
    pub ms: f64,
}

/// Mean milliseconds of `f` over `reps` runs after one warm-up.
pub use generator::generator_gflop;

pub fn time(gpu: &Gpu, reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    gpu.sync()?;
    let t = Instant::now();
    for _ in 0..reps {
        f()?;
    }
    gpu.sync()?;
    Ok(t.elapsed().as_secs_f64() * 1e3 / reps.max(1) as f64)
}

/// A stated fp32 peak for the % column: the user's `--peak-gflops`, else a figure for the
/// devices we know, else none. For lavapipe: logical cores × 3 GHz × 32 FLOP/cycle (two
/// 8-wide AVX2 FMA units), an upper bound that the JIT-compiled shaders cannot reach.
pub fn stated_peak(gpu: &Gpu, user: Option<f64>) -> Option<(f64, String)> {
    if let Some(p) = user {
        return Some((p, "given with --peak-gflops".into()));
    }
    let name = gpu.adapter_info().name.to_lowercase();
    let known: [(&str, f64); 4] = [("h100", 67_000.0), ("h200", 67_000.0), ("a100", 19_500.0), ("rtx 4090", 82_600.0)];
    for (k, p) in known {
        if name.contains(k) {
            return Some((p, format!("fp32 peak of the {k} datasheet")));
        }
    }
    if gpu.adapter_info().device_type == wgpu::DeviceType::Cpu {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
        return Some((cores * 3.0 * 32.0, format!("{cores} cores × 3 GHz × 32 FLOP/cycle (AVX2 FMA)")));
    }
    None
}

pub fn kernels(gpu: &Gpu, peak: Option<f64>, reps: usize) -> Result<()> {
    let peak = stated_peak(gpu, peak);
    println!("adapter: {} ({:?}, {:?})", gpu.adapter_info().name, gpu.adapter_info().backend, gpu.adapter_info().device_type);
    match &peak {
        Some((p, why)) => println!("peak: {p:.0} GFLOP/s ({why})"),
        None => println!("peak: unknown (pass --peak-gflops for a % column)"),
    }
    println!("matmul kernel: {}", crate::ops::matmul::kernel_name(gpu));
    println!("{:<44} {:>10} {:>10} {:>9} {:>7}", "case", "GFLOP", "ms", "GFLOP/s", "%peak");
    let print = |r: &Row| {
        let rate = r.gflop / (r.ms / 1e3);
        let pct = peak.as_ref().map(|(p, _)| format!("{:.1}", 100.0 * rate / p)).unwrap_or_else(|| "-".into());
        println!("{:<44} {:>10.3} {:>10.2} {:>9.1} {:>7}", r.name, r.gflop, r.ms, rate, pct);
    };
    for r in matmul::rows(gpu, reps)? {
        print(&r);
    }
    for r in conv::rows(gpu, reps)? {
        print(&r);
    }
    Ok(())
}
