//! `ratlip model average`: G averaged over checkpoints of one run (src/model/average.rs).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use ratlip::clip::model::Clip;
use ratlip::model::{average, Arch, Model, ModelConfig};
use ratlip::weights::{save_safetensors, HostTensor, WeightFile};
use ratlip::{Gpu, Tensor};

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ratlip-average-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A tiny model with NetD/NetC whose G and D come from `seed`, around the CLIP of `clip_seed`
/// (checkpoints of one run share their frozen CLIP).
fn model(gpu: &Gpu, arch: Arch, seed: u64, clip_seed: u64) -> Model {
    let config = ModelConfig::tiny(arch);
    let mut w = WeightFile::from_tensors("(test CLIP)", ratlip::clip::init::random_state_dict(&config.clip, clip_seed));
    let clip = Clip::from_weights(gpu, &mut w, "", config.clip.clone()).unwrap();
    Model::init(gpu, config, Some(clip), seed, true).unwrap()
}

fn saved(gpu: &Gpu, d: &Path, name: &str, arch: Arch, seed: u64, clip_seed: u64) -> PathBuf {
    let p = d.join(format!("{name}.safetensors"));
    model(gpu, arch, seed, clip_seed).save(&p).unwrap();
    p
}

fn images(m: &Model) -> Vec<f32> {
    let g = &m.clip.gpu;
    let noise = Tensor::from_slice(g, &[2, 8], &(0..16).map(|i| (i as f32 * 0.37).sin()).collect::<Vec<_>>()).unwrap();
    let sent = Tensor::from_slice(g, &[2, 16], &(0..32).map(|i| (i as f32 * 0.11).cos()).collect::<Vec<_>>()).unwrap();
    m.generate(&noise, &sent).unwrap().to_vec().unwrap()
}

/// G is the mean of the files' G (against an f64 reference), everything else is the last
/// file's bit for bit, and the result loads and draws something none of the inputs draws.
#[test]
fn g_is_the_mean_and_the_rest_is_the_last_file() {
    let gpu = Gpu::new(&Default::default()).unwrap();
    let d = dir("mean");
    let files: Vec<PathBuf> = (0..3).map(|i| saved(&gpu, &d, &format!("step_{i}"), Arch::Ratlip, 10 + i, 99)).collect();
    let states: Vec<BTreeMap<String, HostTensor>> = files.iter().map(|f| Model::load(&gpu, f).unwrap().state_dict().unwrap()).collect();

    let avg = average::average(&files).unwrap();
    let out = d.join("avg.safetensors");
    avg.save(&out).unwrap();
    let m = Model::load(&gpu, &out).unwrap();
    let got = m.state_dict().unwrap();
    assert_eq!(got.keys().collect::<Vec<_>>(), states[2].keys().collect::<Vec<_>>());
    let mut averaged = 0;
    for (name, t) in &got {
        if name.starts_with("netG.") {
            for (j, v) in t.data.iter().enumerate() {
                let want = states.iter().map(|s| s[name].data[j] as f64).sum::<f64>() / 3.0;
                assert!((*v as f64 - want).abs() <= 1e-7 * want.abs().max(1.0), "{name}[{j}]: {v} against {want}");
            }
            // Different seeds: the inputs' G differ, so the mean is none of them.
            if states[0][name].data != states[1][name].data {
                assert!(states.iter().all(|s| s[name].data != t.data), "{name} equals one input's");
                averaged += 1;
            }
        } else {
            assert_eq!(t, &states[2][name], "{name} should be the last file's");
        }
    }
    assert!(averaged > 10, "only {averaged} G tensors were averaged");
    assert_eq!(m.provenance.origin, "average");
    assert_eq!(m.provenance.sources.len(), 3);
    assert!(m.d.is_some(), "the result keeps NetD/NetC, so it can be trained on");
    let drawn = images(&m);
    assert!(drawn.iter().all(|v| v.is_finite()));
    for f in &files {
        assert_ne!(images(&Model::load(&gpu, f).unwrap()), drawn);
    }
    std::fs::remove_dir_all(&d).ok();
}

/// Files that are not checkpoints of one run are refused, naming both files, and nothing is
/// written.
#[test]
fn files_of_different_runs_are_refused() {
    let gpu = Gpu::new(&Default::default()).unwrap();
    let d = dir("refuse");
    let a = saved(&gpu, &d, "a", Arch::Ratlip, 1, 5);
    let b = saved(&gpu, &d, "b", Arch::Ratlip, 2, 5);
    let galip = saved(&gpu, &d, "galip", Arch::Galip, 3, 5);
    let other_clip = saved(&gpu, &d, "other_clip", Arch::Ratlip, 4, 6);
    let not_a_model = d.join("weights.safetensors");
    let mut t = BTreeMap::new();
    t.insert("netG.x".to_string(), HostTensor::new(vec![2], vec![1.0, 2.0]));
    save_safetensors(&not_a_model, &t, &Default::default()).unwrap();

    let err = |files: &[&PathBuf]| average::average(&files.iter().map(|p| p.to_path_buf()).collect::<Vec<_>>()).err().expect("refused").to_string();
    let e = err(&[&a]);
    assert!(e.contains("at least two"), "{e}");
    let e = err(&[&a, &galip]);
    assert!(e.contains("different models") && e.contains("a.safetensors") && e.contains("galip.safetensors"), "{e}");
    let e = err(&[&a, &b, &other_clip]);
    assert!(e.contains("different CLIPs") && e.contains("other_clip.safetensors") && e.contains("clip."), "{e}");
    let e = err(&[&not_a_model, &a]);
    assert!(e.contains("not a ratlip model file") && e.contains("weights.safetensors"), "{e}");

    // The command line: the error, a non-zero exit and no output file.
    let out = d.join("out.safetensors");
    let o = Command::new(env!("CARGO_BIN_EXE_ratlip"))
        .args(["model", "average", a.to_str().unwrap(), galip.to_str().unwrap(), "-o", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("different models"), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!out.exists());

    // And the way a user runs it, on two files of one run.
    let o = Command::new(env!("CARGO_BIN_EXE_ratlip"))
        .args(["model", "average", a.to_str().unwrap(), b.to_str().unwrap(), "-o", out.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("averaged over 2 checkpoints"), "{stdout}");
    let o = Command::new(env!("CARGO_BIN_EXE_ratlip")).args(["model", "info", out.to_str().unwrap()]).output().unwrap();
    let info = String::from_utf8_lossy(&o.stdout);
    assert!(info.contains("provenance:  average") && info.contains("averaged_steps"), "{info}");
    std::fs::remove_dir_all(&d).ok();
}
