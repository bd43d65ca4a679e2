//! Weight files: Hugging Face and OpenAI CLIP names, configs, and clear errors for bad files.
//! Fixtures come from tools/reference/clip_reference.py (random weights).

use std::path::{Path, PathBuf};

use ratlip::clip::config::ClipConfig;
use ratlip::weights::clip_names::{detect, hf_to_openai, ClipNaming};
use ratlip::weights::WeightFile;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

#[test]
fn hf_clip_converts_to_exactly_the_openai_state_dict() {
    let hf = WeightFile::load(&fixture("clip_tiny/model.safetensors")).unwrap();
    assert_eq!(detect(&hf, "").unwrap(), ClipNaming::HuggingFace);
    let converted = hf_to_openai(hf).unwrap();
    let mut openai = WeightFile::load(&fixture("clip_tiny/openai.safetensors")).unwrap();
    assert_eq!(detect(&openai, "").unwrap(), ClipNaming::OpenAi);
    let names: Vec<String> = converted.names().map(String::from).collect();
    let mut converted = converted;
    for n in &names {
        let want = openai.take_any(n).unwrap_or_else(|| panic!("{n} not in the OpenAI file"));
        let got = converted.take(n, &want.shape).unwrap();
        assert_eq!(got, want, "{n}");
    }
    openai.finish().unwrap();
}

#[test]
fn config_from_json_equals_config_inferred_from_openai_shapes() {
    let json = std::fs::read_to_string(fixture("clip_tiny/config.json")).unwrap();
    let from_json = ClipConfig::from_hf_json(&json).unwrap();
    let openai = WeightFile::load(&fixture("clip_tiny/openai.safetensors")).unwrap();
    let mut inferred = ClipConfig::infer_openai(&openai, "").unwrap();
    // OpenAI's files do not store head counts; build_model assumes 64-wide heads. The tiny
    // fixture uses 16-wide heads, so only the head counts may differ.
    inferred.text.heads = from_json.text.heads;
    inferred.vision.heads = from_json.vision.heads;
    assert_eq!(from_json, inferred);
    assert_eq!(from_json.vision.grid(), 4);
    assert_eq!(ClipConfig::vit_b32().vision.grid(), 7);
}

#[test]
fn missing_and_misshaped_tensors_are_named() {
    let mut w = WeightFile::load(&fixture("clip_tiny/openai.safetensors")).unwrap();
    let e = w.take("visual.proj", &[48, 99]).unwrap_err().to_string();
    assert!(e.contains("visual.proj") && e.contains("[48, 24]") && e.contains("[48, 99]"), "{e}");
    let e = w.take("no.such.tensor", &[3]).unwrap_err().to_string();
    assert!(e.contains("no.such.tensor") && e.contains("missing"), "{e}");
    let e = w.finish().unwrap_err().to_string();
    assert!(e.contains("unexpected tensor"), "{e}");
}

#[test]
fn truncated_file_is_an_error_naming_the_file() {
    let bytes = std::fs::read(fixture("clip_tiny/model.safetensors")).unwrap();
    let cut = &bytes[..bytes.len() / 2];
    let e = WeightFile::parse(cut, Path::new("cut.safetensors")).err().unwrap().to_string();
    assert!(e.contains("cut.safetensors") && e.contains("truncated"), "{e}");
    let e = WeightFile::parse(b"not a weight file at all", Path::new("junk.bin")).err().unwrap().to_string();
    assert!(e.contains("junk.bin"), "{e}");
}

#[test]
fn atomic_save_round_trips() {
    let dir = std::env::temp_dir().join(format!("ratlip-weights-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut tensors = std::collections::BTreeMap::new();
    tensors.insert("a".to_string(), ratlip::weights::HostTensor::new(vec![2, 3], vec![1., 2., 3., 4., 5., 6.]));
    let mut meta = std::collections::HashMap::new();
    meta.insert("config".to_string(), "{}".to_string());
    let path = dir.join("x.safetensors");
    ratlip::weights::save_safetensors(&path, &tensors, &meta).unwrap();
    let back = WeightFile::load(&path).unwrap();
    assert_eq!(back.metadata.get("config").map(String::as_str), Some("{}"));
    assert_eq!(back.shape("a"), Some(&[2usize, 3][..]));
    // The header's metadata alone, as the whole file gives it; a file cut inside its header
    // and one that is no safetensors file are errors naming the file.
    assert_eq!(WeightFile::read_metadata(&path).unwrap(), back.metadata);
    let bytes = std::fs::read(&path).unwrap();
    let cut = dir.join("cut.safetensors");
    std::fs::write(&cut, &bytes[..20]).unwrap();
    assert!(WeightFile::read_metadata(&cut).unwrap_err().to_string().contains("cut.safetensors"));
    std::fs::write(&cut, b"not a weight file at all").unwrap();
    assert!(WeightFile::read_metadata(&cut).unwrap_err().to_string().contains("bad safetensors header"));
    std::fs::remove_file(&cut).unwrap();
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "no temp file left behind");
    std::fs::remove_dir_all(&dir).unwrap();
}
