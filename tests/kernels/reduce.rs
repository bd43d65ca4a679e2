//! Broadcasting arithmetic, reductions, Adam.
//!
//! Tolerances (against f64 CPU references fed the same f32 inputs):
//! - broadcast ops: one f32 rounding per element (WGSL division is within 2.5 ulp):
//!   1e-6 relative + 1e-7 absolute. Expand is a copy: exact.
//! - small reductions (≤ 702 terms of [-1, 1] data): each term passes through ≤ ~40 f32
//!   additions (a lane's serial run plus the tree), so the rounding error is
//!   ≤ 40·6e-8·Σ|x| in the worst case and ~√40·6e-8·|Σ|-ish in practice; 1e-5 relative +
//!   1e-5 absolute is well above the latter for sums of these sizes.
//! - long reductions: a term passes through ≤ 128 serial adds in its lane, a 256-wide tree
//!   (8 levels) and one more pass of the same kind over the chunk partials, so the
//!   worst-case error is ~(128 + 8 + 20)·6e-8·Σ|x| ≈ 1e-5·Σ|x|: that bound is asserted
//!   (with positive data, Σx = Σ|x|, a 1e-5 relative check). Measured: ~1e-8.
//! - gradients: central differences of the f64 reference (exact to ~1e-9; every function
//!   here is at most quadratic per coordinate, division aside with divisors ≥ 0.5) vs the
//!   GPU's f32 backward: 1e-4 of the largest gradient.
//! - Adam: m, v and the step are a handful of f32 roundings per step; parameters of order 1
//!   move by ≤ lr per step, so after 6 steps they differ from f64 by ≤ ~6 roundings of 1.0:
//!   2e-6 absolute + 1e-6 relative (m and v: 1e-6 relative + 1e-7 absolute).
//! - split paths (private device with 4096-byte bindings): elementwise work and Adam are
//!   bit-identical to the unsplit run; reductions add in another order, 1e-5 relative.

use ratlip::ops::reduce::{self, cpu, AdamParams, BinaryOp};
use ratlip::{Gpu, Tape, Tensor};

use crate::common::*;

const OPS: [BinaryOp; 4] = [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div];

/// Every broadcasting pattern we rely on, plus odd sizes and size-1 dims.
const PAIRS: &[(&[usize], &[usize])] = &[
    (&[7], &[7]),                               // same shape
    (&[3, 5], &[]),                             // scalar (0-d)
    (&[1], &[13, 7]),                           // scalar as [1]
    (&[13, 7], &[7]),                           // row
    (&[13, 1], &[13, 7]),                       // column
    (&[2, 3, 1, 1], &[2, 3, 5, 7]),             // per-channel affine gamma ⊙ x
    (&[2, 3, 5, 7], &[1, 3, 1, 1]),             // per-channel bias
    (&[2, 1, 5, 1], &[1, 3, 1, 7]),             // both sides broadcast
    (&[4, 1, 3], &[5, 1]),                      // rank differs, both broadcast
    (&[2, 1, 3, 1, 2, 1], &[1, 2, 1, 3, 1, 2]), // 6-D, alternating
    (&[1, 1], &[1]),                            // everything size 1
];

/// Random operand values; divisors are kept away from zero.
fn operand(rng: &mut Rng, shape: &[usize], divisor: bool) -> Vec<f32> {
    let n: usize = shape.iter().product();
    rng.vec(n).into_iter().map(|x| if divisor { x.signum() * (0.5 + x.abs()) } else { x }).collect()
}

fn numel(s: &[usize]) -> usize {
    s.iter().product()
}

#[test]
fn broadcast_forward_matches_cpu_for_every_pattern() {
    let mut rng = Rng::new(11);
    for &(sa, sb) in PAIRS {
        for op in OPS {
            let av = operand(&mut rng, sa, false);
            let bv = operand(&mut rng, sb, op == BinaryOp::Div);
            let y = reduce::broadcast_binary(&upload(sa, &av), &upload(sb, &bv), op).unwrap();
            assert_eq!(y.shape(), cpu::broadcast_shape(sa, sb).unwrap().as_slice());
            let want = cpu::broadcast_binary(&to_f64(&av), sa, &to_f64(&bv), sb, op);
            assert_close(&format!("{op:?} {sa:?} {sb:?}"), &y.to_vec().unwrap(), &want, 1e-6, 1e-7);
        }
    }
}

#[test]
fn broadcast_backward_matches_finite_differences() {
    let mut rng = Rng::new(12);
    for &(sa, sb) in PAIRS {
        for op in OPS {
            let av = operand(&mut rng, sa, false);
            let bv = operand(&mut rng, sb, op == BinaryOp::Div);
            let out = cpu::broadcast_shape(sa, sb).unwrap();
            let w = rng.vec(numel(&out));
            let tape = Tape::new(gpu());
            let a = tape.var(upload(sa, &av));
            let b = tape.var(upload(sb, &bv));
            let y = tape.broadcast_binary(&a, &b, op).unwrap();
            let grads = tape.backward_with(&y, Some(upload(&out, &w)), &[]).unwrap();
            let ga = grads.get(&a).unwrap();
            let gb = grads.get(&b).unwrap();
            assert_eq!((ga.shape(), gb.shape()), (sa, sb));
            let (a64, b64) = (to_f64(&av), to_f64(&bv));
            let what = format!("{op:?} {sa:?} {sb:?}");
            check_grad(&format!("{what} d/da"), &|x| dot(&cpu::broadcast_binary(x, sa, &b64, sb, op), &w), &av, &ga.to_vec().unwrap(), 64, 1e-4);
            check_grad(&format!("{what} d/db"), &|x| dot(&cpu::broadcast_binary(&a64, sa, x, sb, op), &w), &bv, &gb.to_vec().unwrap(), 64, 1e-4);
        }
    }
}

#[test]
fn gradient_only_for_the_operand_that_needs_it() {
    let mut rng = Rng::new(13);
    let (x, xv) = random(&mut rng, &[2, 3, 5, 7]);
    let (gamma, _) = random(&mut rng, &[2, 3, 1, 1]);
    let tape = Tape::new(gpu());
    let vx = tape.constant(x);
    let vg = tape.var(gamma);
    let y = tape.mul_b(&vg, &vx).unwrap();
    let grads = tape.backward(&y).unwrap();
    assert!(grads.get(&vx).is_none());
    // d/dgamma Σ gamma ⊙ x = Σ_hw x.
    let want = cpu::sum(&to_f64(&xv), &[2, 3, 5, 7], &[2, 3]);
    assert_close("dgamma", &grads.get(&vg).unwrap().to_vec().unwrap(), &want, 1e-5, 1e-5);
}

#[test]
fn convenience_ops_compose_an_affine() {
    // Affine(x) = gamma ⊙ x + beta, per channel, and (x - mu) / sigma: the model's uses.
    let mut rng = Rng::new(14);
    let (x, xv) = random(&mut rng, &[2, 4, 3, 5]);
    let (gamma, gv) = random(&mut rng, &[2, 4, 1, 1]);
    let (beta, _) = random(&mut rng, &[2, 4, 1, 1]);
    let sigma: Vec<f32> = (0..4).map(|i| 0.5 + i as f32).collect();
    let tape = Tape::new(gpu());
    let (vx, vg, vb) = (tape.var(x), tape.var(gamma), tape.var(beta));
    let vs = tape.constant(upload(&[4, 1, 1], &sigma));
    let h = tape.mul_b(&vg, &vx).unwrap();
    let h = tape.add_b(&h, &vb).unwrap();
    let h = tape.sub_b(&h, &vb).unwrap();
    let y = tape.div_b(&h, &vs).unwrap();
    let want: Vec<f64> = (0..xv.len())
        .map(|i| {
            let bc = i / 15;
            gv[bc] as f64 * xv[i] as f64 / sigma[bc % 4] as f64
        })
        .collect();
    assert_close("affine", &y.value().to_vec().unwrap(), &want, 1e-5, 1e-6);
    let grads = tape.backward(&y).unwrap();
    // beta was added and subtracted: its gradient cancels.
    assert_close("dbeta", &grads.get(&vb).unwrap().to_vec().unwrap(), &[0.0; 8], 0.0, 1e-6);
}

#[test]
fn expand_forward_and_backward() {
    let mut rng = Rng::new(15);
    let cases: &[(&[usize], &[usize])] = &[
        (&[2, 5, 1, 1], &[2, 5, 7, 7]),
        (&[3], &[4, 1, 3]),
        (&[1, 7], &[13, 7]),
        (&[], &[3, 2]),
        (&[2, 1, 3], &[2, 5, 3]),
        (&[4, 3], &[4, 3]),
    ];
    for &(xs, ys) in cases {
        let (x, xv) = random(&mut rng, xs);
        let y = reduce::expand(&x, ys).unwrap();
        assert_eq!(y.shape(), ys);
        assert!(!y.shares_buffer(&x), "expand writes a fresh tensor");
        assert_close(&format!("expand {xs:?}→{ys:?}"), &y.to_vec().unwrap(), &cpu::expand(&to_f64(&xv), xs, ys), 0.0, 0.0);

        let w = rng.vec(numel(ys));
        let tape = Tape::new(gpu());
        let vx = tape.var(x);
        let vy = tape.expand(&vx, ys).unwrap();
        let grads = tape.backward_with(&vy, Some(upload(ys, &w)), &[]).unwrap();
        let g = grads.get(&vx).unwrap().to_vec().unwrap();
        check_grad(&format!("expand {xs:?}→{ys:?}"), &|x| dot(&cpu::expand(x, xs, ys), &w), &xv, &g, 64, 1e-4);
    }
    let e = reduce::expand(&upload(&[3], &[1.0; 3]), &[2, 4]).unwrap_err().to_string();
    assert!(e.contains("expand") && e.contains("[3]") && e.contains("[2, 4]"), "{e}");
}

/// Every subset of the axes of a 4-D tensor (with a size-1 dim and odd sizes), both
/// keepdim settings, sum and mean.
#[test]
fn sum_and_mean_over_every_axis_subset() {
    let mut rng = Rng::new(16);
    for shape in [[3usize, 5, 1, 7], [2, 13, 3, 9]] {
        let (x, xv) = random(&mut rng, &shape);
        let x64 = to_f64(&xv);
        for bits in 0..16u32 {
            let axes: Vec<usize> = (0..4).filter(|d| bits & (1 << d) != 0).collect();
            for keepdim in [false, true] {
                let want_shape: Vec<usize> = (0..4)
                    .filter_map(|d| if !axes.contains(&d) { Some(shape[d]) } else if keepdim { Some(1) } else { None })
                    .collect();
                let s = reduce::sum(&x, &axes, keepdim).unwrap();
                let m = reduce::mean(&x, &axes, keepdim).unwrap();
                assert_eq!(s.shape(), want_shape.as_slice(), "sum {shape:?} {axes:?} {keepdim}");
                assert_eq!(m.shape(), want_shape.as_slice(), "mean {shape:?} {axes:?} {keepdim}");
                let what = format!("{shape:?} axes {axes:?} keepdim {keepdim}");
                assert_close(&format!("sum {what}"), &s.to_vec().unwrap(), &cpu::sum(&x64, &shape, &axes), 1e-5, 1e-5);
                assert_close(&format!("mean {what}"), &m.to_vec().unwrap(), &cpu::mean(&x64, &shape, &axes), 1e-5, 1e-6);
            }
        }
    }
}

#[test]
fn sum_and_mean_backward_match_finite_differences() {
    let mut rng = Rng::new(17);
    let shape = [3usize, 4, 1, 5];
    let (x, xv) = random(&mut rng, &shape);
    for axes in [vec![], vec![0], vec![1, 3], vec![0, 2, 3], vec![0, 1, 2, 3]] {
        for keepdim in [false, true] {
            for mean in [false, true] {
                let tape = Tape::new(gpu());
                let vx = tape.var(x.clone());
                let y = if mean { tape.mean(&vx, &axes, keepdim) } else { tape.sum(&vx, &axes, keepdim) }.unwrap();
                let w = rng.vec(y.value().numel());
                let wt = upload(y.shape(), &w);
                let grads = tape.backward_with(&y, Some(wt), &[]).unwrap();
                let g = grads.get(&vx).unwrap().to_vec().unwrap();
                let f = |x: &[f64]| dot(&if mean { cpu::mean(x, &shape, &axes) } else { cpu::sum(x, &shape, &axes) }, &w);
                check_grad(&format!("mean {mean} axes {axes:?} keepdim {keepdim}"), &f, &xv, &g, 64, 1e-4);
            }
        }
    }
}

#[test]
fn sum_to_shape_and_its_gradient() {
    let mut rng = Rng::new(18);
    let cases: &[(&[usize], &[usize])] = &[
        (&[2, 3, 5, 7], &[2, 3, 1, 1]),
        (&[2, 3, 5, 7], &[3, 1, 1]),
        (&[2, 3, 5, 7], &[1, 3, 1, 7]),
        (&[2, 3, 5, 7], &[]),
        (&[13, 7], &[7]),
        (&[13, 7], &[13, 1]),
        (&[13, 7], &[13, 7]),
        (&[4, 1, 3], &[1, 1]),
    ];
    for &(xs, ts) in cases {
        let (x, xv) = random(&mut rng, xs);
        let y = reduce::sum_to_shape(&x, ts).unwrap();
        assert_eq!(y.shape(), ts);
        assert_close(&format!("sum_to_shape {xs:?}→{ts:?}"), &y.to_vec().unwrap(), &cpu::sum_to_shape(&to_f64(&xv), xs, ts), 1e-5, 1e-5);

        let w = rng.vec(numel(ts));
        let tape = Tape::new(gpu());
        let vx = tape.var(x);
        let vy = tape.sum_to_shape(&vx, ts).unwrap();
        let grads = tape.backward_with(&vy, Some(upload(ts, &w)), &[]).unwrap();
        let g = grads.get(&vx).unwrap().to_vec().unwrap();
        check_grad(&format!("sum_to_shape {xs:?}→{ts:?}"), &|x| dot(&cpu::sum_to_shape(x, xs, ts), &w), &xv, &g, 64, 1e-4);
    }
    let e = reduce::sum_to_shape(&upload(&[2, 3], &[0.0; 6]), &[2, 1, 1]).unwrap_err().to_string();
    assert!(e.contains("sum_to_shape") && e.contains("[2, 1, 1]") && e.contains("[2, 3]"), "{e}");
}

#[test]
fn mean_pool_forward_and_backward() {
    let mut rng = Rng::new(19);
    for shape in [[2usize, 3, 7, 7], [1, 5, 13, 1], [3, 2, 1, 1], [2, 4, 17, 19]] {
        let (x, xv) = random(&mut rng, &shape);
        let y = reduce::mean_pool(&x).unwrap();
        assert_eq!(y.shape(), &shape[..2]);
        assert_close(&format!("mean_pool {shape:?}"), &y.to_vec().unwrap(), &cpu::mean_pool(&to_f64(&xv), &shape), 1e-5, 1e-6);

        let w = rng.vec(shape[0] * shape[1]);
        let tape = Tape::new(gpu());
        let vx = tape.var(x);
        let vy = tape.mean_pool(&vx).unwrap();
        let grads = tape.backward_with(&vy, Some(upload(&shape[..2], &w)), &[]).unwrap();
        let g = grads.get(&vx).unwrap().to_vec().unwrap();
        check_grad(&format!("mean_pool {shape:?}"), &|x| dot(&cpu::mean_pool(x, &shape), &w), &xv, &g, 64, 1e-4);
    }
    let e = reduce::mean_pool(&upload(&[2, 3], &[0.0; 6])).unwrap_err().to_string();
    assert!(e.contains("mean_pool") && e.contains("[2, 3]"), "{e}");
}

/// Long reductions against the f64 sum: one output from 1,000,003 elements (row mode with
/// chunk partials), and long reductions over an outer axis (column mode) and over two
/// separated axes.
#[test]
fn long_reductions_match_f64() {
    let mut rng = Rng::new(20);
    let n = 1_000_003;
    // Positive data: Σx = Σ|x|, so the bound is a relative one.
    let v: Vec<f32> = rng.vec(n).iter().map(|x| 0.5 * (x + 1.0)).collect();
    let s = reduce::sum(&upload(&[n], &v), &[0], false).unwrap().to_vec().unwrap();
    let want: f64 = to_f64(&v).iter().sum();
    let err = (s[0] as f64 - want).abs() / want;
    eprintln!("sum of {n} positive values: relative error {err:.2e}");
    assert!(err < 1e-5, "sum {} vs {want} (relative error {err:.2e})", s[0]);

    // Mixed signs: error bounded by 1e-5·Σ|x|.
    let v = rng.vec(n);
    let x = upload(&[n], &v);
    let abs: f64 = v.iter().map(|x| x.abs() as f64).sum();
    let s = reduce::sum(&x, &[0], true).unwrap().to_vec().unwrap();
    let want: f64 = to_f64(&v).iter().sum();
    eprintln!("sum of {n} signed values: error {:.2e} of Σ|x|", (s[0] as f64 - want).abs() / abs);
    assert_close("signed long sum", &s, &[want], 0.0, 1e-5 * abs);

    // [100003, 3] over axis 0 (column mode, 3 outputs) and [3, 100003] over axis 1.
    for (shape, axes) in [(vec![100_003, 3], vec![0]), (vec![3, 100_003], vec![1]), (vec![7, 3, 43_001], vec![0, 2])] {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = rng.vec(n).iter().map(|x| 0.5 * (x + 1.0)).collect();
        let y = reduce::sum(&upload(&shape, &v), &axes, false).unwrap().to_vec().unwrap();
        assert_close(&format!("sum {shape:?} over {axes:?}"), &y, &cpu::sum(&to_f64(&v), &shape, &axes), 1e-5, 0.0);
    }
}

#[test]
fn adam_matches_cpu_over_several_steps() {
    let mut rng = Rng::new(21);
    let n = 1031;
    let settings = [
        AdamParams { lr: 1e-4, beta1: 0.0, beta2: 0.9, eps: 1e-8 },
        AdamParams { lr: 4e-4, beta1: 0.0, beta2: 0.9, eps: 1e-8 },
        AdamParams { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8 },
    ];
    for p in settings {
        let p0 = rng.vec(n);
        let param = upload(&[n], &p0);
        let (m, v) = (Tensor::zeros(gpu(), &[n]).unwrap(), Tensor::zeros(gpu(), &[n]).unwrap());
        let mut cp = to_f64(&p0);
        let (mut cm, mut cv) = (vec![0.0; n], vec![0.0; n]);
        for step in 1..=6 {
            // Some gradients tiny or zero so that eps matters.
            let gv: Vec<f32> = rng.vec(n).iter().enumerate().map(|(i, g)| if i % 97 == 0 { 0.0 } else if i % 89 == 0 { g * 1e-7 } else { *g }).collect();
            reduce::adam_step(&param, &upload(&[n], &gv), &m, &v, &p, step).unwrap();
            cpu::adam_step(&mut cp, &to_f64(&gv), &mut cm, &mut cv, &p, step);
        }
        assert_close(&format!("adam m {p:?}"), &m.to_vec().unwrap(), &cm, 1e-6, 1e-7);
        assert_close(&format!("adam v {p:?}"), &v.to_vec().unwrap(), &cv, 1e-6, 1e-7);
        assert_close(&format!("adam param {p:?}"), &param.to_vec().unwrap(), &cp, 1e-6, 2e-6);
        // The parameters really moved (by about lr per step).
        let moved = param.to_vec().unwrap().iter().zip(&p0).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(moved > 3.0 * p.lr, "{p:?}: moved at most {moved}");
    }
    let p = settings[0];
    let t = upload(&[3], &[0.0; 3]);
    let e = reduce::adam_step(&t, &upload(&[4], &[0.0; 4]), &t, &t, &p, 1).unwrap_err().to_string();
    assert!(e.contains("adam_step") && e.contains("[3]") && e.contains("[4]"), "{e}");
    assert!(reduce::adam_step(&t, &t, &t, &t, &p, 0).is_err(), "step 0 has no bias correction");
}

#[test]
fn bad_shapes_are_errors_naming_the_op() {
    let a = upload(&[2, 3], &[1.0; 6]);
    let b = upload(&[4], &[1.0; 4]);
    let e = reduce::broadcast_binary(&a, &b, BinaryOp::Mul).unwrap_err().to_string();
    assert!(e.contains("broadcast_binary") && e.contains("[2, 3]") && e.contains("[4]"), "{e}");
    let e = reduce::sum(&a, &[2], false).unwrap_err().to_string();
    assert!(e.contains("sum") && e.contains("[2, 3]"), "{e}");
    let e = reduce::mean(&a, &[1, 1], false).unwrap_err().to_string();
    assert!(e.contains("mean") && e.contains("repeated"), "{e}");
    let e = reduce::mean(&upload(&[0, 3], &[]), &[0], false).unwrap_err().to_string();
    assert!(e.contains("mean") && e.contains("zero"), "{e}");
    // Seven index dims even after merging: more than the kernel indexes.
    let (a7, b7) = ([2usize, 1, 2, 1, 2, 1, 2], [1usize, 2, 1, 2, 1, 2, 1]);
    let e = reduce::broadcast_binary(&upload(&a7, &[1.0; 16]), &upload(&b7, &[1.0; 8]), BinaryOp::Add).unwrap_err().to_string();
    assert!(e.contains("broadcast_binary") && e.contains("at most 6"), "{e}");
    // Sums over empty axes are zeros, as in PyTorch.
    assert_eq!(reduce::sum(&upload(&[0, 3], &[]), &[0], false).unwrap().to_vec().unwrap(), vec![0.0; 3]);
}

/// The split paths, on a private device that pretends bindings hold 4096 bytes: results
/// equal the unsplit ones on the shared device (bit for bit for elementwise work and Adam;
/// reductions add in another order, so to the reduction tolerance).
#[test]
fn splitting_over_small_bindings_matches_unsplit() {
    let g = Gpu::new(&Default::default()).unwrap();
    g.set_binding_limit_for_tests(4096);
    let mut rng = Rng::new(22);
    let on = |gpu: &Gpu, shape: &[usize], v: &[f32]| Tensor::from_slice(gpu, shape, v).unwrap();

    // Broadcast ops: split along the collapsed first dim; operands broadcast along it are
    // bound whole.
    let bcast: &[(&[usize], &[usize])] = &[(&[6, 5, 37, 11], &[6, 5, 1, 1]), (&[1, 300], &[40, 300]), (&[5, 3, 200], &[200])];
    for &(sa, sb) in bcast {
        let (av, bv) = (operand(&mut rng, sa, false), operand(&mut rng, sb, true));
        for op in OPS {
            let before = g.stats().dispatches;
            let small = reduce::broadcast_binary(&on(&g, sa, &av), &on(&g, sb, &bv), op).unwrap().to_vec().unwrap();
            assert!(g.stats().dispatches - before > 1, "{sa:?} {sb:?} really ran in pieces");
            let big = reduce::broadcast_binary(&upload(sa, &av), &upload(sb, &bv), op).unwrap().to_vec().unwrap();
            assert_eq!(small, big, "{op:?} {sa:?} {sb:?} split");
        }
        // Gradient terms split the same way; their sums go through the reduction splits.
        let out = cpu::broadcast_shape(sa, sb).unwrap();
        let w = rng.vec(numel(&out));
        // (Mul sums dy ⊙ x in the reduction itself where one factor has the output shape.)
        for op in [BinaryOp::Mul, BinaryOp::Div] {
            let grads = |gpu: &Gpu| {
                let [ga, gb] = reduce::broadcast_binary_backward(&on(gpu, sa, &av), &on(gpu, sb, &bv), &on(gpu, &out, &w), op, [true, true]).unwrap();
                (ga.unwrap().to_vec().unwrap(), gb.unwrap().to_vec().unwrap())
            };
            let (sa_g, sb_g) = grads(&g);
            let (ba_g, bb_g) = grads(gpu());
            assert_close(&format!("split {op:?} grad a {sa:?} {sb:?}"), &sa_g, &to_f64(&ba_g), 1e-5, 1e-5);
            assert_close(&format!("split {op:?} grad b {sa:?} {sb:?}"), &sb_g, &to_f64(&bb_g), 1e-5, 1e-5);
        }
    }

    // Expand and its backward.
    let (xv, xs, ys) = (rng.vec(6), [2usize, 3, 1], [2usize, 3, 400]);
    let small = reduce::expand(&on(&g, &xs, &xv), &ys).unwrap().to_vec().unwrap();
    assert_eq!(small, reduce::expand(&upload(&xs, &xv), &ys).unwrap().to_vec().unwrap());

    // Reductions: whole outer items per window ([4,3,20,20] pool), row ranges of one item
    // ([3, 3000] over axis 1; sum of everything), and a column reduction.
    let red: &[(&[usize], &[usize])] =
        &[(&[5000], &[0]), (&[3, 3000], &[1]), (&[7, 5, 300], &[0, 2]), (&[2000, 3], &[0]), (&[4, 3, 20, 20], &[2, 3])];
    for &(shape, axes) in red {
        let v = rng.vec(numel(shape));
        let before = g.stats().dispatches;
        let small_t = reduce::mean(&on(&g, shape, &v), axes, false).unwrap();
        assert!(g.stats().dispatches - before > 1, "{shape:?} really ran in pieces");
        drop(small_t);
        let small = reduce::mean(&on(&g, shape, &v), axes, false).unwrap().to_vec().unwrap();
        let big = reduce::mean(&upload(shape, &v), axes, false).unwrap().to_vec().unwrap();
        assert_close(&format!("split mean {shape:?} {axes:?}"), &small, &to_f64(&big), 1e-5, 1e-6);
        assert_close(&format!("split mean {shape:?} {axes:?} vs cpu"), &small, &cpu::mean(&to_f64(&v), shape, axes), 1e-5, 1e-6);
    }
    let v = rng.vec(4 * 3 * 20 * 20);
    let pooled = reduce::mean_pool(&on(&g, &[4, 3, 20, 20], &v)).unwrap().to_vec().unwrap();
    assert_close("split mean_pool", &pooled, &cpu::mean_pool(&to_f64(&v), &[4, 3, 20, 20]), 1e-5, 1e-6);

    // Adam in flat pieces.
    let n = 5000;
    let p = AdamParams { lr: 4e-4, beta1: 0.0, beta2: 0.9, eps: 1e-8 };
    let (p0, gv) = (rng.vec(n), rng.vec(n));
    let run = |gpu: &Gpu| {
        let t = [on(gpu, &[n], &p0), on(gpu, &[n], &gv), Tensor::zeros(gpu, &[n]).unwrap(), Tensor::zeros(gpu, &[n]).unwrap()];
        for step in 1..=3 {
            reduce::adam_step(&t[0], &t[1], &t[2], &t[3], &p, step).unwrap();
        }
        t.map(|t| t.to_vec().unwrap())
    };
    assert_eq!(run(&g), run(gpu()), "split Adam");

    // What cannot be split says so: a broadcast whose single first-dim index is larger than
    // a binding, and a reduction whose one reduced row is.
    let e = reduce::broadcast_binary(&on(&g, &[2, 2000], &vec![1.0; 4000]), &on(&g, &[1, 2000], &vec![1.0; 2000]), BinaryOp::Add)
        .unwrap_err()
        .to_string();
    assert!(e.contains("max_storage_buffer_binding_size"), "{e}");
    let e = reduce::sum(&on(&g, &[2, 3000], &vec![1.0; 6000]), &[0], false).unwrap_err().to_string();
    assert!(e.contains("max_storage_buffer_binding_size"), "{e}");
}

/// Timings at the model's shapes (not a check; `cargo test --release --test kernels
/// timing_at_model_shapes -- --ignored --nocapture`).
#[test]
#[ignore]
fn timing_at_model_shapes() {
    let g = gpu();
    let mut rng = Rng::new(23);
    let time = |what: &str, bytes: usize, f: &dyn Fn() -> Tensor| {
        f().to_vec().unwrap();
        let t = std::time::Instant::now();
        let reps = 5;
        for _ in 0..reps {
            let y = f();
            g.sync().unwrap();
            drop(y);
        }
        let s = t.elapsed().as_secs_f64() / reps as f64;
        eprintln!("{what}: {:.2} ms, {:.2} GB/s", s * 1e3, bytes as f64 / s / 1e9);
    };
    let (x, _) = random(&mut rng, &[16, 64, 56, 56]);
    let (gamma, _) = random(&mut rng, &[16, 64, 1, 1]);
    let n = x.numel();
    time("reference: same-shape elementwise add", n * 12, &|| ratlip::ops::elementwise::add(&x, &x).unwrap());
    time("sum of 64·224·224 values", 64 * 224 * 224 * 4, &|| reduce::sum(&x.reshape(&[n]).unwrap(), &[0], false).unwrap());
    time("mean_pool [16,64,56,56]", n * 4, &|| reduce::mean_pool(&x).unwrap());
    time("sum_to_shape [16,64,56,56]→[1,64,1,1]", n * 4, &|| reduce::sum_to_shape(&x, &[1, 64, 1, 1]).unwrap());
    time("sum [16,64,56,56] over axis 0", n * 4, &|| reduce::sum(&x, &[0], false).unwrap());
    time("gamma[16,64,1,1] ⊙ x[16,64,56,56]", n * 8, &|| reduce::broadcast_binary(&gamma, &x, BinaryOp::Mul).unwrap());
    time("expand [16,64,1,1]→[16,64,56,56]", n * 4, &|| reduce::expand(&gamma, &[16, 64, 56, 56]).unwrap());
    time("backward of gamma ⊙ x (both operands)", n * 16, &|| {
        let [a, b] = reduce::broadcast_binary_backward(&gamma, &x, &x, BinaryOp::Mul, [true, true]).unwrap();
        drop(b);
        a.unwrap()
    });
    let p = AdamParams { lr: 1e-4, beta1: 0.0, beta2: 0.9, eps: 1e-8 };
    let (param, grad) = (x.clone(), gamma.clone());
    let m = Tensor::zeros(g, &[n]).unwrap();
    let v = Tensor::zeros(g, &[n]).unwrap();
    let grad = reduce::expand(&grad, &[16, 64, 56, 56]).unwrap().reshape(&[n]).unwrap();
    let param = param.reshape(&[n]).unwrap();
    time("adam_step on 3.2 M parameters", n * 24, &|| {
        reduce::adam_step(&param, &grad, &m, &v, &p, 1).unwrap();
        m.clone()
    });
}
