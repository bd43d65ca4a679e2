//! The generator/discriminator sizes (MODEL.md §1, §4, §6). Every size is a config value; the
//! released models are [`ModelConfig::released`]. The config travels inside every model file as
//! JSON (safetensors metadata key `ratlip_config`), so a file always says what it holds.

use serde::{Deserialize, Serialize};

use crate::clip::config::ClipConfig;
use crate::error::{Error, Result};

/// Which fusion the generator uses (MODEL.md §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Arch {
    /// Plain affines (GALIP), plain convs.
    #[serde(rename = "galip")]
    Galip,
    /// The paper's RAT: one LSTM cell carried across the 16 bridge affines, + shuffle attention.
    #[serde(rename = "ratlip")]
    Ratlip,
    /// The authors' released layout: one single-step LSTM per affine, + shuffle attention.
    #[serde(rename = "ratlip-release")]
    RatlipRelease,
}

impl Arch {
    pub fn name(self) -> &'static str {
        match self {
            Arch::Galip => "galip",
            Arch::Ratlip => "ratlip",
            Arch::RatlipRelease => "ratlip-release",
        }
    }

    pub fn parse(s: &str) -> Result<Arch> {
        match s {
            "galip" => Ok(Arch::Galip),
            "ratlip" => Ok(Arch::Ratlip),
            "ratlip-release" => Ok(Arch::RatlipRelease),
            _ => Err(Error::Other(format!("unknown arch {s:?}: expected galip, ratlip or ratlip-release"))),
        }
    }

    /// ConvSA (conv → BN → LeakyReLU(0.01) → shuffle attention) instead of plain convs.
    pub fn shuffle_attention(self) -> bool {
        self != Arch::Galip
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub arch: Arch,
    pub z_dim: usize,
    /// Sentence-embedding width (CLIP's embed_dim); cond = [z; s] has z_dim + cond_dim.
    pub cond_dim: usize,
    pub ngf: usize,
    /// S: the last image block resizes to it.
    pub image_size: usize,
    pub image_blocks: usize,
    pub code_ch: usize,
    pub mid_ch: usize,
    pub bridge_blocks: usize,
    pub lstm_hidden: usize,
    pub sa_groups: usize,
    /// Learned prompt tokens of the CLIP mapper (joined to ViT blocks 1..=prompts).
    pub prompts: usize,
    pub d_out: usize,
    pub netc_hidden: usize,
    /// ViT blocks (0-based) whose token maps feed NetD.
    pub clip_features: Vec<usize>,
    pub clip: ClipConfig,
    /// Overrides the arch's choice of ConvSA vs plain convs: `Some(false)` with `ratlip` is
    /// the paper's ablation "RAT without shuffle attention". Absent: the arch's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shuffle_attention: Option<bool>,
}

impl ModelConfig {
    /// The released GALIP/RATLIP models: ngf 64, S 224, ViT-B/32.
    pub fn released(arch: Arch) -> ModelConfig {
        ModelConfig {
            arch,
            z_dim: 100,
            cond_dim: 512,
            ngf: 64,
            image_size: 224,
            image_blocks: 6,
            code_ch: 64,
            mid_ch: 32,
            bridge_blocks: 4,
            lstm_hidden: 64,
            sa_groups: 8,
            prompts: 8,
            d_out: 512,
            netc_hidden: 128,
            clip_features: vec![1, 4, 8],
            clip: ClipConfig::vit_b32(),
            shuffle_attention: None,
        }
    }

    /// A tiny model for tests and demos: every part present, seconds to run on a CPU. Its CLIP
    /// keeps the real vocabulary so the bundled tokenizer works.
    pub fn tiny(arch: Arch) -> ModelConfig {
        use crate::clip::config::{TextConfig, VisionConfig};
        ModelConfig {
            arch,
            z_dim: 8,
            cond_dim: 16,
            ngf: 16,
            image_size: 24,
            image_blocks: 3,
            code_ch: 16,
            mid_ch: 8,
            bridge_blocks: 4,
            lstm_hidden: 8,
            sa_groups: 8,
            prompts: 8,
            d_out: 16,
            netc_hidden: 8,
            clip_features: vec![1, 4, 8],
            clip: ClipConfig {
                text: TextConfig { width: 32, layers: 1, heads: 2, context_length: 77, vocab_size: 49408 },
                vision: VisionConfig { width: 32, layers: 9, heads: 2, patch_size: 4, image_size: 28 },
                embed_dim: 16,
                layer_norm_eps: 1e-5,
            },
            shuffle_attention: None,
        }
    }

    /// Whether G's convs are ConvSA (conv → BN → LeakyReLU → shuffle attention).
    pub fn shuffle_attention(&self) -> bool {
        self.shuffle_attention.unwrap_or(self.arch.shuffle_attention())
    }

    pub fn cond_width(&self) -> usize {
        self.z_dim + self.cond_dim
    }

    /// The 7×7 code is the CLIP mapper's patch grid.
    pub fn code_size(&self) -> usize {
        self.clip.vision.grid()
    }

    /// CLIP's vision width: the mapper's and NetD's channel count (768 for ViT-B/32).
    pub fn clip_width(&self) -> usize {
        self.clip.vision.width
    }

    /// (in, out) channels of the image blocks: ngf·min(2^i, 8) for i = 0..=n, reversed
    /// (the released `get_G_in_out_chs`).
    pub fn image_channels(&self) -> Vec<(usize, usize)> {
        let ch: Vec<usize> = (0..=self.image_blocks).rev().map(|i| self.ngf * (1usize << i.min(3))).collect();
        ch.windows(2).map(|w| (w[0], w[1])).collect()
    }

    /// Output size of image block i: 8, 16, 32, ... and S for the last.
    pub fn image_block_size(&self, i: usize) -> usize {
        if i + 1 == self.image_blocks {
            self.image_size
        } else {
            8 << i
        }
    }

    /// Every ViT block index NetD reads, in order; NetD has one DBlock per feature after the first.
    pub fn netd_widths(&self) -> Vec<(usize, usize, bool)> {
        let w = self.clip_width();
        let mut v: Vec<(usize, usize, bool)> = (1..self.clip_features.len()).map(|_| (w, w, true)).collect();
        v.push((w, self.d_out, false));
        v
    }

    pub fn validate(&self) -> Result<()> {
        self.clip.validate()?;
        let bad = |m: String| Err(Error::Other(format!("model config: {m}")));
        if self.cond_dim != self.clip.embed_dim {
            return bad(format!("cond_dim {} must equal CLIP's embed_dim {}", self.cond_dim, self.clip.embed_dim));
        }
        if self.image_blocks < 3 {
            return bad(format!("image_blocks {} < 3: the first block must take the mapper's 8·ngf channels", self.image_blocks));
        }
        if self.code_size() < 7 {
            return bad(format!("CLIP grid {} < 7: NetC's two 4×4 convs need at least 7×7", self.code_size()));
        }
        let v = &self.clip.vision;
        if self.prompts >= v.layers || self.clip_features.iter().any(|&i| i >= v.layers) || self.clip_features.is_empty() {
            return bad(format!("CLIP has {} vision blocks: need more than prompts {} and features {:?}", v.layers, self.prompts, self.clip_features));
        }
        if self.shuffle_attention() {
            let g2 = 2 * self.sa_groups;
            let mut convs = vec![self.code_ch];
            convs.extend(self.image_channels().iter().map(|&(_, o)| o));
            if let Some(c) = convs.iter().find(|&&c| c == 0 || c % g2 != 0) {
                return bad(format!("shuffle attention needs channels divisible by 2·sa_groups = {g2}; got {c}"));
            }
        }
        if [self.z_dim, self.ngf, self.code_ch, self.mid_ch, self.bridge_blocks, self.lstm_hidden, self.d_out, self.netc_hidden, self.image_size]
            .contains(&0)
        {
            return bad("every size must be positive".into());
        }
        Ok(())
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("config serialises")
    }

    pub fn from_json(text: &str) -> Result<ModelConfig> {
        let c: ModelConfig = serde_json::from_str(text).map_err(|e| Error::Other(format!("bad ratlip_config: {e}")))?;
        c.validate()?;
        Ok(c)
    }
}
