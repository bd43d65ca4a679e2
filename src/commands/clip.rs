//! `ratlip clip text` and `ratlip clip score`.

use std::path::Path;

use anyhow::{Context, Result};
use ratlip::clip::model::Clip;
use ratlip::clip::preprocess;
use ratlip::clip::tokenizer::ClipTokenizer;
use ratlip::{Gpu, Tape, Tensor};

/// Tokenises, telling the user on stderr when the prompt was cut to the context length.
fn tokenize(clip: &Clip, prompt: &str) -> Result<ratlip::clip::tokenizer::Encoded> {
    let tok = ClipTokenizer::bundled()?;
    let ctx = clip.config.text.context_length;
    let enc = tok.encode(prompt, ctx)?;
    if enc.truncated {
        let kept = tok.decode(&enc.ids).unwrap_or_default();
        eprintln!(
            "note: the prompt is {} tokens; CLIP reads {ctx}, so it was truncated to: {kept:?}",
            enc.original_len
        );
    }
    Ok(enc)
}

pub fn load(gpu: &Gpu, path: &Path) -> Result<Clip> {
    Clip::load(gpu, path).with_context(|| format!("loading CLIP from {}", path.display()))
}

/// A CLIP file, or the CLIP inside a ratlip model file (its `clip.*` tensors): the shipped
/// model's CLIP can judge another model or be the frozen CLIP of a new run. A model file says
/// so in its header (`ratlip_config`), which is read alone first, so neither file is read
/// twice.
pub fn load_or_from_model(gpu: &Gpu, path: &Path) -> Result<Clip> {
    if ratlip::model::is_model_file(path) {
        super::model::open(gpu, path).map(|m| m.clip)
    } else {
        load(gpu, path)
    }
}

fn sentence_embedding(clip: &Clip, ids: &[u32]) -> Result<Vec<f32>> {
    let tape = Tape::new(&clip.gpu);
    let out = clip.encode_text(&tape, &[ids.to_vec()])?;
    Ok(out.sent_emb.value().to_vec()?)
}

pub fn text(gpu: &Gpu, clip_path: &Path, prompt: &str, json: bool) -> Result<()> {
    let clip = load_or_from_model(gpu, clip_path)?;
    let enc = tokenize(&clip, prompt)?;
    let emb = sentence_embedding(&clip, &enc.ids)?;
    let n = enc.ids.iter().rposition(|&i| i != 0).map_or(0, |p| p + 1);
    if json {
        let v = serde_json::json!({
            "prompt": prompt,
            "ids": enc.ids,
            "truncated": enc.truncated,
            "tokens": enc.original_len,
            "eot_index": enc.eot_index(),
            "sent_emb": emb,
        });
        println!("{v}");
    } else {
        println!("tokens ({}{}): {:?}", n, if enc.truncated { ", truncated" } else { "" }, &enc.ids[..n]);
        let norm = emb.iter().map(|x| x * x).sum::<f32>().sqrt();
        println!("sentence embedding [{}], L2 norm {norm:.4}:", emb.len());
        for chunk in emb.chunks(8) {
            println!("  {}", chunk.iter().map(|x| format!("{x:+.5}")).collect::<Vec<_>>().join(" "));
        }
    }
    Ok(())
}

pub fn score(gpu: &Gpu, clip_path: &Path, image: &Path, prompt: &str, json: bool) -> Result<()> {
    let clip = load_or_from_model(gpu, clip_path)?;
    let size = clip.config.vision.image_size;
    let pixels = preprocess::for_scoring(image, size)?;
    let enc = tokenize(&clip, prompt)?;
    let text = sentence_embedding(&clip, &enc.ids)?;
    let tape = Tape::new(gpu);
    let px = tape.constant(Tensor::from_slice(gpu, &[1, 3, size, size], &pixels.data)?);
    let img = clip.encode_image(&tape, &px, &[])?.embedding.value().to_vec()?;
    let dot: f32 = img.iter().zip(&text).map(|(a, b)| a * b).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let score = 100.0 * dot / (norm(&img) * norm(&text)).max(1e-12);
    if json {
        let v = serde_json::json!({
            "prompt": prompt,
            "image": image.display().to_string(),
            "score": score,
            "image_emb": img,
            "sent_emb": text,
        });
        println!("{v}");
    } else {
        println!("CLIP score {score:.2} (100 × cosine of image and prompt embeddings)");
    }
    Ok(())
}

/// `ratlip clip eval`: zero-shot attribute accuracy on a synthetic set.
pub fn eval(gpu: &Gpu, clip_path: &Path, data: &Path, limit: Option<usize>, out: Option<&Path>) -> Result<()> {
    let clip = load_or_from_model(gpu, clip_path)?;
    let only: Option<Vec<std::path::PathBuf>> = match limit {
        Some(n) => {
            let ds = ratlip::train::data::Dataset::open(data)?;
            let k = ds.items.len();
            Some(ds.items[k.saturating_sub(n)..].iter().map(|i| i.image.clone()).collect())
        }
        None => None,
    };
    let report = ratlip::train::zero_shot::evaluate_with(&clip, data, only.as_deref(), &mut |done, total| {
        eprint!("\rembedding images {done}/{total}   ");
    })?;
    eprintln!();
    super::train_clip::print_report(&report);
    if let Some(p) = out {
        ratlip::weights::write_atomic(p, (serde_json::to_string_pretty(&report)? + "\n").as_bytes())?;
        println!("wrote {}", p.display());
    }
    Ok(())
}
