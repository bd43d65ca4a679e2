//! `.pth` checkpoints: tools/reference/pth_fixture.py writes a tiny GALIP-shaped checkpoint
//! and the same tensors as f32 safetensors; reading the checkpoint must give exactly those.
//!
//! Writing: `written_value()` is saved by `save_pth`; it must read back bit-exactly, and its
//! bytes must equal tests/fixtures/pth/written_by_ratlip.pth, which
//! tools/reference/pth_check.py has loaded with real torch and checked value by value.

use std::io::Write;
use std::path::{Path, PathBuf};

use ratlip::weights::pth::{load_pth, save_pth, strip_module_prefix, PthDtype, PthValue};
use ratlip::weights::{HostTensor, WeightFile};

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

// ---- writing ----

fn t(shape: &[usize], data: Vec<f32>) -> PthValue {
    PthValue::Tensor(HostTensor::new(shape.to_vec(), data), PthDtype::F32)
}

fn t64(shape: &[usize], data: Vec<f32>) -> PthValue {
    PthValue::Tensor(HostTensor::new(shape.to_vec(), data), PthDtype::I64)
}

fn bits(b: &[u32]) -> Vec<f32> {
    b.iter().map(|&x| f32::from_bits(x)).collect()
}

fn od(items: Vec<(&str, PthValue)>) -> PthValue {
    PthValue::OrderedDict(items.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

fn dict(items: Vec<(&str, PthValue)>) -> PthValue {
    PthValue::Dict(items.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

/// The checkpoint written to tests/fixtures/pth/written_by_ratlip.pth. tools/reference/
/// pth_check.py builds the same values independently; change both together.
fn written_value() -> PthValue {
    // netG's state dict fits `G` in pth_check.py: fc = Linear(3, 4), bn = BatchNorm1d(4).
    let net_g = od(vec![
        ("fc.weight", t(&[4, 3], (0..12).map(|i| i as f32 * 0.5 - 2.0).collect())),
        ("fc.bias", t(&[4], bits(&[0x0000_0000, 0x8000_0000, 0x0000_0001, 0x7f7f_ffff]))),
        ("bn.weight", t(&[4], (1..5).map(|i| i as f32 / 10.0).collect())),
        ("bn.bias", t(&[4], vec![-1.5, 0.25, 8.0, -0.125])),
        ("bn.running_mean", t(&[4], vec![0.5, -0.5, 0.0, 1.0])),
        ("bn.running_var", t(&[4], vec![1.0, 2.0, 0.5, 4.0])),
        ("bn.num_batches_tracked", t64(&[], vec![16_777_216.0])),
    ]);
    let net_d = od(vec![
        ("conv.weight", t(&[2, 1, 3, 3], (0..18).map(|i| i as f32 / 7.0).collect())),
        ("special", t(&[3], bits(&[0x7fc0_0000, 0x7f80_0000, 0xff80_0000]))),
        ("scalar", t(&[], vec![3.5])),
        ("empty", t(&[0, 3], vec![])),
        ("steps", t64(&[3], vec![-5.0, 0.0, (1u64 << 40) as f32])),
    ]);
    dict(vec![
        ("model", dict(vec![("netG", net_g), ("netD", net_d), ("netC", od(vec![]))])),
        ("epoch", PthValue::Int(42)),
        ("lr", PthValue::Float(1e-4)),
        ("name", PthValue::Str("ratlip \u{2713} \u{3b1}".into())),
        ("resumed", PthValue::Bool(false)),
        (
            "history",
            PthValue::List(vec![
                PthValue::Int(-1),
                PthValue::Int(255),
                PthValue::Int(256),
                PthValue::Int(65536),
                PthValue::Int(-2_147_483_648),
                PthValue::Int(1 << 40),
                PthValue::Int(i64::MIN),
                PthValue::Int(i64::MAX),
                PthValue::Float(-0.0),
                PthValue::None,
                PthValue::Str("cpu".into()),
            ]),
        ),
        ("note", PthValue::None),
    ])
}

fn save_err(root: &PthValue) -> String {
    let path = scratch("bad-write.pth");
    match save_pth(&path, root) {
        Ok(()) => panic!("saved, expected an error"),
        Err(e) => {
            assert!(!path.exists(), "a failed save must not leave a file");
            e.to_string()
        }
    }
}

/// (name, bytes, offset of the data in the file) for each zip entry, checking it is stored.
fn entries(path: &Path) -> Vec<(String, Vec<u8>, u64)> {
    let mut z = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    (0..z.len())
        .map(|i| {
            let mut f = z.by_index(i).unwrap();
            assert_eq!(f.compression(), zip::CompressionMethod::Stored, "{}", f.name());
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut f, &mut b).unwrap();
            (f.name().to_string(), b, f.data_start().unwrap())
        })
        .collect()
}

fn tensors_of(v: &PthValue, prefix: &str, out: &mut Vec<(String, HostTensor)>) {
    match v {
        PthValue::Dict(items) | PthValue::OrderedDict(items) => {
            for (k, v) in items {
                tensors_of(v, &if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") }, out)
            }
        }
        PthValue::Tensor(t, _) => out.push((prefix.to_string(), t.clone())),
        _ => {}
    }
}

#[test]
fn written_checkpoint_round_trips_through_load_pth() {
    let path = scratch("roundtrip.pth");
    save_pth(&path, &written_value()).unwrap();
    let mut w = load_pth(&path).unwrap();
    let mut want = Vec::new();
    tensors_of(&written_value(), "", &mut want);
    assert_eq!(want.len(), 12);
    for (name, t) in &want {
        let g = w.take(name, &t.shape).unwrap();
        let gb: Vec<u32> = g.data.iter().map(|x| x.to_bits()).collect();
        let wb: Vec<u32> = t.data.iter().map(|x| x.to_bits()).collect();
        assert_eq!(gb, wb, "{name}");
    }
    assert_eq!(w.metadata.get("epoch").map(String::as_str), Some("42"));
    assert_eq!(w.metadata.get("lr").map(String::as_str), Some("0.0001"));
    assert_eq!(w.metadata.get("name").map(String::as_str), Some("ratlip \u{2713} \u{3b1}"));
    w.finish().unwrap();
}

#[test]
fn written_bytes_match_the_torch_checked_fixture() {
    // Same file stem as the fixture, since the archive folder is named after it.
    let dir = scratch("stable");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("written_by_ratlip.pth");
    save_pth(&path, &written_value()).unwrap();
    let got = entries(&path);
    let want = entries(&fixture("written_by_ratlip.pth"));
    let names: Vec<&str> = got.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(names, want.iter().map(|e| e.0.as_str()).collect::<Vec<_>>());
    assert_eq!(names[0], "written_by_ratlip/data.pkl");
    assert!(names.contains(&"written_by_ratlip/version") && names.contains(&"written_by_ratlip/byteorder"));
    for ((name, g, start), (_, w, _)) in got.iter().zip(&want) {
        assert_eq!(g, w, "{name} differs from the checked-in fixture");
        // torch maps storages in place with mmap=True; they must be 64-byte aligned.
        assert_eq!(start % 64, 0, "{name} starts at {start}");
    }
    assert_eq!(std::fs::read(&path).unwrap(), std::fs::read(fixture("written_by_ratlip.pth")).unwrap());
}

#[test]
fn bad_values_are_errors_and_write_nothing() {
    let bad_len = PthValue::Tensor(HostTensor { shape: vec![2, 2], data: vec![1.0; 3] }, PthDtype::F32);
    let e = save_err(&dict(vec![("w", bad_len)]));
    assert!(e.contains("tensor w") && e.contains("3 values"), "{e}");
    let e = save_err(&dict(vec![("m", od(vec![("n", t64(&[], vec![1.5]))]))]));
    assert!(e.contains("tensor m.n") && e.contains("not an int64"), "{e}");
    let e = save_err(&dict(vec![("n", t64(&[1], vec![f32::NAN]))]));
    assert!(e.contains("not an int64"), "{e}");
    let e = save_err(&dict(vec![("a", PthValue::Int(1)), ("a", PthValue::Int(2))]));
    assert!(e.contains("duplicate key \"a\""), "{e}");
}

#[test]
fn large_state_dicts_use_long_memo_indices_and_batched_setitems() {
    // Over 256 memo entries and over 1000 keys: LONG_BINPUT/LONG_BINGET and several SETITEMS.
    let items: Vec<(String, PthValue)> =
        (0..1500).map(|i| (format!("layer{i}.weight"), t(&[2], vec![i as f32, -(i as f32)]))).collect();
    let path = scratch("large.pth");
    save_pth(&path, &dict(vec![("netG", PthValue::OrderedDict(items))])).unwrap();
    let mut w = load_pth(&path).unwrap();
    for i in 0..1500 {
        assert_eq!(w.take(&format!("netG.layer{i}.weight"), &[2]).unwrap().data, vec![i as f32, -(i as f32)]);
    }
    w.finish().unwrap();
}

/// Regenerates tests/fixtures/pth/written_by_ratlip.pth; then run
/// `/work/venv-ref/bin/python tools/reference/pth_check.py` to check it with real torch.
#[test]
#[ignore]
fn write_fixture_for_torch_check() {
    save_pth(&fixture("written_by_ratlip.pth"), &written_value()).unwrap();
}
