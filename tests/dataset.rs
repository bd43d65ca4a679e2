//! `ratlip dataset synth`: determinism, captions that agree with the attributes, pictures that
//! show them, and clear errors.

use std::path::{Path, PathBuf};
use std::process::Command;

use ratlip::data::synth::{self, Attrs, FaceAttrs, Kind, Options, Shape, ShapesAttrs};

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ratlip-dataset-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn write(kind: Kind, count: usize, size: usize, seed: u64, threads: usize, out: &Path) -> ratlip::Result<()> {
    let opts = Options { kind, count, size, seed, out: out.to_path_buf(), threads };
    synth::write_dataset(&opts, &|_| {})
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for sub in ["", "images"] {
        for e in std::fs::read_dir(dir.join(sub)).unwrap() {
            let p = e.unwrap().path();
            if p.is_file() {
                out.push((format!("{sub}/{}", p.file_name().unwrap().to_string_lossy()), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn same_seed_gives_identical_bytes_whatever_the_thread_count() {
    for kind in [Kind::Shapes, Kind::Faces] {
        let (a, b) = (scratch(&format!("{kind:?}-a")), scratch(&format!("{kind:?}-b")));
        write(kind, 12, 32, 7, 1, &a).unwrap();
        write(kind, 12, 32, 7, 3, &b).unwrap();
        let (fa, fb) = (files(&a), files(&b));
        assert_eq!(fa.len(), 12 * 2 + 2);
        assert!(fa == fb, "{kind:?}: two runs with the same seed differ");
        // No temporary files left behind by the atomic writes.
        assert!(fa.iter().all(|(n, _)| !n.contains(".tmp")));
        let c = scratch(&format!("{kind:?}-c"));
        write(kind, 12, 32, 8, 2, &c).unwrap();
        let fc = files(&c);
        let same = fa.iter().zip(&fc).filter(|(x, y)| x.0.ends_with(".png") && x == y).count();
        assert!(same <= 1, "{kind:?}: seeds 7 and 8 give {same} identical images");
        for d in [a, b, c] {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

#[test]
fn image_i_does_not_depend_on_the_count() {
    let (small, large) = (scratch("count-3"), scratch("count-9"));
    write(Kind::Faces, 3, 24, 1, 2, &small).unwrap();
    write(Kind::Faces, 9, 24, 1, 2, &large).unwrap();
    for name in ["00000.png", "00002.png", "00002.txt"] {
        let a = std::fs::read(small.join("images").join(name)).unwrap();
        let b = std::fs::read(large.join("images").join(name)).unwrap();
        assert!(a == b, "{name} differs between --count 3 and --count 9");
    }
    let lines = |d: &Path| std::fs::read_to_string(d.join("attributes.jsonl")).unwrap();
    assert!(lines(&large).starts_with(&lines(&small)));
    assert_eq!(synth::stem(7, 100), "00007");
    assert_eq!(synth::stem(7, 1_000_000), "000007");
    for d in [small, large] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn layout_metadata_and_attributes_file() {
    let d = scratch("layout");
    write(Kind::Shapes, 4, 16, 3, 2, &d).unwrap();
    let meta: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(d.join("dataset.json")).unwrap()).unwrap();
    assert_eq!(meta["kind"], "shapes");
    assert_eq!(meta["count"], 4);
    assert_eq!(meta["size"], 16);
    assert_eq!(meta["seed"], 3);
    assert_eq!(meta["generator_version"], synth::GENERATOR_VERSION);
    let text = std::fs::read_to_string(d.join("attributes.jsonl")).unwrap();
    let rows: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 4);
    for (i, row) in rows.iter().enumerate() {
        let file = row["file"].as_str().unwrap();
        assert_eq!(file, format!("images/{:05}.png", i));
        assert_eq!(row["kind"], "shapes");
        assert!(row["background"].is_string() && row["shapes"].is_array(), "{row}");
        let img = image::open(d.join(file)).unwrap();
        assert_eq!((img.width(), img.height()), (16, 16));
        let caps = std::fs::read_to_string(d.join(file.replace(".png", ".txt"))).unwrap();
        assert_eq!(caps.lines().count(), synth::CAPTIONS_PER_IMAGE);
    }
    let _ = std::fs::remove_dir_all(d);
}

const OLD: [&str; 3] = ["old", "elderly", "aged"];
const YOUNG: [&str; 2] = ["young", "youthful"];
const HAPPY: [&str; 5] = ["smiling", "happy", "cheerful", "grinning", "smile"];
const SAD: [&str; 4] = ["sad", "unhappy", "frowning", "frown"];

fn has_word(caption: &str, words: &[&str]) -> bool {
    caption.split(|c: char| !c.is_alphanumeric() && c != '-').any(|w| words.contains(&w.to_lowercase().as_str()))
}

#[test]
fn face_captions_state_the_attributes() {
    for i in 0..300 {
        let s = synth::sample(Kind::Faces, 11, i, 16);
        let Attrs::Faces(a) = &s.attrs else { panic!() };
        let caps = &s.captions;
        assert_eq!(caps.len(), 10);
        let distinct: std::collections::HashSet<_> = caps.iter().collect();
        assert_eq!(distinct.len(), 10, "{caps:#?}");
        let (age, not_age) = if a.age == "old" { (&OLD[..], &YOUNG[..]) } else { (&YOUNG[..], &OLD[..]) };
        let (mood, not_mood) = if a.expression == "smiling" { (&HAPPY[..], &SAD[..]) } else { (&SAD[..], &HAPPY[..]) };
        let gender: &[&str] =
            if a.gender == "man" { &["man", "guy", "gentleman", "he"] } else { &["woman", "lady", "she"] };
        for c in caps {
            assert!(has_word(c, age) && !has_word(c, not_age), "{a:?}: {c}");
            assert!(has_word(c, gender), "{a:?}: {c}");
            assert!(!has_word(c, not_mood), "{a:?}: {c}");
            let says_none = c.contains("no glasses") || c.contains("without glasses");
            let says_glasses = ["glasses", "spectacles", "eyeglasses"].iter().any(|w| c.contains(w));
            assert!(!says_none || !a.glasses, "{a:?}: {c}");
            assert!(!says_glasses || says_none || a.glasses, "{a:?}: {c}");
            assert!(a.beard || !c.contains("beard"), "{a:?}: {c}");
            assert!(a.hair_style == "receding" || !c.contains("receding"), "{a:?}: {c}");
            assert!(a.hair_style == "bald" || !(c.contains("bald") || c.contains("shaved")), "{a:?}: {c}");
        }
        assert!(caps.iter().filter(|c| has_word(c, mood)).count() >= 6, "{a:?}: {caps:#?}");
        let some = |words: &[&str]| caps.iter().any(|c| words.iter().any(|w| c.contains(w)));
        if a.glasses {
            assert!(some(&["glasses", "spectacles"]), "{a:?}: {caps:#?}");
        }
        if a.beard {
            assert!(some(&["beard"]), "{a:?}: {caps:#?}");
        }
        match a.hair_style {
            "receding" => assert!(some(&["receding hairline"]), "{a:?}: {caps:#?}"),
            "bald" => assert!(some(&["bald"]), "{a:?}: {caps:#?}"),
            _ => assert!(some(&[a.hair_color]), "{a:?}: {caps:#?}"),
        }
        assert!(some(&[a.background]), "{a:?}: {caps:#?}");
    }
}

#[test]
fn shape_captions_name_every_shape_and_no_other_colour() {
    let colours: Vec<&str> = synth::shape_colours().collect();
    for i in 0..300 {
        let s = synth::sample(Kind::Shapes, 5, i, 16);
        let Attrs::Shapes(a) = &s.attrs else { panic!() };
        let distinct: std::collections::HashSet<_> = s.captions.iter().collect();
        assert_eq!(distinct.len(), 10, "{:#?}", s.captions);
        for c in &s.captions {
            for sh in &a.shapes {
                assert!(has_word(c, &[sh.color]) && has_word(c, &[sh.shape]), "{a:?}: {c}");
            }
            for col in &colours {
                if has_word(c, &[col]) {
                    assert!(a.background == *col || a.shapes.iter().any(|s| s.color == *col), "{a:?}: {c}");
                }
            }
            if let [s1, s2] = a.shapes.as_slice() {
                // The first-named of "X left of Y" / "X above Y" must be the left or upper one.
                let (p1, p2) = (c.find(&format!("{} {}", s1.color, s1.shape)), c.find(&format!("{} {}", s2.color, s2.shape)));
                if let (Some(p1), Some(p2)) = (p1, p2) {
                    let between = &c[p1.min(p2)..p1.max(p2)];
                    let first_is_left = p1 < p2;
                    if between.contains("left of") || between.contains("above") {
                        assert!(first_is_left, "{a:?}: {c}");
                    }
                    if between.contains("right of") || between.contains("below") || between.contains("under") {
                        assert!(!first_is_left, "{a:?}: {c}");
                    }
                }
                assert_eq!(s1.position == "left", s2.position == "right");
            }
        }
    }
}

/// Mean RGB over a box given in image units.
fn mean(s: &synth::Sample, x0: f32, y0: f32, x1: f32, y1: f32) -> [f32; 3] {
    let n = s.size as f32;
    let (mut acc, mut k) = ([0.0f32; 3], 0.0);
    for y in (y0 * n) as usize..(y1 * n) as usize {
        for x in (x0 * n) as usize..(x1 * n) as usize {
            let p = &s.rgb[(y * s.size + x) * 3..][..3];
            for (a, v) in acc.iter_mut().zip(p) {
                *a += *v as f32;
            }
            k += 1.0;
        }
    }
    acc.map(|v| v / k)
}

fn face(f: impl FnOnce(&mut FaceAttrs)) -> synth::Sample {
    let mut a = FaceAttrs {
        gender: "man",
        age: "young",
        expression: "smiling",
        hair_color: "black",
        hair_style: "full",
        glasses: false,
        beard: false,
        skin: "light",
        background: "blue",
    };
    f(&mut a);
    synth::render(&Attrs::Faces(a), 96, 0, 0)
}

fn dist(a: [f32; 3], b: [f32; 3]) -> f32 {
    a.iter().zip(&b).map(|(x, y)| (x - y).abs()).sum()
}

#[test]
fn face_attributes_are_visible() {
    // The crown of the head: hair colour, or skin when bald.
    let crown = |s: &synth::Sample| mean(s, 0.45, 0.22, 0.55, 0.27);
    let black = crown(&face(|_| {}));
    let grey = crown(&face(|a| a.hair_color = "grey"));
    assert!(black.iter().all(|&v| v < 60.0), "black hair {black:?}");
    assert!(grey.iter().all(|&v| v > 120.0 && v < 190.0) && dist(grey, [grey[0]; 3]) < 15.0, "grey hair {grey:?}");
    let bald = crown(&face(|a| a.hair_style = "bald"));
    assert!(bald[0] > 200.0 && bald[0] > bald[2] + 20.0, "bald crown should be skin: {bald:?}");
    // Receding: bare temples where full hair is.
    let temple = |s: &synth::Sample| mean(s, 0.39, 0.25, 0.43, 0.3);
    assert!(temple(&face(|_| {}))[0] < 60.0);
    assert!(temple(&face(|a| a.hair_style = "receding"))[0] > 200.0);

    let eyes = |s: &synth::Sample| mean(s, 0.34, 0.41, 0.66, 0.5);
    let plain = eyes(&face(|_| {}));
    let specs = eyes(&face(|a| a.glasses = true));
    assert!(specs[0] < plain[0] - 15.0, "glasses should darken the eye band: {plain:?} vs {specs:?}");

    let chin = |s: &synth::Sample| mean(s, 0.42, 0.68, 0.58, 0.72);
    assert!(chin(&face(|_| {}))[0] > 200.0);
    assert!(chin(&face(|a| a.beard = true))[0] < 60.0, "a black beard should cover the chin");

    // Teeth show in a smile; a sad mouth is a thin downturned line.
    let mouth = |s: &synth::Sample| mean(s, 0.45, 0.625, 0.55, 0.645);
    let (smile, sad) = (mouth(&face(|_| {})), mouth(&face(|a| a.expression = "sad")));
    assert!(dist(smile, sad) > 60.0, "smiling {smile:?} vs sad {sad:?}");

    // Age: forehead wrinkles and eye lines on a bald head, with everything else equal.
    let forehead = |s: &synth::Sample| mean(s, 0.42, 0.3, 0.58, 0.36);
    let young = face(|a| a.hair_style = "bald");
    let old = face(|a| {
        a.hair_style = "bald";
        a.age = "old"
    });
    assert!(dist(forehead(&young), forehead(&old)) > 20.0, "{:?} vs {:?}", forehead(&young), forehead(&old));

    let woman = face(|a| a.gender = "woman");
    let shoulder = |s: &synth::Sample| mean(s, 0.27, 0.6, 0.31, 0.75);
    assert!(shoulder(&woman).iter().all(|&v| v < 60.0), "long black hair beside the neck");
    assert!(dist(shoulder(&face(|_| {})), [110.0, 155.0, 225.0]) < 30.0, "a man's background shows there");
}

fn shapes(list: Vec<Shape>, background: &'static str) -> synth::Sample {
    synth::render(&Attrs::Shapes(ShapesAttrs { background, shapes: list }), 64, 0, 0)
}

/// Fraction of pixels near `rgb`, their mean x (0..1), and the fraction of their bounding
/// box they fill (a circle π/4, an upright square 1, a star far less).
fn coverage(s: &synth::Sample, rgb: [u8; 3]) -> (f32, f32, f32) {
    let (mut k, mut sx) = (0.0, 0.0);
    let mut bb = (usize::MAX, usize::MAX, 0, 0);
    for (i, p) in s.rgb.chunks(3).enumerate() {
        if p.iter().zip(&rgb).all(|(a, b)| (*a as i32 - *b as i32).abs() < 40) {
            let (x, y) = (i % s.size, i / s.size);
            k += 1.0;
            sx += x as f32 / s.size as f32;
            bb = (bb.0.min(x), bb.1.min(y), bb.2.max(x), bb.3.max(y));
        }
    }
    let area = ((bb.2 + 1).saturating_sub(bb.0) * (bb.3 + 1).saturating_sub(bb.1)).max(1) as f32;
    (k / (s.size * s.size) as f32, if k > 0.0 { sx / k } else { 0.5 }, k / area)
}

#[test]
fn shape_attributes_are_visible() {
    let red = synth::shape_colour("red");
    let blue = synth::shape_colour("blue");
    let s = shapes(
        vec![
            Shape { shape: "circle", color: "red", size: "large", position: "left" },
            Shape { shape: "square", color: "blue", size: "small", position: "right" },
        ],
        "white",
    );
    let (r, rx, _) = coverage(&s, red);
    let (b, bx, _) = coverage(&s, blue);
    assert!(r > 0.05 && rx < 0.4, "red circle on the left: {r} at x {rx}");
    assert!(b > 0.02 && bx > 0.6, "blue square on the right: {b} at x {bx}");
    assert!(r > b * 1.5, "large red ({r}) vs small blue ({b})");

    let circle = shapes(vec![Shape { shape: "circle", color: "red", size: "large", position: "center" }], "white");
    let square = shapes(vec![Shape { shape: "square", color: "red", size: "large", position: "center" }], "white");
    let star = shapes(vec![Shape { shape: "star", color: "red", size: "large", position: "center" }], "white");
    let (c, sq, st) = (coverage(&circle, red).2, coverage(&square, red).2, coverage(&star, red).2);
    assert!(c > 0.7 && c < 0.85 && sq > 0.85 && st < 0.6, "fill of the bounding box: circle {c}, square {sq}, star {st}");
    assert!(circle.rgb != square.rgb);
    // Anti-aliased: some pixels on the circle's rim are between red and white.
    let between = circle.rgb.chunks(3).filter(|p| p[1] > 80 && p[1] < 180 && p[0] > 200).count();
    assert!(between > 10, "{between} edge pixels");
}

#[test]
fn bad_arguments_give_clear_errors() {
    let d = scratch("bad");
    let err = |r: ratlip::Result<()>| r.unwrap_err().to_string();
    assert!(err(write(Kind::Faces, 0, 64, 0, 1, &d)).contains("--count"));
    assert!(err(write(Kind::Faces, 2, 8, 0, 1, &d)).contains("--size"));
    assert!(err(write(Kind::Faces, 2, 4096, 0, 1, &d)).contains("--size"));
    // A folder below a regular file cannot be created, whoever runs the test.
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("file"), b"x").unwrap();
    let e = err(write(Kind::Shapes, 2, 16, 0, 1, &d.join("file/sub")));
    assert!(e.contains("file/sub"), "{e}");
    write(Kind::Shapes, 2, 16, 0, 1, &d.join("ok")).unwrap();
    let e = err(write(Kind::Shapes, 1, 16, 0, 1, &d.join("ok")));
    assert!(e.contains("already holds a dataset"), "{e}");
    let _ = std::fs::remove_dir_all(d);
}

fn ratlip(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_ratlip")).args(args).output().unwrap();
    (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into())
}

#[test]
fn cli_writes_a_dataset_and_rejects_bad_arguments() {
    let d = scratch("cli");
    let out = d.to_str().unwrap();
    let (code, stdout, stderr) = ratlip(&["dataset", "synth", "--kind", "faces", "--count", "5", "--size", "32", "--out", out, "--seed", "4"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("wrote 5 faces images"), "{stdout}");
    for f in ["dataset.json", "attributes.jsonl", "images/00004.png", "images/00004.txt"] {
        assert!(d.join(f).is_file(), "missing {f}");
    }
    let png = std::fs::read(d.join("images/00003.png")).unwrap();
    assert!(png == synth::encode_png(&synth::sample(Kind::Faces, 4, 3, 32)).unwrap(), "CLI and library disagree");

    let (code, _, stderr) = ratlip(&["dataset", "synth", "--kind", "faces", "--count", "5", "--out", out]);
    assert_eq!(code, 1);
    assert!(stderr.contains("already holds a dataset") && !stderr.contains("panicked"), "{stderr}");
    let (code, _, stderr) = ratlip(&["dataset", "synth", "--kind", "shapes", "--count", "0", "--out", out]);
    assert_eq!(code, 1);
    assert!(stderr.contains("--count must be at least 1"), "{stderr}");
    let (code, _, stderr) = ratlip(&["dataset", "synth", "--kind", "shapes", "--count", "2", "--size", "8", "--out", out]);
    assert_eq!(code, 1);
    assert!(stderr.contains("--size must be between 16"), "{stderr}");
    let (code, _, stderr) = ratlip(&["dataset", "synth", "--kind", "cats", "--count", "2", "--out", out]);
    assert_eq!(code, 2);
    assert!(stderr.contains("shapes") && stderr.contains("faces"), "{stderr}");
    let (code, stdout, _) = ratlip(&["dataset", "synth", "--help"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("--kind") && stdout.contains("--seed"), "{stdout}");
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn every_shape_stands_out_from_its_background() {
    for i in 0..500 {
        let Attrs::Shapes(a) = synth::sample(Kind::Shapes, 2, i, 16).attrs else { panic!() };
        let bg = synth::shape_colour(a.background);
        for s in &a.shapes {
            let c = synth::shape_colour(s.color);
            let d: i32 = c.iter().zip(&bg).map(|(x, y)| (*x as i32 - *y as i32).abs()).sum();
            assert!(d > 180, "{a:?}");
        }
    }
}

#[test]
fn face_hair_stands_out_from_its_background() {
    let clashes = [("blonde", "yellow"), ("blonde", "orange"), ("white", "white"), ("grey", "grey")];
    let mut seen = std::collections::HashSet::new();
    for i in 0..500 {
        let Attrs::Faces(a) = synth::sample(Kind::Faces, 2, i, 16).attrs else { panic!() };
        assert!(!clashes.contains(&(a.hair_color, a.background)), "{a:?}");
        seen.insert((a.gender, a.age, a.hair_style, a.glasses, a.beard));
    }
    // Every combination the generator allows turns up: 2 ages × (men: 3 styles × glasses × beard
    // = 12, women: 2) = 28.
    assert_eq!(seen.len(), 28);
}

/// FNV-1a over the pixels and captions of the first images: the same on every machine, and
/// changed only together with `GENERATOR_VERSION`.
fn fingerprint(kind: Kind) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for i in 0..6 {
        let s = synth::sample(kind, 0, i, 32);
        for b in s.rgb.iter().chain(s.captions.join("\n").as_bytes()) {
            h = (h ^ *b as u64).wrapping_mul(0x100_0000_01b3);
        }
    }
    h
}

#[test]
fn output_is_pinned_to_the_generator_version() {
    assert_eq!(synth::GENERATOR_VERSION, 2, "bump the fingerprints below with the version");
    assert_eq!(fingerprint(Kind::Shapes), 13383342849184579677, "shapes changed: bump GENERATOR_VERSION");
    assert_eq!(fingerprint(Kind::Faces), 12407467897503168698, "faces changed: bump GENERATOR_VERSION");
}
