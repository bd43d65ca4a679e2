//! What every training run folder shares (`ratlip train`, `ratlip train-clip`): checkpoint
//! file names, which checkpoints are complete, keeping the newest N, and the step loop with
//! its schedule and Ctrl-C.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};

/// How a run's `train` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Reached the configured step count.
    Finished,
    /// Stopped by the stop flag (Ctrl-C) after writing a checkpoint.
    Interrupted,
}

pub(crate) fn io(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Other(format!("{}: {e}", path.display()))
}

/// (model or CLIP file, train state file) of the checkpoint at `step`.
pub fn checkpoint_paths(dir: &Path, step: u64) -> (PathBuf, PathBuf) {
    let c = dir.join("checkpoints");
    (c.join(format!("step_{step:06}.safetensors")), c.join(format!("train_state_{step:06}.safetensors")))
}

/// Steps that have a complete checkpoint (both files), ascending.
pub fn checkpoint_steps(dir: &Path) -> Vec<u64> {
    let Ok(rd) = std::fs::read_dir(dir.join("checkpoints")) else { return Vec::new() };
    let mut steps: Vec<u64> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_prefix("train_state_")?.strip_suffix(".safetensors")?.parse().ok()))
        .filter(|&s| checkpoint_paths(dir, s).0.is_file())
        .collect();
    steps.sort_unstable();
    steps
}

/// Deletes all but the newest `keep` complete checkpoints.
pub(crate) fn keep_newest(dir: &Path, keep: usize) -> Result<()> {
    let steps = checkpoint_steps(dir);
    for &old in steps.iter().take(steps.len().saturating_sub(keep)) {
        let (m, s) = checkpoint_paths(dir, old);
        // The state file first: a model file without one is not a checkpoint.
        std::fs::remove_file(&s).map_err(|e| io(&s, e))?;
        std::fs::remove_file(&m).map_err(|e| io(&m, e))?;
    }
    Ok(())
}

/// A run that [`drive`] can step.
pub(crate) trait Steps {
    type Report;
    /// (steps done, steps wanted).
    fn progress(&self) -> (u64, u64);
    fn checkpoint_every(&self) -> u64;
    /// The step of the newest checkpoint written or resumed from this session.
    fn checkpointed_at(&self) -> Option<u64>;
    fn step(&mut self) -> Result<Self::Report>;
    fn checkpoint(&mut self) -> Result<PathBuf>;
    /// Scheduled work after a step (the GAN's sample grids); `last`: the run is ending.
    fn after_step(&mut self, _last: bool) -> Result<()> {
        Ok(())
    }
}

/// Steps until the wanted count (or until `stop` is set: then a checkpoint and
/// `Outcome::Interrupted`), with checkpoints on schedule and at the end.
pub(crate) fn drive<S: Steps>(run: &mut S, stop: &AtomicBool, mut on_step: impl FnMut(&S::Report)) -> Result<Outcome> {
    let checkpoint_if_new = |run: &mut S| -> Result<()> {
        if run.checkpointed_at() != Some(run.progress().0) {
            run.checkpoint()?;
        }
        Ok(())
    };
    while run.progress().0 < run.progress().1 {
        if stop.load(Ordering::Relaxed) {
            checkpoint_if_new(run)?;
            return Ok(Outcome::Interrupted);
        }
        let r = run.step()?;
        on_step(&r);
        let every = run.checkpoint_every();
        if every > 0 && run.progress().0 % every == 0 {
            run.checkpoint()?;
        }
        run.after_step(false)?;
    }
    checkpoint_if_new(run)?;
    run.after_step(true)?;
    Ok(Outcome::Finished)
}
