//! CLIP's sizes. Every size is a config value (MODEL.md §2): tests use tiny CLIPs, the
//! released models use ViT-B/32. Read from a Hugging Face `config.json` or inferred from the
//! shapes of an OpenAI state dict, the way OpenAI's `build_model` does.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::weights::WeightFile;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TextConfig {
    pub width: usize,
    pub layers: usize,
    pub heads: usize,
    pub context_length: usize,
    pub vocab_size: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VisionConfig {
    pub width: usize,
    pub layers: usize,
    pub heads: usize,
    pub patch_size: usize,
    pub image_size: usize,
}

impl VisionConfig {
    /// Patches per side (7 for ViT-B/32 at 224).
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClipConfig {
    pub text: TextConfig,
    pub vision: VisionConfig,
    /// Width of the joint embedding (512 for ViT-B/32).
    pub embed_dim: usize,
    /// LayerNorm epsilon (1e-5 in CLIP).
    pub layer_norm_eps: f32,
}

impl ClipConfig {
    /// openai/clip-vit-base-patch32.
    pub fn vit_b32() -> ClipConfig {
        ClipConfig {
            text: TextConfig { width: 512, layers: 12, heads: 8, context_length: 77, vocab_size: 49408 },
            vision: VisionConfig { width: 768, layers: 12, heads: 12, patch_size: 32, image_size: 224 },
            embed_dim: 512,
            layer_norm_eps: 1e-5,
        }
    }

    /// From a Hugging Face `CLIPModel` config.json.
    pub fn from_hf_json(text: &str) -> Result<ClipConfig> {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| Error::Other(format!("config.json is not valid JSON: {e}")))?;
        let get = |section: &str, key: &str| -> Result<usize> {
            v.get(section)
                .and_then(|s| s.get(key))
                .and_then(|x| x.as_u64())
                .map(|x| x as usize)
                .ok_or_else(|| Error::Other(format!("config.json: missing {section}.{key}")))
        };
        let eps = v
            .get("text_config")
            .and_then(|s| s.get("layer_norm_eps"))
            .and_then(|x| x.as_f64())
            .unwrap_or(1e-5) as f32;
        let text_act = v.get("text_config").and_then(|s| s.get("hidden_act")).and_then(|x| x.as_str());
        if let Some(act) = text_act {
            if act != "quick_gelu" {
                return Err(Error::Other(format!("config.json: hidden_act {act:?}; CLIP (and ratlip) use quick_gelu")));
            }
        }
        let cfg = ClipConfig {
            text: TextConfig {
                width: get("text_config", "hidden_size")?,
                layers: get("text_config", "num_hidden_layers")?,
                heads: get("text_config", "num_attention_heads")?,
                context_length: get("text_config", "max_position_embeddings")?,
                vocab_size: get("text_config", "vocab_size")?,
            },
            vision: VisionConfig {
                width: get("vision_config", "hidden_size")?,
                layers: get("vision_config", "num_hidden_layers")?,
                heads: get("vision_config", "num_attention_heads")?,
                patch_size: get("vision_config", "patch_size")?,
                image_size: get("vision_config", "image_size")?,
            },
            embed_dim: v
                .get("projection_dim")
                .and_then(|x| x.as_u64())
                .ok_or_else(|| Error::Other("config.json: missing projection_dim".into()))? as usize,
            layer_norm_eps: eps,
        };
        let inter = |section: &str, width: usize| -> Result<()> {
            match v.get(section).and_then(|s| s.get("intermediate_size")).and_then(|x| x.as_u64()) {
                Some(i) if i as usize != 4 * width => Err(Error::Other(format!(
                    "config.json: {section}.intermediate_size {i} is not 4 × hidden_size ({width}); CLIP's MLP is 4w"
                ))),
                _ => Ok(()),
            }
        };
        inter("text_config", cfg.text.width)?;
        inter("vision_config", cfg.vision.width)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// From the shapes in an OpenAI-named state dict (as inside GALIP/RATLIP checkpoints).
    /// Head counts are not stored; like OpenAI's `build_model` we assume 64-wide heads.
    pub fn infer_openai(w: &WeightFile, prefix: &str) -> Result<ClipConfig> {
        let shape = |name: &str| -> Result<Vec<usize>> {
            w.shape(&format!("{prefix}{name}"))
                .map(<[usize]>::to_vec)
                .ok_or_else(|| Error::Other(format!("{}: missing tensor {prefix}{name}", w.source.display())))
        };
        let count = |stem: &str| {
            (0..).take_while(|i| w.contains(&format!("{prefix}{stem}.{i}.ln_1.weight"))).count()
        };
        let conv = shape("visual.conv1.weight")?;
        let vpos = shape("visual.positional_embedding")?;
        let grid = ((vpos[0] - 1) as f64).sqrt().round() as usize;
        let text_width = shape("ln_final.weight")?[0];
        let vision_width = conv[0];
        let cfg = ClipConfig {
            text: TextConfig {
                width: text_width,
                layers: count("transformer.resblocks"),
                heads: (text_width / 64).max(1),
                context_length: shape("positional_embedding")?[0],
                vocab_size: shape("token_embedding.weight")?[0],
            },
            vision: VisionConfig {
                width: vision_width,
                layers: count("visual.transformer.resblocks"),
                heads: (vision_width / 64).max(1),
                patch_size: conv[3],
                image_size: conv[3] * grid,
            },
            embed_dim: shape("text_projection")?[1],
            layer_norm_eps: 1e-5,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Other(format!("invalid CLIP config: {m}")));
        if self.text.heads == 0 || self.vision.heads == 0 {
            return bad("zero attention heads".into());
        }
        if self.text.width % self.text.heads != 0 {
            return bad(format!("text width {} not divisible by {} heads", self.text.width, self.text.heads));
        }
        if self.vision.width % self.vision.heads != 0 {
            return bad(format!("vision width {} not divisible by {} heads", self.vision.width, self.vision.heads));
        }
        if self.vision.patch_size == 0 || self.vision.image_size % self.vision.patch_size != 0 {
            return bad(format!("image size {} is not a multiple of patch size {}", self.vision.image_size, self.vision.patch_size));
        }
        if self.text.layers == 0 || self.vision.layers == 0 {
            return bad("no transformer layers".into());
        }
        Ok(())
    }
}
