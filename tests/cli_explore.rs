//! `ratlip interpolate` and `ratlip compare` as users run them, on a tiny model: the images
//! they make must be the ones `ratlip generate` makes for the same seed and prompt.

use std::path::{Path, PathBuf};
use std::process::Command;

use ratlip::weights::{HostTensor, WeightFile};

fn ratlip(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_ratlip")).args(args).output().unwrap();
    (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into())
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ratlip-cli-explore-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A tiny model (24×24 images, z 8); its CLIP keeps the real vocabulary, so prompts work.
fn tiny(d: &Path) -> PathBuf {
    let m = d.join("tiny.safetensors");
    let (code, _, err) = ratlip(&["model", "new", "--arch", "ratlip", "--size", "tiny", "--seed", "3", "-o", s(&m)]);
    assert_eq!(code, 0, "{err}");
    m
}

fn tensor(path: &Path, name: &str) -> HostTensor {
    WeightFile::load(path).unwrap().take_any(name).unwrap()
}

/// Image `i` (and its noise) of a --save-tensor file.
fn image(t: &HostTensor, i: usize) -> &[f32] {
    let per: usize = t.shape[1..].iter().product();
    &t.data[i * per..(i + 1) * per]
}

/// `ratlip generate --seed SEED --count 1` of `prompt`: (image, noise).
fn generated(d: &Path, m: &Path, prompt: &str, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let t = d.join(format!("gen-{seed}-{}.safetensors", prompt.len()));
    let (code, _, err) = ratlip(&["generate", "--model", s(m), "--prompt", prompt, "--seed", &seed.to_string(), "--save-tensor", s(&t)]);
    assert_eq!(code, 0, "{err}");
    (tensor(&t, "images").data, tensor(&t, "noise").data)
}

fn png_size(path: &Path) -> (u32, u32) {
    let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let r = dec.read_info().unwrap();
    (r.info().width, r.info().height)
}

fn text(path: &Path, key: &str) -> Option<String> {
    ratlip::images::png_text(path).unwrap().into_iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

#[test]
fn interpolate_seeds_strip_animation_and_endpoints() {
    let d = tmp("seeds");
    let m = tiny(&d);
    let (strip, anim, raw) = (d.join("strip.png"), d.join("anim.png"), d.join("i.safetensors"));
    let args = ["interpolate", "--model", s(&m), "--prompt", "a red circle", "--seeds", "4,7", "--steps", "5", "--batch", "2"];
    let (code, out, err) = ratlip(&[&args[..], &["-o", s(&strip), "--anim", s(&anim), "--save-tensor", s(&raw)]].concat());
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("slerp") && out.contains("8 frames"), "{out}");
    assert!(err.contains("5/5 images") && err.contains("ETA"), "progress line over several batches: {err}");

    // One row of five 24×24 images with images::grid's 2-pixel gaps.
    assert_eq!(png_size(&strip), (5 * 24 + 6 * 2, 24 + 2 * 2));
    assert_eq!(text(&strip, "prompt").as_deref(), Some("a red circle"));
    assert_eq!(text(&strip, "seeds").as_deref(), Some("4,7"));
    assert_eq!(text(&strip, "steps").as_deref(), Some("5"));
    assert_eq!(text(&strip, "arch").as_deref(), Some("ratlip"));
    assert_eq!(text(&anim, "seeds").as_deref(), Some("4,7"));

    // The animation: 0 1 2 3 4 3 2 1, looping forever.
    let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&anim).unwrap()));
    let mut r = dec.read_info().unwrap();
    let actl = r.info().animation_control.expect("an APNG");
    assert_eq!((actl.num_frames, actl.num_plays), (2 * 5 - 2, 0));
    assert_eq!((r.info().width, r.info().height), (24, 24));
    let mut buf = vec![0; r.output_buffer_size().unwrap()];
    let mut frames = Vec::new();
    for _ in 0..actl.num_frames {
        r.next_frame(&mut buf).unwrap();
        frames.push(buf.clone());
    }
    assert_eq!(frames[1], frames[7]);
    assert_eq!(frames[3], frames[5]);
    assert_ne!(frames[0], frames[4]);

    // The endpoints are exactly generate's images for those seeds.
    let t = tensor(&raw, "images");
    assert_eq!(t.shape, vec![5, 3, 24, 24]);
    let z = tensor(&raw, "noise");
    for (i, seed) in [(0, 4), (4, 7)] {
        let (img, noise) = generated(&d, &m, "a red circle", seed);
        assert_eq!(image(&t, i), &img[..], "endpoint {i} is not generate --seed {seed}");
        assert_eq!(image(&z, i), &noise[..]);
    }
    assert_ne!(image(&t, 2), image(&t, 0));
    // On the sphere's path, the middle noise keeps about the endpoints' length.
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let (n0, n2, n4) = (norm(image(&z, 0)), norm(image(&z, 2)), norm(image(&z, 4)));
    assert!(n2 > 0.9 * n0.min(n4), "{n0} {n2} {n4}");
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn interpolate_prompts_at_fixed_noise() {
    let d = tmp("prompts");
    let m = tiny(&d);
    let raw = d.join("p.safetensors");
    let (p1, p2) = ("a red circle", "a small blue square");
    let (code, out, err) = ratlip(&["interpolate", "--model", s(&m), "--prompt", p1, "--prompt", p2, "--seed", "5", "--steps", "3", "--save-tensor", s(&raw)]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("raw floats"), "{out}");
    let t = tensor(&raw, "images");
    let z = tensor(&raw, "noise");
    let e = tensor(&raw, "sent_emb");
    assert_eq!(e.shape[0], 3);
    assert_eq!(image(&z, 0), image(&z, 2), "the noise is fixed");
    for (i, p) in [(0, p1), (2, p2)] {
        assert_eq!(image(&t, i), &generated(&d, &m, p, 5).0[..], "endpoint {i} is not generate --prompt {p:?}");
    }
    // Linear: the middle embedding is the mean of the ends.
    for k in 0..e.shape[1] {
        let (a, mid, b) = (image(&e, 0)[k], image(&e, 1)[k], image(&e, 2)[k]);
        assert!((mid - (a + b) / 2.0).abs() < 1e-6);
    }
    let (code, help, _) = ratlip(&["interpolate", "--help"]);
    assert_eq!(code, 0);
    assert!(help.contains("linearly") && help.contains("slerp"), "{help}");
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn compare_shares_noise_down_each_column() {
    let d = tmp("compare");
    let m = tiny(&d);
    let (grid, raw) = (d.join("grid.png"), d.join("c.safetensors"));
    let prompts = ["a red circle", "a red circle", "a small blue square"];
    let mut args = vec!["compare", "--model", s(&m), "--seeds", "2,5", "-o", s(&grid), "--save-tensor", s(&raw)];
    for p in prompts {
        args.extend(["--prompt", p]);
    }
    let (code, out, err) = ratlip(&args);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("3 prompts × 2 seeds"), "{out}");

    let t = tensor(&raw, "images");
    let z = tensor(&raw, "noise");
    assert_eq!(t.shape, vec![6, 3, 24, 24], "rows × cols images");
    for j in 0..2 {
        assert_eq!(image(&z, j), image(&z, 2 + j));
        assert_eq!(image(&z, j), image(&z, 4 + j));
        assert_eq!(image(&t, j), image(&t, 2 + j), "same prompt, same noise: the same image");
        assert_ne!(image(&t, j), image(&t, 4 + j), "another prompt changes the image");
    }
    assert_ne!(image(&t, 0), image(&t, 1), "columns differ");
    let (img, noise) = generated(&d, &m, "a red circle", 5);
    assert_eq!(image(&t, 1), &img[..], "column of seed 5 is generate --seed 5");
    assert_eq!(image(&z, 1), &noise[..]);

    // Labels make the grid larger than the bare 3×2 grid of images.
    let (w, h) = png_size(&grid);
    assert!(w as usize > 2 * 24 + 3 * 2 + 100 && h as usize > 3 * 24 + 4 * 2 + 10, "{w}×{h}");
    assert_eq!(text(&grid, "seeds").as_deref(), Some("2,5"));
    assert_eq!(text(&grid, "prompt").as_deref(), Some("a red circle\na red circle\na small blue square"));

    // --zoom 4: the same grid with every image 4× larger (rows as tall as the images now).
    let zoomed = d.join("zoomed.png");
    let mut args = vec!["compare", "--model", s(&m), "--seeds", "2,5", "--zoom", "4", "-o", s(&zoomed)];
    for p in prompts {
        args.extend(["--prompt", p]);
    }
    let (code, _, err) = ratlip(&args);
    assert_eq!(code, 0, "{err}");
    let (zw, zh) = png_size(&zoomed);
    assert_eq!(zw - w, 2 * 3 * 24, "two columns, each 3·24 px wider");
    assert!(zh as usize >= 3 * 96 && zh > h, "{zw}×{zh}");
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn bad_inputs_are_clear_errors_and_write_nothing() {
    let d = tmp("bad");
    let m = tiny(&d);
    let out = d.join("o.png");
    let base = ["--model", s(&m), "-o", s(&out)];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["interpolate", "--prompt", "x", "--seeds", "1"], "exactly two seeds"),
        (vec!["interpolate", "--prompt", "x", "--seeds", "1,2,3"], "exactly two seeds"),
        (vec!["interpolate", "--prompt", "x", "--seeds", "1,2", "--steps", "1"], "at least 2"),
        (vec!["interpolate", "--prompt", "x", "--seed", "1"], "--seeds A,B"),
        (vec!["interpolate", "--prompt", "x", "--prompt", "y", "--seeds", "1,2"], "--seed N"),
        (vec!["interpolate", "--seeds", "1,2"], "give a prompt"),
        (vec!["compare", "--seeds", "1,2"], "give the prompts"),
    ];
    for (args, want) in cases {
        let (code, _, err) = ratlip(&[&args[..], &base[..]].concat());
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: expected {want:?} in {err}");
        assert!(!out.exists(), "{args:?} wrote a file");
    }
    let missing = d.join("missing.safetensors");
    for cmd in [
        vec!["interpolate", "--prompt", "x", "--seeds", "1,2", "--anim", s(&out)],
        vec!["compare", "--prompt", "x", "-o", s(&out)],
    ] {
        let (code, _, err) = ratlip(&[&cmd[..], &["--model", s(&missing)]].concat());
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("missing.safetensors"), "{err}");
        assert!(!out.exists());
    }
    std::fs::remove_dir_all(&d).ok();
}
