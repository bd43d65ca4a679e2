//! The auxiliary attribute head of `train-clip --attribute-w` (src/train/attribute_head.rs):
//! its loss against a plain CPU reference in f64, and its gradients (for W and for the image
//! embeddings) against central differences of that reference, on odd sizes with rows that
//! lack an attribute. Tolerances: loss 1e-5 relative (f32 sums of a few dozen terms);
//! gradients 2e-3 of the largest (f32 forward, f64 differences with h = 1e-3: the truncation
//! error is O(h²) ≈ 1e-6, the rest is f32 rounding of the normalisation and the softmax).

use ratlip::autograd::Tape;
use ratlip::train::attribute_head::{head_loss, Spans, HEAD_SCALE};
use ratlip::{Gpu, GpuOptions, Tensor};

fn gpu() -> Gpu {
    Gpu::new(&GpuOptions::default()).expect("attribute head tests need a GPU adapter (lavapipe is enough)")
}

/// A small deterministic generator: the tests need fixed values, not good randomness.
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 33) as f64 / (1u64 << 31) as f64 * 2.0 - 1.0) as f32
        })
        .collect()
}

/// The head's loss in f64: mean over attributes (those some row has) of the mean over the
/// rows that have it of −log softmax(SCALE · norm(img) · W[:, span])[label].
fn reference(img: &[f64], w: &[f64], b: usize, e: usize, spans: &Spans, labels: &[Vec<Option<u32>>]) -> f64 {
    let c = spans.columns();
    let mut total = 0.0;
    let mut terms = 0;
    for (a, (_, start, k)) in spans.spans.iter().enumerate() {
        let rows: Vec<usize> = (0..b).filter(|&i| labels[i][a].is_some()).collect();
        if rows.is_empty() {
            continue;
        }
        let mut sum = 0.0;
        for &i in &rows {
            let x = &img[i * e..(i + 1) * e];
            let norm = x.iter().map(|v| v * v).sum::<f64>().sqrt();
            let logits: Vec<f64> = (0..*k).map(|j| HEAD_SCALE as f64 * (0..e).map(|d| x[d] / norm * w[d * c + start + j]).sum::<f64>()).collect();
            let m = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + logits.iter().map(|l| (l - m).exp()).sum::<f64>().ln();
            sum += lse - logits[labels[i][a].unwrap() as usize];
        }
        total += sum / rows.len() as f64;
        terms += 1;
    }
    total / terms as f64
}

#[test]
fn loss_and_gradients_match_the_reference() {
    let g = gpu();
    let (b, e) = (7, 5);
    let spans = Spans::new(&[("two".into(), vec!["a".into(), "b".into()]), ("three".into(), vec!["x".into(), "y".into(), "z".into()]), ("absent".into(), vec!["p".into(), "q".into()])]);
    let c = spans.columns();
    // Row 2 lacks "three"; nobody has "absent" (left out of the mean, no gradient from it).
    let labels: Vec<Vec<Option<u32>>> = (0..b).map(|i| vec![Some((i % 2) as u32), if i == 2 { None } else { Some((i % 3) as u32) }, None]).collect();
    let img: Vec<f32> = values(b * e, 1);
    let w: Vec<f32> = values(e * c, 2).iter().map(|v| v * 0.5).collect();

    let tape = Tape::new(&g);
    let img_v = tape.var(Tensor::from_slice(&g, &[b, e], &img).unwrap());
    let w_v = tape.var(Tensor::from_slice(&g, &[e, c], &w).unwrap());
    let out = head_loss(&tape, &img_v, &w_v, &spans, &labels).unwrap();
    let loss = out.loss.value().to_vec().unwrap()[0] as f64;
    let grads = tape.backward(&out.loss).unwrap();
    let g_img = grads.get(&img_v).unwrap().to_vec().unwrap();
    let g_w = grads.get(&w_v).unwrap().to_vec().unwrap();

    let (img64, w64): (Vec<f64>, Vec<f64>) = (img.iter().map(|&v| v as f64).collect(), w.iter().map(|&v| v as f64).collect());
    let want = reference(&img64, &w64, b, e, &spans, &labels);
    assert!((loss - want).abs() <= 1e-5 * want.abs(), "loss {loss} vs reference {want}");

    let h = 1e-3;
    let central = |f: &dyn Fn(&[f64]) -> f64, x: &[f64]| -> Vec<f64> {
        (0..x.len())
            .map(|i| {
                let (mut p, mut m) = (x.to_vec(), x.to_vec());
                p[i] += h;
                m[i] -= h;
                (f(&p) - f(&m)) / (2.0 * h)
            })
            .collect()
    };
    let want_w = central(&|w: &[f64]| reference(&img64, w, b, e, &spans, &labels), &w64);
    let want_img = central(&|x: &[f64]| reference(x, &w64, b, e, &spans, &labels), &img64);
    for (name, got, want) in [("W", &g_w, &want_w), ("image embeddings", &g_img, &want_img)] {
        let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
        assert!(scale > 1e-3, "{name}: the reference gradient is all but zero, the check would prove nothing");
        for (i, (a, b)) in got.iter().zip(want.iter()).enumerate() {
            assert!((*a as f64 - b).abs() <= 2e-3 * scale, "{name}[{i}]: {a} vs finite differences {b} (largest {scale})");
        }
    }
    // The columns of an attribute no row has get no gradient.
    for d in 0..e {
        assert_eq!(&g_w[d * c + 5..d * c + 7], &[0.0, 0.0], "W's \"absent\" columns moved");
    }
}

/// W = 0 gives every class the same logit, so the loss is the mean of ln(classes), and the
/// accuracy counts class 0 (the first of equal logits) as the prediction.
#[test]
fn a_zero_head_scores_the_mean_log_class_count() {
    let g = gpu();
    let spans = Spans::new(&[("two".into(), vec!["a".into(), "b".into()]), ("eight".into(), (0..8).map(|i| i.to_string()).collect())]);
    let labels: Vec<Vec<Option<u32>>> = vec![vec![Some(0), Some(3)], vec![Some(1), Some(0)], vec![Some(0), None]];
    let tape = Tape::new(&g);
    let img = tape.var(Tensor::from_slice(&g, &[3, 4], &values(12, 3)).unwrap());
    let w = tape.var(Tensor::from_slice(&g, &[4, 10], &[0.0; 40]).unwrap());
    let out = head_loss(&tape, &img, &w, &spans, &labels).unwrap();
    let loss = out.loss.value().to_vec().unwrap()[0] as f64;
    let want = (2f64.ln() + 8f64.ln()) / 2.0;
    assert!((loss - want).abs() < 1e-5, "{loss} vs {want}");
    // Right: rows 0 and 2 of "two" (class 0), row 1 of "eight"; 3 of 5 labelled pairs.
    assert!((out.accuracy - 0.6).abs() < 1e-6, "accuracy {}", out.accuracy);
    assert_eq!(out.by_attribute, vec![("two".to_string(), 2.0 / 3.0), ("eight".to_string(), 0.5)]);
}

#[test]
fn shapes_are_checked() {
    let g = gpu();
    let spans = Spans::new(&[("two".into(), vec!["a".into(), "b".into()])]);
    let tape = Tape::new(&g);
    let img = tape.var(Tensor::from_slice(&g, &[2, 4], &values(8, 4)).unwrap());
    let w = tape.var(Tensor::from_slice(&g, &[4, 3], &[0.0; 12]).unwrap());
    let e = head_loss(&tape, &img, &w, &spans, &[vec![Some(0)], vec![Some(1)]]).err().expect("W has 3 columns for 2 classes").to_string();
    assert!(e.contains("attribute head") && e.contains("[4, 3]"), "{e}");
    let w = tape.var(Tensor::from_slice(&g, &[4, 2], &[0.0; 8]).unwrap());
    let e = head_loss(&tape, &img, &w, &spans, &[vec![None], vec![None]]).err().expect("no labels at all").to_string();
    assert!(e.contains("no image of the batch has a label"), "{e}");
}
