//! Reverse-mode autodiff: a tape of forward ops, replayed backwards.
//!
//! Every op that takes at least one `Var` needing a gradient records a node holding the
//! tensors its backward needs (inside a closure). `Tape::backward` consumes the tape: it
//! walks the nodes newest first, calls each backward kernel with the gradients of the node's
//! outputs, and accumulates input gradients. Intermediate gradients are dropped as soon as
//! their producer has run, and the saved forward tensors go back to the pool when the tape
//! is consumed. Frozen parameters are `constant`s: no node records work for them, but
//! gradients still flow *through* ops that use them to whatever else needs one (G's
//! gradient through the frozen CLIP).

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::ops::elementwise;
use crate::tensor::Tensor;

#[derive(Clone, Debug)]
pub struct Var {
    id: usize,
    value: Tensor,
    requires_grad: bool,
}

impl Var {
    pub fn value(&self) -> &Tensor {
        &self.value
    }
    pub fn shape(&self) -> &[usize] {
        self.value.shape()
    }
    pub fn requires_grad(&self) -> bool {
        self.requires_grad
    }
    pub fn id(&self) -> usize {
        self.id
    }
}

/// What a backward closure receives.
pub struct BackwardCtx {
    gpu: Gpu,
    grads: Vec<Option<Tensor>>,
    shapes: Vec<Vec<usize>>,
    /// `needs[i]`: input i wants a gradient (return `None` for the others).
    pub needs: Vec<bool>,
}

impl BackwardCtx {
    /// Gradient of output `i`; zeros when nothing downstream used that output.
    pub fn grad(&self, i: usize) -> Result<Tensor> {
        match &self.grads[i] {
            Some(g) => Ok(g.clone()),
            None => Tensor::zeros(&self.gpu, &self.shapes[i]),
        }
    }
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }
}

type BackwardFn = Box<dyn FnOnce(&BackwardCtx) -> Result<Vec<Option<Tensor>>>>;

struct Node {
    name: &'static str,
    inputs: Vec<Option<usize>>,
    outputs: Vec<usize>,
    shapes: Vec<Vec<usize>>,
    backward: BackwardFn,
}

pub struct Tape {
    gpu: Gpu,
    inner: RefCell<Inner>,
}

#[derive(Default)]
struct Inner {
    nodes: Vec<Node>,
    next_id: usize,
    leaves: HashSet<usize>,
}

/// Gradients by variable, from `Tape::backward`.
pub struct Grads {
    map: HashMap<usize, Tensor>,
}

impl Grads {
    pub fn get(&self, v: &Var) -> Option<&Tensor> {
        self.map.get(&v.id)
    }
    /// Takes the gradient out (the optimizer does, to release it early).
    pub fn take(&mut self, v: &Var) -> Option<Tensor> {
        self.map.remove(&v.id)
    }
}

impl Tape {
    pub fn new(gpu: &Gpu) -> Tape {
        Tape { gpu: gpu.clone(), inner: RefCell::new(Inner::default()) }
    }

    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    fn fresh(&self) -> usize {
        let mut i = self.inner.borrow_mut();
        i.next_id += 1;
        i.next_id
    }

    /// A leaf that wants its gradient (a trained parameter or an input we differentiate).
    pub fn var(&self, t: Tensor) -> Var {
        let id = self.fresh();
        self.inner.borrow_mut().leaves.insert(id);
        Var { id, value: t, requires_grad: true }
    }

    /// A leaf that needs no gradient (frozen weights, data).
    pub fn constant(&self, t: Tensor) -> Var {
        Var { id: self.fresh(), value: t, requires_grad: false }
    }

    /// Records an op with several outputs. `backward` is called only if some input needs a
    /// gradient, and returns one optional gradient per input (same shape as the input).
    pub fn record(
        &self,
        name: &'static str,
        inputs: &[&Var],
        outputs: Vec<Tensor>,
        backward: impl FnOnce(&BackwardCtx) -> Result<Vec<Option<Tensor>>> + 'static,
    ) -> Vec<Var> {
        let requires_grad = inputs.iter().any(|v| v.requires_grad);
        let vars: Vec<Var> =
            outputs.into_iter().map(|t| Var { id: self.fresh(), value: t, requires_grad }).collect();
        if requires_grad {
            self.inner.borrow_mut().nodes.push(Node {
                name,
                inputs: inputs.iter().map(|v| v.requires_grad.then_some(v.id)).collect(),
                outputs: vars.iter().map(|v| v.id).collect(),
                shapes: vars.iter().map(|v| v.value.shape().to_vec()).collect(),
                backward: Box::new(backward),
            });
        }
        vars
    }

    /// Records an op with one output.
    pub fn record1(
        &self,
        name: &'static str,
        inputs: &[&Var],
        output: Tensor,
        backward: impl FnOnce(&BackwardCtx) -> Result<Vec<Option<Tensor>>> + 'static,
    ) -> Var {
        self.record(name, inputs, vec![output], backward).pop().unwrap()
    }

    /// The same data with another shape (a view); the gradient is reshaped back.
    pub fn reshape(&self, x: &Var, shape: &[usize]) -> Result<Var> {
        let y = x.value.reshape(shape)?;
        let from = x.shape().to_vec();
        Ok(self.record1("reshape", &[x], y, move |c| Ok(vec![Some(c.grad(0)?.reshape(&from)?)])))
    }

    /// Number of recorded nodes (a frozen path records none).
    pub fn len(&self) -> usize {
        self.inner.borrow().nodes.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Backpropagates from `root` with seed gradient `seed` (ones when `None`), consuming the
    /// tape. Returns the gradients of every `var` leaf reached, plus those of `retain`.
    pub fn backward_with(self, root: &Var, seed: Option<Tensor>, retain: &[&Var]) -> Result<Grads> {
        let seed = match seed {
            Some(s) => {
                if s.shape() != root.shape() {
                    return Err(Error::shape("backward", format!("seed {:?} for output {:?}", s.shape(), root.shape())));
                }
                s
            }
            None => Tensor::full(&self.gpu, root.shape(), 1.0)?,
        };
        let inner = self.inner.into_inner();
        let keep: HashSet<usize> = inner.leaves.iter().copied().chain(retain.iter().map(|v| v.id)).collect();
        let mut grads: HashMap<usize, Tensor> = HashMap::new();
        grads.insert(root.id, seed);
        let mut nodes = inner.nodes;
        while let Some(node) = nodes.pop() {
            let out_grads: Vec<Option<Tensor>> = node
                .outputs
                .iter()
                .map(|id| if keep.contains(id) { grads.get(id).cloned() } else { grads.remove(id) })
                .collect();
            if out_grads.iter().all(Option::is_none) {
                continue;
            }
            let ctx = BackwardCtx {
                gpu: self.gpu.clone(),
                grads: out_grads,
                shapes: node.shapes,
                needs: node.inputs.iter().map(Option::is_some).collect(),
            };
            let input_grads = (node.backward)(&ctx)?;
            if input_grads.len() != node.inputs.len() {
                return Err(Error::Other(format!("backward of {} returned {} gradients for {} inputs", node.name, input_grads.len(), node.inputs.len())));
            }
            for (input, g) in node.inputs.iter().zip(input_grads) {
                let (Some(id), Some(g)) = (input, g) else { continue };
                let acc = match grads.remove(id) {
                    Some(prev) => elementwise::add(&prev, &g)?,
                    None => g,
                };
                grads.insert(*id, acc);
            }
        }
        grads.retain(|id, _| keep.contains(id));
        Ok(Grads { map: grads })
    }

    pub fn backward(self, root: &Var) -> Result<Grads> {
        self.backward_with(root, None, &[])
    }
}
