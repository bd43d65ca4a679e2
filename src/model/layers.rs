//! The building blocks of G, NetD and NetC (MODEL.md §1, §4), each built from a [`Builder`]
//! under its state-dict name and run on a [`Bind`]. PyTorch's default inits are used for
//! fresh models, plus the spec's explicit ones (affine last layers, shuffle attention, D's
//! gamma/beta).

use crate::autograd::Var;
use crate::error::Result;
use crate::model::params::{Bind, Builder, Init};
use crate::ops::conv2d::Conv2dParams;
use crate::ops::elementwise::Activation;
use crate::tensor::Tensor;

pub const LRELU: Activation = Activation::LeakyRelu(0.2);

fn fan_in_bound(fan_in: usize) -> Init {
    Init::Uniform(1.0 / (fan_in as f32).sqrt())
}

/// nn.Conv2d, stride 1.
pub struct Conv {
    w: String,
    b: Option<String>,
    p: Conv2dParams,
}

impl Conv {
    pub fn new(b: &mut Builder, name: &str, cin: usize, cout: usize, k: usize, pad: usize, bias: bool) -> Result<Conv> {
        let init = fan_in_bound(cin * k * k);
        Ok(Conv {
            w: b.param(&format!("{name}.weight"), &[cout, cin, k, k], init)?,
            b: if bias { Some(b.param(&format!("{name}.bias"), &[cout], init)?) } else { None },
            p: Conv2dParams { stride: (1, 1), padding: (pad, pad) },
        })
    }

    pub fn forward(&self, cx: &Bind, x: &Var) -> Result<Var> {
        let bias = self.b.as_ref().map(|n| cx.p(n)).transpose()?;
        cx.tape.conv2d(x, &cx.p(&self.w)?, bias.as_ref(), self.p)
    }
}

/// nn.Linear.
pub struct Linear {
    w: String,
    b: String,
}

impl Linear {
    pub fn new(b: &mut Builder, name: &str, inp: usize, out: usize) -> Result<Linear> {
        Linear::with_init(b, name, inp, out, fan_in_bound(inp), fan_in_bound(inp))
    }

    pub fn with_init(b: &mut Builder, name: &str, inp: usize, out: usize, w: Init, bias: Init) -> Result<Linear> {
        Ok(Linear { w: b.param(&format!("{name}.weight"), &[out, inp], w)?, b: b.param(&format!("{name}.bias"), &[out], bias)? })
    }

    pub fn forward(&self, cx: &Bind, x: &Var) -> Result<Var> {
        cx.tape.linear(x, &cx.p(&self.w)?, Some(&cx.p(&self.b)?))
    }
}

/// Linear → ReLU → Linear, the last layer starting at W = 0, b = `last_bias` (so a fresh
/// affine is the identity: gamma = 1, beta = 0).
pub struct Mlp {
    l1: Linear,
    l2: Linear,
}

impl Mlp {
    fn new(b: &mut Builder, names: (&str, &str), inp: usize, c: usize, last_bias: f32) -> Result<Mlp> {
        Ok(Mlp {
            l1: Linear::new(b, names.0, inp, c)?,
            l2: Linear::with_init(b, names.1, c, c, Init::Const(0.0), Init::Const(last_bias))?,
        })
    }

    fn forward(&self, cx: &Bind, x: &Var) -> Result<Var> {
        let h = cx.tape.activation(&self.l1.forward(cx, x)?, Activation::Relu)?;
        self.l2.forward(cx, &h)
    }
}

/// The paper's recurrent state (MODEL.md §4): one LSTM cell shared by the bridge's 16
/// affines. `wx` = W·cond + b_ih + b_hh is the same at every step, so it is computed once.
pub struct RatState {
    pub h: Var,
    pub c: Var,
    wx: Var,
    w_hh: Var,
}

/// nn.LSTMCell weights (gate order i, f, g, o).
pub struct LstmWeights {
    w_ih: String,
    w_hh: String,
    b_ih: String,
    b_hh: String,
    hidden: usize,
}

impl LstmWeights {
    /// `suffix` is "" for nn.LSTMCell names and "_l0" for a one-layer nn.LSTM.
    pub fn new(b: &mut Builder, name: &str, suffix: &str, inp: usize, hidden: usize) -> Result<LstmWeights> {
        let init = Init::Uniform(1.0 / (hidden as f32).sqrt());
        let g = 4 * hidden;
        Ok(LstmWeights {
            w_ih: b.param(&format!("{name}.weight_ih{suffix}"), &[g, inp], init)?,
            w_hh: b.param(&format!("{name}.weight_hh{suffix}"), &[g, hidden], init)?,
            b_ih: b.param(&format!("{name}.bias_ih{suffix}"), &[g], init)?,
            b_hh: b.param(&format!("{name}.bias_hh{suffix}"), &[g], init)?,
            hidden,
        })
    }

    /// W·x + b_ih + b_hh: the gates before the recurrent term.
    fn input_gates(&self, cx: &Bind, x: &Var) -> Result<Var> {
        let g = cx.tape.linear(x, &cx.p(&self.w_ih)?, Some(&cx.p(&self.b_ih)?))?;
        cx.tape.add_b(&g, &cx.p(&self.b_hh)?)
    }

    /// The paper's RAT state at t = 0, given h0 and c0 from z.
    pub fn start(&self, cx: &Bind, cond: &Var, h: Var, c: Var) -> Result<RatState> {
        Ok(RatState { h, c, wx: self.input_gates(cx, cond)?, w_hh: cx.p(&self.w_hh)? })
    }

    /// The released per-affine LSTM: one step from a zero state, so U·h0 vanishes and
    /// c = i ⊙ g. Returns h [B, H].
    fn single_step(&self, cx: &Bind, cond: &Var) -> Result<Var> {
        let gates = self.input_gates(cx, cond)?;
        let b = cond.shape()[0];
        let zero = cx.tape.constant(Tensor::zeros(cx.tape.gpu(), &[b, self.hidden])?);
        Ok(cx.tape.lstm_cell(&gates, &zero)?.0)
    }
}

impl RatState {
    /// One LSTM step with the cached input term: gates = wx + U·h(t−1).
    pub fn step(&mut self, cx: &Bind) -> Result<Var> {
        let rec = cx.tape.linear(&self.h, &self.w_hh, None)?;
        let gates = cx.tape.add(&self.wx, &rec)?;
        let (h, c) = cx.tape.lstm_cell(&gates, &self.c)?;
        self.h = h.clone();
        self.c = c;
        Ok(h)
    }
}

/// What an affine's gamma/beta MLPs read.
enum AffineInput {
    /// GALIP: the condition itself.
    Cond,
    /// ratlip-release: its own single-step LSTM of the condition.
    OwnLstm(LstmWeights),
    /// ratlip: the shared cell's next hidden state.
    SharedRat,
}

/// Affine(x, y) = gamma(y) ⊙ x + beta(y), per channel (MODEL.md §4).
pub struct Affine {
    gamma: Mlp,
    beta: Mlp,
    input: AffineInput,
}

/// Which affine family a DFBLK is made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AffineKind {
    Cond,
    OwnLstm,
    SharedRat,
}

impl Affine {
    pub fn new(b: &mut Builder, name: &str, kind: AffineKind, cond: usize, hidden: usize, c: usize) -> Result<Affine> {
        // The released GALIP Affine names its layers linear1/linear2; Affine_rnn uses nn.Sequential (0, 2).
        let (l1, l2) = if kind == AffineKind::Cond { ("linear1", "linear2") } else { ("0", "2") };
        let inp = if kind == AffineKind::Cond { cond } else { hidden };
        let input = match kind {
            AffineKind::Cond => AffineInput::Cond,
            AffineKind::OwnLstm => AffineInput::OwnLstm(LstmWeights::new(b, &format!("{name}.rnn"), "_l0", cond, hidden)?),
            AffineKind::SharedRat => AffineInput::SharedRat,
        };
        let mlp = |b: &mut Builder, which: &str, bias: f32| Mlp::new(b, (&format!("{name}.{which}.{l1}"), &format!("{name}.{which}.{l2}")), inp, c, bias);
        // nn.LSTM is registered before fc_gamma/fc_beta in the released module; order only matters for init streams.
        Ok(Affine { gamma: mlp(b, "fc_gamma", 1.0)?, beta: mlp(b, "fc_beta", 0.0)?, input })
    }

    pub fn forward(&self, cx: &Bind, x: &Var, cond: &Var, rat: &mut Option<RatState>) -> Result<Var> {
        let y = match &self.input {
            AffineInput::Cond => cond.clone(),
            AffineInput::OwnLstm(lstm) => lstm.single_step(cx, cond)?,
            AffineInput::SharedRat => match rat {
                Some(state) => state.step(cx)?,
                None => return Err(crate::Error::Other("a RAT affine ran without the shared LSTM state".into())),
            },
        };
        let (b, c) = (x.shape()[0], x.shape()[1]);
        let gamma = cx.tape.reshape(&self.gamma.forward(cx, &y)?, &[b, c, 1, 1])?;
        let beta = cx.tape.reshape(&self.beta.forward(cx, &y)?, &[b, c, 1, 1])?;
        cx.tape.add_b(&cx.tape.mul_b(x, &gamma)?, &beta)
    }
}

/// DFBLK(x, y) = lrelu(Affine1(lrelu(Affine0(x, y)), y)).
pub struct Dfblk {
    affine0: Affine,
    affine1: Affine,
}

impl Dfblk {
    pub fn new(b: &mut Builder, name: &str, kind: AffineKind, cond: usize, hidden: usize, c: usize) -> Result<Dfblk> {
        Ok(Dfblk {
            affine0: Affine::new(b, &format!("{name}.affine0"), kind, cond, hidden, c)?,
            affine1: Affine::new(b, &format!("{name}.affine1"), kind, cond, hidden, c)?,
        })
    }

    pub fn forward(&self, cx: &Bind, x: &Var, cond: &Var, rat: &mut Option<RatState>) -> Result<Var> {
        let h = cx.tape.activation(&self.affine0.forward(cx, x, cond, rat)?, LRELU)?;
        cx.tape.activation(&self.affine1.forward(cx, &h, cond, rat)?, LRELU)
    }
}

/// nn.BatchNorm2d (momentum 0.1, eps 1e-5): batch statistics when training, running ones
/// otherwise. `num_batches_tracked` is kept for PyTorch's state dict.
pub struct BatchNorm {
    w: String,
    b: String,
    running_mean: String,
    running_var: String,
    pub num_batches_tracked: String,
}

impl BatchNorm {
    pub fn new(b: &mut Builder, name: &str, c: usize) -> Result<BatchNorm> {
        Ok(BatchNorm {
            w: b.param(&format!("{name}.weight"), &[c], Init::Const(1.0))?,
            b: b.param(&format!("{name}.bias"), &[c], Init::Const(0.0))?,
            running_mean: b.buffer(&format!("{name}.running_mean"), &[c], 0.0)?,
            running_var: b.buffer(&format!("{name}.running_var"), &[c], 1.0)?,
            num_batches_tracked: b.buffer(&format!("{name}.num_batches_tracked"), &[], 0.0)?,
        })
    }

    pub fn forward(&self, cx: &Bind, x: &Var) -> Result<Var> {
        let (rm, rv) = (cx.buffer(&self.running_mean)?, cx.buffer(&self.running_var)?);
        cx.tape.batch_norm(x, &cx.p(&self.w)?, &cx.p(&self.b)?, rm, rv, cx.training, 0.1, 1e-5)
    }
}

/// ShuffleAttention(C), G groups (MODEL.md §4): per group, half the channels are gated by
/// their spatial mean (channel attention), half by a GroupNorm of themselves (spatial
/// attention); then a channel shuffle with 2 groups.
pub struct ShuffleAttention {
    cweight: String,
    cbias: String,
    sweight: String,
    sbias: String,
    gn_w: String,
    gn_b: String,
    groups: usize,
}

impl ShuffleAttention {
    pub fn new(b: &mut Builder, name: &str, channels: usize, groups: usize) -> Result<ShuffleAttention> {
        let c = channels / (2 * groups);
        let p = |b: &mut Builder, n: &str, v: f32| b.param(&format!("{name}.{n}"), &[1, c, 1, 1], Init::Const(v));
        Ok(ShuffleAttention {
            cweight: p(b, "cweight", 0.0)?,
            cbias: p(b, "cbias", 1.0)?,
            sweight: p(b, "sweight", 0.0)?,
            sbias: p(b, "sbias", 1.0)?,
            gn_w: b.param(&format!("{name}.gn.weight"), &[c], Init::Const(1.0))?,
            gn_b: b.param(&format!("{name}.gn.bias"), &[c], Init::Const(0.0))?,
            groups,
        })
    }

    pub fn forward(&self, cx: &Bind, x: &Var) -> Result<Var> {
        let t = cx.tape;
        let &[b, ch, h, w] = x.shape() else { return Err(crate::Error::shape("shuffle attention", format!("{:?}", x.shape()))) };
        let c = ch / (2 * self.groups);
        let x = t.reshape(x, &[b * self.groups, 2 * c, h, w])?;
        let (x0, x1) = (t.slice(&x, 1, 0, c)?, t.slice(&x, 1, c, c)?);
        // Channel attention: x0 · σ(cw · mean_hw(x0) + cb).
        let m = t.reshape(&t.mean_pool(&x0)?, &[b * self.groups, c, 1, 1])?;
        let a = t.add_b(&t.mul_b(&m, &cx.p(&self.cweight)?)?, &cx.p(&self.cbias)?)?;
        let x0 = t.mul_b(&x0, &t.activation(&a, Activation::Sigmoid)?)?;
        // Spatial attention: x1 · σ(sw · GroupNorm(c, c)(x1) + sb).
        let n = t.group_norm(&x1, c, &cx.p(&self.gn_w)?, &cx.p(&self.gn_b)?, 1e-5)?;
        let s = t.add_b(&t.mul_b(&n, &cx.p(&self.sweight)?)?, &cx.p(&self.sbias)?)?;
        let x1 = t.mul(&x1, &t.activation(&s, Activation::Sigmoid)?)?;
        let y = t.reshape(&t.concat(&[&x0, &x1], 1)?, &[b, ch, h, w])?;
        t.channel_shuffle(&y, 2)
    }
}

/// A 3×3 conv of the generator: plain (GALIP, with bias) or ConvSA = conv (no bias) → BN →
/// LeakyReLU(0.01) → shuffle attention (RATLIP's `Conv_shuffle`).
pub enum ConvUnit {
    Plain(Conv),
    Sa { conv: Conv, bn: BatchNorm, se: ShuffleAttention },
}

impl ConvUnit {
    pub fn new(b: &mut Builder, name: &str, cin: usize, cout: usize, shuffle: Option<usize>) -> Result<ConvUnit> {
        Ok(match shuffle {
            None => ConvUnit::Plain(Conv::new(b, name, cin, cout, 3, 1, true)?),
            Some(groups) => ConvUnit::Sa {
                conv: Conv::new(b, &format!("{name}.conv"), cin, cout, 3, 1, false)?,
                bn: BatchNorm::new(b, &format!("{name}.bn"), cout)?,
                se: ShuffleAttention::new(b, &format!("{name}.se"), cout, groups)?,
            },
        })
    }

    pub fn forward(&self, cx: &Bind, x: &Var) -> Result<Var> {
        match self {
            ConvUnit::Plain(c) => c.forward(cx, x),
            ConvUnit::Sa { conv, bn, se } => {
                let h = bn.forward(cx, &conv.forward(cx, x)?)?;
                se.forward(cx, &cx.tape.activation(&h, Activation::LeakyRelu(0.01))?)
            }
        }
    }
}
