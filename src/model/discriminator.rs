//! The discriminator (MODEL.md §1): CLIP's frozen image encoder gives token maps after a few
//! ViT blocks; NetD refines them into a [d_out, 7, 7] map; NetC judges it against the
//! sentence embedding. Names follow the released code.

use crate::autograd::Var;
use crate::error::{Error, Result};
use crate::model::config::ModelConfig;
use crate::model::layers::{Conv, LRELU};
use crate::model::params::{Bind, Builder, Init};

/// DBlock(x, f) = shortcut(x) + gamma · res(x) [+ beta · f]; res = conv → lrelu → conv → lrelu.
struct DBlock {
    conv_r0: Conv,
    conv_r2: Conv,
    // The released code always builds conv_s, and uses it only when fin ≠ fout.
    conv_s: Conv,
    learned_shortcut: bool,
    gamma: String,
    beta: Option<String>,
}

impl DBlock {
    fn new(b: &mut Builder, name: &str, fin: usize, fout: usize, clip_feat: bool) -> Result<DBlock> {
        Ok(DBlock {
            conv_r0: Conv::new(b, &format!("{name}.conv_r.0"), fin, fout, 3, 1, false)?,
            conv_r2: Conv::new(b, &format!("{name}.conv_r.2"), fout, fout, 3, 1, false)?,
            conv_s: Conv::new(b, &format!("{name}.conv_s"), fin, fout, 1, 0, true)?,
            learned_shortcut: fin != fout,
            gamma: b.param(&format!("{name}.gamma"), &[1], Init::Const(0.0))?,
            beta: if clip_feat { Some(b.param(&format!("{name}.beta"), &[1], Init::Const(0.0))?) } else { None },
        })
    }

    fn forward(&self, cx: &Bind, x: &Var, feat: Option<&Var>) -> Result<Var> {
        let t = cx.tape;
        let res = cx.activation(&self.conv_r0.forward(cx, x)?, LRELU)?;
        let res = cx.activation(&self.conv_r2.forward(cx, &res)?, LRELU)?;
        let sc = if self.learned_shortcut { self.conv_s.forward(cx, x)? } else { x.clone() };
        let scalar = |n: &str| -> Result<Var> { t.reshape(&cx.p(n)?, &[1, 1, 1, 1]) };
        let mut out = t.add(&sc, &t.mul_b(&res, &scalar(&self.gamma)?)?)?;
        if let (Some(beta), Some(f)) = (&self.beta, feat) {
            out = t.add(&out, &t.mul_b(f, &scalar(beta)?)?)?;
        }
        Ok(out)
    }
}

pub struct NetD {
    blocks: Vec<DBlock>,
    main: DBlock,
    features: usize,
}

impl NetD {
    /// Declares NetD's parameters (relative to the builder's prefix, "netD.").
    pub fn new(b: &mut Builder, cfg: &ModelConfig) -> Result<NetD> {
        let widths = cfg.netd_widths();
        let (last, firsts) = widths.split_last().expect("netd_widths is never empty");
        let blocks = firsts
            .iter()
            .enumerate()
            .map(|(i, &(fin, fout, f))| DBlock::new(b, &format!("DBlocks.{i}"), fin, fout, f))
            .collect::<Result<_>>()?;
        let main = DBlock::new(b, "main", last.0, last.1, false)?;
        Ok(NetD { blocks, main, features: cfg.clip_features.len() })
    }

    /// features [B, n, W, g, g] (CLIP maps) → [B, d_out, g, g].
    pub fn forward(&self, cx: &Bind, features: &Var) -> Result<Var> {
        let t = cx.tape;
        let s = features.shape().to_vec();
        if s.len() != 5 || s[1] != self.features {
            return Err(Error::shape("NetD", format!("features {s:?}, expected [B, {}, W, g, g]", self.features)));
        }
        let map = |i: usize| -> Result<Var> { t.reshape(&t.slice(features, 1, i, 1)?, &[s[0], s[2], s[3], s[4]]) };
        let mut out = map(0)?;
        for (i, blk) in self.blocks.iter().enumerate() {
            out = blk.forward(cx, &out, Some(&map(i + 1)?))?;
        }
        self.main.forward(cx, &out, None)
    }
}

pub struct NetC {
    conv0: Conv,
    conv2: Conv,
    cond_dim: usize,
}

impl NetC {
    /// Declares NetC's parameters (relative to the builder's prefix, "netC.").
    pub fn new(b: &mut Builder, cfg: &ModelConfig) -> Result<NetC> {
        Ok(NetC {
            conv0: Conv::new(b, "joint_conv.0", cfg.d_out + cfg.cond_dim, cfg.netc_hidden, 4, 0, false)?,
            conv2: Conv::new(b, "joint_conv.2", cfg.netc_hidden, 1, 4, 0, false)?,
            cond_dim: cfg.cond_dim,
        })
    }

    /// NetC(out [B, d_out, g, g], sent_emb [B, cond]) → logits [B, 1, g−6, g−6] ([B,1,1,1] at g = 7).
    pub fn forward(&self, cx: &Bind, out: &Var, sent_emb: &Var) -> Result<Var> {
        let t = cx.tape;
        let s = out.shape().to_vec();
        if s.len() != 4 || sent_emb.shape() != [s[0], self.cond_dim] {
            return Err(Error::shape("NetC", format!("map {s:?} and sent_emb {:?}", sent_emb.shape())));
        }
        let c = t.reshape(sent_emb, &[s[0], self.cond_dim, 1, 1])?;
        let c = t.expand(&c, &[s[0], self.cond_dim, s[2], s[3]])?;
        let h = t.concat(&[out, &c], 1)?;
        let h = cx.activation(&self.conv0.forward(cx, &h)?, LRELU)?;
        self.conv2.forward(cx, &h)
    }
}
