//! Named parameters. Every learned tensor and buffer of G, NetD and NetC lives here under its
//! PyTorch state-dict name ("netG.mapping.FBlocks.0.conv1.weight"), so loading a checkpoint,
//! saving a model file, exporting to PyTorch and the optimiser's per-tensor state all speak
//! one vocabulary. Layers hold names; a forward pass binds names to tape variables.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use crate::autograd::{Grads, Tape, Var};
use crate::ops::elementwise::{self, Activation};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::rng::Rng;
use crate::tensor::Tensor;
use crate::weights::{HostTensor, WeightFile};

/// How a fresh parameter starts (PyTorch's defaults, and the spec's explicit inits).
#[derive(Clone, Copy, Debug)]
pub enum Init {
    /// U(−bound, bound): nn.Linear / nn.Conv2d (bound = 1/√fan_in) and nn.LSTM (1/√H).
    Uniform(f32),
    Const(f32),
}

pub struct Params {
    gpu: Gpu,
    tensors: BTreeMap<String, Tensor>,
    /// BatchNorm running statistics: saved and loaded, never trained.
    buffers: BTreeSet<String>,
}

impl Params {
    pub fn new(gpu: &Gpu) -> Params {
        Params { gpu: gpu.clone(), tensors: BTreeMap::new(), buffers: BTreeSet::new() }
    }

    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    pub fn get(&self, name: &str) -> Result<&Tensor> {
        self.tensors.get(name).ok_or_else(|| Error::Other(format!("no parameter named {name}")))
    }

    pub fn is_buffer(&self, name: &str) -> bool {
        self.buffers.contains(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// Trainable parameters under `prefix` (buffers excluded).
    pub fn trainable(&self, prefix: &str) -> Vec<&str> {
        self.names().filter(|n| n.starts_with(prefix) && !self.is_buffer(n)).collect()
    }

    /// Number of scalars under `prefix` (trainable only, or with buffers).
    pub fn count(&self, prefix: &str, with_buffers: bool) -> usize {
        self.tensors.iter().filter(|(n, _)| n.starts_with(prefix) && (with_buffers || !self.is_buffer(n))).map(|(_, t)| t.numel()).sum()
    }

    /// Replaces a tensor's contents (same shape), e.g. after an optimiser step.
    pub fn set(&mut self, name: &str, t: Tensor) -> Result<()> {
        let old = self.get(name)?;
        if old.shape() != t.shape() {
            return Err(Error::shape("params", format!("{name}: {:?} replaced by {:?}", old.shape(), t.shape())));
        }
        self.tensors.insert(name.to_string(), t);
        Ok(())
    }

    /// One more training-mode pass for every BatchNorm under `prefix`: PyTorch counts them
    /// in `num_batches_tracked` (used only with momentum=None, but a checkpoint should say
    /// what torch's would). Added on the GPU: no read-back.
    pub fn count_batch_norm_pass(&mut self, prefix: &str) -> Result<()> {
        let names: Vec<String> = self.names().filter(|n| n.starts_with(prefix) && n.ends_with(".num_batches_tracked")).map(String::from).collect();
        if names.is_empty() {
            return Ok(());
        }
        let one = Tensor::from_slice(&self.gpu, &[], &[1.0])?;
        for name in names {
            let next = crate::ops::elementwise::add(self.get(&name)?, &one)?;
            self.set(&name, next)?;
        }
        Ok(())
    }

    /// Every tensor to host memory, for saving.
    pub fn to_host(&self, prefix: &str) -> Result<BTreeMap<String, HostTensor>> {
        self.tensors
            .iter()
            .filter(|(n, _)| n.starts_with(prefix))
            .map(|(n, t)| Ok((n.clone(), HostTensor::new(t.shape().to_vec(), t.to_vec()?))))
            .collect()
    }
}

/// Where new parameters come from: a weight file (every name and shape checked) or fresh init.
pub enum Source<'a> {
    Load(&'a mut WeightFile),
    Init(Rng),
}

/// Declares parameters while a module is built; layers call it with their names and shapes.
pub struct Builder<'a> {
    pub params: &'a mut Params,
    source: Source<'a>,
    prefix: String,
}

impl<'a> Builder<'a> {
    pub fn new(params: &'a mut Params, source: Source<'a>) -> Builder<'a> {
        Builder { params, source, prefix: String::new() }
    }

    /// Names declared from now on start with `prefix` ("netG.").
    pub fn set_prefix(&mut self, prefix: &str) {
        self.prefix = prefix.to_string();
    }

    fn declare(&mut self, name: &str, shape: &[usize], init: Init, buffer: bool) -> Result<String> {
        let full = format!("{}{name}", self.prefix);
        let host = match &mut self.source {
            Source::Load(w) => w.take(&full, shape)?,
            Source::Init(rng) => {
                let n = shape.iter().product();
                let data = match init {
                    Init::Uniform(b) => rng.uniforms(n, -b, b),
                    Init::Const(c) => vec![c; n],
                };
                HostTensor::new(shape.to_vec(), data)
            }
        };
        let t = Tensor::from_slice(&self.params.gpu, shape, &host.data)?;
        if self.params.tensors.insert(full.clone(), t).is_some() {
            return Err(Error::Other(format!("parameter {full} declared twice")));
        }
        if buffer {
            self.params.buffers.insert(full.clone());
        }
        Ok(full)
    }

    pub fn param(&mut self, name: &str, shape: &[usize], init: Init) -> Result<String> {
        self.declare(name, shape, init, false)
    }

    pub fn buffer(&mut self, name: &str, shape: &[usize], value: f32) -> Result<String> {
        self.declare(name, shape, Init::Const(value), true)
    }
}

/// One forward pass's view of the parameters: which are differentiated, whether BatchNorm
/// runs in training mode, and the tape variables handed out so far (one per name, so a
/// parameter used twice accumulates one gradient).
pub struct Bind<'a> {
    pub tape: &'a Tape,
    params: &'a Params,
    trainable: Vec<String>,
    pub training: bool,
    vars: RefCell<BTreeMap<String, Var>>,
    slopes: RefCell<Slopes>,
}

/// The LeakyReLU slopes of a pass (1 or the negative slope, per element), recorded in call
/// order so that a later pass can run the same network linearised around the first one's
/// input: MA-GP's parameter gradient needs D with its kinks frozen (src/train/objective.rs).
enum Slopes {
    Off,
    Record(Vec<Tensor>),
    Replay(Vec<Tensor>, usize),
}

impl<'a> Bind<'a> {
    /// `trainable`: prefixes of the parameters that get gradients ("netG."); `training`:
    /// BatchNorm uses batch statistics and updates its running statistics.
    pub fn new(tape: &'a Tape, params: &'a Params, trainable: &[&str], training: bool) -> Bind<'a> {
        Bind {
            tape,
            params,
            trainable: trainable.iter().map(|s| s.to_string()).collect(),
            training,
            vars: RefCell::default(),
            slopes: RefCell::new(Slopes::Off),
        }
    }

    /// Frozen everything, eval mode: generation.
    pub fn inference(tape: &'a Tape, params: &'a Params) -> Bind<'a> {
        Bind::new(tape, params, &[], false)
    }

    pub fn p(&self, name: &str) -> Result<Var> {
        if let Some(v) = self.vars.borrow().get(name) {
            return Ok(v.clone());
        }
        let t = self.params.get(name)?.clone();
        let learn = !self.params.is_buffer(name) && self.trainable.iter().any(|p| name.starts_with(p.as_str()));
        let v = if learn { self.tape.var(t) } else { self.tape.constant(t) };
        self.vars.borrow_mut().insert(name.to_string(), v.clone());
        Ok(v)
    }

    /// A buffer's tensor itself (BatchNorm updates running statistics in place).
    pub fn buffer(&self, name: &str) -> Result<&Tensor> {
        self.params.get(name)
    }

    /// From now on, `activation` records the slopes of every LeakyReLU it applies.
    pub fn record_slopes(&self) {
        *self.slopes.borrow_mut() = Slopes::Record(Vec::new());
    }

    /// The slopes recorded since `record_slopes` (recording stops).
    pub fn take_slopes(&self) -> Vec<Tensor> {
        match std::mem::replace(&mut *self.slopes.borrow_mut(), Slopes::Off) {
            Slopes::Record(v) | Slopes::Replay(v, _) => v,
            Slopes::Off => Vec::new(),
        }
    }

    /// From now on, the LeakyReLUs multiply by `slopes` (in call order, from the first)
    /// instead of looking at their input: the network is affine in its input.
    pub fn replay_slopes(&self, slopes: Vec<Tensor>) {
        *self.slopes.borrow_mut() = Slopes::Replay(slopes, 0);
    }

    /// `tape.activation`, except for LeakyReLU while slopes are recorded or replayed.
    pub fn activation(&self, x: &Var, f: Activation) -> Result<Var> {
        let Activation::LeakyRelu(_) = f else { return self.tape.activation(x, f) };
        let mut slopes = self.slopes.borrow_mut();
        match &mut *slopes {
            Slopes::Off => self.tape.activation(x, f),
            Slopes::Record(v) => {
                let ones = Tensor::full(&self.params.gpu, x.shape(), 1.0)?;
                v.push(elementwise::activation_backward(x.value(), &ones, f)?);
                self.tape.activation(x, f)
            }
            Slopes::Replay(v, i) => {
                let m = v.get(*i).ok_or_else(|| Error::Other(format!("replayed slopes: only {} recorded", v.len())))?;
                if m.shape() != x.shape() {
                    return Err(Error::shape("replayed slopes", format!("recorded {:?}, now {:?}", m.shape(), x.shape())));
                }
                *i += 1;
                let m = self.tape.constant(m.clone());
                self.tape.mul(x, &m)
            }
        }
    }

    /// Ends the pass (the tape can then run backward), keeping which variable is which parameter.
    pub fn finish(self) -> ParamVars {
        ParamVars(self.vars.into_inner())
    }
}

/// The parameter ↔ tape-variable map of a finished forward pass.
pub struct ParamVars(BTreeMap<String, Var>);

impl ParamVars {
    /// Gradients of every trainable parameter the pass touched, by name. Parameters it did not
    /// reach (e.g. NetD's unused conv_s) are absent: their gradient is zero.
    pub fn gradients(&self, grads: &mut Grads) -> BTreeMap<String, Tensor> {
        self.0
            .iter()
            .filter(|(_, v)| v.requires_grad())
            .filter_map(|(n, v)| grads.take(v).map(|g| (n.clone(), g)))
            .collect()
    }
}
