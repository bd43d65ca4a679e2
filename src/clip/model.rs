//! CLIP's towers on the engine, written to read like MODEL.md §2–§3.
//!
//! CLIP is frozen everywhere in the GAN: its weights enter every tape as constants, so no
//! node is recorded for them, but gradients still flow through to the inputs (the pixels
//! of G's image, the fused map and prompts of the mapper, the token embeddings).
//!
//! Training CLIP itself (`clip::train`) runs the same towers with [`Weights::Trained`]: every
//! tensor becomes a tape variable under its OpenAI name, so gradients come back by name.
//! q, k and v stay split (as loaded) and are named `<block>.attn.in_proj_weight.q` etc.;
//! Adam is elementwise, so training the three parts is training `in_proj`, and
//! `state_dict` joins them again.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;

use crate::autograd::{Grads, Tape, Var};
use crate::clip::config::ClipConfig;
use crate::clip::tokenizer::eot_index;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::ops::conv2d::Conv2dParams;
use crate::ops::elementwise::Activation;
use crate::ops::embedding::ids_tensor;
use crate::tensor::Tensor;
use crate::weights::clip_names::{detect, hf_to_openai, ClipNaming};
use crate::weights::{HostTensor, WeightFile};

fn upload(gpu: &Gpu, t: HostTensor) -> Result<Tensor> {
    Tensor::from_slice(gpu, &t.shape, &t.data)
}

/// One CLIP tensor and its OpenAI name (the name is what a trained pass reports gradients by).
pub struct Named {
    pub name: String,
    pub t: Tensor,
}

/// How CLIP's weights enter a tape.
#[derive(Clone, Copy)]
pub enum Weights<'a> {
    /// As constants: no node is recorded for work on them alone (the GAN's use; as cheap as
    /// a plain forward).
    Frozen,
    /// As trainable variables, one per name (`TrainVars` keeps the map).
    Trained(&'a TrainVars),
}

/// The name ↔ tape-variable map of a trained pass (one variable per tensor, so a tensor used
/// by both towers or twice accumulates one gradient).
#[derive(Default)]
pub struct TrainVars {
    vars: RefCell<BTreeMap<String, Var>>,
}

impl TrainVars {
    pub fn new() -> TrainVars {
        TrainVars::default()
    }

    /// Gradients of every tensor the pass used, by name.
    pub fn gradients(&self, grads: &mut Grads) -> BTreeMap<String, Tensor> {
        self.vars.borrow().iter().filter_map(|(n, v)| grads.take(v).map(|g| (n.clone(), g))).collect()
    }
}

impl Weights<'_> {
    fn get(&self, tape: &Tape, n: &Named) -> Var {
        match self {
            Weights::Frozen => tape.constant(n.t.clone()),
            Weights::Trained(tv) => {
                if let Some(v) = tv.vars.borrow().get(&n.name) {
                    return v.clone();
                }
                let v = tape.var(n.t.clone());
                tv.vars.borrow_mut().insert(n.name.clone(), v.clone());
                v
            }
        }
    }
}

/// nn.Linear weights: `w` is [out, in], as PyTorch stores them.
pub struct Linear {
    pub w: Named,
    pub b: Named,
}

impl Linear {
    fn forward(&self, w: Weights, tape: &Tape, x: &Var) -> Result<Var> {
        tape.linear(x, &w.get(tape, &self.w), Some(&w.get(tape, &self.b)))
    }
}

pub struct LayerNorm {
    pub w: Named,
    pub b: Named,
    pub eps: f32,
}

impl LayerNorm {
    fn forward(&self, w: Weights, tape: &Tape, x: &Var) -> Result<Var> {
        tape.layer_norm(x, &w.get(tape, &self.w), &w.get(tape, &self.b), self.eps)
    }
}

/// x = x + attn(ln_1(x)); x = x + mlp(ln_2(x)), mlp = c_fc → QuickGELU → c_proj.
pub struct ResidualBlock {
    ln_1: LayerNorm,
    // in_proj [3w, w] is split into q, k, v at load time: three matmuls, no slicing kernel.
    q: Linear,
    k: Linear,
    v: Linear,
    out_proj: Linear,
    ln_2: LayerNorm,
    c_fc: Linear,
    c_proj: Linear,
    heads: usize,
}

impl ResidualBlock {
    pub fn forward(&self, tape: &Tape, x: &Var, causal: bool) -> Result<Var> {
        self.forward_with(Weights::Frozen, tape, x, causal)
    }

    pub fn forward_with(&self, w: Weights, tape: &Tape, x: &Var, causal: bool) -> Result<Var> {
        let h = self.ln_1.forward(w, tape, x)?;
        let (q, k, v) = (self.q.forward(w, tape, &h)?, self.k.forward(w, tape, &h)?, self.v.forward(w, tape, &h)?);
        let a = tape.attention(&q, &k, &v, self.heads, causal)?;
        let x = tape.add(x, &self.out_proj.forward(w, tape, &a)?)?;
        let h = self.ln_2.forward(w, tape, &x)?;
        let h = tape.activation(&self.c_fc.forward(w, tape, &h)?, Activation::QuickGelu)?;
        tape.add(&x, &self.c_proj.forward(w, tape, &h)?)
    }

    fn tensors<'s>(&'s self, out: &mut Vec<&'s Named>) {
        for l in [&self.ln_1.w, &self.ln_1.b, &self.ln_2.w, &self.ln_2.b] {
            out.push(l);
        }
        for l in [&self.q, &self.k, &self.v, &self.out_proj, &self.c_fc, &self.c_proj] {
            out.push(&l.w);
            out.push(&l.b);
        }
    }
}

/// Pulls tensors out of an OpenAI-named weight file, checking every shape.
struct Loader<'a> {
    gpu: &'a Gpu,
    w: &'a mut WeightFile,
    prefix: &'a str,
}

impl Loader<'_> {
    fn host(&mut self, name: &str, shape: &[usize]) -> Result<HostTensor> {
        self.w.take(&format!("{}{name}", self.prefix), shape)
    }
    fn tensor(&mut self, name: &str, shape: &[usize]) -> Result<Named> {
        let h = self.host(name, shape)?;
        Ok(Named { name: name.to_string(), t: upload(self.gpu, h)? })
    }
    fn linear(&mut self, name: &str, out: usize, inp: usize) -> Result<Linear> {
        Ok(Linear { w: self.tensor(&format!("{name}.weight"), &[out, inp])?, b: self.tensor(&format!("{name}.bias"), &[out])? })
    }
    fn layer_norm(&mut self, name: &str, width: usize, eps: f32) -> Result<LayerNorm> {
        Ok(LayerNorm { w: self.tensor(&format!("{name}.weight"), &[width])?, b: self.tensor(&format!("{name}.bias"), &[width])?, eps })
    }
    fn block(&mut self, name: &str, width: usize, heads: usize, eps: f32) -> Result<ResidualBlock> {
        let w = self.host(&format!("{name}.attn.in_proj_weight"), &[3 * width, width])?;
        let b = self.host(&format!("{name}.attn.in_proj_bias"), &[3 * width])?;
        let part = |i: usize| -> Result<Linear> {
            let rows = w.data[i * width * width..(i + 1) * width * width].to_vec();
            let bias = b.data[i * width..(i + 1) * width].to_vec();
            let qkv = ["q", "k", "v"][i];
            Ok(Linear {
                w: Named { name: format!("{name}.attn.in_proj_weight.{qkv}"), t: Tensor::from_slice(self.gpu, &[width, width], &rows)? },
                b: Named { name: format!("{name}.attn.in_proj_bias.{qkv}"), t: Tensor::from_slice(self.gpu, &[width], &bias)? },
            })
        };
        Ok(ResidualBlock {
            ln_1: self.layer_norm(&format!("{name}.ln_1"), width, eps)?,
            q: part(0)?,
            k: part(1)?,
            v: part(2)?,
            out_proj: self.linear(&format!("{name}.attn.out_proj"), width, width)?,
            ln_2: self.layer_norm(&format!("{name}.ln_2"), width, eps)?,
            c_fc: self.linear(&format!("{name}.mlp.c_fc"), 4 * width, width)?,
            c_proj: self.linear(&format!("{name}.mlp.c_proj"), width, 4 * width)?,
            heads,
        })
    }
}

pub struct TextEncoder {
    token_embedding: Named,
    positional_embedding: Named,
    blocks: Vec<ResidualBlock>,
    ln_final: LayerNorm,
    /// [width, embed]: sent_emb = x[eot] @ text_projection.
    text_projection: Named,
}

pub struct VisionEncoder {
    /// [width, 3, patch, patch], no bias.
    conv1: Named,
    class_embedding: Named,
    positional_embedding: Named,
    ln_pre: LayerNorm,
    pub blocks: Vec<ResidualBlock>,
    ln_post: LayerNorm,
    /// [width, embed].
    proj: Named,
}

pub struct Clip {
    pub config: ClipConfig,
    pub text: TextEncoder,
    pub vision: VisionEncoder,
    pub gpu: Gpu,
}

/// The text tower's outputs.
pub struct TextOutput {
    /// [B, embed]: the EOT row of the final layer norm's output @ text_projection.
    pub sent_emb: Var,
    /// [B, context, width]: every token's final hidden state.
    pub word_embs: Var,
}

/// The image tower's outputs as the discriminator uses them.
pub struct ImageOutput {
    /// [B, n_selected, width, grid, grid]: token maps after the selected blocks, class token
    /// dropped.
    pub features: Var,
    /// [B, embed]: ln_post(class token) @ proj.
    pub embedding: Var,
}

impl Clip {
    /// Loads CLIP from a folder (config.json + model.safetensors) or one safetensors file,
    /// with Hugging Face or OpenAI names (a ratlip model file holds CLIP too: `commands::clip::load_or_from_model` takes it from there).
    pub fn load(gpu: &Gpu, path: &Path) -> Result<Clip> {
        let (file, config_json) = if path.is_dir() {
            let cfg = path.join("config.json");
            let text = if cfg.exists() {
                Some(std::fs::read_to_string(&cfg).map_err(|e| Error::Other(format!("reading {}: {e}", cfg.display())))?)
            } else {
                None
            };
            (path.join("model.safetensors"), text)
        } else {
            (path.to_path_buf(), None)
        };
        if !file.exists() {
            return Err(Error::Other(format!(
                "no CLIP weights at {} (give a folder with config.json + model.safetensors, or a .safetensors file)",
                file.display()
            )));
        }
        let w = WeightFile::load(&file)?;
        let mut w = match detect(&w, "")? {
            ClipNaming::HuggingFace => hf_to_openai(w)?,
            ClipNaming::OpenAi => w,
        };
        let config = match config_json {
            Some(text) => ClipConfig::from_hf_json(&text)?,
            None => match w.metadata.get("clip_config") {
                Some(j) => serde_json::from_str(j).map_err(|e| Error::Other(format!("{}: bad clip_config metadata: {e}", file.display())))?,
                None => ClipConfig::infer_openai(&w, "")?,
            },
        };
        w.take_any("logit_scale");
        let clip = Clip::from_weights(gpu, &mut w, "", config)?;
        w.finish()?;
        Ok(clip)
    }

    /// Builds CLIP from OpenAI-named tensors under `prefix`, taking them out of `w`.
    pub fn from_weights(gpu: &Gpu, w: &mut WeightFile, prefix: &str, config: ClipConfig) -> Result<Clip> {
        config.validate()?;
        let eps = config.layer_norm_eps;
        let (t, v, e) = (&config.text, &config.vision, config.embed_dim);
        let mut l = Loader { gpu, w, prefix };
        let text = TextEncoder {
            token_embedding: l.tensor("token_embedding.weight", &[t.vocab_size, t.width])?,
            positional_embedding: l.tensor("positional_embedding", &[t.context_length, t.width])?,
            blocks: (0..t.layers)
                .map(|i| l.block(&format!("transformer.resblocks.{i}"), t.width, t.heads, eps))
                .collect::<Result<_>>()?,
            ln_final: l.layer_norm("ln_final", t.width, eps)?,
            text_projection: l.tensor("text_projection", &[t.width, e])?,
        };
        let tokens = v.grid() * v.grid() + 1;
        let vision = VisionEncoder {
            conv1: l.tensor("visual.conv1.weight", &[v.width, 3, v.patch_size, v.patch_size])?,
            class_embedding: l.tensor("visual.class_embedding", &[v.width])?,
            positional_embedding: l.tensor("visual.positional_embedding", &[tokens, v.width])?,
            ln_pre: l.layer_norm("visual.ln_pre", v.width, eps)?,
            blocks: (0..v.layers)
                .map(|i| l.block(&format!("visual.transformer.resblocks.{i}"), v.width, v.heads, eps))
                .collect::<Result<_>>()?,
            ln_post: l.layer_norm("visual.ln_post", v.width, eps)?,
            proj: l.tensor("visual.proj", &[v.width, e])?,
        };
        Ok(Clip { config, text, vision, gpu: gpu.clone() })
    }

    /// Every weight tensor under its name (q, k, v split: `….in_proj_weight.q`). The tensors
    /// share their buffers with the model, so an optimiser updating them in place updates CLIP.
    pub fn tensors(&self) -> BTreeMap<String, Tensor> {
        let mut all: Vec<&Named> = Vec::new();
        for b in self.text.blocks.iter().chain(&self.vision.blocks) {
            b.tensors(&mut all);
        }
        let (t, v) = (&self.text, &self.vision);
        all.extend([&t.token_embedding, &t.positional_embedding, &t.ln_final.w, &t.ln_final.b, &t.text_projection]);
        all.extend([&v.conv1, &v.class_embedding, &v.positional_embedding, &v.ln_pre.w, &v.ln_pre.b, &v.ln_post.w, &v.ln_post.b, &v.proj]);
        all.into_iter().map(|n| (n.name.clone(), n.t.clone())).collect()
    }

    /// CLIP's weights back in OpenAI names (q, k, v joined into `in_proj` again), for saving
    /// it inside a model file or exporting the mapper's ViT.
    pub fn state_dict(&self) -> Result<BTreeMap<String, HostTensor>> {
        let mut out = BTreeMap::new();
        let mut parts: BTreeMap<String, [Option<HostTensor>; 3]> = BTreeMap::new();
        for (name, t) in self.tensors() {
            let host = HostTensor::new(t.shape().to_vec(), t.to_vec()?);
            match name.rsplit_once('.').filter(|(stem, _)| stem.ends_with(".in_proj_weight") || stem.ends_with(".in_proj_bias")) {
                Some((stem, qkv)) => {
                    let i = ["q", "k", "v"].iter().position(|p| *p == qkv).ok_or_else(|| Error::Other(format!("clip: unexpected tensor {name}")))?;
                    parts.entry(stem.to_string()).or_default()[i] = Some(host);
                }
                None => {
                    out.insert(name, host);
                }
            }
        }
        for (stem, [q, k, v]) in parts {
            let (Some(q), Some(k), Some(v)) = (q, k, v) else { return Err(Error::Other(format!("clip: {stem} lacks one of q, k, v"))) };
            out.insert(stem, HostTensor::concat0(&[q, k, v]));
        }
        Ok(out)
    }

    /// Token embeddings for `ids` ([B][context] each): the input of the text transformer
    /// before positions are added.
    pub fn embed_tokens(&self, tape: &Tape, ids: &[Vec<u32>]) -> Result<Var> {
        self.embed_tokens_with(Weights::Frozen, tape, ids)
    }

    pub fn embed_tokens_with(&self, w: Weights, tape: &Tape, ids: &[Vec<u32>]) -> Result<Var> {
        let t = &self.config.text;
        let b = ids.len();
        for (i, row) in ids.iter().enumerate() {
            if row.len() != t.context_length {
                return Err(Error::shape("encode_text", format!("prompt {i} has {} ids, expected {}", row.len(), t.context_length)));
            }
        }
        let flat: Vec<u32> = ids.iter().flatten().copied().collect();
        let ids = ids_tensor(&self.gpu, &[b, t.context_length], &flat, t.vocab_size)?;
        tape.embedding(&w.get(tape, &self.text.token_embedding), &ids)
    }

    /// Sentence embeddings of `texts` (CLIP's tokenizer, cut to the context), one row each,
    /// encoded in batches of 64 — for scoring; frozen weights.
    pub fn embed_texts(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        let tok = crate::clip::tokenizer::ClipTokenizer::bundled()?;
        let ctx = self.config.text.context_length;
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(64) {
            let ids: Vec<Vec<u32>> = chunk.iter().map(|t| tok.encode(t, ctx).map(|e| e.ids)).collect::<Result<_>>()?;
            let tape = Tape::new(&self.gpu);
            let emb = self.encode_text(&tape, &ids)?.sent_emb.value().to_vec()?;
            out.extend(emb.chunks(self.config.embed_dim).map(<[f32]>::to_vec));
        }
        Ok(out)
    }

    /// Projected image embeddings of preprocessed images (each [3, S, S] at the vision
    /// tower's S, concatenated), one row each, encoded in batches of 32; frozen weights.
    pub fn embed_pixels(&self, pixels: &[f32]) -> Result<Vec<Vec<f32>>> {
        let s = self.config.vision.image_size;
        let per = 3 * s * s;
        if pixels.len() % per != 0 {
            return Err(Error::shape("clip embed_pixels", format!("{} values are not whole [3, {s}, {s}] images", pixels.len())));
        }
        let mut out = Vec::with_capacity(pixels.len() / per);
        for chunk in pixels.chunks(32 * per) {
            let tape = Tape::new(&self.gpu);
            let x = tape.constant(Tensor::from_slice(&self.gpu, &[chunk.len() / per, 3, s, s], chunk)?);
            let emb = self.encode_image(&tape, &x, &[])?.embedding.value().to_vec()?;
            out.extend(emb.chunks(self.config.embed_dim).map(<[f32]>::to_vec));
        }
        Ok(out)
    }

    /// Text tower from token ids. The EOT token is the largest id in each row (MODEL.md §2).
    pub fn encode_text(&self, tape: &Tape, ids: &[Vec<u32>]) -> Result<TextOutput> {
        self.encode_text_with(Weights::Frozen, tape, ids)
    }

    pub fn encode_text_with(&self, w: Weights, tape: &Tape, ids: &[Vec<u32>]) -> Result<TextOutput> {
        let x = self.embed_tokens_with(w, tape, ids)?;
        let eot: Vec<usize> = ids.iter().map(|r| eot_index(r)).collect();
        self.encode_text_embeddings_with(w, tape, &x, &eot)
    }

    /// Text tower from token embeddings `x` [B, context, width] (so gradients w.r.t. the
    /// embeddings can be taken), reading the sentence embedding at `eot[b]`.
    pub fn encode_text_embeddings(&self, tape: &Tape, x: &Var, eot: &[usize]) -> Result<TextOutput> {
        self.encode_text_embeddings_with(Weights::Frozen, tape, x, eot)
    }

    pub fn encode_text_embeddings_with(&self, w: Weights, tape: &Tape, x: &Var, eot: &[usize]) -> Result<TextOutput> {
        let t = &self.config.text;
        let b = x.shape()[0];
        // The EOT rows, gathered as an embedding lookup into the [B·T, width] table.
        let rows: Vec<u32> = eot.iter().enumerate().map(|(i, &e)| (i * t.context_length + e) as u32).collect();
        let at = ids_tensor(&self.gpu, &[b], &rows, b * t.context_length)?;
        let pos = w.get(tape, &self.text.positional_embedding);
        let mut x = tape.add_b(x, &pos)?;
        for block in &self.text.blocks {
            x = block.forward_with(w, tape, &x, true)?;
        }
        let word_embs = self.text.ln_final.forward(w, tape, &x)?;
        let table = tape.reshape(&word_embs, &[b * t.context_length, t.width])?;
        let pooled = tape.embedding(&table, &at)?;
        let sent_emb = tape.matmul(&pooled, &w.get(tape, &self.text.text_projection), false, false)?;
        Ok(TextOutput { sent_emb, word_embs })
    }

    /// Class token + positions + ln_pre on patch tokens [B, width, grid, grid].
    fn vision_stem(&self, w: Weights, tape: &Tape, patches: &Var) -> Result<Var> {
        let v = &self.config.vision;
        let b = patches.shape()[0];
        let g2 = v.grid() * v.grid();
        let x = tape.reshape(patches, &[b, v.width, g2])?;
        let x = tape.permute(&x, &[0, 2, 1])?;
        let cls = tape.reshape(&w.get(tape, &self.vision.class_embedding), &[1, 1, v.width])?;
        let cls = tape.expand(&cls, &[b, 1, v.width])?;
        let x = tape.concat(&[&cls, &x], 1)?;
        let x = tape.add_b(&x, &w.get(tape, &self.vision.positional_embedding))?;
        self.vision.ln_pre.forward(w, tape, &x)
    }

    /// Tokens [B, 1 + grid², width] → patch tokens as a map [B, width, grid, grid].
    fn tokens_to_map(&self, tape: &Tape, x: &Var) -> Result<Var> {
        let v = &self.config.vision;
        let b = x.shape()[0];
        let g2 = v.grid() * v.grid();
        let p = tape.slice(x, 1, 1, g2)?;
        let p = tape.permute(&p, &[0, 2, 1])?;
        tape.reshape(&p, &[b, v.width, v.grid(), v.grid()])
    }

    /// Image tower on normalised pixels [B, 3, S, S] (S = image_size): the token maps after
    /// the blocks in `selected` (0-based) and the projected image embedding.
    pub fn encode_image(&self, tape: &Tape, pixels: &Var, selected: &[usize]) -> Result<ImageOutput> {
        self.encode_image_with(Weights::Frozen, tape, pixels, selected)
    }

    pub fn encode_image_with(&self, w: Weights, tape: &Tape, pixels: &Var, selected: &[usize]) -> Result<ImageOutput> {
        let v = &self.config.vision;
        let s = pixels.shape();
        if s.len() != 4 || s[1] != 3 || s[2] != v.image_size || s[3] != v.image_size {
            return Err(Error::shape("encode_image", format!("pixels {s:?}, expected [B, 3, {0}, {0}]", v.image_size)));
        }
        if let Some(&bad) = selected.iter().find(|&&i| i >= v.layers) {
            return Err(Error::shape("encode_image", format!("block {bad} selected but CLIP has {} blocks", v.layers)));
        }
        let b = s[0];
        let conv = Conv2dParams { stride: (v.patch_size, v.patch_size), padding: (0, 0) };
        let patches = tape.conv2d(pixels, &w.get(tape, &self.vision.conv1), None, conv)?;
        let mut x = self.vision_stem(w, tape, &patches)?;
        let mut maps = Vec::new();
        for (i, block) in self.vision.blocks.iter().enumerate() {
            x = block.forward_with(w, tape, &x, false)?;
            if selected.contains(&i) {
                maps.push(self.tokens_to_map(tape, &x)?);
            }
        }
        let refs: Vec<&Var> = maps.iter().collect();
        let features = if refs.is_empty() {
            tape.constant(Tensor::zeros(&self.gpu, &[b, 0, v.width, v.grid(), v.grid()])?)
        } else {
            let stacked: Vec<Var> =
                refs.iter().map(|m| tape.reshape(m, &[b, 1, v.width, v.grid(), v.grid()])).collect::<Result<_>>()?;
            tape.concat(&stacked.iter().collect::<Vec<_>>(), 1)?
        };
        let cls = tape.slice(&x, 1, 0, 1)?;
        let cls = tape.reshape(&cls, &[b, v.width])?;
        let cls = self.vision.ln_post.forward(w, tape, &cls)?;
        let embedding = tape.matmul(&cls, &w.get(tape, &self.vision.proj), false, false)?;
        Ok(ImageOutput { features, embedding })
    }

    /// The mapper inside G (MODEL.md §3): the fused map [B, width, grid, grid] is the patch
    /// embedding; prompt p ([B, P, width]) joins block p+1 as one extra token that is dropped
    /// after it. No ln_post. Returns [B, width, grid, grid].
    pub fn map(&self, tape: &Tape, fused: &Var, prompts: &Var) -> Result<Var> {
        let v = &self.config.vision;
        let b = fused.shape()[0];
        let n_prompts = prompts.shape()[1];
        if fused.shape() != [b, v.width, v.grid(), v.grid()] {
            return Err(Error::shape("clip mapper", format!("fused map {:?}, expected [B, {}, {2}, {2}]", fused.shape(), v.width, v.grid())));
        }
        if prompts.shape() != [b, n_prompts, v.width] || n_prompts >= v.layers {
            return Err(Error::shape("clip mapper", format!("prompts {:?} for {} blocks of width {}", prompts.shape(), v.layers, v.width)));
        }
        let tokens = v.grid() * v.grid() + 1;
        let mut x = self.vision_stem(Weights::Frozen, tape, fused)?;
        for (i, block) in self.vision.blocks.iter().enumerate() {
            if (1..=n_prompts).contains(&i) {
                let p = tape.slice(prompts, 1, i - 1, 1)?;
                let with = tape.concat(&[&x, &p], 1)?;
                let out = block.forward(tape, &with, false)?;
                x = tape.slice(&out, 1, 0, tokens)?;
            } else {
                x = block.forward(tape, &x, false)?;
            }
        }
        self.tokens_to_map(tape, &x)
    }
}
