//! The generator G (MODEL.md §1, §3, §4), for the three architectures. State-dict names are
//! those of the released code (galip, ratlip-release) so checkpoints map one to one; the
//! paper's RAT adds `mapping.rat.*`.

use crate::autograd::Var;
use crate::clip::model::Clip;
use crate::error::{Error, Result};
use crate::model::config::{Arch, ModelConfig};
use crate::model::layers::{AffineKind, Conv, ConvUnit, Dfblk, Linear, LstmWeights, RatState, LRELU};
use crate::model::params::{Bind, Builder};

/// Bridge block ("M_Block"): conv1 → fuse1 → conv2 → fuse2, plus the input.
struct BridgeBlock {
    conv1: Conv,
    fuse1: Dfblk,
    conv2: ConvUnit,
    fuse2: Dfblk,
    c_sc: Option<Conv>,
}

/// The paper's shared RAT cell and its start state h0, c0 = Linear(z).
struct Rat {
    h0: Linear,
    c0: Linear,
    cell: LstmWeights,
}

/// Image block ("G_Block"): nearest resize to `size`, then shortcut + [fuse1 → c1 → fuse2 → c2].
struct ImageBlock {
    size: usize,
    fuse1: Dfblk,
    c1: ConvUnit,
    fuse2: Dfblk,
    c2: ConvUnit,
    c_sc: Option<Conv>,
}

pub struct Generator {
    config: ModelConfig,
    fc_code: Linear,
    bridge: Vec<BridgeBlock>,
    rat: Option<Rat>,
    conv_fuse: Conv,
    fc_prompt: Linear,
    conv: Conv,
    blocks: Vec<ImageBlock>,
    to_rgb: Conv,
}

impl Generator {
    /// Declares G's parameters (names relative to the builder's prefix, "netG.").
    pub fn new(b: &mut Builder, config: &ModelConfig) -> Result<Generator> {
        let cfg = config;
        let cond = cfg.cond_width();
        let (hid, g) = (cfg.lstm_hidden, cfg.code_size());
        let sa = cfg.shuffle_attention().then_some(cfg.sa_groups);
        let bridge_kind = match cfg.arch {
            Arch::Galip => AffineKind::Cond,
            Arch::Ratlip => AffineKind::SharedRat,
            Arch::RatlipRelease => AffineKind::OwnLstm,
        };
        let fc_code = Linear::new(b, "fc_code", cfg.z_dim, cfg.code_ch * g * g)?;
        let mut bridge = Vec::new();
        for k in 0..cfg.bridge_blocks {
            let n = format!("mapping.FBlocks.{k}");
            let cin = cfg.code_ch; // every bridge block maps code_ch → code_ch
            bridge.push(BridgeBlock {
                conv1: Conv::new(b, &format!("{n}.conv1"), cin, cfg.mid_ch, 3, 1, true)?,
                fuse1: Dfblk::new(b, &format!("{n}.fuse1"), bridge_kind, cond, hid, cfg.mid_ch)?,
                conv2: ConvUnit::new(b, &format!("{n}.conv2"), cfg.mid_ch, cfg.code_ch, sa)?,
                fuse2: Dfblk::new(b, &format!("{n}.fuse2"), bridge_kind, cond, hid, cfg.code_ch)?,
                c_sc: None,
            });
        }
        let w = cfg.clip_width();
        let conv_fuse = Conv::new(b, "mapping.conv_fuse", cfg.code_ch, w, 5, 2, true)?;
        let conv = Conv::new(b, "mapping.conv", w, 8 * cfg.ngf, 5, 2, true)?;
        let fc_prompt = Linear::new(b, "mapping.fc_prompt", cond, w * cfg.prompts)?;
        let rat = if cfg.arch == Arch::Ratlip {
            Some(Rat {
                h0: Linear::new(b, "mapping.rat.h0", cfg.z_dim, hid)?,
                c0: Linear::new(b, "mapping.rat.c0", cfg.z_dim, hid)?,
                cell: LstmWeights::new(b, "mapping.rat.cell", "", cond, hid)?,
            })
        } else {
            None
        };
        let mut blocks = Vec::new();
        for (i, (cin, cout)) in cfg.image_channels().into_iter().enumerate() {
            let n = format!("GBlocks.{i}");
            blocks.push(ImageBlock {
                size: cfg.image_block_size(i),
                c1: ConvUnit::new(b, &format!("{n}.c1"), cin, cout, sa)?,
                c2: ConvUnit::new(b, &format!("{n}.c2"), cout, cout, sa)?,
                fuse1: Dfblk::new(b, &format!("{n}.fuse1"), AffineKind::Cond, cond, hid, cin)?,
                fuse2: Dfblk::new(b, &format!("{n}.fuse2"), AffineKind::Cond, cond, hid, cout)?,
                c_sc: if cin != cout { Some(Conv::new(b, &format!("{n}.c_sc"), cin, cout, 1, 0, true)?) } else { None },
            });
        }
        let last = cfg.image_channels().last().map(|&(_, o)| o).unwrap_or(cfg.ngf);
        let to_rgb = Conv::new(b, "to_rgb.1", last, 3, 3, 1, true)?;
        Ok(Generator { config: cfg.clone(), fc_code, bridge, rat, conv_fuse, fc_prompt, conv, blocks, to_rgb })
    }

    /// Makes the last image block resize to `size` instead of the config's S: the blocks are
    /// convolutional, so any output size works (the released models were trained at 224).
    pub fn set_output_size(&mut self, size: usize) -> Result<()> {
        if size < 8 {
            return Err(Error::Other(format!("output size {size} is too small (at least 8)")));
        }
        if let Some(last) = self.blocks.last_mut() {
            last.size = size;
        }
        self.config.image_size = size;
        Ok(())
    }

    /// image [B, 3, S, S] = G(z [B, z_dim], sent_emb [B, cond_dim]); not clamped.
    pub fn forward(&self, cx: &Bind, clip: &Clip, z: &Var, sent_emb: &Var) -> Result<Var> {
        let cfg = &self.config;
        let t = cx.tape;
        let b = z.shape()[0];
        if z.shape() != [b, cfg.z_dim] || sent_emb.shape() != [b, cfg.cond_dim] {
            return Err(Error::shape("generator", format!("noise {:?} and sent_emb {:?}, expected [B, {}] and [B, {}]", z.shape(), sent_emb.shape(), cfg.z_dim, cfg.cond_dim)));
        }
        let g = cfg.code_size();
        let cond = t.concat(&[z, sent_emb], 1)?;
        let code = t.reshape(&self.fc_code.forward(cx, z)?, &[b, cfg.code_ch, g, g])?;

        // The CLIP adapter ("mapping"): RAT bridge → conv_fuse → mapper → conv.
        let mut rat = match &self.rat {
            Some(r) => Some(r.cell.start(cx, &cond, r.h0.forward(cx, z)?, r.c0.forward(cx, z)?)?),
            None => None,
        };
        let prompts = t.reshape(&self.fc_prompt.forward(cx, &cond)?, &[b, cfg.prompts, cfg.clip_width()])?;
        let mut x = code;
        for blk in &self.bridge {
            x = blk.forward(cx, &x, &cond, &mut rat)?;
        }
        let fuse = self.conv_fuse.forward(cx, &x)?;
        let mapped = clip.map(t, &fuse, &prompts)?;
        let mut x = self.conv.forward(cx, &t.axpy(&fuse, 0.1, &mapped)?)?;

        for blk in &self.blocks {
            x = blk.forward(cx, &x, &cond)?;
        }
        self.to_rgb.forward(cx, &t.activation(&x, LRELU)?)
    }
}

impl BridgeBlock {
    fn forward(&self, cx: &Bind, x: &Var, cond: &Var, rat: &mut Option<RatState>) -> Result<Var> {
        let h = self.conv1.forward(cx, x)?;
        let h = self.fuse1.forward(cx, &h, cond, rat)?;
        let h = self.conv2.forward(cx, &h)?;
        let h = self.fuse2.forward(cx, &h, cond, rat)?;
        let sc = match &self.c_sc {
            Some(c) => c.forward(cx, x)?,
            None => x.clone(),
        };
        cx.tape.add(&sc, &h)
    }
}

impl ImageBlock {
    fn forward(&self, cx: &Bind, x: &Var, cond: &Var) -> Result<Var> {
        let x = cx.tape.resize_nearest(x, self.size, self.size)?;
        let h = self.fuse1.forward(cx, &x, cond, &mut None)?;
        let h = self.c1.forward(cx, &h)?;
        let h = self.fuse2.forward(cx, &h, cond, &mut None)?;
        let h = self.c2.forward(cx, &h)?;
        let sc = match &self.c_sc {
            Some(c) => c.forward(cx, &x)?,
            None => x,
        };
        cx.tape.add(&sc, &h)
    }
}
