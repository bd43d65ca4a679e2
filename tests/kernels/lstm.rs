//! LSTM cell. Tolerances: a few exp/div per element in f32 against f64: 1e-5 relative +
//! 1e-6 absolute forward; gradients (products of four such factors) within 1e-4 of the
//! largest one against central differences of the f64 reference.

use ratlip::ops::lstm::{self, cpu};
use ratlip::{Gpu, GpuOptions, Tape, Tensor, Var};

use crate::common::*;

/// Pre-activations spread over [-3, 3] so that the gates are not all near 0.5.
fn gates(rng: &mut Rng, n: usize) -> Vec<f32> {
    rng.vec(n).iter().map(|x| 3.0 * x).collect()
}

#[test]
fn lstm_cell_forward_matches_cpu() {
    let mut rng = Rng::new(61);
    for &(b, h) in &[(1, 1), (3, 7), (2, 64), (5, 13)] {
        let gv = gates(&mut rng, b * 4 * h);
        let cv = rng.vec(b * h);
        let (ht, ct) = lstm::lstm_cell(&upload(&[b, 4 * h], &gv), &upload(&[b, h], &cv)).unwrap();
        let (hw, cw) = cpu::lstm_cell(&to_f64(&gv), &to_f64(&cv), h);
        assert_close(&format!("h B{b} H{h}"), &ht.to_vec().unwrap(), &hw, 1e-5, 1e-6);
        assert_close(&format!("c B{b} H{h}"), &ct.to_vec().unwrap(), &cw, 1e-5, 1e-6);
    }
}

/// Gradients through both outputs: loss = Σ w_h ⊙ h + Σ w_c ⊙ c, w.r.t. gates and c_prev.
#[test]
fn lstm_cell_backward_matches_finite_differences() {
    let mut rng = Rng::new(62);
    for &(b, h) in &[(1, 1), (3, 7), (2, 13)] {
        let gv = gates(&mut rng, b * 4 * h);
        let cv = rng.vec(b * h);
        let (wh, wc) = (rng.vec(b * h), rng.vec(b * h));
        let (dg, dc) =
            lstm::lstm_cell_backward(&upload(&[b, 4 * h], &gv), &upload(&[b, h], &cv), &upload(&[b, h], &wh), &upload(&[b, h], &wc))
                .unwrap();
        let loss = |g: &[f64], c: &[f64]| {
            let (hh, cc) = cpu::lstm_cell(g, c, h);
            dot(&hh, &wh) + dot(&cc, &wc)
        };
        let (g64, c64) = (to_f64(&gv), to_f64(&cv));
        check_grad(&format!("dgates B{b} H{h}"), &|g| loss(g, &c64), &gv, &dg.to_vec().unwrap(), 64, 1e-4);
        check_grad(&format!("dc_prev B{b} H{h}"), &|c| loss(&g64, c), &cv, &dc.to_vec().unwrap(), 64, 1e-4);
    }
}

/// On the tape with only h used downstream: c's gradient is absent and counts as zero.
#[test]
fn lstm_cell_tape_with_unused_c() {
    let mut rng = Rng::new(63);
    let (b, h) = (2, 5);
    let gv = gates(&mut rng, b * 4 * h);
    let cv = rng.vec(b * h);
    let w = rng.vec(b * h);
    let tape = Tape::new(gpu());
    let g = tape.var(upload(&[b, 4 * h], &gv));
    let c0 = tape.var(upload(&[b, h], &cv));
    let (hv, _c) = tape.lstm_cell(&g, &c0).unwrap();
    let grads = tape.backward_with(&hv, Some(upload(&[b, h], &w)), &[]).unwrap();
    let loss = |g: &[f64], c: &[f64]| dot(&cpu::lstm_cell(g, c, h).0, &w);
    let (g64, c64) = (to_f64(&gv), to_f64(&cv));
    check_grad("dgates", &|x| loss(x, &c64), &gv, &grads.get(&g).unwrap().to_vec().unwrap(), 64, 1e-4);
    check_grad("dc_prev", &|x| loss(&g64, x), &cv, &grads.get(&c0).unwrap().to_vec().unwrap(), 64, 1e-4);
}

/// Three steps chained through c, gates supplied as vars. The loss reads every h, and c
/// after step 1 twice (the next step and the loss), while the last c goes unused:
///   loss = Σ_t w_t ⊙ h_t + u ⊙ c_1.
#[test]
fn lstm_unrolled_three_steps_on_the_tape() {
    let mut rng = Rng::new(64);
    let (b, h, steps) = (2, 6, 3);
    let gv: Vec<Vec<f32>> = (0..steps).map(|_| gates(&mut rng, b * 4 * h)).collect();
    let c0v = rng.vec(b * h);
    let wv: Vec<Vec<f32>> = (0..steps).map(|_| rng.vec(b * h)).collect();
    let uv = rng.vec(b * h);

    let tape = Tape::new(gpu());
    let gvars: Vec<Var> = gv.iter().map(|g| tape.var(upload(&[b, 4 * h], g))).collect();
    let c0 = tape.var(upload(&[b, h], &c0v));
    let mut c = c0.clone();
    let mut loss: Option<Var> = None;
    for t in 0..steps {
        let (ht, ct) = tape.lstm_cell(&gvars[t], &c).unwrap();
        let mut term = tape.mul(&ht, &tape.constant(upload(&[b, h], &wv[t]))).unwrap();
        if t == 0 {
            let extra = tape.mul(&ct, &tape.constant(upload(&[b, h], &uv))).unwrap();
            term = tape.add(&term, &extra).unwrap();
        }
        loss = Some(match loss {
            None => term,
            Some(l) => tape.add(&l, &term).unwrap(),
        });
        c = ct;
    }
    let root = loss.unwrap();
    let grads = tape.backward(&root).unwrap();

    // The same computation in f64, with one of the inputs replaced.
    let reference = |which: usize, x: &[f64]| -> f64 {
        let mut c = if which == steps { x.to_vec() } else { to_f64(&c0v) };
        let mut total = 0.0;
        for t in 0..steps {
            let g = if which == t { x.to_vec() } else { to_f64(&gv[t]) };
            let (hh, cc) = cpu::lstm_cell(&g, &c, h);
            total += dot(&hh, &wv[t]);
            if t == 0 {
                total += dot(&cc, &uv);
            }
            c = cc;
        }
        total
    };
    for t in 0..steps {
        let got = grads.get(&gvars[t]).unwrap().to_vec().unwrap();
        check_grad(&format!("dgates step {t}"), &|x| reference(t, x), &gv[t], &got, 48, 1e-4);
    }
    let got = grads.get(&c0).unwrap().to_vec().unwrap();
    check_grad("dc0", &|x| reference(steps, x), &c0v, &got, 48, 1e-4);
}

#[test]
fn lstm_cell_splits_a_large_batch_and_checks_shapes() {
    let (b, h) = (21, 8);
    let mut rng = Rng::new(65);
    let (gv, cv, dh, dc) = (gates(&mut rng, b * 4 * h), rng.vec(b * h), rng.vec(b * h), rng.vec(b * h));
    let run = |g: &Gpu| -> Vec<Vec<f32>> {
        let up = |s: &[usize], d: &[f32]| Tensor::from_slice(g, s, d).unwrap();
        let (gt, ct) = (up(&[b, 4 * h], &gv), up(&[b, h], &cv));
        let (ho, co) = lstm::lstm_cell(&gt, &ct).unwrap();
        let (dg, dcp) = lstm::lstm_cell_backward(&gt, &ct, &up(&[b, h], &dh), &up(&[b, h], &dc)).unwrap();
        [ho, co, dg, dcp].iter().map(|x| x.to_vec().unwrap()).collect()
    };
    let whole = run(gpu());
    let g = Gpu::new(&GpuOptions::default()).unwrap();
    // 128 bytes of gates per sample: 1024 bytes hold 8 samples, so 3 chunks.
    g.set_binding_limit_for_tests(1024);
    let before = g.stats().dispatches;
    let split = run(&g);
    assert_eq!(g.stats().dispatches - before, 6);
    assert_eq!(whole, split);

    let e = lstm::lstm_cell(&upload(&[2, 12], &[0.0; 24]), &upload(&[2, 4], &[0.0; 8])).unwrap_err().to_string();
    assert!(e.contains("lstm_cell") && e.contains("[2, 12]") && e.contains("[2, 4]"), "{e}");
}
