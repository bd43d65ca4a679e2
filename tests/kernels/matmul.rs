//! Matrix products: forward against the f64 CPU reference, backward (da, db, dbias) against
//! central finite differences, batching with a shared weight, the split path for tensors
//! larger than one storage binding, and shape errors.
//!
//! Every test runs both kernels: the one this device picks (on lavapipe the subgroup kernel
//! matmul_sg8.wgsl) and the workgroup-tiled matmul.wgsl that GPUs use (forced per thread).
//!
//! Tolerances: inputs are uniform in [-1, 1), so an output is a sum of K products of size
//! ≤ 1 and f32 accumulation errs by at most ~K·2⁻²⁴ per unit of Σ|terms| ≤ K; forward uses
//! atol 1e-6·K + rtol 1e-5 (several times the typical error, far below a wrong term's).
//! Gradients: check_grad's 2e-3 of the largest gradient covers f32 sums over up to B·M
//! terms against exact f64 differences.

use ratlip::ops::matmul::{self, cpu, force_tiled_kernel_for_tests};
use ratlip::{Gpu, Tape, Tensor};

use crate::common::*;

/// Runs `f` once with the device's own kernel choice and once with the tiled kernel.
fn both_kernels(f: impl Fn(&str)) {
    force_tiled_kernel_for_tests(false);
    f("default kernel");
    force_tiled_kernel_for_tests(true);
    f("tiled kernel");
    force_tiled_kernel_for_tests(false);
}

fn atol(k: usize) -> f64 {
    1e-6 * k as f64
}

/// Stored shape of an operand: [rows, cols] of op(x), swapped when transposed.
fn stored(batch: &[usize], rows: usize, cols: usize, trans: bool) -> Vec<usize> {
    let mut s = batch.to_vec();
    s.extend(if trans { [cols, rows] } else { [rows, cols] });
    s
}

#[test]
fn forward_odd_shapes_all_transposes() {
    both_kernels(|which| {
        let mut rng = Rng::new(1);
        for (m, k, n) in [(1, 1, 1), (3, 7, 5), (13, 17, 33), (65, 63, 129), (64, 64, 128), (130, 5, 2)] {
            for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
                let (a, av) = random(&mut rng, &stored(&[], m, k, ta));
                let (b, bv) = random(&mut rng, &stored(&[], k, n, tb));
                let (bias, biasv) = random(&mut rng, &[n]);
                let with_bias = (m + k + n) % 2 == 1 || ta;
                let y = matmul::matmul(&a, &b, ta, tb, with_bias.then_some(&bias)).unwrap();
                assert_eq!(y.shape(), [m, n]);
                let bias64 = to_f64(&biasv);
                let want = cpu::matmul(&to_f64(&av), &to_f64(&bv), with_bias.then_some(&bias64[..]), 1, m, k, n, ta, tb, true);
                assert_close(&format!("{which} {m}x{k}x{n} ta {ta} tb {tb}"), &y.to_vec().unwrap(), &want, 1e-5, atol(k));
            }
        }
    });
}

#[test]
fn batched_with_shared_and_batched_weights() {
    both_kernels(|which| {
        let mut rng = Rng::new(2);
        let batch = [2, 3];
        let (m, k, n) = (9, 70, 67);
        for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
            for shared in [true, false] {
                let (a, av) = random(&mut rng, &stored(&batch, m, k, ta));
                let (b, bv) = random(&mut rng, &stored(if shared { &[] } else { &batch }, k, n, tb));
                let (bias, biasv) = random(&mut rng, &[n]);
                let y = matmul::matmul(&a, &b, ta, tb, Some(&bias)).unwrap();
                assert_eq!(y.shape(), [2, 3, m, n]);
                let bias64 = to_f64(&biasv);
                let want = cpu::matmul(&to_f64(&av), &to_f64(&bv), Some(&bias64), 6, m, k, n, ta, tb, shared);
                assert_close(&format!("{which} ta {ta} tb {tb} shared {shared}"), &y.to_vec().unwrap(), &want, 1e-5, atol(k));
            }
        }
    });
}

#[test]
fn many_batch_items_take_several_dispatches() {
    // 70000 items exceed the 65535 workgroups of one grid dimension.
    let mut rng = Rng::new(3);
    let items = 70_000;
    let (a, av) = random(&mut rng, &[items, 1, 2]);
    let (b, bv) = random(&mut rng, &[items, 2, 1]);
    let y = matmul::matmul(&a, &b, false, false, None).unwrap();
    let want = cpu::matmul(&to_f64(&av), &to_f64(&bv), None, items, 1, 2, 1, false, false, false);
    assert_close("70000 items", &y.to_vec().unwrap(), &want, 1e-5, 1e-6);
}

/// Checks (da, db, dbias) from `matmul_backward` against finite differences of
/// loss = Σ w ⊙ matmul(a, b, bias).
fn check_backward(which: &str, rng: &mut Rng, batch: &[usize], shared: bool, (m, k, n): (usize, usize, usize), ta: bool, tb: bool) {
    let items: usize = batch.iter().product();
    let (a, av) = random(rng, &stored(batch, m, k, ta));
    let (b, bv) = random(rng, &stored(if shared { &[] } else { batch }, k, n, tb));
    let biasv = rng.vec(n);
    let mut out_shape = batch.to_vec();
    out_shape.extend([m, n]);
    let w = rng.vec(items * m * n);
    let dy = upload(&out_shape, &w);
    let (da, db, dbias) = matmul::matmul_backward(&a, &b, ta, tb, &dy, [true, true, true]).unwrap();
    let (da, db, dbias) = (da.unwrap(), db.unwrap(), dbias.unwrap());
    assert_eq!(da.shape(), a.shape());
    assert_eq!(db.shape(), b.shape());
    assert_eq!(dbias.shape(), [n]);
    let (a64, b64, bias64) = (to_f64(&av), to_f64(&bv), to_f64(&biasv));
    let what = format!("{which} batch {batch:?} shared {shared} ta {ta} tb {tb}");
    let fa = |x: &[f64]| dot(&cpu::matmul(x, &b64, Some(&bias64), items, m, k, n, ta, tb, shared), &w);
    check_grad(&format!("{what}: da"), &fa, &av, &da.to_vec().unwrap(), 40, 2e-3);
    let fb = |x: &[f64]| dot(&cpu::matmul(&a64, x, Some(&bias64), items, m, k, n, ta, tb, shared), &w);
    check_grad(&format!("{what}: db"), &fb, &bv, &db.to_vec().unwrap(), 40, 2e-3);
    let fc = |x: &[f64]| dot(&cpu::matmul(&a64, &b64, Some(x), items, m, k, n, ta, tb, shared), &w);
    check_grad(&format!("{what}: dbias"), &fc, &biasv, &dbias.to_vec().unwrap(), 40, 2e-3);
}

#[test]
fn backward_matches_finite_differences() {
    both_kernels(|which| {
        let mut rng = Rng::new(4);
        for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
            check_backward(which, &mut rng, &[], true, (5, 7, 3), ta, tb);
            check_backward(which, &mut rng, &[3], true, (4, 6, 9), ta, tb);
            check_backward(which, &mut rng, &[2, 2], false, (3, 5, 4), ta, tb);
        }
        check_backward(which, &mut rng, &[2], true, (1, 1, 1), false, true);
        check_backward(which, &mut rng, &[2], true, (67, 3, 130), true, false);
    });
}

#[test]
fn backward_skips_what_is_not_needed() {
    let mut rng = Rng::new(5);
    let (a, _) = random(&mut rng, &[4, 3]);
    let (b, _) = random(&mut rng, &[3, 2]);
    let (dy, _) = random(&mut rng, &[4, 2]);
    let (da, db, dbias) = matmul::matmul_backward(&a, &b, false, false, &dy, [false, true, false]).unwrap();
    assert!(da.is_none() && db.is_some() && dbias.is_none());
}

#[test]
fn tape_matmul_and_linear() {
    both_kernels(|which| {
        let mut rng = Rng::new(6);
        // matmul on the tape: a [2, 5, 4]ᵀ-stored, b [2, 3, 4] transposed.
        let (m, k, n) = (4, 5, 3);
        let (a, av) = random(&mut rng, &[2, k, m]);
        let (b, bv) = random(&mut rng, &[2, n, k]);
        let w = rng.vec(2 * m * n);
        let tape = Tape::new(gpu());
        let (va, vb) = (tape.var(a), tape.var(b));
        let y = tape.matmul(&va, &vb, true, true).unwrap();
        assert_eq!(y.shape(), [2, m, n]);
        let grads = tape.backward_with(&y, Some(upload(&[2, m, n], &w)), &[]).unwrap();
        let (a64, b64) = (to_f64(&av), to_f64(&bv));
        let fa = |x: &[f64]| dot(&cpu::matmul(x, &b64, None, 2, m, k, n, true, true, false), &w);
        check_grad(&format!("{which} tape.matmul da"), &fa, &av, &grads.get(&va).unwrap().to_vec().unwrap(), 40, 2e-3);
        let fb = |x: &[f64]| dot(&cpu::matmul(&a64, x, None, 2, m, k, n, true, true, false), &w);
        check_grad(&format!("{which} tape.matmul db"), &fb, &bv, &grads.get(&vb).unwrap().to_vec().unwrap(), 40, 2e-3);

        // linear: x [2, 3, in=6] · w[out=5, in]ᵀ + b, as nn.Linear.
        let (fin, fout) = (6, 5);
        let (x, xv) = random(&mut rng, &[2, 3, fin]);
        let (wt, wv) = random(&mut rng, &[fout, fin]);
        let (bias, biasv) = random(&mut rng, &[fout]);
        let seed = rng.vec(6 * fout);
        let tape = Tape::new(gpu());
        let (vx, vw, vbias) = (tape.var(x), tape.var(wt), tape.var(bias));
        let y = tape.linear(&vx, &vw, Some(&vbias)).unwrap();
        assert_eq!(y.shape(), [2, 3, fout]);
        let (x64, w64, b64) = (to_f64(&xv), to_f64(&wv), to_f64(&biasv));
        let want = cpu::matmul(&x64, &w64, Some(&b64), 1, 6, fin, fout, false, true, true);
        assert_close(&format!("{which} linear"), &y.value().to_vec().unwrap(), &want, 1e-5, atol(fin));
        let grads = tape.backward_with(&y, Some(upload(&[2, 3, fout], &seed)), &[]).unwrap();
        let f = |x: &[f64], w: &[f64], b: &[f64]| dot(&cpu::matmul(x, w, Some(b), 1, 6, fin, fout, false, true, true), &seed);
        check_grad(&format!("{which} linear dx"), &|x| f(x, &w64, &b64), &xv, &grads.get(&vx).unwrap().to_vec().unwrap(), 40, 2e-3);
        check_grad(&format!("{which} linear dw"), &|w| f(&x64, w, &b64), &wv, &grads.get(&vw).unwrap().to_vec().unwrap(), 40, 2e-3);
        check_grad(&format!("{which} linear db"), &|b| f(&x64, &w64, b), &biasv, &grads.get(&vbias).unwrap().to_vec().unwrap(), 40, 2e-3);
    });
}

#[test]
fn linear_on_a_vector_and_without_bias() {
    let mut rng = Rng::new(7);
    let (x, xv) = random(&mut rng, &[4]);
    let (w, wv) = random(&mut rng, &[3, 4]);
    let tape = Tape::new(gpu());
    let (vx, vw) = (tape.var(x), tape.constant(w));
    let y = tape.linear(&vx, &vw, None).unwrap();
    assert_eq!(y.shape(), [3]);
    let want = cpu::matmul(&to_f64(&xv), &to_f64(&wv), None, 1, 1, 4, 3, false, true, true);
    assert_close("linear vector", &y.value().to_vec().unwrap(), &want, 1e-5, 1e-6);
    let grads = tape.backward(&y).unwrap();
    assert!(grads.get(&vw).is_none(), "a constant weight gets no gradient");
    // d/dx Σ_o (W x)_o = Σ_o W[o, :]
    let want: Vec<f64> = (0..4).map(|i| (0..3).map(|o| wv[o * 4 + i] as f64).sum()).collect();
    assert_close("linear vector dx", &grads.get(&vx).unwrap().to_vec().unwrap(), &want, 1e-5, 1e-6);
}

/// Every forward and backward path on a device that pretends to bind at most 4 KiB, against
/// the same computation on the shared device (no splits).
#[test]
fn split_path_matches_unsplit() {
    let g = Gpu::new(&Default::default()).unwrap();
    g.set_binding_limit_for_tests(4096);
    both_kernels(|which| {
        let mut rng = Rng::new(8);
        // Items of 768 B (a), 3072 B (b) and 1024 B (y): six of them exceed 4 KiB, and so do
        // the rows of the folded [48, K] views.
        let (m, k, n) = (8, 24, 32);
        for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
            for shared in [true, false] {
                let batch = [6];
                let av = rng.vec(6 * m * k);
                let bv = rng.vec(if shared { k * n } else { 6 * k * n });
                let biasv = rng.vec(n);
                let dyv = rng.vec(6 * m * n);
                let a_shape = stored(&batch, m, k, ta);
                let b_shape = stored(if shared { &[] } else { &batch }, k, n, tb);
                let run = |dev: &Gpu| -> Vec<Vec<f32>> {
                    let t = |s: &[usize], v: &[f32]| Tensor::from_slice(dev, s, v).unwrap();
                    let (a, b, bias, dy) = (t(&a_shape, &av), t(&b_shape, &bv), t(&[n], &biasv), t(&[6, m, n], &dyv));
                    let y = matmul::matmul(&a, &b, ta, tb, Some(&bias)).unwrap();
                    let (da, db, dbias) = matmul::matmul_backward(&a, &b, ta, tb, &dy, [true, true, true]).unwrap();
                    [y, da.unwrap(), db.unwrap(), dbias.unwrap()].iter().map(|t| t.to_vec().unwrap()).collect()
                };
                let (split, whole) = (run(&g), run(gpu()));
                for (name, (s, w)) in ["y", "da", "db", "dbias"].iter().zip(split.iter().zip(&whole)) {
                    // Split sums add in another order: compare within f32 rounding.
                    let w64 = to_f64(w);
                    assert_close(&format!("{which} split {name} ta {ta} tb {tb} shared {shared}"), s, &w64, 1e-5, 1e-5);
                }
            }
        }
    });
}

#[test]
fn unsplittable_operands_report_binding_too_large() {
    let g = Gpu::new(&Default::default()).unwrap();
    g.set_binding_limit_for_tests(4096);
    // A shared weight of 8 KiB cannot be split along the batch.
    let a = Tensor::zeros(&g, &[4, 2, 32]).unwrap();
    let b = Tensor::zeros(&g, &[32, 64]).unwrap();
    let e = matmul::matmul(&a, &b, false, false, None).unwrap_err();
    assert!(matches!(e, ratlip::Error::BindingTooLarge { .. }), "{e}");
}

#[test]
fn shape_errors_name_the_op_and_shapes() {
    let t = |s: &[usize]| Tensor::zeros(gpu(), s).unwrap();
    let err = |r: ratlip::Result<Tensor>| r.unwrap_err().to_string();
    let e = err(matmul::matmul(&t(&[3, 4]), &t(&[5, 6]), false, false, None));
    assert!(e.contains("matmul") && e.contains("[3, 4]") && e.contains("[5, 6]") && e.contains("inner"), "{e}");
    // Transposes change which dims must agree: [4, 3]ᵀ · [4, 6] is fine.
    assert!(matmul::matmul(&t(&[4, 3]), &t(&[4, 6]), true, false, None).is_ok());
    let e = err(matmul::matmul(&t(&[2, 3, 4]), &t(&[3, 4, 5]), false, false, None));
    assert!(e.contains("batch") && e.contains("[2, 3, 4]") && e.contains("[3, 4, 5]"), "{e}");
    let e = err(matmul::matmul(&t(&[4]), &t(&[4, 5]), false, false, None));
    assert!(e.contains("at least 2 dims") && e.contains("[4]"), "{e}");
    let e = err(matmul::matmul(&t(&[3, 4]), &t(&[4, 5]), false, false, Some(&t(&[4]))));
    assert!(e.contains("bias") && e.contains("[4]"), "{e}");
    let e = err(matmul::matmul(&t(&[0, 4]), &t(&[4, 5]), false, false, None));
    assert!(e.contains("empty"), "{e}");
    let e = matmul::matmul_backward(&t(&[3, 4]), &t(&[4, 5]), false, false, &t(&[3, 4]), [true; 3]).unwrap_err().to_string();
    assert!(e.contains("matmul_backward") && e.contains("dy [3, 4]") && e.contains("[3, 5]"), "{e}");
    let tape = Tape::new(gpu());
    let (x, w) = (tape.var(t(&[2, 3])), tape.var(t(&[4, 5])));
    let e = tape.linear(&x, &w, None).unwrap_err().to_string();
    assert!(e.contains("linear") && e.contains("[2, 3]") && e.contains("[4, 5]"), "{e}");
}
