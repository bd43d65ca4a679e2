//! `ratlip train` as a whole: data layouts and loader, bit-exact resume, NaN stop, the CLI,
//! and a short run on synthetic shapes that has to show learning.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use ratlip::data::synth::{self, Kind, Options};
use ratlip::model::{Arch, Model, ModelConfig};
use ratlip::train::data::{Dataset, Layout, Loader, Position};
use ratlip::train::{Outcome, Run, RunConfig};
use ratlip::{Gpu, GpuOptions};

fn gpu() -> Gpu {
    Gpu::new(&GpuOptions::default()).expect("train tests need a GPU adapter (lavapipe is enough)")
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ratlip_train_run_{}_{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn shapes(dir: &Path, count: usize, size: usize) -> PathBuf {
    let out = dir.join("data");
    synth::write_dataset(&Options { kind: Kind::Shapes, count, size, seed: 0, out: out.clone(), threads: 2 }, &|_| {}).unwrap();
    out
}

fn faces(dir: &Path, count: usize, size: usize) -> PathBuf {
    let out = dir.join("faces");
    synth::write_dataset(&Options { kind: Kind::Faces, count, size, seed: 0, out: out.clone(), threads: 2 }, &|_| {}).unwrap();
    out
}

fn tiny_config(data: &Path, batch: usize, steps: u64) -> RunConfig {
    let mut c = RunConfig::new(data.to_path_buf(), ModelConfig::tiny(Arch::Ratlip));
    c.batch = batch;
    c.steps = steps;
    c.sample_every = 0;
    c.checkpoint_every = 0;
    c.workers = 2;
    c.samples = 8;
    c
}

fn tiny_model(g: &Gpu, seed: u64) -> Model {
    Model::init(g, ModelConfig::tiny(Arch::Ratlip), None, seed, true).unwrap()
}

fn metrics(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Every tensor of the model and both optimisers, as bits.
fn bits(run: &Run) -> BTreeMap<String, Vec<u32>> {
    let mut out: BTreeMap<String, Vec<u32>> = run.model.params.to_host("").unwrap().into_iter().map(|(n, t)| (n, t.data.iter().map(|v| v.to_bits()).collect())).collect();
    for (prefix, opt) in [("opt_d.", &run.opt_d), ("opt_g.", &run.opt_g)] {
        let (t, steps) = opt.state_to_host(prefix).unwrap();
        for (n, t) in t {
            out.insert(n, t.data.iter().map(|v| v.to_bits()).collect());
        }
        for (n, s) in steps {
            out.insert(format!("{prefix}step.{n}"), vec![s]);
        }
    }
    out
}

/// The loader: same seed → same samples; a loader started at a later position continues the
/// same stream; a corrupt image is skipped, counted once, and never fatal.
#[test]
fn loader_is_deterministic_and_skips_corrupt_images() {
    let dir = scratch("loader");
    let data = shapes(&dir, 8, 32);
    let bad = data.join("images/00003.png");
    std::fs::write(&bad, b"\x89PNG\r\n\x1a\nthis is not a png").unwrap();
    let ds = Arc::new(Dataset::open(&data).unwrap());
    assert_eq!((ds.layout, ds.items.len(), ds.caption_count()), (Layout::Folder, 8, 80));

    let mut a = Loader::new(ds.clone(), 24, 7, Position::default(), 2, 4);
    let first: Vec<_> = (0..6).map(|_| a.next_batch(3).unwrap()).collect();
    // 18 readable samples out of 8 per epoch with one bad: at least two epochs were read.
    assert_eq!(a.skipped.len(), 1, "{:?}", a.skipped);
    assert_eq!(ds.items[*a.skipped.keys().next().unwrap()].image, bad);
    for b in &first {
        for s in b {
            assert_ne!(ds.items[s.item].image, bad);
            assert_eq!(s.pixels.len(), 3 * 24 * 24);
            assert!(s.pixels.iter().all(|v| (-1.0..=1.0).contains(v)));
            assert!(ds.items[s.item].captions.contains(&s.caption));
        }
    }
    // Each epoch visits every readable item once.
    let epoch0: Vec<usize> = first.iter().flatten().take(7).map(|s| s.item).collect();
    let mut sorted = epoch0.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 7, "{epoch0:?}");

    let mut b = Loader::new(ds.clone(), 24, 7, Position::default(), 1, 1);
    let mut mid = None;
    for (i, want) in first.iter().enumerate() {
        if i == 2 {
            mid = Some(b.position());
        }
        let got = b.next_batch(3).unwrap();
        assert_eq!(got.iter().map(|s| (s.item, &s.caption, &s.pixels)).collect::<Vec<_>>(), want.iter().map(|s| (s.item, &s.caption, &s.pixels)).collect::<Vec<_>>());
    }
    let mut c = Loader::new(ds.clone(), 24, 7, mid.unwrap(), 3, 2);
    for want in &first[2..] {
        let got = c.next_batch(3).unwrap();
        assert_eq!(got.iter().map(|s| &s.pixels).collect::<Vec<_>>(), want.iter().map(|s| &s.pixels).collect::<Vec<_>>());
    }
    let mut other = Loader::new(ds, 24, 8, Position::default(), 2, 4);
    let o = other.next_batch(3).unwrap();
    assert_ne!(o.iter().map(|s| &s.pixels).collect::<Vec<_>>(), first[0].iter().map(|s| &s.pixels).collect::<Vec<_>>(), "another seed, another order/augmentation");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A pickled list of names as Python 2 writes it (protocol 2, str as SHORT_BINSTRING).
fn pickle_list(names: &[&str]) -> Vec<u8> {
    let mut p = vec![0x80, 2, b']', b'q', 0, b'('];
    for n in names {
        p.push(b'U');
        p.push(n.len() as u8);
        p.extend_from_slice(n.as_bytes());
    }
    p.extend_from_slice(b"e.");
    p
}

/// The released code's layouts: filenames.pickle + text/ + images/, and CUB's box crop.
#[test]
fn attngan_and_cub_layouts() {
    let dir = scratch("attngan");
    std::fs::create_dir_all(dir.join("train")).unwrap();
    std::fs::create_dir_all(dir.join("text/001.Bird")).unwrap();
    std::fs::create_dir_all(dir.join("CUB_200_2011/images/001.Bird")).unwrap();
    let keys = ["001.Bird/a_1", "001.Bird/b_2"];
    std::fs::write(dir.join("train/filenames.pickle"), pickle_list(&keys)).unwrap();
    // A red block where the birds' boxes are, blue elsewhere: the crop must land in the red.
    let mut img = image::RgbImage::from_pixel(200, 60, image::Rgb([0, 0, 255]));
    for y in 0..60 {
        for x in 20..80 {
            img.put_pixel(x, y, image::Rgb([255, 0, 0]));
        }
    }
    for k in keys {
        img.save(dir.join(format!("CUB_200_2011/images/{k}.jpg"))).unwrap();
        std::fs::write(dir.join(format!("text/{k}.txt")), "a red bird\n\nthe bird is red\n").unwrap();
    }
    std::fs::write(dir.join("CUB_200_2011/images.txt"), "1 001.Bird/a_1.jpg\n2 001.Bird/b_2.jpg\n3 001.Bird/c_3.jpg\n").unwrap();
    std::fs::write(dir.join("CUB_200_2011/bounding_boxes.txt"), "1 35.0 15.0 30.0 30.0\n2 36.0 16.0 28.0 28.0\n3 0 0 1 1\n").unwrap();
    let ds = Arc::new(Dataset::open(&dir).unwrap());
    assert_eq!(ds.layout, Layout::Cub);
    assert_eq!(ds.items.iter().map(|i| i.key.as_str()).collect::<Vec<_>>(), keys);
    assert_eq!(ds.items[0].captions, ["a red bird", "the bird is red"]);
    assert_eq!(ds.items[0].bbox, Some([35, 15, 30, 30]));
    let mut l = Loader::new(ds.clone(), 16, 0, Position::default(), 1, 2);
    for s in l.next_batch(4).unwrap() {
        let red: f32 = s.pixels[..256].iter().sum::<f32>() / 256.0;
        let blue: f32 = s.pixels[512..].iter().sum::<f32>() / 256.0;
        assert!(red > 0.8 && blue < -0.8, "crop missed the box: mean red {red}, blue {blue}");
    }
    // Without CUB's files: images/<key>.jpg, no crop (the whole, mostly blue image).
    std::fs::remove_file(dir.join("CUB_200_2011/bounding_boxes.txt")).unwrap();
    std::fs::create_dir_all(dir.join("images/001.Bird")).unwrap();
    for k in keys {
        img.save(dir.join(format!("images/{k}.jpg"))).unwrap();
    }
    let ds = Arc::new(Dataset::open(&dir).unwrap());
    assert_eq!(ds.layout, Layout::AttnGan);
    let mut l = Loader::new(ds, 16, 0, Position::default(), 1, 2);
    let s = &l.next_batch(1).unwrap()[0];
    let blue: f32 = s.pixels[512..].iter().sum::<f32>() / 256.0;
    assert!(blue > -0.5, "no crop: the image is mostly blue, got mean blue {blue}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// N steps straight == N/2, interrupt (the Ctrl-C path: checkpoint on the stop flag), resume,
/// N/2 more: every parameter, BatchNorm statistic, Adam moment and step count bit-equal, and
/// the same losses logged.
#[test]
fn resume_is_bit_exact() {
    // Released; then with augmentation and the diversity term (the shifts and the second
    // noise come from the saved noise RNG, and the second G pass moves BatchNorm's statistics).
    // Then with hard negatives, on faces (the contrast's pick is a stream of (seed, step), and
    // the contrast captions' embeddings join the saved text cache).
    for (shift, div_w, hard_negative_w) in [(0, 0.0, 0.0), (2, 1.0, 0.0), (0, 0.0, 1.0)] {
        resume_is_bit_exact_with(shift, div_w, hard_negative_w);
    }
    let dir = scratch("resume_bad_shift");
    let data = shapes(&dir, 2, 32);
    let mut cfg = tiny_config(&data, 2, 1);
    cfg.augment_shift = cfg.model.image_size;
    let err = Run::create(&dir.join("run"), cfg, tiny_model(&gpu(), 1)).err().expect("a shift as large as the image is refused").to_string();
    assert!(err.contains("--augment-shift"), "{err}");
    let mut cfg = tiny_config(&data, 2, 1);
    cfg.div_w = 1.0;
    cfg.div_tau = 0.0;
    let err = Run::create(&dir.join("run_tau"), cfg, tiny_model(&gpu(), 1)).err().expect("a zero cap is refused").to_string();
    assert!(err.contains("div_tau"), "{err}");
    // Shapes' captions name no mood, glasses or beard: the term could never engage.
    let mut cfg = tiny_config(&data, 2, 1);
    cfg.hard_negative_w = 1.0;
    let err = Run::create(&dir.join("run_hn"), cfg, tiny_model(&gpu(), 1)).err().expect("hard negatives on shapes are refused").to_string();
    assert!(err.contains("--hard-negative-w") && err.contains("no caption"), "{err}");
    assert!(!dir.join("run_hn/config.json").exists(), "a refused run writes nothing");
    let _ = std::fs::remove_dir_all(&dir);
}

fn resume_is_bit_exact_with(augment_shift: usize, div_w: f32, hard_negative_w: f32) {
    let g = gpu();
    let dir = scratch(&format!("resume_{augment_shift}_{div_w}_{hard_negative_w}"));
    let data = if hard_negative_w > 0.0 { faces(&dir, 12, 32) } else { shapes(&dir, 12, 32) };
    let (n, batch) = (4u64, 3usize);
    let never = AtomicBool::new(false);

    let straight_dir = dir.join("straight");
    let mut cfg = tiny_config(&data, batch, n);
    cfg.augment_shift = augment_shift;
    cfg.div_w = div_w;
    cfg.hard_negative_w = hard_negative_w;
    let mut straight = Run::create(&straight_dir, cfg, tiny_model(&g, 1)).unwrap();
    assert_eq!(straight.train(&never, |_| {}).unwrap(), Outcome::Finished);

    let split_dir = dir.join("split");
    let mut cfg = tiny_config(&data, batch, n);
    cfg.keep = 1;
    cfg.augment_shift = augment_shift;
    cfg.div_w = div_w;
    cfg.hard_negative_w = hard_negative_w;
    let mut first = Run::create(&split_dir, cfg, tiny_model(&g, 1)).unwrap();
    let stop = AtomicBool::new(false);
    let outcome = first
        .train(&stop, |r| {
            if r.step == n / 2 {
                stop.store(true, Ordering::Relaxed);
            }
        })
        .unwrap();
    assert_eq!((outcome, first.step), (Outcome::Interrupted, n / 2));
    assert!(split_dir.join(format!("checkpoints/step_{:06}.safetensors", n / 2)).is_file());
    let mid_position = first.data_position();
    drop(first);

    let mut resumed = Run::resume(&g, &split_dir).unwrap();
    assert_eq!((resumed.config.augment_shift, resumed.config.div_w, resumed.config.hard_negative_w), (augment_shift, div_w, hard_negative_w));
    assert_eq!((resumed.step, resumed.data_position()), (n / 2, mid_position));
    assert_eq!(resumed.train(&never, |_| {}).unwrap(), Outcome::Finished);
    assert_eq!(resumed.step, n);

    let (a, b) = (bits(&straight), bits(&resumed));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    let differing: Vec<&String> = a.keys().filter(|k| a[*k] != b[*k]).collect();
    assert!(differing.is_empty(), "{} tensors differ after resume, e.g. {:?}", differing.len(), &differing[..differing.len().min(5)]);
    assert!(a.keys().any(|k| k.contains("running_mean")), "BatchNorm statistics are compared too");
    let strip = |v: Vec<serde_json::Value>| -> Vec<(u64, f64, f64, f64)> {
        v.into_iter().map(|m| (m["step"].as_u64().unwrap(), m["loss_d"].as_f64().unwrap(), m["loss_g"].as_f64().unwrap(), m["grad_norm_g"].as_f64().unwrap())).collect()
    };
    let logged: Vec<Option<f64>> = metrics(&split_dir).iter().map(|m| m.get("diversity").and_then(serde_json::Value::as_f64)).collect();
    assert!(logged.iter().all(|d| d.is_some() == (div_w > 0.0)), "diversity is logged when the term is on: {logged:?}");
    let contrast: Vec<Option<f64>> = metrics(&split_dir).iter().map(|m| m.get("loss_contrast").and_then(serde_json::Value::as_f64)).collect();
    if hard_negative_w > 0.0 {
        // Batches of 3 faces, each with 10 captions most of which name a mood: some step has a contrast.
        assert!(contrast.iter().any(Option::is_some), "loss_contrast is logged: {contrast:?}");
    } else {
        assert!(contrast.iter().all(Option::is_none), "no loss_contrast without the term: {contrast:?}");
    }
    let (ma, mb) = (strip(metrics(&straight_dir)), strip(metrics(&split_dir)));
    assert_eq!(ma.len(), n as usize);
    assert_eq!(ma, mb);
    // --keep 1: only the newest checkpoint is left; the final sample grid is there.
    let ckpts: Vec<_> = std::fs::read_dir(split_dir.join("checkpoints")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(ckpts.len(), 2, "{ckpts:?}");
    assert!(split_dir.join(format!("samples/step_{n:06}.png")).is_file());
    let png = ratlip::images::png_text(&split_dir.join(format!("samples/step_{n:06}.png"))).unwrap();
    assert!(png.iter().any(|(k, v)| k == "prompt" && v.contains("0: ")), "{png:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `sim_w` weighs L_G's cosine term: 0 leaves the adversarial term alone, the released 4 gives
/// L_G = adv − 4·cos (both read from metrics.jsonl); a run folder written before the fields
/// existed resumes with the released weights (cosine and MA-GP) and no augmentation.
#[test]
fn sim_w_weighs_the_cosine_term() {
    let g = gpu();
    let dir = scratch("sim_w");
    let data = shapes(&dir, 6, 32);
    for (sim_w, name) in [(0.0f32, "off"), (ratlip::train::SIM_W, "released")] {
        let mut cfg = tiny_config(&data, 2, 2);
        cfg.sim_w = sim_w;
        let run_dir = dir.join(name);
        let mut run = Run::create(&run_dir, cfg, tiny_model(&g, 3)).unwrap();
        assert_eq!(run.train(&AtomicBool::new(false), |_| {}).unwrap(), Outcome::Finished);
        for m in metrics(&run_dir) {
            let (l, adv, cos) = (m["loss_g"].as_f64().unwrap(), m["loss_g_adv"].as_f64().unwrap(), m["cos"].as_f64().unwrap());
            assert!(cos.abs() > 1e-3, "the cosine term is not trivially 0: {m}");
            let want = adv - sim_w as f64 * cos;
            assert!((l - want).abs() <= 1e-5 * (1.0 + want.abs()), "sim_w {sim_w}: L_G {l}, adv {adv}, cos {cos}");
        }
    }
    let old = dir.join("released/config.json");
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&old).unwrap()).unwrap();
    v.as_object_mut().unwrap().remove("sim_w").expect("config.json records sim_w");
    v.as_object_mut().unwrap().remove("augment_shift").expect("config.json records augment_shift");
    v.as_object_mut().unwrap().remove("magp_w").expect("config.json records magp_w");
    v.as_object_mut().unwrap().remove("div_w").expect("config.json records div_w");
    v.as_object_mut().unwrap().remove("div_tau").expect("config.json records div_tau");
    std::fs::write(&old, v.to_string()).unwrap();
    let resumed = Run::resume(&g, &dir.join("released")).unwrap();
    assert_eq!((resumed.config.sim_w, resumed.config.augment_shift), (ratlip::train::SIM_W, 0));
    assert_eq!(resumed.config.magp_w, ratlip::train::MAGP_W);
    assert_eq!(resumed.config.div_w, 0.0, "an older run folder has no diversity term");
    let _ = std::fs::remove_dir_all(&dir);
}

/// An exploding generator learning rate (D's is sane, so step 1 is finite): the step whose
/// losses go non-finite stops the run with a message naming it and the term; no checkpoint
/// of that step is written and the message points at the last good one.
#[test]
fn nan_stops_the_run_naming_the_step() {
    let g = gpu();
    let dir = scratch("nan");
    let data = shapes(&dir, 6, 32);
    let mut cfg = tiny_config(&data, 2, 10);
    cfg.lr_g = 1e38;
    cfg.checkpoint_every = 1;
    let run_dir = dir.join("run");
    let mut run = Run::create(&run_dir, cfg, tiny_model(&g, 2)).unwrap();
    let err = run.train(&AtomicBool::new(false), |_| {}).unwrap_err().to_string();
    println!("{err}");
    let failed = run.step + 1;
    assert!(err.starts_with(&format!("step {failed}: ")), "{err}");
    assert!(err.contains("is NaN") || err.contains("is inf") || err.contains("is -inf"), "{err}");
    assert!(failed >= 2, "step 1 starts from a sane init");
    assert!(err.contains(&format!("step_{:06}.safetensors", failed - 1)), "{err}");
    assert!(!run_dir.join(format!("checkpoints/step_{failed:06}.safetensors")).exists());
    let _ = std::fs::remove_dir_all(&dir);
}

fn ratlip_cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ratlip")).args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn train_help_and_the_dash_dash_spelling() {
    for args in [&["train", "--help"][..], &["--train", "--help"][..]] {
        let (code, out, err) = ratlip_cli(args);
        assert_eq!(code, 0, "{args:?}: {err}");
        for flag in ["--data", "--out", "--resume", "--steps", "--batch", "--sample-every", "--checkpoint-every", "--keep", "--model", "--config", "--sim-w", "--augment-shift"] {
            assert!(out.contains(flag), "{args:?} help lacks {flag}:\n{out}");
        }
    }
    let (code, _, err) = ratlip_cli(&["train", "--steps", "3"]);
    assert_ne!(code, 0);
    assert!(err.contains("--data") || err.contains("--resume"), "{err}");
}

/// The learning run's length and windows, sized for ~3 minutes of a debug build on lavapipe
/// with two cores (≈2.5 s per step of 4 images).
const LEARN_STEPS: usize = 60;
const LEARN_WINDOW: usize = 15;
const LEARN_DROP: f64 = 0.03;

/// Mean of a metric over steps [from, to) of a run's metrics.jsonl.
fn window(m: &[serde_json::Value], key: &str, from: usize, to: usize) -> f64 {
    m[from..to].iter().map(|x| x[key].as_f64().unwrap()).sum::<f64>() / (to - from) as f64
}

/// A short run on synthetic shapes must show learning: D's hinge loss
/// L_real + (L_fake + L_mis)/2 falls as D starts telling real matching pairs from fakes and
/// mismatched captions. With lr 0 it stays at its initial ≈ 2 (measured: windows agree to
/// ±0.02), so the margin asserted here fails for a model that does not learn.
#[test]
fn tiny_model_learns_on_shapes() {
    let g = gpu();
    let dir = scratch("learn");
    let data = shapes(&dir, 64, 32);
    let (steps, batch, w) = (LEARN_STEPS, 4usize, LEARN_WINDOW);
    let mut cfg = tiny_config(&data, batch, steps as u64);
    cfg.seed = 1;
    cfg.sample_every = 0;
    let run_dir = dir.join("run");
    let mut run = Run::create(&run_dir, cfg, tiny_model(&g, 1)).unwrap();
    let t0 = Instant::now();
    run.train(&AtomicBool::new(false), |_| {}).unwrap();
    let s = t0.elapsed().as_secs_f64();
    println!("{steps} steps of batch {batch}: {:.0} ms/step, {:.2} images/s", s * 1e3 / steps as f64, (steps * batch) as f64 / s);
    let m = metrics(&run_dir);
    assert_eq!(m.len(), steps);
    let hinge = |from, to| window(&m, "loss_d", from, to) - window(&m, "magp", from, to);
    let (first, last) = (hinge(0, w), hinge(steps - w, steps));
    let margin = |from, to| 2.0 - window(&m, "loss_real", from, to) - window(&m, "loss_fake", from, to);
    println!("D hinge loss: first {w} steps {first:.4}, last {w} {last:.4}; real−fake margin {:.4} → {:.4}", margin(0, w), margin(steps - w, steps));
    assert!(last < first - LEARN_DROP, "D's hinge loss did not fall: {first:.4} → {last:.4}");
    assert!(m.iter().all(|x| x["loss_g"].as_f64().unwrap().is_finite()));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `ratlip train --model M --clip C`: the run goes on from M's G and D around C's CLIP (the
/// checkpoint's `clip.` tensors are C's, bit for bit, and config.json names C); a CLIP of
/// other sizes is refused, naming both.
#[test]
fn train_model_with_another_clip() {
    let dir = scratch("swap_clip");
    let data = faces(&dir, 6, 32);
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let (m, donor) = (dir.join("m.safetensors"), dir.join("donor.safetensors"));
    for (seed, path) in [("3", &m), ("4", &donor)] {
        let (code, _, err) = ratlip_cli(&["model", "new", "--arch", "ratlip", "--size", "tiny", "--seed", seed, "-o", &s(path)]);
        assert_eq!(code, 0, "{err}");
    }
    let clip_of = |path: &Path| -> BTreeMap<String, Vec<f32>> {
        let mut w = ratlip::weights::WeightFile::load(path).unwrap();
        let names: Vec<String> = w.names().filter(|n| n.starts_with("clip.")).map(str::to_string).collect();
        names.into_iter().map(|n| (n.clone(), w.take_any(&n).unwrap().data)).collect()
    };
    assert_ne!(clip_of(&m), clip_of(&donor), "two seeds, two CLIPs: the check below would prove nothing");
    let run = dir.join("run");
    let args = ["train", "--data", &s(&data), "--out", &s(&run), "--model", &s(&m), "--clip", &s(&donor), "--steps", "1", "--batch", "2", "--sample-every", "0", "--checkpoint-every", "0", "--workers", "1"];
    let (code, _, err) = ratlip_cli(&args);
    assert_eq!(code, 0, "{err}");
    let trained = clip_of(&run.join("checkpoints/step_000001.safetensors"));
    assert!(trained == clip_of(&donor), "the run's CLIP is not the one --clip named");
    let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["clip"].as_str(), Some(s(&donor).as_str()));
    assert_eq!(config["init"].as_str(), Some(s(&m).as_str()));

    // A CLIP of other sizes.
    let small = dir.join("small_clip.safetensors");
    let mut cfg = ModelConfig::tiny(Arch::Ratlip).clip;
    cfg.embed_dim += 8;
    ratlip::train::clip::ClipTrainer::init(&gpu(), cfg, 0).unwrap().save(&small, &[]).unwrap();
    let run2 = dir.join("run2");
    let (code, _, err) = ratlip_cli(&["train", "--data", &s(&data), "--out", &s(&run2), "--model", &s(&m), "--clip", &s(&small), "--steps", "1", "--batch", "2"]);
    assert_ne!(code, 0);
    assert!(err.contains("small_clip.safetensors") && err.contains("m.safetensors") && err.contains("differ"), "{err}");
    assert!(!run2.join("config.json").exists(), "a refused run leaves no folder behind");
    let _ = std::fs::remove_dir_all(&dir);
}
