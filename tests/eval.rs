//! The evaluation's parts that need no model: the Fréchet distance against closed forms,
//! and the faces detectors against the renderer's own ground truth.

use ratlip::data::synth::{self, Attrs, Kind};
use ratlip::eval::faces;
use ratlip::eval::frechet::{frechet_distance, sqrt_psd, Gaussian};
use ratlip::rng::Rng;

fn gaussian(mean: Vec<f64>, cov: Vec<f64>) -> Gaussian {
    Gaussian { n: 100, mean, cov }
}

/// Closed forms: identical Gaussians → 0; equal covariances → ‖Δμ‖²; commuting (diagonal)
/// covariances → Σ(√a − √b)²; and the result does not depend on the basis (a rotation of
/// both). Tolerance 1e-9 relative: f64 Jacobi on 3–40 dimensions.
#[test]
fn frechet_distance_matches_closed_forms() {
    let d = 40;
    let mut rng = Rng::new(5);
    // A random SPD matrix A = B Bᵀ + I.
    let b: Vec<f64> = rng.normals(d * d).iter().map(|&x| x as f64).collect();
    let mut a = vec![0f64; d * d];
    for i in 0..d {
        for j in 0..d {
            a[i * d + j] = (0..d).map(|k| b[i * d + k] * b[j * d + k]).sum::<f64>() + if i == j { 1.0 } else { 0.0 };
        }
    }
    let mean: Vec<f64> = rng.normals(d).iter().map(|&x| x as f64).collect();
    let g = gaussian(mean.clone(), a.clone());
    let fd0 = frechet_distance(&g, &g).unwrap();
    let tr: f64 = (0..d).map(|i| a[i * d + i]).sum();
    assert!(fd0.abs() < 1e-9 * tr, "FD(x, x) = {fd0}");

    let shifted = gaussian(mean.iter().map(|m| m + 0.5).collect(), a.clone());
    let fd = frechet_distance(&g, &shifted).unwrap();
    assert!((fd - 0.25 * d as f64).abs() < 1e-9 * tr, "equal covariances: {fd} vs {}", 0.25 * d as f64);

    let da = [1.0, 4.0, 9.0];
    let db = [4.0, 1.0, 0.25];
    let diag = |v: &[f64]| {
        let mut m = vec![0f64; 9];
        (0..3).for_each(|i| m[i * 4] = v[i]);
        m
    };
    let want: f64 = da.iter().zip(&db).map(|(x, y): (&f64, &f64)| (x.sqrt() - y.sqrt()).powi(2)).sum();
    let got = frechet_distance(&gaussian(vec![0.0; 3], diag(&da)), &gaussian(vec![0.0; 3], diag(&db))).unwrap();
    assert!((got - want).abs() < 1e-9, "diagonal: {got} vs {want}");

    // sqrt_psd really is a square root.
    let s = sqrt_psd(&a, d);
    let worst = (0..d * d).map(|ij| ((0..d).map(|k| s[ij / d * d + k] * s[k * d + ij % d]).sum::<f64>() - a[ij]).abs()).fold(0.0, f64::max);
    assert!(worst < 1e-9 * tr, "sqrt_psd² − A = {worst}");

    // Fit: the sample covariance of 4 points (numpy's n − 1 convention).
    let g = Gaussian::fit(&[vec![0.0, 0.0], vec![2.0, 0.0], vec![0.0, 2.0], vec![2.0, 2.0]]).unwrap();
    assert_eq!(g.mean, vec![1.0, 1.0]);
    assert!((g.cov[0] - 4.0 / 3.0).abs() < 1e-12 && g.cov[1].abs() < 1e-12);
    assert!(Gaussian::fit(&[vec![1.0]]).is_err(), "one sample has no covariance");
}

/// The detectors on the renderer's own faces: what they read must be the truth, at the
/// training sizes (24 px: a cap of hair is ~1 pixel tall) and larger.
#[test]
fn face_detectors_read_the_renderers_truth() {
    for size in [24usize, 32, 64] {
        let n = 300;
        let (mut bg, mut skin, mut hair, mut hair_n, mut bald) = (0, 0, 0, 0, 0);
        for i in 0..n {
            let s = synth::sample(Kind::Faces, 11, i, size);
            let Attrs::Faces(a) = &s.attrs else { unreachable!() };
            let d = faces::detect(&s.rgb, size);
            bg += (d.background == a.background) as usize;
            skin += (d.skin == a.skin) as usize;
            if a.hair_style == "bald" {
                bald += d.hair_color.is_none() as usize;
            } else {
                hair_n += 1;
                hair += (d.hair_color == Some(a.hair_color)) as usize;
            }
        }
        let pct = |k: usize, n: usize| 100.0 * k as f64 / n.max(1) as f64;
        println!("{size} px: background {:.1}%, skin {:.1}%, hair colour {:.1}% of {hair_n}, bald read as no hair {bald}", pct(bg, n as usize), pct(skin, n as usize), pct(hair, hair_n));
        assert!(pct(bg, n as usize) >= 98.0, "{size} px background");
        assert!(pct(skin, n as usize) >= 95.0, "{size} px skin");
        assert!(pct(hair, hair_n) >= 90.0, "{size} px hair colour");
    }
}

/// The lipstick count on the renderer's mood twins (the same face, smiling and sad, every
/// jitter equal): a smiling woman mostly has more lipstick pixels than her sad twin, though
/// the row of teeth covers part of the open mouth (measured at 32 px, the 147 women of 300
/// faces of seed 11: more in 93, 3.79 against 2.48 on average); men, whose lips are mixed
/// with their skin, and everything else the renderer paints read 0.
#[test]
fn lipstick_pixels_tell_a_smiling_woman_from_her_sad_twin() {
    let size = 32;
    let (mut women, mut more, mut smile_sum, mut sad_sum) = (0, 0, 0, 0);
    for i in 0..300 {
        let s = synth::sample(Kind::Faces, 11, i, size);
        let Attrs::Faces(a) = &s.attrs else { unreachable!() };
        let twin = ratlip::train::twins::render_twin(a, ratlip::train::hard_negatives::Flip::Mood, size, 11, i);
        let (smiling, sad) = if a.expression == "smiling" { (&s.rgb, &twin) } else { (&twin, &s.rgb) };
        let (k_smile, k_sad) = (faces::lipstick_pixels(smiling, size), faces::lipstick_pixels(sad, size));
        if a.gender == "man" {
            assert_eq!((k_smile, k_sad), (0, 0), "face {i}: a man's lipstick pixels");
            continue;
        }
        women += 1;
        more += (k_smile > k_sad) as usize;
        smile_sum += k_smile;
        sad_sum += k_sad;
    }
    println!("{women} women: smiling has more lipstick pixels in {more}; mean {:.2} against {:.2}", smile_sum as f64 / women as f64, sad_sum as f64 / women as f64);
    assert!(women >= 100 && 2 * more > women, "smiling has more in only {more} of {women}");
    assert!(10 * smile_sum >= 13 * sad_sum, "lipstick pixels, smiling {smile_sum} against sad {sad_sum}");
}

/// Every evaluation caption states each attribute it is scored on.
#[test]
fn evaluation_captions_state_the_scored_attributes() {
    for i in 0..50 {
        let Attrs::Faces(a) = Attrs::draw(Kind::Faces, 3, i) else { unreachable!() };
        let c = faces::caption(&a);
        for attr in faces::attributes() {
            if let Some(t) = faces::truth(&a, attr.name) {
                assert!(c.contains(t), "{c:?} does not state {} = {t}", attr.name);
            }
        }
    }
}

/// The contrast pairs are the renderer's exact twins: the caption names the attribute, its
/// contrast reverses it, and the two pictures differ only where the mouth and brows or the
/// frames are drawn. The pixel judge gives the twins 1, the twins swapped 0 (share −1) and
/// one image twice 0.5 (share 0); the CLIP judge gives one image twice 0.5 and the twins
/// swapped 1 − the twins.
#[test]
fn contrast_pairs_are_twins_and_the_judges_score_them() {
    use ratlip::eval::contrast::{self, pairs, pixel_follows};
    use ratlip::train::hard_negatives::{flippable, Flip};
    let gpu = ratlip::Gpu::new(&Default::default()).unwrap();
    let clip = ratlip::model::Model::init(&gpu, ratlip::model::ModelConfig::tiny(ratlip::model::Arch::Galip), None, 0, false).unwrap().clip;
    for flip in contrast::FLIPS {
        let ps = pairs(flip, 9, 32);
        assert_eq!(ps.len(), 9);
        for p in &ps {
            assert!(flippable(&p.caption).contains(&flip) && p.caption != p.contrast, "{} / {}", p.caption, p.contrast);
            let differ: Vec<usize> = (0..32 * 32).filter(|&i| p.real[0].data[3 * i..3 * i + 3] != p.real[1].data[3 * i..3 * i + 3]).collect();
            // Rows 0..32: the mouth and brows, or the frames, lie in the middle of the face.
            assert!(!differ.is_empty() && differ.len() < 200, "{} pixels differ", differ.len());
            assert!(differ.iter().all(|&i| (8..28).contains(&(i / 32))), "{:?}: a change outside the face", flip);
        }
        // Glasses: "wearing" ↔ "no"/"without"; mood: a mood word swapped.
        if flip == Flip::Glasses {
            assert!(ps.iter().any(|p| p.caption.contains("wearing")) && ps.iter().any(|p| p.contrast.contains("wearing")));
        }
        let twins: Vec<_> = ps.iter().map(|p| p.real.clone()).collect();
        let swapped: Vec<_> = ps.iter().map(|p| [p.real[1].clone(), p.real[0].clone()]).collect();
        let same: Vec<_> = ps.iter().map(|p| [p.real[0].clone(), p.real[0].clone()]).collect();
        let (f, share) = pixel_follows(&ps, &twins).unwrap();
        assert!(f == 1.0 && (share - 1.0).abs() < 1e-12, "{f} {share}");
        let (f, share) = pixel_follows(&ps, &swapped).unwrap();
        assert!(f == 0.0 && (share + 1.0).abs() < 1e-12, "{f} {share}");
        assert_eq!(pixel_follows(&ps, &same).unwrap(), (0.5, 0.0));
        assert_eq!(contrast::follows(&clip, &ps, &same).unwrap(), 0.5);
        let a = contrast::follows(&clip, &ps, &twins).unwrap();
        let b = contrast::follows(&clip, &ps, &swapped).unwrap();
        assert!((a + b - 1.0).abs() < 1e-12, "twins {a}, swapped {b}");
    }
}

fn faces_dir(name: &str, count: usize) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ratlip-eval-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let opts = synth::Options { kind: Kind::Faces, count, size: 24, seed: 99, out: dir.clone(), threads: 2 };
    synth::write_dataset(&opts, &|_| {}).unwrap();
    dir
}

/// The whole measurement on a tiny random model: real images scored as if generated give FD
/// 0 and the real column's numbers exactly; the detectors read the real faces; the report
/// files are written; `ratlip eval` runs end to end.
#[test]
fn evaluation_of_real_images_is_the_ceiling_and_the_cli_writes_a_report() {
    use ratlip::eval::{self, Options};
    use ratlip::model::{Arch, Model, ModelConfig};
    let gpu = ratlip::Gpu::new(&Default::default()).unwrap();
    let model = Model::init(&gpu, ModelConfig::tiny(Arch::Ratlip), None, 0, false).unwrap();
    let dir = faces_dir("lib", 12);
    let examples = eval::load_faces(&dir, 12).unwrap();
    assert_eq!(examples.len(), 12);
    let opts = Options { count: 12, seed: 1, batch: 5, r_candidates: 100 };
    let reals: Vec<_> = examples.iter().map(|e| e.real.clone()).collect();
    let sc = eval::evaluate(&model.clip, &examples, &reals, None, &opts).unwrap();
    let (fd, fd_halves, as_gen, real) = (sc.fd, sc.fd_real_halves, sc.generated, sc.real);
    assert!(fd.abs() < 1e-6, "FD(real, real) = {fd}");
    assert!(fd_halves.is_finite() && fd_halves > 0.0);
    // Reference statistics: saved and read back, FD against them is FD against the real set
    // (f32 storage: 1e-4 relative).
    let stats_path = dir.join("stats.safetensors");
    eval::save_stats(&stats_path, &sc.real_stats, &[("evaluator", "tiny".into())]).unwrap();
    let (back, meta) = eval::load_stats(&stats_path).unwrap();
    assert_eq!((back.n, meta["evaluator"].as_str()), (12, "tiny"));
    assert_eq!((as_gen.clip_score, as_gen.r_precision), (real.clip_score, real.r_precision));
    assert_eq!(as_gen.zero_shot, real.zero_shot);
    for (attr, acc) in &real.detected {
        assert!(*acc >= 0.9, "detector {attr} on real faces: {acc}");
    }

    let generated = eval::generate(&model, &examples, &opts, &|_, _| {}).unwrap();
    assert_eq!(generated.len(), 12);
    assert_eq!((generated[0].width, generated[0].height), (24, 24));
    // Image i does not depend on the batch size.
    let one = eval::generate(&model, &examples[..1], &Options { batch: 1, ..opts }, &|_, _| {}).unwrap();
    assert_eq!(one[0], generated[0]);
    let sc = eval::evaluate(&model.clip, &examples, &generated, None, &opts).unwrap();
    assert!(sc.fd.is_finite() && sc.fd > 0.0 && sc.generated.clip_score.is_finite());
    // Variety: one group per prompt (the first 16 at most), one image per seed.
    let groups = eval::generate_variety(&model, &examples, &opts).unwrap();
    assert_eq!((groups.len(), groups[0].len()), (12, eval::VARIETY_SEEDS));
    let v = eval::variety(&model.clip, &groups).unwrap();
    println!("variety of a random tiny G: {v:?}");
    assert!(v.pixel_l1 > 0.0 && v.feature_distance > 0.0, "a random G's noise changes its images: {v:?}");
    // Identical images have none; images one constant byte step k apart have exactly k·2/255.
    let same = eval::variety(&model.clip, &[vec![reals[0].clone(); 3]]).unwrap();
    assert_eq!(same.pixel_l1, 0.0);
    assert!(same.feature_distance.abs() < 1e-6, "{}", same.feature_distance);
    let mut lifted = reals[0].clone();
    lifted.data.iter_mut().for_each(|b| *b = (*b).min(200));
    let mut up = lifted.clone();
    up.data.iter_mut().for_each(|b| *b += 10);
    let apart = eval::variety(&model.clip, &[vec![lifted, up]]).unwrap();
    assert!((apart.pixel_l1 - 20.0 / 255.0).abs() < 1e-12, "{}", apart.pixel_l1);
    let against = eval::evaluate(&model.clip, &examples, &generated, Some(&back), &opts).unwrap();
    assert!((against.fd - sc.fd).abs() <= 1e-4 * sc.fd, "FD against the saved statistics {} vs {}", against.fd, sc.fd);
    assert!(eval::load_stats(&dir.join("m.missing")).is_err());

    // The CLI: a model file, an evaluator, a report folder.
    let model_path = dir.join("m.safetensors");
    model.save(&model_path).unwrap();
    assert!(eval::load_stats(&model_path).unwrap_err().to_string().contains("not a ratlip eval statistics file"));
    let out = dir.join("report");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_ratlip"))
        .args(["eval", "--model", model_path.to_str().unwrap(), "--data", dir.to_str().unwrap(), "--evaluator", model_path.to_str().unwrap(), "--count", "8", "--batch", "4", "--out", out.to_str().unwrap()])
        .args(["--contrast-pairs", "20"])
        .output()
        .unwrap();
    assert!(o.status.success(), "ratlip eval failed: {}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["count"], 8);
    assert!(report["fd"].as_f64().unwrap().is_finite());
    assert_eq!((report["variety"]["prompts"].as_u64(), report["variety"]["seeds"].as_u64()), (Some(8), Some(eval::VARIETY_SEEDS as u64)));
    assert!(report["variety"]["pixel_l1"].as_f64().unwrap() > 0.0);
    // "Asked for, then not": every attribute, its pairs, judged by the evaluator by default.
    assert_eq!(report["judge"], model_path.to_str().unwrap());
    let contrast = report["contrast"].as_array().unwrap();
    assert_eq!(contrast.iter().map(|c| c["attribute"].as_str().unwrap()).collect::<Vec<_>>(), ["mood", "glasses"]);
    assert!(contrast.iter().all(|c| c["pairs"] == 20 && (0.0..=1.0).contains(&c["generated"].as_f64().unwrap())));
    assert!(std::fs::read_to_string(out.join("report.md")).unwrap().contains("| FD"));
    let text = ratlip::images::png_text(&out.join("samples.png")).unwrap();
    assert!(text.iter().any(|(k, v)| k == "prompts" && v.starts_with("portrait of")), "{text:?}");
    // --write-stats, then --reference-stats with it: the report says what FD was taken against.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_ratlip"))
        .args(["eval", "--model", model_path.to_str().unwrap(), "--data", dir.to_str().unwrap(), "--evaluator", model_path.to_str().unwrap(), "--count", "8", "--out", out.to_str().unwrap()])
        .args(["--reference-stats", stats_path.to_str().unwrap(), "--contrast-pairs", "0"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::read_to_string(out.join("report.md")).unwrap().contains("against `"));
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["contrast"].as_array().map(Vec::len), Some(0), "--contrast-pairs 0 skips it");
    // Any captioned folder: prompts from its captions, no attribute scores.
    let shapes = std::env::temp_dir().join(format!("ratlip-eval-shapes-{}", std::process::id()));
    synth::write_dataset(&synth::Options { kind: Kind::Shapes, count: 6, size: 24, seed: 1, out: shapes.clone(), threads: 2 }, &|_| {}).unwrap();
    let ex = eval::load_examples(&shapes, 6).unwrap();
    assert!(ex.iter().all(|e| e.attrs.is_none() && !e.prompt.is_empty()));
    let m = eval::evaluate(&model.clip, &ex, &ex.iter().map(|e| e.real.clone()).collect::<Vec<_>>(), None, &opts).unwrap();
    assert!(m.generated.zero_shot.is_empty() && m.generated.detected.is_empty() && m.fd.abs() < 1e-6);
    let _ = std::fs::remove_dir_all(&shapes);
    // Not a captioned folder: a clear error.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_ratlip"))
        .args(["eval", "--model", model_path.to_str().unwrap(), "--data", out.to_str().unwrap(), "--evaluator", model_path.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("reading"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
