//! One whole training step (`train::train_step`: G once, the D step with MA-GP, the G step,
//! both Adam updates) timed on random data, so the figure is the step alone — no decoding,
//! no caption embedding. Compare: `tools/reference/train_bench.py` (PyTorch eager, same
//! config and batch).

use std::time::Instant;

use crate::error::Result;
use crate::gpu::Gpu;
use crate::model::{Model, ModelConfig, NET_C, NET_D, NET_G};
use crate::rng::Rng;
use crate::tensor::Tensor;
use crate::train::adam::{BETAS, EPS, LR_D, LR_G};
use crate::train::{d_step, g_step, generate_fake, Adam, Batch};

/// Mean wall milliseconds per step and its parts, and what one step asks of the device.
#[derive(Debug, Clone)]
pub struct StepTiming {
    pub batch: usize,
    pub ms_step: f64,
    /// G forward + CLIP on the fake (`generate_fake`).
    pub ms_fake: f64,
    /// Real and fake through CLIP/NetD/NetC, MA-GP (three extra NetD/NetC passes), backward, Adam.
    pub ms_d: f64,
    /// NetD/NetC on the fake, backward through CLIP and G, Adam.
    pub ms_g: f64,
    pub dispatches_per_step: f64,
    pub submits_per_step: f64,
    /// With `profile`: one more step with every dispatch timed, (kernel::entry, count, s).
    pub profile: Vec<(String, u64, f64)>,
}

impl StepTiming {
    pub fn images_per_s(&self) -> f64 {
        self.batch as f64 / (self.ms_step / 1e3)
    }
}

/// A fresh model of `config` trained for `warmup + reps` steps on one random batch; the last
/// `reps` are timed. Each part ends with a device sync so the split is honest.
pub fn step_timing(gpu: &Gpu, config: ModelConfig, batch: usize, warmup: usize, reps: usize, profile: bool) -> Result<StepTiming> {
    let mut model = Model::init(gpu, config, None, 0, true)?;
    let c = model.config.clone();
    let mut rng = Rng::new(7);
    let images = rng.uniforms(batch * 3 * c.image_size * c.image_size, -1.0, 1.0);
    let data = Batch {
        images: Tensor::from_slice(gpu, &[batch, 3, c.image_size, c.image_size], &images)?,
        sent_emb: Tensor::from_slice(gpu, &[batch, c.cond_dim], &rng.normals(batch * c.cond_dim))?,
        noise: Tensor::from_slice(gpu, &[batch, c.z_dim], &rng.normals(batch * c.z_dim))?,
        shifts: None,
        noise2: None,
        contrast: None,
    };
    let mut opt_d = Adam::new(&[NET_D, NET_C], BETAS, EPS);
    let mut opt_g = Adam::new(&[NET_G], BETAS, EPS);
    let (mut fake_s, mut d_s, mut g_s) = (0.0, 0.0, 0.0);
    let mut before = gpu.stats();
    for i in 0..warmup + reps {
        if i == warmup {
            before = gpu.stats();
            (fake_s, d_s, g_s) = (0.0, 0.0, 0.0);
        }
        let t = Instant::now();
        let fake = generate_fake(&mut model, &data)?;
        gpu.sync()?;
        fake_s += t.elapsed().as_secs_f64();
        let t = Instant::now();
        d_step(&mut model, &mut opt_d, &data, &fake, LR_D)?;
        gpu.sync()?;
        d_s += t.elapsed().as_secs_f64();
        let t = Instant::now();
        g_step(&mut model, &mut opt_g, &data, fake, LR_G)?;
        gpu.sync()?;
        g_s += t.elapsed().as_secs_f64();
    }
    let after = gpu.stats();
    let mut rows = Vec::new();
    if profile {
        gpu.start_profile()?;
        let fake = generate_fake(&mut model, &data)?;
        d_step(&mut model, &mut opt_d, &data, &fake, LR_D)?;
        g_step(&mut model, &mut opt_g, &data, fake, LR_G)?;
        rows = gpu.take_profile();
    }
    let n = reps.max(1) as f64;
    let ms = |s: f64| s * 1e3 / n;
    Ok(StepTiming {
        batch,
        ms_step: ms(fake_s + d_s + g_s),
        ms_fake: ms(fake_s),
        ms_d: ms(d_s),
        ms_g: ms(g_s),
        dispatches_per_step: (after.dispatches - before.dispatches) as f64 / n,
        submits_per_step: (after.submits - before.submits) as f64 / n,
        profile: rows,
    })
}
