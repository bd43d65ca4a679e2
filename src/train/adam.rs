//! torch.optim.Adam (no weight decay, no amsgrad) over named parameters.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::model::Params;
use crate::ops::reduce::{adam_step, AdamParams};
use crate::tensor::Tensor;
use crate::weights::{HostTensor, WeightFile};

/// MODEL.md §5: the released optimisers' betas and eps (lr differs between G and D).
pub const BETAS: (f32, f32) = (0.0, 0.9);
pub const EPS: f32 = 1e-8;
pub const LR_G: f32 = 1e-4;
pub const LR_D: f32 = 4e-4;

/// Per-parameter state, as torch keeps it: the step counts per tensor, because a parameter
/// whose gradient is None is skipped without advancing (NetD's unused conv_s).
pub struct Slot {
    pub m: Tensor,
    pub v: Tensor,
    pub step: u32,
}

pub struct Adam {
    prefixes: Vec<String>,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    state: BTreeMap<String, Slot>,
}

impl Adam {
    /// Adam over the trainable parameters whose names start with one of `prefixes`.
    pub fn new(prefixes: &[&str], betas: (f32, f32), eps: f32) -> Adam {
        Adam { prefixes: prefixes.iter().map(|s| s.to_string()).collect(), beta1: betas.0, beta2: betas.1, eps, state: BTreeMap::new() }
    }

    pub fn prefixes(&self) -> Vec<&str> {
        self.prefixes.iter().map(String::as_str).collect()
    }

    fn owns(&self, name: &str) -> bool {
        self.prefixes.iter().any(|p| name.starts_with(p.as_str()))
    }

    pub fn state(&self, name: &str) -> Option<&Slot> {
        self.state.get(name)
    }

    /// One update of every parameter that has a gradient in `grads`; the others keep their
    /// values and their state (torch skips `p.grad is None`). A gradient for a name this
    /// optimiser does not own, a buffer, or of the wrong shape is an error, not a silent skip.
    pub fn step(&mut self, params: &mut Params, grads: &BTreeMap<String, Tensor>, lr: f32) -> Result<()> {
        let p: &Params = params;
        self.step_with(&|name| if p.is_buffer(name) { None } else { p.get(name).ok() }, grads, lr)
    }

    /// `step` over tensors held elsewhere (CLIP's, by name); they are updated in place.
    pub fn step_tensors(&mut self, params: &BTreeMap<String, Tensor>, grads: &BTreeMap<String, Tensor>, lr: f32) -> Result<()> {
        self.step_with(&|name| params.get(name), grads, lr)
    }

    /// `lookup`: the trainable tensor of a name (None: no such parameter, or a buffer).
    fn step_with<'p>(&mut self, lookup: &dyn Fn(&str) -> Option<&'p Tensor>, grads: &BTreeMap<String, Tensor>, lr: f32) -> Result<()> {
        for (name, g) in grads {
            let p = match lookup(name) {
                Some(p) if self.owns(name) => p,
                _ => return Err(Error::Other(format!("adam: gradient for {name}, which this optimiser ({:?}) does not train", self.prefixes))),
            };
            if p.shape() != g.shape() {
                return Err(Error::shape("adam", format!("{name}: parameter {:?}, gradient {:?}", p.shape(), g.shape())));
            }
        }
        let hp = AdamParams { lr, beta1: self.beta1, beta2: self.beta2, eps: self.eps };
        for (name, g) in grads {
            let p = lookup(name).ok_or_else(|| Error::Other(format!("adam: no parameter {name}")))?;
            let slot = match self.state.get_mut(name) {
                Some(s) => s,
                None => {
                    let s = Slot { m: Tensor::zeros(p.gpu(), p.shape())?, v: Tensor::zeros(p.gpu(), p.shape())?, step: 0 };
                    self.state.entry(name.clone()).or_insert(s)
                }
            };
            slot.step += 1;
            // In place: every tape that saw the old value has been consumed by now.
            adam_step(p, g, &slot.m, &slot.v, &hp, slot.step)?;
        }
        Ok(())
    }

    /// The state as tensors `{prefix}m.{name}` / `{prefix}v.{name}` and the per-tensor step
    /// counts, for a training checkpoint.
    pub fn state_to_host(&self, prefix: &str) -> Result<(BTreeMap<String, HostTensor>, BTreeMap<String, u32>)> {
        let mut tensors = BTreeMap::new();
        let mut steps = BTreeMap::new();
        for (name, slot) in &self.state {
            tensors.insert(format!("{prefix}m.{name}"), HostTensor::new(slot.m.shape().to_vec(), slot.m.to_vec()?));
            tensors.insert(format!("{prefix}v.{name}"), HostTensor::new(slot.v.shape().to_vec(), slot.v.to_vec()?));
            steps.insert(name.clone(), slot.step);
        }
        Ok((tensors, steps))
    }

    /// Replaces the state with what `state_to_host` wrote: every named parameter must exist
    /// under this optimiser's prefixes with the tensors' shape.
    pub fn load_state(&mut self, params: &Params, w: &mut WeightFile, prefix: &str, steps: &BTreeMap<String, u32>) -> Result<()> {
        self.load_state_with(&|name| if params.is_buffer(name) { None } else { params.get(name).ok() }, w, prefix, steps)
    }

    /// `load_state` for tensors held elsewhere (`step_tensors`).
    pub fn load_state_tensors(&mut self, params: &BTreeMap<String, Tensor>, w: &mut WeightFile, prefix: &str, steps: &BTreeMap<String, u32>) -> Result<()> {
        self.load_state_with(&|name| params.get(name), w, prefix, steps)
    }

    fn load_state_with<'p>(&mut self, lookup: &dyn Fn(&str) -> Option<&'p Tensor>, w: &mut WeightFile, prefix: &str, steps: &BTreeMap<String, u32>) -> Result<()> {
        let mut state = BTreeMap::new();
        for (name, &step) in steps {
            let p = match lookup(name) {
                Some(p) if self.owns(name) => p,
                _ => return Err(Error::Other(format!("optimiser state for {name}, which this optimiser ({:?}) does not train", self.prefixes))),
            };
            let m = w.take(&format!("{prefix}m.{name}"), p.shape())?;
            let v = w.take(&format!("{prefix}v.{name}"), p.shape())?;
            state.insert(name.clone(), Slot { m: Tensor::from_slice(p.gpu(), p.shape(), &m.data)?, v: Tensor::from_slice(p.gpu(), p.shape(), &v.data)?, step });
        }
        self.state = state;
        Ok(())
    }
}
