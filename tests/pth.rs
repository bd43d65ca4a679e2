//! `.pth` checkpoints: tools/reference/pth_fixture.py writes a tiny GALIP-shaped checkpoint
//! and the same tensors as f32 safetensors; reading the checkpoint must give exactly those.

use std::io::Write;
use std::path::{Path, PathBuf};

use ratlip::weights::pth::{load_pth, strip_module_prefix};
use ratlip::weights::WeightFile;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pth").join(name)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ratlip-pth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// A torch-style zip holding `ckpt/data.pkl` with the given pickle bytes (plus `extra` entries).
fn zip_with_pickle(name: &str, pkl: &[u8]) -> PathBuf {
    zip_with(name, pkl, &[])
}

fn zip_with(name: &str, pkl: &[u8], extra: &[(&str, &[u8])]) -> PathBuf {
    let path = scratch(name);
    let mut z = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    z.start_file("ckpt/data.pkl", opts).unwrap();
    z.write_all(pkl).unwrap();
    for (n, b) in extra {
        z.start_file(format!("ckpt/{n}"), opts).unwrap();
        z.write_all(b).unwrap();
    }
    z.finish().unwrap();
    path
}

/// BINUNICODE of `s`.
fn u(s: &str) -> Vec<u8> {
    let mut v = vec![b'X'];
    v.extend((s.len() as u32).to_le_bytes());
    v.extend(s.as_bytes());
    v
}

/// `{'t': tensor}` over a 2-element FloatStorage '0', with the given size and stride bytes
/// (already pickled).
fn tensor_pickle(size: &[u8], stride: &[u8]) -> Vec<u8> {
    let mut p = b"\x80\x02}(".to_vec();
    p.extend(u("t"));
    p.extend(b"ctorch._utils\n_rebuild_tensor_v2\n((");
    p.extend(u("storage"));
    p.extend(b"ctorch\nFloatStorage\n");
    p.extend(u("0"));
    p.extend(u("cpu"));
    p.extend(b"K\x02tQK\x00");
    p.extend(size);
    p.extend(stride);
    p.extend(b"\x89ccollections\nOrderedDict\n)RtRu.");
    p
}

fn err_of(path: &Path) -> String {
    match load_pth(path) {
        Ok(_) => panic!("{} loaded, expected an error", path.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn every_tensor_matches_the_reference() {
    let got = load_pth(&fixture("state_epoch_tiny.pth")).unwrap();
    let mut want = WeightFile::load(&fixture("expected.safetensors")).unwrap();
    let got_names: Vec<&str> = got.names().collect();
    let want_names: Vec<String> = want.names().map(str::to_string).collect();
    assert_eq!(got_names, want_names);
    let mut got = got;
    for name in &want_names {
        let w = want.take_any(name).unwrap();
        let g = got.take(name, &w.shape).unwrap();
        // Bitwise: f16/bf16/f64/i64 → f32 conversions are exact or round-to-nearest in both.
        let gb: Vec<u32> = g.data.iter().map(|x| x.to_bits()).collect();
        let wb: Vec<u32> = w.data.iter().map(|x| x.to_bits()).collect();
        assert_eq!(gb, wb, "{name}");
    }
    got.finish().unwrap();
}

#[test]
fn names_join_dict_keys_and_scalars_become_metadata() {
    let w = load_pth(&fixture("state_epoch_tiny.pth")).unwrap();
    for n in [
        "model.netG.fc.weight",
        "model.netG.to_rgb.weight",
        "model.netG.proj.weight",
        "model.netD.module.conv.weight",
        "model.netC.joint.bias",
        "optimizers.optimizer_G.state.0.exp_avg",
    ] {
        assert!(w.contains(n), "missing {n}");
    }
    // The transposed view keeps its logical shape; the fp16 one its 4-D shape.
    assert_eq!(w.shape("model.netG.proj.weight"), Some(&[5, 3][..]));
    assert_eq!(w.shape("model.netG.to_rgb.weight"), Some(&[3, 2, 1, 1][..]));
    assert_eq!(w.shape("model.netG.bn.num_batches_tracked"), Some(&[][..]));
    assert_eq!(w.metadata.get("epoch").map(String::as_str), Some("3"));
}

#[test]
fn strip_module_prefix_removes_dataparallel_component() {
    let w = strip_module_prefix(load_pth(&fixture("state_epoch_tiny.pth")).unwrap());
    assert!(w.contains("model.netD.conv.weight"));
    assert!(w.contains("model.netD.conv.bias"));
    assert!(w.contains("model.netG.fc.weight"));
    assert!(!w.names().any(|n| n.split('.').any(|p| p == "module")));
}

#[test]
fn truncated_checkpoint_is_an_error_naming_the_file() {
    let bytes = std::fs::read(fixture("state_epoch_tiny.pth")).unwrap();
    let path = scratch("truncated.pth");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let e = err_of(&path);
    assert!(e.contains("truncated.pth") && e.contains("truncated or corrupt"), "{e}");
}

#[test]
fn non_zip_file_is_an_error_and_legacy_format_is_named() {
    let path = scratch("notzip.pth");
    std::fs::write(&path, b"hello, not a checkpoint").unwrap();
    let e = err_of(&path);
    assert!(e.contains("notzip.pth") && e.contains("not a readable PyTorch zip checkpoint"), "{e}");

    let path = scratch("legacy.pth");
    std::fs::write(&path, b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.").unwrap();
    let e = err_of(&path);
    assert!(e.contains("legacy.pth") && e.contains("legacy torch.save format"), "{e}");
}

#[test]
fn unknown_opcode_and_truncated_pickle_are_errors() {
    let path = zip_with_pickle("badop.pth", b"\x80\x02}q\x00\xff.");
    let e = err_of(&path);
    assert!(e.contains("badop.pth") && e.contains("opcode 0xff"), "{e}");

    let path = zip_with_pickle("shortpkl.pth", b"\x80\x02}q\x00(X\x05\x00");
    let e = err_of(&path);
    assert!(e.contains("shortpkl.pth") && e.contains("ends early"), "{e}");
}

#[test]
fn hand_built_tensor_reads_and_out_of_range_view_is_an_error() {
    let storage: Vec<u8> = [1.5f32, -2.0].iter().flat_map(|x| x.to_le_bytes()).collect();
    // Shape (2,), stride (1,): fits.
    let ok = zip_with("ok.pth", &tensor_pickle(b"K\x02\x85", b"K\x01\x85"), &[("data/0", &storage)]);
    let mut w = load_pth(&ok).unwrap();
    assert_eq!(w.take("t", &[2]).unwrap().data, vec![1.5, -2.0]);
    // Shape (4,) over a 2-element storage: names the tensor and the file.
    let bad = zip_with("oob.pth", &tensor_pickle(b"K\x04\x85", b"K\x01\x85"), &[("data/0", &storage)]);
    let e = err_of(&bad);
    assert!(e.contains("oob.pth") && e.contains("tensor t") && e.contains("reaches element 3"), "{e}");
    // A missing storage entry is an error naming it.
    let missing = zip_with("nostorage.pth", &tensor_pickle(b"K\x02\x85", b"K\x01\x85"), &[]);
    let e = err_of(&missing);
    assert!(e.contains("nostorage.pth") && e.contains("ckpt/data/0"), "{e}");
}

#[test]
fn a_pickled_call_to_os_system_is_never_executed() {
    // evil.pth's pickle is {'a': os.system('touch PWNED')}. It loads as an opaque value, so
    // there are no tensors, and nothing was run.
    let dir = scratch("evil-cwd");
    std::fs::create_dir_all(&dir).unwrap();
    let w = load_pth(&fixture("evil.pth")).unwrap();
    assert_eq!(w.names().count(), 0);
    assert!(!w.metadata.contains_key("a"));
    assert!(!Path::new("PWNED").exists() && !dir.join("PWNED").exists());
}
