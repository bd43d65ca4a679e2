//! `ratlip model`, `import`, `export` and `generate` as users run them, on tiny models.

use std::path::{Path, PathBuf};
use std::process::Command;

fn ratlip(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_ratlip")).args(args).output().unwrap();
    (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into())
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ratlip-cli-model-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn new_info_generate_and_export() {
    let d = tmp("flow");
    let m = d.join("tiny.safetensors");
    let (code, out, err) = ratlip(&["model", "new", "--arch", "ratlip", "--size", "tiny", "--seed", "3", "-o", s(&m)]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("netG"), "{out}");

    let (code, out, err) = ratlip(&["model", "info", s(&m)]);
    assert_eq!(code, 0, "{err}");
    for want in ["arch:        ratlip", "netG 0.45 M", "netD", "netC", "provenance:  init", "shuffle attention 8 groups"] {
        assert!(out.contains(want), "missing {want:?} in\n{out}");
    }
    let (code, out, _) = ratlip(&["model", "info", s(&m), "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["config"]["arch"], "ratlip");
    assert!(v["parameters"]["netG"].as_u64().unwrap() > 100_000);

    // Seeded generation: PNG with its metadata, and the raw tensor; image i does not depend
    // on the batch size or on how many images are made.
    let png = d.join("a.png");
    let t1 = d.join("a.safetensors");
    let (code, out, err) = ratlip(&["generate", "--model", s(&m), "--prompt", "a red circle", "--seed", "9", "--count", "3", "--batch", "2", "-o", s(&png), "--save-tensor", s(&t1)]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ms per image"), "{out}");
    let text = ratlip::images::png_text(&png).unwrap();
    let get = |k: &str| text.iter().find(|(kk, _)| kk == k).map(|(_, v)| v.clone());
    assert_eq!(get("prompt").as_deref(), Some("a red circle"));
    assert_eq!(get("seed").as_deref(), Some("9"));
    assert_eq!(get("arch").as_deref(), Some("ratlip"));
    let t2 = d.join("b.safetensors");
    let (code, _, err) = ratlip(&["generate", "--model", s(&m), "--prompt", "a red circle", "--seed", "9", "--count", "1", "--save-tensor", s(&t2)]);
    assert_eq!(code, 0, "{err}");
    let mut a = ratlip::weights::WeightFile::load(&t1).unwrap();
    let mut b = ratlip::weights::WeightFile::load(&t2).unwrap();
    let (a, b) = (a.take_any("images").unwrap(), b.take_any("images").unwrap());
    assert_eq!(a.shape, vec![3, 3, 24, 24]);
    assert_eq!(&a.data[..3 * 24 * 24], &b.data[..], "image 0 changed with count/batch");

    // --size changes S (the image blocks are convolutional); --separate writes numbered files
    // whose metadata says which sample of the seed each is.
    let (code, out, err) = ratlip(&["generate", "--model", s(&m), "--prompt", "a red circle", "--seed", "9", "--count", "2", "--size", "32", "--separate", "-o", s(&d.join("sep.png"))]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("32×32"), "{out}");
    for i in 0..2 {
        let f = d.join(format!("sep_{i:03}.png"));
        let img = image::open(&f).unwrap();
        assert_eq!((img.width(), img.height()), (32, 32));
        let text = ratlip::images::png_text(&f).unwrap();
        assert!(text.iter().any(|(k, v)| k == "index" && v == &i.to_string()), "{text:?}");
    }

    // --zoom enlarges the PNG, each of the model's pixels a K×K block of the same colour.
    let (code, out, err) = ratlip(&["generate", "--model", s(&m), "--prompt", "a red circle", "--seed", "9", "--zoom", "3", "-o", s(&d.join("z.png"))]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("3× larger"), "{out}");
    let z = image::open(d.join("z.png")).unwrap().to_rgb8();
    assert_eq!((z.width(), z.height()), (72, 72));
    let one = ratlip::images::from_chw(&a.data[..3 * 24 * 24], &[1, 3, 24, 24]).unwrap().remove(0);
    for (x, y) in [(0, 0), (2, 2), (40, 7), (71, 71)] {
        let i = 3 * ((y / 3) * 24 + x / 3) as usize;
        assert_eq!(z.get_pixel(x, y).0, [one.data[i], one.data[i + 1], one.data[i + 2]], "pixel ({x}, {y})");
    }

    // --noise reproduces number for number: a --save-tensor file carries its "noise" back in.
    let (code, _, err) = ratlip(&["generate", "--model", s(&m), "--prompt", "a red circle", "--noise", s(&t1), "--save-tensor", s(&t2)]);
    assert_eq!(code, 0, "{err}");
    let c = ratlip::weights::WeightFile::load(&t2).unwrap().take_any("images").unwrap();
    assert_eq!(c.data, a.data);
    let wrong = d.join("wrong.safetensors");
    let n = ratlip::weights::HostTensor::new(vec![2, 5], vec![0.0; 10]);
    ratlip::weights::save_safetensors(&wrong, &[("noise".to_string(), n)].into_iter().collect(), &Default::default()).unwrap();
    let (code, _, err) = ratlip(&["generate", "--model", s(&m), "--prompt", "x", "--noise", s(&wrong), "-o", s(&d.join("w.png"))]);
    assert_eq!(code, 1);
    assert!(err.contains("[2, 5]") && err.contains("[K, 8]"), "{err}");
    assert!(!d.join("w.png").exists());

    // Export for PyTorch; the result reads back with the released names.
    let pth = d.join("m.pth");
    let (code, out, err) = ratlip(&["export", "--model", s(&m), "--pytorch", s(&pth)]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("'netG'"), "{out}");
    let w = ratlip::weights::pth::load_pth(&pth).unwrap();
    assert!(w.contains("model.netG.mapping.CLIP_ViT.transformer.resblocks.0.attn.in_proj_weight"));
    assert!(w.contains("model.netG.mapping.rat.cell.weight_ih"));
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn no_model_says_how_to_get_one() {
    let d = tmp("nomodel");
    for args in [&["generate", "--prompt", "a bird"][..], &["interpolate", "--prompt", "a bird", "--seeds", "1,2"], &["compare", "--prompt", "a", "--prompt", "b"]] {
        let o = Command::new(env!("CARGO_BIN_EXE_ratlip")).args(args).current_dir(&d).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        for want in ["there is no model at", "assets/default.safetensors", "ratlip import", "ratlip train", "ratlip model new"] {
            assert!(err.contains(want), "{args:?}: missing {want:?} in\n{err}");
        }
    }
    assert!(!d.join("ratlip.png").exists());
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn bad_inputs_are_clear_errors() {
    let d = tmp("bad");
    let (code, _, err) = ratlip(&["model", "info", s(&d.join("missing.safetensors"))]);
    assert_eq!(code, 1);
    assert!(err.contains("missing.safetensors"), "{err}");
    let junk = d.join("junk.pth");
    std::fs::write(&junk, b"not a zip").unwrap();
    let (code, _, err) = ratlip(&["import", "--checkpoint", s(&junk), "--clip", s(&junk), "-o", s(&d.join("o.safetensors"))]);
    assert_eq!(code, 1);
    assert!(err.contains("junk.pth") && err.contains("checkpoint"), "{err}");
    assert!(!d.join("o.safetensors").exists(), "nothing is written on failure");
    let (code, _, err) = ratlip(&["model", "new", "--arch", "stylegan", "-o", s(&d.join("x.safetensors"))]);
    assert_eq!(code, 1);
    assert!(err.contains("galip, ratlip or ratlip-release"), "{err}");
    std::fs::remove_dir_all(&d).ok();
}
