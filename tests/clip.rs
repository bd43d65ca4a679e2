//! CLIP against Hugging Face transformers' CLIPModel on identical random weights
//! (tests/fixtures/clip_tiny, written by tools/reference/clip_reference.py).
//!
//! Tolerance, as max |ours − torch| / max |torch| per output: 1e-5 for outputs and gradients.
//! Both sides compute in f32 with different summation orders, so each matmul, softmax and layer
//! norm adds a few ulp (6e-8 each); measured on the tiny fixture: 1e-7 to 4e-7, so 1e-5 leaves
//! a 25× margin while a wrong index, mask or transpose gives errors of order 1.
//!
//! `RATLIP_CLIP_FIXTURE=DIR` points the same tests at another fixture (e.g. the full ViT-B/32
//! one from `clip_reference.py --full --out DIR`).

use std::path::{Path, PathBuf};

use ratlip::clip::model::Clip;
use ratlip::weights::WeightFile;
use ratlip::{Gpu, GpuOptions, Tape, Tensor, Var};

fn dir() -> PathBuf {
    match std::env::var_os("RATLIP_CLIP_FIXTURE") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clip_tiny"),
    }
}

const TOL: f64 = 1e-5;

fn gpu() -> Gpu {
    Gpu::new(&GpuOptions::default()).expect("CLIP tests need a GPU adapter (lavapipe is enough)")
}

struct Ref(WeightFile);

impl Ref {
    fn load() -> Ref {
        Ref(WeightFile::load(&dir().join("reference.safetensors")).unwrap())
    }
    fn get(&mut self, name: &str) -> (Vec<usize>, Vec<f32>) {
        let t = self.0.take_any(name).unwrap();
        (t.shape, t.data)
    }
    fn tensor(&mut self, g: &Gpu, name: &str) -> Tensor {
        let (s, d) = self.get(name);
        Tensor::from_slice(g, &s, &d).unwrap()
    }
}

fn rel(got: &Tensor, want: &[f32]) -> f64 {
    let got = got.to_vec().unwrap();
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0f64, |m, &w| m.max(w.abs() as f64));
    got.iter().zip(want).fold(0f64, |m, (&g, &w)| m.max((g as f64 - w as f64).abs())) / scale
}

fn check(what: &str, got: &Tensor, want: &[f32], tol: f64) {
    let e = rel(got, want);
    println!("{what}: max relative error {e:.2e}");
    assert!(e <= tol, "{what}: max relative error {e:.2e} > {tol:.0e}");
}

/// Σ out ⊙ w as a scalar on the tape, so one backward seeds several outputs.
fn weighted(tape: &Tape, out: &Var, w: Tensor) -> Var {
    let prod = tape.mul(out, &tape.constant(w)).unwrap();
    let axes: Vec<usize> = (0..prod.shape().len()).collect();
    tape.sum(&prod, &axes, false).unwrap()
}

#[test]
fn text_encoder_matches_transformers() {
    let g = gpu();
    let clip = Clip::load(&g, &dir()).unwrap();
    let mut r = Ref::load();
    let (shape, ids) = r.get("ids");
    let ids: Vec<Vec<u32>> = ids.chunks(shape[1]).map(|row| row.iter().map(|&x| x as u32).collect()).collect();
    let tape = Tape::new(&g);
    let emb = clip.embed_tokens(&tape, &ids).unwrap();
    let x = tape.var(emb.value().clone());
    let eot: Vec<usize> = ids.iter().map(|r| ratlip::clip::tokenizer::eot_index(r)).collect();
    let out = clip.encode_text_embeddings(&tape, &x, &eot).unwrap();
    check("word_embs", out.word_embs.value(), &r.get("word_embs").1, TOL);
    check("sent_emb", out.sent_emb.value(), &r.get("sent_emb").1, TOL);
    let l1 = weighted(&tape, &out.word_embs, r.tensor(&g, "w_word"));
    let l2 = weighted(&tape, &out.sent_emb, r.tensor(&g, "w_sent"));
    let loss = tape.add(&l1, &l2).unwrap();
    let grads = tape.backward(&loss).unwrap();
    check("d/d token embeddings", grads.get(&x).unwrap(), &r.get("grad_token_embs").1, TOL);
}

#[test]
fn image_encoder_matches_transformers() {
    let g = gpu();
    let clip = Clip::load(&g, &dir()).unwrap();
    let mut r = Ref::load();
    let tape = Tape::new(&g);
    let pixels = tape.var(r.tensor(&g, "pixels"));
    let selected: Vec<usize> = serde_json::from_str(&r.0.metadata["selected_blocks"]).unwrap();
    let out = clip.encode_image(&tape, &pixels, &selected).unwrap();
    check("selected block maps", out.features.value(), &r.get("feats").1, TOL);
    check("image embedding", out.embedding.value(), &r.get("img_emb").1, TOL);
    let l1 = weighted(&tape, &out.features, r.tensor(&g, "w_feats"));
    let l2 = weighted(&tape, &out.embedding, r.tensor(&g, "w_img"));
    let loss = tape.add(&l1, &l2).unwrap();
    let grads = tape.backward(&loss).unwrap();
    check("d/d pixels", grads.get(&pixels).unwrap(), &r.get("grad_pixels").1, TOL);
}

#[test]
fn mapper_matches_the_reference() {
    let g = gpu();
    // The OpenAI-named copy, to exercise that loading path too.
    let clip = Clip::load(&g, &dir().join("openai.safetensors")).unwrap();
    let mut r = Ref::load();
    let tape = Tape::new(&g);
    let fused = tape.var(r.tensor(&g, "fused"));
    let prompts = tape.var(r.tensor(&g, "prompts"));
    let mapped = clip.map(&tape, &fused, &prompts).unwrap();
    check("mapped", mapped.value(), &r.get("mapped").1, TOL);
    let loss = weighted(&tape, &mapped, r.tensor(&g, "w_mapped"));
    let grads = tape.backward(&loss).unwrap();
    check("d/d fused", grads.get(&fused).unwrap(), &r.get("grad_fused").1, TOL);
    check("d/d prompts", grads.get(&prompts).unwrap(), &r.get("grad_prompts").1, TOL);
}

#[test]
fn clip_weights_stay_frozen_and_record_nothing() {
    let g = gpu();
    let clip = Clip::load(&g, &dir()).unwrap();
    let tape = Tape::new(&g);
    let ids = vec![vec![998, 5, 999].into_iter().chain(std::iter::repeat(0).take(74)).collect::<Vec<u32>>()];
    let out = clip.encode_text(&tape, &ids).unwrap();
    assert!(!out.sent_emb.requires_grad());
    assert!(tape.is_empty(), "a frozen forward pass records no backward work");
}

#[test]
fn bad_inputs_are_errors() {
    let g = gpu();
    let e = Clip::load(&g, Path::new("/nonexistent/clip")).err().unwrap().to_string();
    assert!(e.contains("/nonexistent/clip"), "{e}");
    let clip = Clip::load(&g, &dir()).unwrap();
    let tape = Tape::new(&g);
    let e = clip.encode_text(&tape, &[vec![1, 2, 3]]).err().unwrap().to_string();
    assert!(e.contains("77"), "{e}");
    let e = clip.encode_text(&tape, &[vec![5000; 77]]).err().unwrap().to_string();
    assert!(e.contains("5000"), "{e}");
    let px = tape.constant(Tensor::zeros(&g, &[1, 3, 16, 16]).unwrap());
    let e = clip.encode_image(&tape, &px, &[0]).err().unwrap().to_string();
    assert!(e.contains("[1, 3, 16, 16]"), "{e}");
}
