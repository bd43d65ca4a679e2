//! CLIP's contrastive training (src/train/clip.rs) against PyTorch, and `ratlip train-clip`'s
//! run folder on a tiny synthetic set.
//!
//! Parity fixture: tests/fixtures/clip_train (tools/reference/clip_train_reference.py): a tiny
//! OpenAI-layout CLIP, one batch of 6, the loss, every gradient of step 1, and the weights
//! after two Adam steps. Tolerances, as max |ours − torch| / max |torch| per tensor:
//! - loss and gradients: 1e-4. Both sides are f32 with different summation orders through
//!   2 + 2 transformer blocks, the normalisations and a softmax; a wrong transpose, index or
//!   missing term is an error of order 1.
//! - weights after two Adam steps: |Δ| ≤ 0.05 · lr per element. Adam's first steps move each
//!   weight by about ±lr whatever the gradient's size, so a wrong gradient sign shows as 2·lr;
//!   where a gradient is tiny the update is sensitive to f32 noise in it (measured worst:
//!   0.014·lr, in a key projection row). The key bias of in_proj is exempt (bounded by 4·lr
//!   only): its gradient is zero in exact arithmetic, softmax being shift-invariant, so both
//!   sides' updates are Adam-normalised rounding noise (measured up to 0.13·lr apart).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use ratlip::autograd::Tape;
use ratlip::clip::config::{ClipConfig, TextConfig, VisionConfig};
use ratlip::clip::model::{Clip, TrainVars, Weights};
use ratlip::data::synth::{self, Kind, Options};
use ratlip::train::attribute_head::Side;
use ratlip::train::clip::{contrastive_grads, ClipRun, ClipRunConfig, ClipTrainer, Outcome, LOGIT_SCALE};
use ratlip::weights::WeightFile;
use ratlip::{Gpu, GpuOptions, Tensor};

#[path = "support/reference.rs"]
mod support;
use support::{rel, Ref};

fn gpu() -> Gpu {
    Gpu::new(&GpuOptions::default()).expect("CLIP training tests need a GPU adapter (lavapipe is enough)")
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clip_train")
}

/// Our gradients / tensors in OpenAI names: q, k, v parts joined back into in_proj.
fn joined(mut m: BTreeMap<String, Vec<f32>>) -> BTreeMap<String, Vec<f32>> {
    let stems: Vec<String> = m.keys().filter_map(|k| k.strip_suffix(".q").map(str::to_string)).collect();
    for stem in stems {
        let mut all = Vec::new();
        for p in ["q", "k", "v"] {
            all.extend(m.remove(&format!("{stem}.{p}")).unwrap());
        }
        m.insert(stem, all);
    }
    m
}

#[test]
fn one_step_matches_pytorch() {
    let g = gpu();
    let mut trainer = ClipTrainer::load(&g, &fixture().join("clip.safetensors")).unwrap();
    let mut r = Ref::open(&fixture().join("step.safetensors"));
    let pixels = r.tensor(&g, "pixels");
    let (shape, ids) = r.host("ids");
    let ids: Vec<Vec<u32>> = ids.chunks(shape[1]).map(|row| row.iter().map(|&x| x as u32).collect()).collect();

    let out = contrastive_grads(&trainer.clip, &trainer.logit_scale, &pixels, &ids, &[], None).unwrap();
    let want = r.scalar("loss");
    assert!(((out.loss - want) / want).abs() < 1e-4, "loss {} vs torch {want}", out.loss);
    assert_eq!(out.acc_i2t, r.scalar("acc_i2t"));
    assert_eq!(out.acc_t2i, r.scalar("acc_t2i"));
    let ours = joined(out.grads.iter().map(|(n, t)| (n.clone(), t.to_vec().unwrap())).collect());
    let theirs = r.under("grad.");
    assert_eq!(ours.keys().collect::<Vec<_>>(), theirs.keys().collect::<Vec<_>>(), "a gradient for every parameter, no more");
    let mut worst = (0.0, String::new());
    for (name, (_, want)) in &theirs {
        let e = rel(&ours[name], want);
        if e > worst.0 {
            worst = (e, name.clone());
        }
    }
    eprintln!("loss {} vs {want}; worst gradient: {} at {:.2e}", out.loss, worst.1, worst.0);
    assert!(worst.0 < 1e-4, "gradient of {} differs by {:.2e} of its largest element", worst.1, worst.0);

    let lr: f32 = r.0.metadata["lr"].parse().unwrap();
    trainer.step(&pixels, &ids, &[], None, lr).unwrap();
    let second = trainer.step(&pixels, &ids, &[], None, lr).unwrap();
    let want2 = r.scalar("loss2");
    assert!(((second.loss - want2) / want2).abs() < 1e-3, "step 2 loss {} vs torch {want2}", second.loss);
    let mut after: BTreeMap<String, Vec<f32>> = trainer.clip.state_dict().unwrap().into_iter().map(|(n, t)| (n, t.data)).collect();
    after.insert(LOGIT_SCALE.into(), vec![trainer.logit_scale_value().unwrap()]);
    let theirs = r.under("after.");
    assert_eq!(after.keys().collect::<Vec<_>>(), theirs.keys().collect::<Vec<_>>());
    for (name, (_, want)) in &theirs {
        let width = want.len() / 3;
        for (i, (a, b)) in after[name].iter().zip(want).enumerate() {
            // The key bias's gradient is zero in exact arithmetic (softmax is shift-invariant),
            // so Adam turns both sides' f32 noise into ±lr steps: only bounded.
            let key_bias = name.ends_with("in_proj_bias") && (width..2 * width).contains(&i);
            let tol = if key_bias { 4.0 * lr } else { 0.05 * lr };
            assert!((a - b).abs() <= tol, "{name}[{i}] after two Adam steps: {a} vs torch {b} (tolerance {tol:.1e})");
        }
    }
}

/// NegCLIP's loss (`--hard-negatives`): the same batch with 4 negative captions, against
/// tests/fixtures/clip_train/negatives.safetensors; tolerances as above.
#[test]
fn hard_negatives_match_pytorch() {
    let g = gpu();
    let trainer = ClipTrainer::load(&g, &fixture().join("clip.safetensors")).unwrap();
    let mut r = Ref::open(&fixture().join("step.safetensors"));
    let pixels = r.tensor(&g, "pixels");
    let rows = |(shape, v): (Vec<usize>, Vec<f32>)| -> Vec<Vec<u32>> { v.chunks(shape[1]).map(|row| row.iter().map(|&x| x as u32).collect()).collect() };
    let ids = rows(r.host("ids"));
    let mut n = Ref::open(&fixture().join("negatives.safetensors"));
    let negatives = rows(n.host("negatives"));
    assert_eq!(negatives.len(), 4);

    let out = contrastive_grads(&trainer.clip, &trainer.logit_scale, &pixels, &ids, &negatives, None).unwrap();
    let want = n.scalar("loss");
    assert!(((out.loss - want) / want).abs() < 1e-4, "loss {} vs torch {want}", out.loss);
    let plain = contrastive_grads(&trainer.clip, &trainer.logit_scale, &pixels, &ids, &[], None).unwrap();
    assert!(out.loss > plain.loss + 0.1, "negatives only add terms to the image→text softmax: {} vs {}", out.loss, plain.loss);
    assert_eq!(out.acc_i2t, n.scalar("acc_i2t"));
    assert_eq!(out.acc_t2i, n.scalar("acc_t2i"));
    let ours = joined(out.grads.iter().map(|(n, t)| (n.clone(), t.to_vec().unwrap())).collect());
    let theirs = n.under("grad.");
    assert_eq!(ours.keys().collect::<Vec<_>>(), theirs.keys().collect::<Vec<_>>());
    for (name, (_, want)) in &theirs {
        let e = rel(&ours[name], want);
        assert!(e < 1e-4, "gradient of {name} differs by {e:.2e} of its largest element");
    }
}

#[test]
fn frozen_use_records_nothing_and_training_reaches_every_tensor() {
    let g = gpu();
    let trainer = ClipTrainer::load(&g, &fixture().join("clip.safetensors")).unwrap();
    let clip = &trainer.clip;
    let ids = vec![vec![62, 5, 9, 63, 0, 0, 0, 0]];
    let px = Tensor::zeros(&g, &[1, 3, 8, 8]).unwrap();

    let tape = Tape::new(&g);
    clip.encode_text(&tape, &ids).unwrap();
    clip.encode_image(&tape, &tape.constant(px.clone()), &[0]).unwrap();
    assert_eq!(tape.len(), 0, "frozen CLIP on constant inputs must record no tape nodes");

    let tape = Tape::new(&g);
    let tv = TrainVars::new();
    let a = clip.encode_text_with(Weights::Trained(&tv), &tape, &ids).unwrap().sent_emb;
    let b = clip.encode_image_with(Weights::Trained(&tv), &tape, &tape.constant(px), &[]).unwrap().embedding;
    let s = tape.add(&tape.sum(&a, &[0, 1], false).unwrap(), &tape.sum(&b, &[0, 1], false).unwrap()).unwrap();
    let mut grads = tape.backward(&s).unwrap();
    let got = tv.gradients(&mut grads);
    let names: Vec<String> = clip.tensors().into_keys().collect();
    assert_eq!(got.into_keys().collect::<Vec<_>>(), names, "every CLIP tensor is a trained variable");
}

#[test]
fn checkpoint_is_a_clip_file() {
    let g = gpu();
    let trainer = ClipTrainer::load(&g, &fixture().join("clip.safetensors")).unwrap();
    let dir = scratch("ckpt");
    let path = dir.join("c.safetensors");
    trainer.save(&path, &[]).unwrap();
    let clip = Clip::load(&g, &path).unwrap();
    assert_eq!(clip.config, trainer.clip.config);
    let w = WeightFile::load(&path).unwrap();
    let orig = WeightFile::load(&fixture().join("clip.safetensors")).unwrap();
    for name in orig.names() {
        assert!(w.contains(name), "{name} missing from the saved CLIP");
    }
    let again = ClipTrainer::load(&g, &path).unwrap();
    assert_eq!(again.logit_scale_value().unwrap(), trainer.logit_scale_value().unwrap());
}

// ---- the run folder ---------------------------------------------------------------------

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ratlip_clip_train_{}_{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn faces(dir: &Path, count: usize) -> PathBuf {
    let out = dir.join("data");
    synth::write_dataset(&Options { kind: Kind::Faces, count, size: 32, seed: 0, out: out.clone(), threads: 2 }, &|_| {}).unwrap();
    out
}

fn tiny_run(data: &Path, steps: u64) -> ClipRunConfig {
    let mut c = ClipRunConfig::new(data.to_path_buf());
    c.clip = ClipConfig {
        text: TextConfig { width: 32, layers: 1, heads: 2, context_length: 32, vocab_size: 49408 },
        vision: VisionConfig { width: 32, layers: 1, heads: 2, patch_size: 8, image_size: 32 },
        embed_dim: 16,
        layer_norm_eps: 1e-5,
    };
    c.batch = 8;
    c.steps = steps;
    c.lr = 2e-3;
    c.checkpoint_every = 0;
    c.holdout = 8;
    c.workers = 2;
    c
}

fn losses(dir: &Path) -> Vec<f64> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"].as_f64().unwrap())
        .collect()
}

#[test]
fn a_short_run_learns_and_writes_its_files() {
    let g = gpu();
    let dir = scratch("learn");
    let data = faces(&dir, 24);
    let out = dir.join("run");
    let mut run = ClipRun::create(&g, &out, tiny_run(&data, 16), None).unwrap();
    assert_eq!(run.train(&AtomicBool::new(false), |_| {}).unwrap(), Outcome::Finished);
    let report = run.evaluate().unwrap();
    let l = losses(&out);
    assert_eq!(l.len(), 16);
    let (first, last) = (l[..4].iter().sum::<f64>() / 4.0, l[12..].iter().sum::<f64>() / 4.0);
    assert!(last < first * 0.8, "loss should fall over 16 steps: first four {first:.3}, last four {last:.3} ({l:?})");
    for f in ["config.json", "metrics.jsonl", "zero_shot.json", "checkpoints/step_000016.safetensors", "checkpoints/train_state_000016.safetensors"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    assert_eq!(report.images, 8);
    assert!(report.attributes.contains_key("hair_color") && report.attributes.contains_key("glasses"));
    for a in report.attributes.values() {
        assert!(a.n > 0 && a.n <= 8 && (0.0..=1.0).contains(&a.accuracy));
    }
    // Own caption vs its contrast: one pair per (held-out caption, attribute it can reverse).
    let mut want: BTreeMap<String, usize> = BTreeMap::new();
    for item in &run.holdout.items {
        for c in &item.captions {
            for f in ratlip::train::hard_negatives::flippable(c) {
                *want.entry(format!("{f:?}")).or_default() += 1;
            }
        }
    }
    assert!(want.contains_key("Mood") && want.contains_key("Glasses"), "{want:?}");
    assert_eq!(report.contrasts.iter().map(|(k, c)| (k.clone(), c.n)).collect::<BTreeMap<_, _>>(), want);
    for c in report.contrasts.values() {
        assert_eq!(c.by_truth.values().map(|t| t.0).sum::<usize>(), c.n);
        let right: f64 = c.by_truth.values().map(|t| t.0 as f64 * t.1).sum();
        assert!((right / c.n as f64 - c.accuracy).abs() < 1e-9 && (0.0..=1.0).contains(&c.balanced));
        assert!(c.text_cos.abs() <= 1.0 + 1e-5 && c.text_cos < 1.0 - 1e-7, "a contrast is another sentence: cos {}", c.text_cos);
    }
    // The mood pairs' text cosine, from the CLIP's own embeddings of each caption and contrast.
    let mood: Vec<(String, String)> = run
        .holdout
        .items
        .iter()
        .flat_map(|i| i.captions.iter().filter_map(|c| Some((c.clone(), ratlip::train::hard_negatives::contrast_of(c, ratlip::train::hard_negatives::Flip::Mood)?))))
        .collect();
    let unit = |v: &[f32]| -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect()
    };
    let cos_sum: f64 = mood
        .iter()
        .map(|(a, b)| {
            let e = run.trainer.clip.embed_texts(&[a.clone(), b.clone()]).unwrap();
            unit(&e[0]).iter().zip(unit(&e[1])).map(|(x, y)| (x * y) as f64).sum::<f64>()
        })
        .sum();
    let want = cos_sum / mood.len() as f64;
    let got = report.contrasts["Mood"].text_cos;
    assert!((got - want).abs() < 1e-5, "mood text cos {got} ≠ {want} from the CLIP's embeddings");
    let o = report.other_face_text_cos.expect("the faces have captions");
    assert!(o.abs() <= 1.0 + 1e-5 && o < 1.0 - 1e-7, "two faces' captions differ: cos {o}");
    // The checkpoint is a CLIP file the rest of ratlip reads.
    let clip = Clip::load(&g, &out.join("checkpoints/step_000016.safetensors")).unwrap();
    assert_eq!(clip.config, run.config.clip);
    let e = ClipRun::create(&g, &out, tiny_run(&data, 4), None).err().unwrap().to_string();
    assert!(e.contains("already holds a run") && e.contains("--resume"), "{e}");
}

fn weights_of(path: &Path) -> BTreeMap<String, Vec<f32>> {
    let mut w = WeightFile::load(path).unwrap();
    let names: Vec<String> = w.names().map(str::to_string).collect();
    names.into_iter().map(|n| (n.clone(), w.take_any(&n).unwrap().data)).collect()
}

fn metric(dir: &Path, key: &str) -> Vec<u64> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()[key].as_u64().unwrap())
        .collect()
}

/// Plain, with `--hard-negatives`, with `--twins` (whose choice of attribute per caption
/// must come back the same after a resume too), and with `--twins --attribute-w` (the head's
/// W is in the train state; the twins go unlabelled).
#[test]
fn resume_is_bit_exact() {
    for (hard, twins, attribute_w) in [(false, false, 0.0), (true, false, 0.0), (false, true, 0.0), (false, true, 2.0)] {
        resume_is_bit_exact_with(hard, twins, attribute_w);
    }
}

fn resume_is_bit_exact_with(hard: bool, twins: bool, attribute_w: f32) {
    let g = gpu();
    let dir = scratch(&format!("resume_{hard}_{twins}_{attribute_w}"));
    let data = faces(&dir, 20);
    let tiny_run = |data: &Path, steps| ClipRunConfig { hard_negatives: hard, twins, attribute_w, text_attribute_w: attribute_w / 2.0, ..tiny_run(data, steps) };
    let straight = dir.join("straight");
    let mut run = ClipRun::create(&g, &straight, tiny_run(&data, 6), None).unwrap();
    run.train(&AtomicBool::new(false), |_| {}).unwrap();
    drop(run);

    let split = dir.join("split");
    let mut run = ClipRun::create(&g, &split, tiny_run(&data, 6), None).unwrap();
    // Stop after 3 steps the way Ctrl-C does: the flag is seen before step 4.
    let stop = AtomicBool::new(false);
    let outcome = run.train(&stop, |r| if r.step == 3 { stop.store(true, std::sync::atomic::Ordering::Relaxed) }).unwrap();
    assert_eq!(outcome, Outcome::Interrupted);
    assert!(split.join("checkpoints/train_state_000003.safetensors").is_file());
    drop(run);
    let mut run = ClipRun::resume(&g, &split).unwrap();
    assert_eq!(run.step, 3);
    run.train(&AtomicBool::new(false), |_| {}).unwrap();

    let a = weights_of(&straight.join("checkpoints/step_000006.safetensors"));
    let b = weights_of(&split.join("checkpoints/step_000006.safetensors"));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (n, v) in &a {
        assert!(v == &b[n], "{n} differs after resume");
    }
    let sa = weights_of(&straight.join("checkpoints/train_state_000006.safetensors"));
    let sb = weights_of(&split.join("checkpoints/train_state_000006.safetensors"));
    assert!(sa == sb, "Adam state differs after resume");
    for name in [ratlip::train::attribute_head::HEAD, ratlip::train::attribute_head::TEXT_HEAD] {
        let head = sa.get(name);
        assert_eq!(head.is_some(), attribute_w > 0.0, "the train state holds {name} exactly when the run trains it");
        if let Some(w) = head {
            assert!(w.iter().any(|&v| v != 0.0), "{name} never moved from zero");
            assert!(!a.contains_key(name), "the CLIP file stays a plain CLIP");
        }
    }
    assert_eq!(losses(&straight), losses(&split), "metrics: the same losses, one line per step");
    let n = metric(&straight, "negatives");
    assert_eq!(n, metric(&split, "negatives"));
    // Nearly every faces caption has a contrast (tests/hard_negatives.rs), so a batch of 8 gets several.
    assert!(if hard { n.iter().all(|&k| (4..=8).contains(&k)) } else { n.iter().all(|&k| k == 0) }, "negatives per step {n:?}");
    let t = metric(&straight, "twins");
    assert_eq!(t, metric(&split, "twins"));
    assert!(if twins { t.iter().all(|&k| (4..=8).contains(&k)) } else { t.iter().all(|&k| k == 0) }, "twins per step {t:?}");
}

/// A twin is the sample's own face with one attribute reversed, cropped exactly as the
/// sample was: where the renderer left the pixels alone, the twin's pixels are the sample's.
#[test]
fn twins_are_the_samples_face_with_one_attribute_reversed() {
    use ratlip::train::data::{augment_like, Dataset, Loader, Position};
    use ratlip::train::hard_negatives::Flip;
    use ratlip::train::twins::Twins;
    let dir = scratch("twins");
    let data = faces(&dir, 12);
    let ds = std::sync::Arc::new(Dataset::open(&data).unwrap());
    let twins = Twins::open(&data).unwrap();
    let s = 28; // CLIP's size differs from the data's 32: the resize and crop are redone alike
    let batch = Loader::with_flip(ds.clone(), s, 5, Position::default(), 1, 4, false).next_batch(12).unwrap();
    for x in &batch {
        let path = &ds.items[x.item].image;
        let original = image::open(path).unwrap().to_rgb8();
        assert_eq!(augment_like(original.clone(), s, x.crop), x.pixels, "the recorded crop gives the sample back");
        for flip in [Flip::Mood, Flip::Glasses] {
            let twin = twins.twin(path, flip).unwrap();
            let changed = original.pixels().zip(twin.pixels()).filter(|(a, b)| a != b).count();
            assert!(changed > 0 && changed < 200, "{flip:?}: {changed} of 1024 pixels changed");
            let a = augment_like(twin, s, x.crop);
            assert_eq!(a.len(), x.pixels.len());
            assert!(a != x.pixels);
        }
    }
    // Not a faces folder: a clear error naming the option.
    let shapes = dir.join("shapes");
    synth::write_dataset(&Options { kind: Kind::Shapes, count: 4, size: 32, seed: 0, out: shapes.clone(), threads: 1 }, &|_| {}).unwrap();
    let e = Twins::open(&shapes).err().unwrap().to_string();
    assert!(e.contains("--twins") && e.contains("shapes"), "{e}");
    // Twins and hard negatives both put the contrast in the batch: one or the other.
    let e = ClipRun::create(&gpu(), &dir.join("both"), ClipRunConfig { hard_negatives: true, twins: true, ..tiny_run(&data, 2) }, None).err().unwrap().to_string();
    assert!(e.contains("drop --hard-negatives"), "{e}");
}

#[test]
fn captions_longer_than_the_context_are_cut_and_recorded() {
    let mut c = ratlip::train::clip::Captions::new(8).unwrap();
    let short = c.ids("a red circle").unwrap();
    assert_eq!(short.len(), 8);
    assert!(c.truncated.is_empty());
    let long = "portrait of a youthful man who is frowning, with a receding hairline and dark skin";
    let ids = c.ids(long).unwrap();
    assert_eq!(ids.len(), 8);
    assert_eq!(*ids.last().unwrap(), 49407, "EOS stays last, where the text tower reads the sentence");
    assert!(c.truncated[long] > 8);
}

#[test]
fn cli_train_clip_then_eval() {
    let dir = scratch("cli");
    let data = faces(&dir, 14);
    let cfg = dir.join("clip.json");
    std::fs::write(&cfg, serde_json::to_string(&tiny_run(&data, 1).clip).unwrap()).unwrap();
    let out = dir.join("run");
    let bin = env!("CARGO_BIN_EXE_ratlip");
    let args = ["train-clip", "--data", data.to_str().unwrap(), "--out", out.to_str().unwrap(), "--config", cfg.to_str().unwrap()];
    let r = std::process::Command::new(bin).args(args).args(["--batch", "4", "--steps", "2", "--holdout", "4"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&r.stderr);
    let stdout = String::from_utf8_lossy(&r.stdout);
    assert!(r.status.success(), "{stderr}");
    assert!(stderr.contains("step 2/2") && stderr.contains("ETA"), "{stderr}");
    assert!(stdout.contains("zero-shot on 4 faces images") && stdout.contains("hair_color"), "{stdout}");
    let ckpt = out.join("checkpoints/step_000002.safetensors");
    let json = dir.join("eval.json");
    let r = std::process::Command::new(bin)
        .args(["clip", "eval", "--clip", ckpt.to_str().unwrap(), "--data", data.to_str().unwrap(), "--limit", "4", "--out", json.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    // The same CLIP on the same held-out images: the run's own report, number for number.
    let a: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let b: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("zero_shot.json")).unwrap()).unwrap();
    assert_eq!(a["attributes"], b["attributes"]);
    // A second run into the same folder is refused, pointing at --resume.
    let r = std::process::Command::new(bin).args(args).output().unwrap();
    assert!(!r.status.success() && String::from_utf8_lossy(&r.stderr).contains("--resume"));
}

#[test]
fn the_clip_loader_does_not_flip() {
    use ratlip::train::data::{Dataset, Loader, Position};
    let dir = scratch("flip");
    let data = faces(&dir, 16);
    let ds = std::sync::Arc::new(Dataset::open(&data).unwrap());
    let s = 16;
    let with = Loader::with_flip(ds.clone(), s, 3, Position::default(), 1, 4, true).next_batch(16).unwrap();
    let without = Loader::with_flip(ds, s, 3, Position::default(), 1, 4, false).next_batch(16).unwrap();
    let mirror = |p: &[f32]| -> Vec<f32> { (0..p.len()).map(|i| p[i - i % s + (s - 1 - i % s)]).collect() };
    let mut flipped = 0;
    for (a, b) in with.iter().zip(&without) {
        assert_eq!((a.item, &a.caption), (b.item, &b.caption), "the same sample, caption and crop either way");
        if a.pixels != b.pixels {
            assert_eq!(mirror(&a.pixels), b.pixels, "the only difference is the mirror image");
            flipped += 1;
        }
    }
    assert!(flipped > 0 && flipped < 16, "the augmentation flips about half ({flipped} of 16)");
}

#[test]
fn logit_scale_is_clamped_after_each_update() {
    let g = gpu();
    let mut r = Ref::open(&fixture().join("step.safetensors"));
    let pixels = r.tensor(&g, "pixels");
    let (shape, ids) = r.host("ids");
    let ids: Vec<Vec<u32>> = ids.chunks(shape[1]).map(|row| row.iter().map(|&x| x as u32).collect()).collect();
    // Adam moves a scalar by about lr per step: from 5 or −1 it stays out of range unless clamped.
    for (start, want) in [(5.0, ratlip::train::clip::LOGIT_SCALE_MAX), (-1.0, 0.0)] {
        let clip = Clip::load(&g, &fixture().join("clip.safetensors")).unwrap();
        let mut t = ClipTrainer::new(clip, start).unwrap();
        t.step(&pixels, &ids, &[], None, 1e-3).unwrap();
        assert_eq!(t.logit_scale_value().unwrap(), want, "from {start}");
    }
}

/// `ratlip train --clip`: a fresh GAN on an in-house CLIP file (as train-clip writes it) takes
/// that CLIP's sizes and weights; a CLIP the config cannot use is a clear error.
#[test]
fn a_gan_trains_on_an_in_house_clip() {
    use ratlip::model::{Arch, Model, ModelConfig};
    let g = gpu();
    let dir = scratch("gan-on-clip");
    let data = faces(&dir, 6);
    // The tiny GAN config's CLIP sizes, with fresh weights of another seed, saved as train-clip does.
    let donor = Model::init(&g, ModelConfig::tiny(Arch::Ratlip), None, 77, false).unwrap();
    let clip_path = dir.join("clip.safetensors");
    ClipTrainer::new(donor.clip, 2.0).unwrap().save(&clip_path, &[]).unwrap();
    let run = dir.join("run");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_ratlip"))
        .args(["train", "--data", data.to_str().unwrap(), "--out", run.to_str().unwrap(), "--clip", clip_path.to_str().unwrap()])
        .args(["--steps", "1", "--batch", "2", "--sample-every", "0", "--no-shuffle-attention"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let model = Model::load(&g, &run.join("checkpoints/step_000001.safetensors")).unwrap();
    assert_eq!(model.config.shuffle_attention, Some(false));
    let ours = Clip::load(&g, &clip_path).unwrap().state_dict().unwrap();
    let kept = model.clip.state_dict().unwrap();
    assert_eq!(ours.len(), kept.len());
    for (name, t) in &ours {
        assert_eq!(t.data, kept[name].data, "{name}: the GAN must keep the CLIP it was given, frozen");
    }

    // A model file in place of a CLIP file: its CLIP is taken (how a new run reuses the
    // shipped model's CLIP A).
    let from_model = dir.join("run_from_model");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_ratlip"))
        .args(["train", "--data", data.to_str().unwrap(), "--out", from_model.to_str().unwrap()])
        .args(["--clip", run.join("checkpoints/step_000001.safetensors").to_str().unwrap()])
        .args(["--arch", "galip", "--steps", "1", "--batch", "2", "--sample-every", "0"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let second = Model::load(&g, &from_model.join("checkpoints/step_000001.safetensors")).unwrap();
    assert_eq!(second.config.arch, Arch::Galip);
    let kept2 = second.clip.state_dict().unwrap();
    for (name, t) in &ours {
        assert_eq!(t.data, kept2[name].data, "{name}: the CLIP taken from a model file");
    }

    // A fine-tune (--model) around another CLIP of its sizes, where the model's CLIP has too
    // few vision blocks for the fresh-model preset (the shipped model's case): the model's own
    // config is what counts.
    let mut cfg = ModelConfig::tiny(Arch::Galip);
    cfg.clip.vision.layers = 3;
    cfg.prompts = 2;
    cfg.clip_features = vec![0, 1, 2];
    let start = dir.join("start.safetensors");
    Model::init(&g, cfg.clone(), None, 5, true).unwrap().save(&start).unwrap();
    let other = dir.join("other_clip.safetensors");
    ClipTrainer::init(&g, cfg.clip.clone(), 6).unwrap().save(&other, &[]).unwrap();
    let tuned = dir.join("run_fine_tune");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_ratlip"))
        .args(["train", "--data", data.to_str().unwrap(), "--out", tuned.to_str().unwrap(), "--model", start.to_str().unwrap()])
        .args(["--clip", other.to_str().unwrap(), "--steps", "1", "--batch", "2", "--sample-every", "0"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let third = Model::load(&g, &tuned.join("checkpoints/step_000001.safetensors")).unwrap();
    assert_eq!(third.config, cfg, "a fine-tune keeps its model's config");
    let given = Clip::load(&g, &other).unwrap().state_dict().unwrap();
    let kept3 = third.clip.state_dict().unwrap();
    for (name, t) in &given {
        assert_eq!(t.data, kept3[name].data, "{name}: the fine-tune runs around the CLIP it was given");
    }

    // And back: train-clip --init takes the CLIP out of a model file, bit for bit.
    let again = ClipTrainer::load(&g, &tuned.join("checkpoints/step_000001.safetensors")).unwrap();
    let back = again.clip.state_dict().unwrap();
    for (name, t) in &given {
        assert_eq!(t.data, back[name].data, "{name}: the CLIP read out of a model file");
    }
    assert_eq!(again.logit_scale_value().unwrap(), ratlip::train::clip::LOGIT_SCALE_INIT, "a model file holds no temperature");

    // A CLIP with too few vision blocks for the tiny config's prompts: refused, saying why.
    let small = Clip::load(&g, &fixture().join("clip.safetensors")).unwrap();
    let small_path = dir.join("small_clip.safetensors");
    ClipTrainer::new(small, 2.0).unwrap().save(&small_path, &[]).unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_ratlip"))
        .args(["train", "--data", data.to_str().unwrap(), "--out", dir.join("run2").to_str().unwrap(), "--clip", small_path.to_str().unwrap(), "--steps", "1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("model config"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--attribute-w` and `--text-attribute-w`: each head starts at zero, so the first step's
/// attribute loss is the mean of ln(classes) over the faces' attributes; trained, the image
/// head's falls (these 12 faces are seen again and again).
#[test]
fn an_attribute_head_starts_at_ln_classes_and_learns() {
    let g = gpu();
    let dir = scratch("attribute_head");
    let data = faces(&dir, 20);
    let labels = ratlip::train::zero_shot::attribute_labels(&data).unwrap();
    let want = labels.attributes.iter().map(|(_, c)| (c.len() as f64).ln()).sum::<f64>() / labels.attributes.len() as f64;
    let out = dir.join("run");
    let mut run = ClipRun::create(&g, &out, ClipRunConfig { attribute_w: 1.0, text_attribute_w: 0.5, lr: 5e-3, ..tiny_run(&data, 40) }, None).unwrap();
    let mut seen = Vec::new();
    run.train(&AtomicBool::new(false), |r| {
        assert_eq!(r.heads.iter().map(|h| h.side).collect::<Vec<_>>(), [Side::Image, Side::Text]);
        seen.push((r.heads[0].loss, r.heads[0].accuracy));
    })
    .unwrap();
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    for key in ["attribute_loss", "text_attribute_loss"] {
        let first = lines[0][key].as_f64().unwrap();
        assert!((first - want).abs() < 1e-4, "first {key} {first}, want mean ln(classes) {want}");
    }
    let by = lines[0]["text_attribute_acc_by"].as_object().unwrap();
    assert_eq!(by.len(), labels.attributes.len(), "{by:?}");
    let late = seen[30..].iter().map(|a| a.0 as f64).sum::<f64>() / 10.0;
    assert!(late < 0.9 * want, "image attribute loss {want:.3} → {late:.3} over 40 steps on 12 faces");
    let bad = ClipRun::create(&g, &dir.join("bad"), ClipRunConfig { attribute_w: f32::NAN, ..tiny_run(&data, 2) }, None).err().unwrap().to_string();
    assert!(bad.contains("--attribute-w"), "{bad}");
}

/// `--head-attributes`: the heads read only the named attributes, so the one attribute named
/// gets the head's whole weight (the first loss is ln 2, not the mean of ln(classes) over all
/// nine); a name attributes.jsonl lacks, a name given twice, or the option without a head are
/// refused before anything is written.
#[test]
fn head_attributes_narrow_the_heads_to_the_named_ones() {
    let g = gpu();
    let dir = scratch("head_attributes");
    let data = faces(&dir, 20);
    let out = dir.join("run");
    let only = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    let config = ClipRunConfig { attribute_w: 5.0, text_attribute_w: 2.0, head_attributes: only(&["expression"]), ..tiny_run(&data, 2) };
    let mut run = ClipRun::create(&g, &out, config.clone(), None).unwrap();
    run.train(&AtomicBool::new(false), |r| assert!(r.heads.iter().all(|h| h.by_attribute.len() == 1), "{:?}", r.heads[0].by_attribute)).unwrap();
    let first: serde_json::Value = serde_json::from_str(std::fs::read_to_string(out.join("metrics.jsonl")).unwrap().lines().next().unwrap()).unwrap();
    for key in ["attribute_loss", "text_attribute_loss"] {
        let v = first[key].as_f64().unwrap();
        assert!((v - 2f64.ln()).abs() < 1e-4, "first {key} {v}, want ln 2 (one attribute of two classes)");
    }
    assert_eq!(first["attribute_acc_by"].as_object().unwrap().keys().collect::<Vec<_>>(), ["expression"]);
    let saved: ClipRunConfig = serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(saved.head_attributes, ["expression"], "a resumed run reads the same heads");

    let labels = ratlip::train::zero_shot::attribute_labels(&data).unwrap();
    let two = labels.only(&only(&["glasses", "expression"])).unwrap();
    assert_eq!(two.attributes.iter().map(|a| a.0.as_str()).collect::<Vec<_>>(), ["glasses", "expression"], "in the order named");
    let (img, l) = two.by_image.iter().next().unwrap();
    let full = &labels.by_image[img];
    let at = |n: &str| labels.attributes.iter().position(|a| a.0 == n).unwrap();
    assert_eq!(l, &vec![full[at("glasses")], full[at("expression")]], "each image keeps its own classes");

    for (names, w, says) in [(&["mood"][..], 1.0, "no attribute \"mood\""), (&["expression", "expression"][..], 1.0, "named twice"), (&["expression"][..], 0.0, "--head-attributes")] {
        let bad = dir.join("bad");
        let e = ClipRun::create(&g, &bad, ClipRunConfig { attribute_w: w, head_attributes: only(names), ..tiny_run(&data, 2) }, None).err().unwrap().to_string();
        assert!(e.contains(says), "{names:?}: {e}");
        assert!(!bad.exists(), "a refused run writes nothing");
    }
}

/// `--freeze-vision`: the image tower leaves the run exactly as it came in (a GAN around it
/// stays valid), the text side trains; an image head beside it is refused.
#[test]
fn freeze_vision_trains_the_text_side_only() {
    let g = gpu();
    let dir = scratch("freeze_vision");
    let data = faces(&dir, 20);
    let config = ClipRunConfig { freeze_vision: true, text_attribute_w: 1.0, ..tiny_run(&data, 3) };
    let before: BTreeMap<String, Vec<f32>> =
        ClipTrainer::init(&g, config.clip.clone(), config.seed).unwrap().clip.state_dict().unwrap().into_iter().map(|(n, t)| (n, t.data)).collect();
    let out = dir.join("run");
    let mut run = ClipRun::create(&g, &out, config.clone(), None).unwrap();
    assert!(run.trainer.params().keys().all(|n| !n.starts_with("visual.")), "a frozen tower has no tensor in Adam's map");
    run.train(&AtomicBool::new(false), |_| {}).unwrap();
    let after = weights_of(&out.join("checkpoints/step_000003.safetensors"));
    let (mut vision, mut text_moved) = (0, 0);
    for (name, v) in &before {
        if name.starts_with("visual.") {
            assert!(v == &after[name], "{name} moved though the image tower is frozen");
            vision += 1;
        } else if v != &after[name] {
            text_moved += 1;
        }
    }
    assert!(vision > 10 && text_moved > 10, "{vision} vision tensors checked, {text_moved} text tensors moved");
    let e = ClipRun::create(&g, &dir.join("both"), ClipRunConfig { attribute_w: 1.0, ..config }, None).err().unwrap().to_string();
    assert!(e.contains("--freeze-vision") && e.contains("--attribute-w"), "{e}");
    assert!(!dir.join("both").exists(), "a refused run writes nothing");
}
