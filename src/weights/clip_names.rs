//! CLIP weight names in the wild, mapped to one canonical set: OpenAI's own names
//! (`visual.transformer.resblocks.N.attn.in_proj_weight`, `token_embedding.weight`, …), which
//! is what GALIP/RATLIP checkpoints contain. Hugging Face `CLIPModel` files (separate q/k/v,
//! `[out, in]` projection matrices) are converted on load.

use crate::error::{Error, Result};
use crate::weights::{HostTensor, WeightFile};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClipNaming {
    /// `text_model.…`, `vision_model.…` (transformers' CLIPModel).
    HuggingFace,
    /// `token_embedding.weight`, `visual.…` (OpenAI's clip, GALIP/RATLIP checkpoints).
    OpenAi,
}

/// Which naming a file uses (looking under `prefix`).
pub fn detect(w: &WeightFile, prefix: &str) -> Result<ClipNaming> {
    if w.contains(&format!("{prefix}text_model.embeddings.token_embedding.weight")) {
        Ok(ClipNaming::HuggingFace)
    } else if w.contains(&format!("{prefix}token_embedding.weight")) {
        Ok(ClipNaming::OpenAi)
    } else {
        Err(Error::Other(format!(
            "{}: no CLIP weights found (looked for {prefix}text_model.embeddings.token_embedding.weight \
             and {prefix}token_embedding.weight)",
            w.source.display()
        )))
    }
}

fn take(w: &mut WeightFile, name: &str) -> Result<HostTensor> {
    w.take_any(name).ok_or_else(|| Error::Other(format!("{}: missing tensor {name}", w.source.display())))
}

/// Renames a Hugging Face CLIPModel's tensors to OpenAI's, in place. q/k/v projections are
/// stacked into `in_proj_*` (rows q, then k, then v, as nn.MultiheadAttention), and the
/// two projection matrices are transposed to OpenAI's `x @ proj` orientation.
pub fn hf_to_openai(mut w: WeightFile) -> Result<WeightFile> {
    let mut out: Vec<(String, HostTensor)> = Vec::new();
    let layer_count = |w: &WeightFile, tower: &str| {
        (0..).take_while(|i| w.contains(&format!("{tower}.encoder.layers.{i}.layer_norm1.weight"))).count()
    };
    for (tower, dst) in [("text_model", ""), ("vision_model", "visual.")] {
        for i in 0..layer_count(&w, tower) {
            let src = format!("{tower}.encoder.layers.{i}");
            let d = format!("{dst}transformer.resblocks.{i}");
            for kind in ["weight", "bias"] {
                let q = take(&mut w, &format!("{src}.self_attn.q_proj.{kind}"))?;
                let k = take(&mut w, &format!("{src}.self_attn.k_proj.{kind}"))?;
                let v = take(&mut w, &format!("{src}.self_attn.v_proj.{kind}"))?;
                out.push((format!("{d}.attn.in_proj_{kind}"), HostTensor::concat0(&[q, k, v])));
            }
            for (a, b) in [
                ("self_attn.out_proj", "attn.out_proj"),
                ("layer_norm1", "ln_1"),
                ("layer_norm2", "ln_2"),
                ("mlp.fc1", "mlp.c_fc"),
                ("mlp.fc2", "mlp.c_proj"),
            ] {
                for kind in ["weight", "bias"] {
                    out.push((format!("{d}.{b}.{kind}"), take(&mut w, &format!("{src}.{a}.{kind}"))?));
                }
            }
        }
    }
    let renames = [
        ("text_model.embeddings.token_embedding.weight", "token_embedding.weight"),
        ("text_model.embeddings.position_embedding.weight", "positional_embedding"),
        ("text_model.final_layer_norm.weight", "ln_final.weight"),
        ("text_model.final_layer_norm.bias", "ln_final.bias"),
        ("vision_model.embeddings.class_embedding", "visual.class_embedding"),
        ("vision_model.embeddings.patch_embedding.weight", "visual.conv1.weight"),
        ("vision_model.embeddings.position_embedding.weight", "visual.positional_embedding"),
        // "pre_layrnorm" is transformers' own spelling.
        ("vision_model.pre_layrnorm.weight", "visual.ln_pre.weight"),
        ("vision_model.pre_layrnorm.bias", "visual.ln_pre.bias"),
        ("vision_model.post_layernorm.weight", "visual.ln_post.weight"),
        ("vision_model.post_layernorm.bias", "visual.ln_post.bias"),
    ];
    for (a, b) in renames {
        out.push((b.to_string(), take(&mut w, a)?));
    }
    out.push(("text_projection".into(), take(&mut w, "text_projection.weight")?.transposed()));
    out.push(("visual.proj".into(), take(&mut w, "visual_projection.weight")?.transposed()));
    if let Some(s) = w.take_any("logit_scale") {
        out.push(("logit_scale".into(), s));
    }
    // Buffers that transformers saves but that carry no learned value.
    w.take_any("text_model.embeddings.position_ids");
    w.take_any("vision_model.embeddings.position_ids");
    let source = w.source.clone();
    let metadata = w.metadata.clone();
    w.finish()?;
    let mut converted = WeightFile::from_tensors(source, out.into_iter().collect());
    converted.metadata = metadata;
    Ok(converted)
}
