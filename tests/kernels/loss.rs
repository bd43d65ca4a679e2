//! exp, L2 row normalisation and row cross-entropy (CLIP's contrastive loss). Tolerance:
//! exp/log/sqrt in f32 on the GPU against f64 on the CPU, 1e-5 relative + 1e-6 absolute as
//! for the activations; backward against central differences of the f64 references at 1e-4
//! of the largest gradient.

use ratlip::ops::loss::{self, cpu};
use ratlip::Tape;

use crate::common::*;

#[test]
fn exp_forward_and_gradient() {
    let mut rng = Rng::new(41);
    for n in [1, 63, 65, 1000] {
        let v: Vec<f32> = rng.vec(n).iter().map(|x| x * 4.0).collect();
        let y = loss::exp(&upload(&[n], &v)).unwrap().to_vec().unwrap();
        let want: Vec<f64> = v.iter().map(|&x| (x as f64).exp()).collect();
        assert_close(&format!("exp n={n}"), &y, &want, 1e-5, 1e-6);
    }
    let n = 29;
    let v = rng.vec(n);
    let w = rng.vec(n);
    let tape = Tape::new(gpu());
    let x = tape.var(upload(&[n], &v));
    let y = tape.exp(&x).unwrap();
    let g = tape.backward_with(&y, Some(upload(&[n], &w)), &[]).unwrap().get(&x).unwrap().to_vec().unwrap();
    let f = |x: &[f64]| dot(&x.iter().map(|v| v.exp()).collect::<Vec<_>>(), &w);
    check_grad("exp", &f, &v, &g, 64, 1e-4);
}

#[test]
fn l2_normalize_forward_and_gradient() {
    let mut rng = Rng::new(42);
    for (n, d) in [(1, 2), (5, 7), (33, 130), (70, 3)] {
        let (x, v) = random(&mut rng, &[n, d]);
        let y = loss::l2_normalize(&x).unwrap().to_vec().unwrap();
        assert_close(&format!("l2_normalize {n}x{d}"), &y, &cpu::l2_normalize(&to_f64(&v), d), 1e-5, 1e-6);
        let w = rng.vec(n * d);
        let tape = Tape::new(gpu());
        let xv = tape.var(x);
        let y = tape.l2_normalize(&xv).unwrap();
        let g = tape.backward_with(&y, Some(upload(&[n, d], &w)), &[]).unwrap().get(&xv).unwrap().to_vec().unwrap();
        let f = |x: &[f64]| dot(&cpu::l2_normalize(x, d), &w);
        check_grad(&format!("l2_normalize {n}x{d}"), &f, &v, &g, 64, 1e-4);
    }
    // A zero row stays zero (divided by eps) instead of becoming NaN.
    let y = loss::l2_normalize(&upload(&[2, 3], &[0.0, 0.0, 0.0, 3.0, 0.0, 4.0])).unwrap().to_vec().unwrap();
    assert_eq!(y, vec![0.0, 0.0, 0.0, 0.6, 0.0, 0.8]);
}

#[test]
fn cross_entropy_forward_and_gradient() {
    let mut rng = Rng::new(43);
    for (n, c) in [(1, 1), (4, 4), (9, 17), (65, 65)] {
        // Logits up to ±30 (CLIP's scale reaches 100 × a cosine): logsumexp must not overflow.
        let v: Vec<f32> = rng.vec(n * c).iter().map(|x| x * 30.0).collect();
        let t: Vec<u32> = (0..n).map(|i| ((i * 7 + 3) % c) as u32).collect();
        let targets = loss::targets_tensor(gpu(), &t, c).unwrap();
        let y = loss::cross_entropy(&upload(&[n, c], &v), &targets).unwrap().to_vec().unwrap();
        assert_close(&format!("cross_entropy {n}x{c}"), &y, &cpu::cross_entropy(&to_f64(&v), c, &t), 1e-5, 1e-5);

        let v: Vec<f32> = rng.vec(n * c).iter().map(|x| x * 3.0).collect();
        let w = rng.vec(n);
        let tape = Tape::new(gpu());
        let x = tape.var(upload(&[n, c], &v));
        let y = tape.cross_entropy(&x, &targets).unwrap();
        let g = tape.backward_with(&y, Some(upload(&[n], &w)), &[]).unwrap().get(&x).unwrap().to_vec().unwrap();
        let f = |x: &[f64]| dot(&cpu::cross_entropy(x, c, &t), &w);
        check_grad(&format!("cross_entropy {n}x{c}"), &f, &v, &g, 64, 1e-4);
    }
}

#[test]
fn cross_entropy_rejects_bad_targets_and_shapes() {
    let e = loss::targets_tensor(gpu(), &[0, 5], 5).unwrap_err().to_string();
    assert!(e.contains("target 5 of row 1") && e.contains("5 classes"), "{e}");
    let t = loss::targets_tensor(gpu(), &[0, 1, 2], 4).unwrap();
    let e = loss::cross_entropy(&upload(&[2, 4], &[0.0; 8]), &t).unwrap_err().to_string();
    assert!(e.contains("cross_entropy") && e.contains("2 rows"), "{e}");
    let e = loss::l2_normalize(&upload(&[8], &[0.0; 8])).unwrap_err().to_string();
    assert!(e.contains("l2_normalize"), "{e}");
}
