//! `ratlip dataset synth`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ratlip::data::synth::{self, Kind, Options};

#[derive(clap::Args)]
pub struct SynthArgs {
    /// What the images show.
    #[arg(long, value_enum)]
    kind: Kind,
    /// Number of images.
    #[arg(long)]
    count: usize,
    /// Side of the square images, in pixels.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Output folder (created; must not already hold a dataset).
    #[arg(long)]
    out: PathBuf,
    /// Image i is the same for a given seed whatever --count is.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Worker threads (default: all cores); does not change the output.
    #[arg(long)]
    threads: Option<usize>,
}

pub fn synth(a: &SynthArgs) -> Result<()> {
    let threads = a.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let opts = Options { kind: a.kind, count: a.count, size: a.size, seed: a.seed, out: a.out.clone(), threads };
    opts.validate()?;
    let start = Instant::now();
    let progress = Progress::new(a.count);
    synth::write_dataset(&opts, &|done| progress.update(done))
        .with_context(|| format!("writing the {} dataset to {}", a.kind.name(), a.out.display()))?;
    progress.finish();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "wrote {} {} images ({}×{} px, seed {}) with {} captions each to {} in {secs:.1} s ({:.0} images/s)",
        a.count,
        a.kind.name(),
        a.size,
        a.size,
        a.seed,
        synth::CAPTIONS_PER_IMAGE,
        a.out.display(),
        a.count as f64 / secs.max(1e-9)
    );
    Ok(())
}

/// A stderr line with count, rate and ETA, at most twice a second; on a terminal it redraws
/// in place, in a log it appends lines, and short runs print nothing.
struct Progress {
    total: usize,
    start: Instant,
    last: Mutex<Instant>,
    tty: bool,
}

impl Progress {
    fn new(total: usize) -> Self {
        let now = Instant::now();
        Progress { total, start: now, last: Mutex::new(now), tty: std::io::stderr().is_terminal() }
    }

    fn update(&self, done: usize) {
        let interval = Duration::from_millis(if self.tty { 500 } else { 5000 });
        let Ok(mut last) = self.last.try_lock() else { return };
        if last.elapsed() < interval || done == self.total {
            return;
        }
        *last = Instant::now();
        let secs = self.start.elapsed().as_secs_f64();
        let rate = done as f64 / secs.max(1e-9);
        let eta = (self.total - done) as f64 / rate.max(1e-9);
        let line = format!("{done}/{} images, {rate:.0}/s, ETA {eta:.0} s", self.total);
        if self.tty {
            eprint!("\r{line}   ");
        } else {
            eprintln!("{line}");
        }
    }

    fn finish(&self) {
        if self.tty && self.start.elapsed() >= Duration::from_millis(500) {
            eprintln!();
        }
    }
}
