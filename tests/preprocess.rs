//! CLIP preprocessing: the released code's double rescale (on the tape, differentiable) and
//! the standard scoring transform against PIL (tools/reference/preprocess_reference.py).

use std::path::Path;

use ratlip::clip::preprocess::{self, MEAN, STD};
use ratlip::weights::WeightFile;
use ratlip::{Gpu, GpuOptions, Tape, Tensor};

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/preprocess").join(name)
}

/// PIL and the image crate both resample in fixed point and round to u8, with slightly
/// different filter tables: pixels may differ by a couple of levels. 3/255 in pixel units
/// (≈ 0.045 after dividing by CLIP's std ≈ 0.26), and the mean difference must be far
/// smaller (< 0.5/255), so a systematic error (wrong crop, wrong channel order) cannot pass.
#[test]
fn scoring_transform_matches_pil() {
    let mut want = WeightFile::load(&fixture("expected.safetensors")).unwrap();
    for name in ["landscape", "portrait"] {
        let got = preprocess::for_scoring(&fixture(&format!("{name}.png")), 32).unwrap();
        let w = want.take(name, &[3, 32, 32]).unwrap();
        assert_eq!(got.shape, w.shape);
        let mut max = 0f32;
        let mut sum = 0f32;
        for (i, (g, e)) in got.data.iter().zip(&w.data).enumerate() {
            let d = (g - e).abs() * STD[i / (32 * 32)];
            max = max.max(d);
            sum += d;
        }
        let mean = sum / got.data.len() as f32;
        println!("{name}: max |Δ| {:.2}/255, mean {:.3}/255", max * 255.0, mean * 255.0);
        assert!(max <= 3.0 / 255.0 + 1e-6, "{name}: max pixel difference {}/255", max * 255.0);
        assert!(mean <= 0.5 / 255.0, "{name}: mean pixel difference {}/255", mean * 255.0);
    }
}

#[test]
fn released_preprocessing_is_the_double_rescale_with_nearest_resize() {
    let g = Gpu::new(&GpuOptions::default()).unwrap();
    let (b, h, size) = (2, 5, 8);
    let x: Vec<f32> = (0..b * 3 * h * h).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect();
    let tape = Tape::new(&g);
    let xv = tape.var(Tensor::from_slice(&g, &[b, 3, h, h], &x).unwrap());
    let y = preprocess::released(&tape, &xv, size).unwrap();
    let got = y.value().to_vec().unwrap();
    for bi in 0..b {
        for c in 0..3 {
            for oy in 0..size {
                for ox in 0..size {
                    let (sy, sx) = (oy * h / size, ox * h / size);
                    let v = x[((bi * 3 + c) * h + sy) * h + sx] * 0.5 + 0.5;
                    let want = ((v + 1.0) * 0.5 - MEAN[c]) / STD[c];
                    let i = ((bi * 3 + c) * size + oy) * size + ox;
                    assert!((got[i] - want).abs() < 1e-5, "({bi},{c},{oy},{ox}): {} vs {want}", got[i]);
                }
            }
        }
    }
    // The gradient reaches the generator's pixels: d/dx Σ y = (#readers)·0.25/std per pixel.
    let grads = tape.backward(&y).unwrap();
    let gx = grads.get(&xv).unwrap().to_vec().unwrap();
    let total: f32 = gx.iter().sum();
    let want: f32 = (0..3).map(|c| (b * size * size) as f32 * 0.25 / STD[c]).sum();
    assert!((total - want).abs() < 1e-3 * want, "{total} vs {want}");
}
