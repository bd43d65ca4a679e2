//! The `ratlip` binary as users run it.

use std::process::Command;

fn ratlip(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ratlip"));
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().unwrap();
    (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into())
}

#[test]
fn help_lists_the_commands() {
    let (code, out, _) = ratlip(&["--help"], &[]);
    assert_eq!(code, 0);
    for cmd in ["info", "clip", "bench"] {
        assert!(out.contains(cmd), "{out}");
    }
}

#[test]
fn info_reports_adapter_limits_and_features() {
    let (code, out, err) = ratlip(&["info"], &[]);
    assert_eq!(code, 0, "{err}");
    for field in ["adapter:", "backend:", "driver:", "max_storage_buffer_binding_size", "shader f16:", "subgroups:"] {
        assert!(out.contains(field), "missing {field} in\n{out}");
    }
}

#[test]
fn unknown_adapter_lists_the_available_ones() {
    let (code, _, err) = ratlip(&["info", "--adapter", "no-such-gpu-xyz"], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("no-such-gpu-xyz") && err.contains("available adapters"), "{err}");
    let (code, _, err) = ratlip(&["info"], &[("RATLIP_ADAPTER", "no-such-gpu-xyz")]);
    assert_eq!(code, 1, "{err}");
}

#[test]
fn no_adapter_says_how_to_get_one() {
    // Only the Metal backend on a machine without Metal: no adapter at all.
    if cfg!(target_os = "macos") {
        return;
    }
    let (code, _, err) = ratlip(&["info"], &[("WGPU_BACKEND", "metal")]);
    assert_eq!(code, 1);
    assert!(err.contains("no GPU adapter found") && err.contains("mesa-vulkan-drivers"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// The tiny CLIP fixture with a full 49,408-token vocabulary (the bundled tokenizer's ids),
/// written as an OpenAI-named file with ratlip's config metadata.
fn clip_with_full_vocab() -> std::path::PathBuf {
    use ratlip::weights::{save_safetensors, HostTensor, WeightFile};
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut w = WeightFile::load(&root.join("tests/fixtures/clip_tiny/openai.safetensors")).unwrap();
    let mut cfg: serde_json::Value = serde_json::from_str(&w.metadata["clip_config"]).unwrap();
    cfg["text"]["vocab_size"] = 49408.into();
    let width = cfg["text"]["width"].as_u64().unwrap() as usize;
    let names: Vec<String> = w.names().map(String::from).collect();
    let mut tensors = std::collections::BTreeMap::new();
    for n in names {
        let t = w.take_any(&n).unwrap();
        tensors.insert(n, t);
    }
    let emb: Vec<f32> = (0..49408 * width).map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * 0.1).collect();
    tensors.insert("token_embedding.weight".into(), HostTensor::new(vec![49408, width], emb));
    // One file per call: the tests run in parallel threads.
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("ratlip-cli-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("clip.safetensors");
    let mut meta = std::collections::HashMap::new();
    meta.insert("clip_config".to_string(), cfg.to_string());
    save_safetensors(&path, &tensors, &meta).unwrap();
    path
}

#[test]
fn clip_text_prints_ids_and_embedding_and_reports_truncation() {
    let clip = clip_with_full_vocab();
    let clip = clip.to_str().unwrap();
    let (code, out, err) = ratlip(&["clip", "text", "--clip", clip, "--prompt", "a photo of a cat", "--json"], &[]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let ids: Vec<u64> = v["ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect();
    assert_eq!(&ids[..7], &[49406, 320, 1125, 539, 320, 2368, 49407]);
    assert_eq!(ids.len(), 77);
    assert_eq!(v["sent_emb"].as_array().unwrap().len(), 24);
    assert_eq!(v["truncated"], false);

    let long = "a very long prompt about a small bird with red wings ".repeat(10);
    let (code, out, err) = ratlip(&["clip", "text", "--clip", clip, "--prompt", &long, "--json"], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("truncated"), "the user is told: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["truncated"], true);
    assert_eq!(v["ids"][76], 49407, "EOS kept last");

    let (code, out, _) = ratlip(&["clip", "text", "--clip", clip, "--prompt", "a photo of a cat"], &[]);
    assert_eq!(code, 0);
    assert!(out.contains("49406") && out.contains("sentence embedding [24]"), "{out}");
}

#[test]
fn clip_score_is_100_times_the_cosine() {
    let clip = clip_with_full_vocab();
    let img = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/preprocess/landscape.png");
    let args = ["clip", "score", "--clip", clip.to_str().unwrap(), "--image", img.to_str().unwrap(), "--prompt", "a bird", "--json"];
    let (code, out, err) = ratlip(&args, &[]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let vec = |k: &str| -> Vec<f64> { v[k].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect() };
    let (a, b) = (vec("image_emb"), vec("sent_emb"));
    let cos = a.iter().zip(&b).map(|(x, y)| x * y).sum::<f64>()
        / (a.iter().map(|x| x * x).sum::<f64>().sqrt() * b.iter().map(|x| x * x).sum::<f64>().sqrt());
    let score = v["score"].as_f64().unwrap();
    assert!((score - 100.0 * cos).abs() < 1e-3, "{score} vs {}", 100.0 * cos);
}

#[test]
fn bad_clip_files_are_clear_errors() {
    let (code, _, err) = ratlip(&["clip", "text", "--clip", "/nonexistent/clip", "--prompt", "x"], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("/nonexistent/clip") && !err.contains("panicked"), "{err}");
    let good = std::fs::read(clip_with_full_vocab()).unwrap();
    let cut = std::env::temp_dir().join(format!("ratlip-cut-{}.safetensors", std::process::id()));
    std::fs::write(&cut, &good[..good.len() / 3]).unwrap();
    let (code, _, err) = ratlip(&["clip", "text", "--clip", cut.to_str().unwrap(), "--prompt", "x"], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("truncated") && !err.contains("panicked"), "{err}");
}

#[test]
fn bench_train_times_a_config_file_and_names_a_bad_one() {
    let root = env!("CARGO_MANIFEST_DIR");
    let shipped = format!("{root}/tools/recipes/galip_faces32.json");
    let (code, out, err) = ratlip(&["bench", "train", "--config", &shipped, "--batch", "2", "--warmup", "0", "--reps", "1"], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("galip_faces32.json (32×32 px), batch 2") && out.contains("ms per step"), "{out}");

    let dir = std::env::temp_dir().join(format!("ratlip_bench_cfg_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.json");
    std::fs::write(&bad, "{\"arch\": \"galip\"").unwrap();
    let (code, _, err) = ratlip(&["bench", "train", "--config", bad.to_str().unwrap()], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("bad.json is not JSON") && !err.contains("panicked"), "{err}");
    let (code, _, err) = ratlip(&["bench", "train", "--config", &shipped, "--arch", "galip"], &[]);
    assert_eq!(code, 2, "--config and --arch together are refused: {err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `clip text` (and `score`, `eval`) take a ratlip model file too, and use the CLIP inside it:
/// the shipped model's sentence embedding is the one its G is conditioned on.
#[test]
fn clip_text_reads_the_clip_inside_a_model_file() {
    let model_path = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/default.safetensors");
    let prompt = "a young woman with red hair and glasses, smiling";
    let (code, out, err) = ratlip(&["clip", "text", "--clip", model_path, "--prompt", prompt, "--json"], &[]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let got: Vec<f32> = v["sent_emb"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
    let gpu = ratlip::Gpu::new(&Default::default()).unwrap();
    let model = ratlip::model::Model::load(&gpu, std::path::Path::new(model_path)).unwrap();
    let want = model.clip.embed_texts(&[prompt.to_string()]).unwrap().remove(0);
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0f32, |m, x| m.max(x.abs()));
    for (a, b) in got.iter().zip(&want) {
        assert!((a - b).abs() <= 1e-5 * scale, "{a} vs {b}");
    }
}
