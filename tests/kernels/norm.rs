//! LayerNorm, BatchNorm2d and GroupNorm against the f64 CPU references in `norm::cpu`.
//!
//! Inputs are uniform in [-1, 1)·2 + 0.5: a std of ~1.15 and a mean away from zero, so the
//! division by the std is well conditioned and a one-pass E[x²]−E[x]² variance would show.
//! Tolerances:
//! - forward 2e-5 relative + 2e-5 absolute: outputs are O(1)·w + b; the statistics are f32
//!   sums of ≤ 3·768 terms (tree-reduced, ~log2(n) roundings of 6e-8 each) and rsqrt is a
//!   few ulp, so the error is a few 1e-6;
//! - statistics (saved mean/rstd, running stats) 1e-5 relative + 1e-6 absolute;
//! - gradients 5e-4 of the largest gradient component (`check_grad`): dx subtracts two
//!   reduced means from dy·w (cancellation), and BatchNorm sums over up to 768 values per
//!   channel in f32; finite differences of the f64 reference are exact to ~1e-9;
//! - split (chunked) vs unsplit on one device: the per-row work is identical, so forward
//!   outputs and statistics must match bit for bit; gradients summed across chunks are
//!   summed in another order: ≤ 100 terms of magnitude ≤ 2 reordered can move a sum by
//!   100·2·6e-8 ≈ 1.2e-5 in the worst case, so 1e-6 relative + 1e-5 absolute.

use ratlip::ops::norm::{self, cpu, BatchNormState};
use ratlip::{Gpu, Tape, Tensor};

use crate::common::*;

const EPS: f32 = 1e-5;
const FWD: (f64, f64) = (2e-5, 2e-5);
const STAT: (f64, f64) = (1e-5, 1e-6);
const GRAD: f64 = 5e-4;

fn data(rng: &mut Rng, n: usize) -> Vec<f32> {
    rng.vec(n).iter().map(|v| v * 2.0 + 0.5).collect()
}

fn f64s(v: &[f32]) -> Vec<f64> {
    to_f64(v)
}

/// Runs `op` on the tape with x, weight, bias all differentiated, seeds backward with `seed`,
/// and returns (y, dx, dweight, dbias).
fn tape_run(
    x: (&[usize], &[f32]),
    w: &[f32],
    b: &[f32],
    seed: &[f32],
    op: &dyn Fn(&Tape, &ratlip::Var, &ratlip::Var, &ratlip::Var) -> ratlip::Var,
) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let tape = Tape::new(gpu());
    let vx = tape.var(upload(x.0, x.1));
    let vw = tape.var(upload(&[w.len()], w));
    let vb = tape.var(upload(&[b.len()], b));
    let y = op(&tape, &vx, &vw, &vb);
    let yv = y.value().to_vec().unwrap();
    let grads = tape.backward_with(&y, Some(upload(x.0, seed)), &[]).unwrap();
    let get = |v: &ratlip::Var| grads.get(v).unwrap().to_vec().unwrap();
    (yv, get(&vx), get(&vw), get(&vb))
}

type Reference<'a> = &'a dyn Fn(&[f64], &[f64], &[f64]) -> Vec<f64>;

/// Checks the three gradients against finite differences of `f(x, w, b)`·seed.
#[allow(clippy::too_many_arguments)]
fn check_all_grads(
    what: &str,
    f: Reference,
    x: &[f32],
    w: &[f32],
    b: &[f32],
    seed: &[f32],
    g: (&[f32], &[f32], &[f32]),
) {
    let (x64, w64, b64) = (f64s(x), f64s(w), f64s(b));
    check_grad(&format!("{what} dx"), &|v| dot(&f(v, &w64, &b64), seed), x, g.0, 48, GRAD);
    check_grad(&format!("{what} dweight"), &|v| dot(&f(&x64, v, &b64), seed), w, g.1, 48, GRAD);
    check_grad(&format!("{what} dbias"), &|v| dot(&f(&x64, &w64, v), seed), b, g.2, 48, GRAD);
}

// ---- LayerNorm ------------------------------------------------------------------------

#[test]
fn layer_norm_forward_matches_cpu() {
    let mut rng = Rng::new(10);
    for shape in [vec![1, 1], vec![3, 7], vec![2, 5, 33], vec![4, 768], vec![7, 512], vec![13]] {
        let d = *shape.last().unwrap();
        let n: usize = shape.iter().product();
        let (xv, wv, bv) = (data(&mut rng, n), rng.vec(d), rng.vec(d));
        let o = norm::layer_norm(&upload(&shape, &xv), &upload(&[d], &wv), &upload(&[d], &bv), EPS).unwrap();
        assert_eq!(o.y.shape(), &shape[..]);
        assert_eq!(o.mean.shape(), &shape[..shape.len() - 1]);
        let want = cpu::layer_norm(&f64s(&xv), d, &f64s(&wv), &f64s(&bv), EPS as f64);
        assert_close(&format!("layer_norm {shape:?}"), &o.y.to_vec().unwrap(), &want, FWD.0, FWD.1);
        let x64 = f64s(&xv);
        let (means, rstds): (Vec<f64>, Vec<f64>) = x64
            .chunks(d)
            .map(|r| {
                let m = r.iter().sum::<f64>() / d as f64;
                let v = r.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / d as f64;
                (m, 1.0 / (v + EPS as f64).sqrt())
            })
            .unzip();
        assert_close("layer_norm mean", &o.mean.to_vec().unwrap(), &means, STAT.0, STAT.1);
        assert_close("layer_norm rstd", &o.rstd.to_vec().unwrap(), &rstds, STAT.0, STAT.1);
    }
}

#[test]
fn layer_norm_backward_matches_finite_differences() {
    let mut rng = Rng::new(11);
    for shape in [vec![1, 1], vec![3, 7], vec![2, 5, 33], vec![4, 768]] {
        let d = *shape.last().unwrap();
        let n: usize = shape.iter().product();
        let (xv, wv, bv, seed) = (data(&mut rng, n), rng.vec(d), rng.vec(d), rng.vec(n));
        let (_, gx, gw, gb) =
            tape_run((&shape, &xv), &wv, &bv, &seed, &|t, x, w, b| t.layer_norm(x, w, b, EPS).unwrap());
        let f = |x: &[f64], w: &[f64], b: &[f64]| cpu::layer_norm(x, d, w, b, EPS as f64);
        check_all_grads(&format!("layer_norm {shape:?}"), &f, &xv, &wv, &bv, &seed, (&gx, &gw, &gb));
    }
}

#[test]
fn layer_norm_backward_computes_only_what_is_needed() {
    let mut rng = Rng::new(12);
    let (x, xv) = random(&mut rng, &[5, 9]);
    let (w, _) = random(&mut rng, &[9]);
    let (b, _) = random(&mut rng, &[9]);
    let o = norm::layer_norm(&x, &w, &b, EPS).unwrap();
    let dy = upload(&[5, 9], &rng.vec(45));
    let only_w = norm::layer_norm_backward(&x, &dy, &w, &o.mean, &o.rstd, [false, true, false]).unwrap();
    assert!(only_w.dx.is_none() && only_w.dbias.is_none() && only_w.dweight.is_some());
    let all = norm::layer_norm_backward(&x, &dy, &w, &o.mean, &o.rstd, [true; 3]).unwrap();
    assert_eq!(only_w.dweight.unwrap().to_vec().unwrap(), all.dweight.unwrap().to_vec().unwrap());
    // A constant weight on the tape still lets the gradient reach x.
    let tape = Tape::new(gpu());
    let vx = tape.var(upload(&[5, 9], &xv));
    let (vw, vb) = (tape.constant(w.clone()), tape.constant(b.clone()));
    let y = tape.layer_norm(&vx, &vw, &vb, EPS).unwrap();
    let grads = tape.backward_with(&y, Some(dy.clone()), &[]).unwrap();
    assert!(grads.get(&vw).is_none());
    assert_eq!(grads.get(&vx).unwrap().to_vec().unwrap(), all.dx.unwrap().to_vec().unwrap());
}

// ---- GroupNorm ------------------------------------------------------------------------

#[test]
fn group_norm_forward_and_backward_match_cpu() {
    let mut rng = Rng::new(20);
    // (shape, groups): groups = 1, = C, = C/2, on odd sizes; plus ShuffleAttention's
    // per-channel case on short planes (many rows per workgroup) and a plane of one value.
    // [2, 12, 3, 1] with one group has planes (3) shorter than the segment (8 lanes).
    let cases: [(&[usize], usize); 9] = [
        (&[2, 12, 3, 1], 1),
        (&[3, 6, 5, 7], 1),
        (&[3, 6, 5, 7], 6),
        (&[3, 6, 5, 7], 3),
        (&[2, 10, 13], 5),
        (&[1, 3, 1, 1], 1),
        (&[16, 4, 4, 4], 4),
        (&[5, 2, 1, 1], 2),
        (&[2, 4, 17, 19], 2),
    ];
    for (shape, groups) in cases {
        let (n, c) = (shape[0], shape[1]);
        let hw: usize = shape[2..].iter().product();
        let numel = n * c * hw;
        let (xv, wv, bv, seed) = (data(&mut rng, numel), rng.vec(c), rng.vec(c), rng.vec(numel));
        let what = format!("group_norm {shape:?} groups {groups}");
        let f = |x: &[f64], w: &[f64], b: &[f64]| cpu::group_norm(x, n, c, hw, groups, w, b, EPS as f64);
        let (y, gx, gw, gb) =
            tape_run((shape, &xv), &wv, &bv, &seed, &|t, x, w, b| t.group_norm(x, groups, w, b, EPS).unwrap());
        assert_close(&what, &y, &f(&f64s(&xv), &f64s(&wv), &f64s(&bv)), FWD.0, FWD.1);
        check_all_grads(&what, &f, &xv, &wv, &bv, &seed, (&gx, &gw, &gb));
    }
}

#[test]
fn group_norm_rejects_groups_that_do_not_divide_channels() {
    let x = upload(&[2, 6, 3, 3], &[0.0; 108]);
    let w = upload(&[6], &[1.0; 6]);
    let e = norm::group_norm(&x, 4, &w, &w, EPS).unwrap_err().to_string();
    assert!(e.contains("group_norm") && e.contains("[2, 6, 3, 3]"), "{e}");
    let e = norm::group_norm(&x, 3, &upload(&[3], &[1.0; 3]), &w, EPS).unwrap_err().to_string();
    assert!(e.contains("group_norm") && e.contains("[3]"), "{e}");
}

// ---- BatchNorm2d ----------------------------------------------------------------------

const MOMENTUM: f32 = 0.1;

/// CPU batch norm as a pure function of (x, w, b) (running stats copied and discarded).
fn bn_ref(shape: &[usize], running: &(Vec<f64>, Vec<f64>), training: bool) -> impl Fn(&[f64], &[f64], &[f64]) -> Vec<f64> {
    let (n, c, hw) = (shape[0], shape[1], shape[2..].iter().product::<usize>());
    let running = running.clone();
    move |x: &[f64], w: &[f64], b: &[f64]| {
        let (mut rm, mut rv) = running.clone();
        cpu::batch_norm(x, n, c, hw, w, b, (&mut rm, &mut rv), training, MOMENTUM as f64, EPS as f64)
    }
}

#[test]
fn batch_norm_training_updates_running_stats_like_pytorch() {
    let mut rng = Rng::new(30);
    for shape in [vec![2, 3, 5, 7], vec![5, 1, 1, 1], vec![3, 16, 4, 4], vec![4, 3, 9]] {
        let (n, c, hw) = (shape[0], shape[1], shape[2..].iter().product::<usize>());
        let numel = n * c * hw;
        let state = BatchNormState::new(gpu(), c).unwrap();
        let (wv, bv) = (rng.vec(c), rng.vec(c));
        let (w, b) = (upload(&[c], &wv), upload(&[c], &bv));
        let (mut rm, mut rv) = (vec![0.0f64; c], vec![1.0f64; c]);
        for step in 0..2 {
            let xv: Vec<f32> = data(&mut rng, numel).iter().map(|v| v * (step + 1) as f32).collect();
            let o = state.forward(&upload(&shape, &xv), &w, &b, true).unwrap();
            let want = cpu::batch_norm(&f64s(&xv), n, c, hw, &f64s(&wv), &f64s(&bv), (&mut rm, &mut rv), true, 0.1, 1e-5);
            let what = format!("batch_norm train {shape:?} step {step}");
            assert_close(&what, &o.y.to_vec().unwrap(), &want, FWD.0, FWD.1);
            let m = cpu::channel_moments(&f64s(&xv), n, c, hw);
            let means: Vec<f64> = m.iter().map(|s| s.0).collect();
            let rstds: Vec<f64> = m.iter().map(|s| 1.0 / (s.1 + 1e-5).sqrt()).collect();
            assert_close(&format!("{what} mean"), &o.mean.to_vec().unwrap(), &means, STAT.0, STAT.1);
            assert_close(&format!("{what} rstd"), &o.rstd.to_vec().unwrap(), &rstds, STAT.0, STAT.1);
        }
        assert_close(&format!("running_mean {shape:?}"), &state.running_mean.to_vec().unwrap(), &rm, STAT.0, STAT.1);
        assert_close(&format!("running_var {shape:?}"), &state.running_var.to_vec().unwrap(), &rv, STAT.0, STAT.1);

        // Eval mode normalises with the running statistics and leaves them alone.
        let xv = data(&mut rng, numel);
        let o = state.forward(&upload(&shape, &xv), &w, &b, false).unwrap();
        let want = cpu::batch_norm(&f64s(&xv), n, c, hw, &f64s(&wv), &f64s(&bv), (&mut rm, &mut rv), false, 0.1, 1e-5);
        assert_close(&format!("batch_norm eval {shape:?}"), &o.y.to_vec().unwrap(), &want, FWD.0, FWD.1);
        assert_close("running_mean after eval", &state.running_mean.to_vec().unwrap(), &rm, STAT.0, STAT.1);
    }
}

#[test]
fn batch_norm_backward_matches_finite_differences_in_both_modes() {
    let mut rng = Rng::new(31);
    for shape in [vec![2, 3, 5, 7], vec![5, 1, 1, 1], vec![3, 16, 4, 4]] {
        let (c, numel) = (shape[1], shape.iter().product::<usize>());
        for training in [true, false] {
            let running = (f64s(&rng.vec(c)), rng.vec(c).iter().map(|v| (v + 1.5) as f64).collect::<Vec<_>>());
            let rm = upload(&[c], &running.0.iter().map(|&v| v as f32).collect::<Vec<_>>());
            let rv = upload(&[c], &running.1.iter().map(|&v| v as f32).collect::<Vec<_>>());
            let (xv, wv, bv, seed) = (data(&mut rng, numel), rng.vec(c), rng.vec(c), rng.vec(numel));
            let f = bn_ref(&shape, &running, training);
            let (y, gx, gw, gb) = tape_run((&shape, &xv), &wv, &bv, &seed, &|t, x, w, b| {
                t.batch_norm(x, w, b, &rm, &rv, training, MOMENTUM, EPS).unwrap()
            });
            let what = format!("batch_norm {shape:?} training {training}");
            assert_close(&what, &y, &f(&f64s(&xv), &f64s(&wv), &f64s(&bv)), FWD.0, FWD.1);
            check_all_grads(&what, &f, &xv, &wv, &bv, &seed, (&gx, &gw, &gb));
        }
    }
}

#[test]
fn batch_norm_training_needs_more_than_one_value_per_channel() {
    let state = BatchNormState::new(gpu(), 3).unwrap();
    let x = upload(&[1, 3, 1, 1], &[1.0, 2.0, 3.0]);
    let w = upload(&[3], &[1.0; 3]);
    let e = state.forward(&x, &w, &w, true).unwrap_err().to_string();
    assert!(e.contains("batch_norm") && e.contains("[1, 3, 1, 1]"), "{e}");
    // Eval mode is fine with one value.
    assert!(state.forward(&x, &w, &w, false).is_ok());
    let e = state.forward(&upload(&[2, 4, 1, 1], &[0.0; 8]), &w, &w, true).unwrap_err().to_string();
    assert!(e.contains("batch_norm") && e.contains("[3]") && e.contains("[4]"), "{e}");
}

// ---- splitting oversized tensors ------------------------------------------------------

fn on(g: &Gpu, shape: &[usize], v: &[f32]) -> Tensor {
    Tensor::from_slice(g, shape, v).unwrap()
}

fn read(t: &Option<Tensor>) -> Vec<f32> {
    t.as_ref().unwrap().to_vec().unwrap()
}

fn same(what: &str, split: &[f32], whole: &[f32]) {
    assert_eq!(split, whole, "{what}: split and unsplit results differ");
}

fn close(what: &str, split: &[f32], whole: &[f32]) {
    assert_close(what, split, &f64s(whole), 1e-6, 1e-5);
}

/// Every op run on a private device whose binding limit is 4096 bytes (so that the batches
/// below go in 3–5 chunks) must give the results of the same device unlimited.
#[test]
fn split_batches_match_unsplit() {
    let g = Gpu::new(&Default::default()).unwrap();
    let mut rng = Rng::new(40);
    type Run = Box<dyn Fn(&Gpu) -> Vec<(Vec<f32>, bool)>>;
    let mut runs: Vec<(&str, Run)> = Vec::new();

    // LayerNorm: 100 rows of 33 (132 bytes each).
    let (xv, wv, bv, dyv) = (data(&mut rng, 3300), rng.vec(33), rng.vec(33), rng.vec(3300));
    runs.push((
        "layer_norm",
        Box::new(move |g| {
            let (x, w, b, dy) = (on(g, &[4, 25, 33], &xv), on(g, &[33], &wv), on(g, &[33], &bv), on(g, &[4, 25, 33], &dyv));
            let o = norm::layer_norm(&x, &w, &b, EPS).unwrap();
            let gr = norm::layer_norm_backward(&x, &dy, &w, &o.mean, &o.rstd, [true; 3]).unwrap();
            vec![
                (o.y.to_vec().unwrap(), true),
                (o.mean.to_vec().unwrap(), true),
                (o.rstd.to_vec().unwrap(), true),
                (read(&gr.dx), true),
                (read(&gr.dweight), false),
                (read(&gr.dbias), false),
            ]
        }),
    ));

    // GroupNorm: 20 samples of 6×5×3 (360 bytes each), 3 groups.
    let (xv, wv, bv, dyv) = (data(&mut rng, 1800), rng.vec(6), rng.vec(6), rng.vec(1800));
    runs.push((
        "group_norm",
        Box::new(move |g| {
            let s = [20, 6, 5, 3];
            let (x, w, b, dy) = (on(g, &s, &xv), on(g, &[6], &wv), on(g, &[6], &bv), on(g, &s, &dyv));
            let o = norm::group_norm(&x, 3, &w, &b, EPS).unwrap();
            let gr = norm::group_norm_backward(&x, &dy, 3, &w, &o.mean, &o.rstd, [true; 3]).unwrap();
            vec![
                (o.y.to_vec().unwrap(), true),
                (o.mean.to_vec().unwrap(), true),
                (o.rstd.to_vec().unwrap(), true),
                (read(&gr.dx), true),
                (read(&gr.dweight), false),
                (read(&gr.dbias), false),
            ]
        }),
    ));

    // BatchNorm, both modes: 20 samples of 3×5×7 (420 bytes each).
    let (xv, wv, bv, dyv) = (data(&mut rng, 2100), rng.vec(3), rng.vec(3), rng.vec(2100));
    for training in [true, false] {
        let (xv, wv, bv, dyv) = (xv.clone(), wv.clone(), bv.clone(), dyv.clone());
        runs.push((
            if training { "batch_norm train" } else { "batch_norm eval" },
            Box::new(move |g| {
                let s = [20, 3, 5, 7];
                let (x, w, b, dy) = (on(g, &s, &xv), on(g, &[3], &wv), on(g, &[3], &bv), on(g, &s, &dyv));
                let state = BatchNormState::new(g, 3).unwrap();
                state.running_mean.write(&[0.5, -0.25, 0.0]).unwrap();
                let o = state.forward(&x, &w, &b, training).unwrap();
                let gr = norm::batch_norm_backward(&x, &dy, &w, &o.mean, &o.rstd, training, [true; 3]).unwrap();
                vec![
                    (o.y.to_vec().unwrap(), true),
                    (o.mean.to_vec().unwrap(), true),
                    (o.rstd.to_vec().unwrap(), true),
                    (state.running_mean.to_vec().unwrap(), true),
                    (state.running_var.to_vec().unwrap(), true),
                    // dx depends on the cross-chunk sums in training mode only.
                    (read(&gr.dx), !training),
                    (read(&gr.dweight), false),
                    (read(&gr.dbias), false),
                ]
            }),
        ));
    }

    g.set_binding_limit_for_tests(4096);
    for (items, bytes) in [(100usize, vec![132u64, 4]), (20, vec![360, 12, 48]), (20, vec![420, 24])] {
        let n = ratlip::ops::batch_chunks(&g, "test", items, &bytes).unwrap().len();
        assert!(n >= 3, "the test shapes must split into several chunks, got {n}");
    }
    for (what, run) in &runs {
        g.set_binding_limit_for_tests(0);
        let whole = run(&g);
        g.set_binding_limit_for_tests(4096);
        let split = run(&g);
        for (i, ((s, exact), (w, _))) in split.iter().zip(&whole).enumerate() {
            let what = format!("{what} output {i}");
            if *exact {
                same(&what, s, w);
            } else {
                close(&what, s, w);
            }
        }
    }
    g.set_binding_limit_for_tests(0);
}

/// A tensor that cannot be split small enough is an error, not a crash.
#[test]
fn unsplittable_sample_is_a_binding_error() {
    let g = Gpu::new(&Default::default()).unwrap();
    g.set_binding_limit_for_tests(256);
    let x = on(&g, &[2, 4, 8, 8], &vec![1.0; 512]);
    let w = on(&g, &[4], &[1.0; 4]);
    let e = norm::group_norm(&x, 2, &w, &w, EPS).unwrap_err();
    assert!(matches!(e, ratlip::Error::BindingTooLarge { .. }), "{e}");
    let state = BatchNormState::new(&g, 4).unwrap();
    let e = state.forward(&x, &w, &w, true).unwrap_err();
    assert!(matches!(e, ratlip::Error::BindingTooLarge { .. }), "{e}");
}

/// Wall-clock timings at the model's shapes (lavapipe numbers go in the report). Run with
/// `cargo test --release --test kernels norm_timing -- --ignored --nocapture`.
#[test]
#[ignore]
fn norm_timing() {
    let g = gpu();
    let time = |what: &str, f: &dyn Fn()| {
        f(); // warm up: pipelines and pool
        g.sync().unwrap();
        // The best of 5: the machines are shared, and the minimum is the least disturbed.
        let best = (0..5)
            .map(|_| {
                let t = std::time::Instant::now();
                f();
                g.sync().unwrap();
                t.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min);
        println!("{what}: {:.2} ms", best * 1e3);
    };
    let bench = |what: &str, shape: &[usize], c: usize, kind: u32| {
        let n: usize = shape.iter().product();
        let mut r = Rng::new(n as u64);
        let (x, w, b, dy) = (upload(shape, &data(&mut r, n)), upload(&[c], &r.vec(c)), upload(&[c], &r.vec(c)), upload(shape, &r.vec(n)));
        let state = BatchNormState::new(g, c).unwrap();
        let fwd = || match kind {
            0 => norm::layer_norm(&x, &w, &b, EPS).unwrap(),
            1 => norm::group_norm(&x, c, &w, &b, EPS).unwrap(),
            _ => state.forward(&x, &w, &b, true).unwrap(),
        };
        time(&format!("{what} {shape:?} forward"), &|| {
            fwd();
        });
        let o = fwd();
        time(&format!("  (reference: elementwise add of {n} values)"), &|| {
            ratlip::ops::elementwise::add(&x, &dy).unwrap();
        });
        time(&format!("{what} {shape:?} backward"), &|| {
            let _ = match kind {
                0 => norm::layer_norm_backward(&x, &dy, &w, &o.mean, &o.rstd, [true; 3]),
                1 => norm::group_norm_backward(&x, &dy, c, &w, &o.mean, &o.rstd, [true; 3]),
                _ => norm::batch_norm_backward(&x, &dy, &w, &o.mean, &o.rstd, true, [true; 3]),
            }
            .unwrap();
        });
    };
    bench("layer_norm (CLIP text, batch 64)", &[64, 77, 512], 512, 0);
    bench("layer_norm (CLIP image, batch 16)", &[16, 50, 768], 768, 0);
    bench("group_norm groups=C (ShuffleAttention)", &[128, 4, 64, 64], 4, 1);
    bench("group_norm groups=C (ShuffleAttention, 4x4)", &[128, 16, 4, 4], 16, 1);
    bench("batch_norm train", &[16, 64, 64, 64], 64, 2);
}

/// |mean| ≫ std: x = 1000 + U(-1, 1). The f32 inputs near 1000 carry an ulp of 6e-5, so any
/// method that centres before squaring is good to ~1e-4 of the std (0.58); a one-pass
/// Σx² − (Σx)²/n would lose the variance entirely (ulp of Σx²/n ≈ 1e6 is 0.06). Tolerance
/// 2e-3, 20× that floor.
#[test]
fn statistics_survive_a_large_mean() {
    let mut rng = Rng::new(60);
    let shape = [6, 8, 9, 11];
    let n = 6 * 8 * 99;
    let xv: Vec<f32> = rng.vec(n).iter().map(|v| 1000.0 + v).collect();
    let x = upload(&shape, &xv);
    let (w, b) = (vec![1.0f32; 8], vec![0.0f32; 8]);
    let (wt, bt) = (upload(&[8], &w), upload(&[8], &b));
    let x64 = f64s(&xv);
    let want = cpu::group_norm(&x64, 6, 8, 99, 2, &f64s(&w), &f64s(&b), 1e-5);
    assert_close("group_norm", &norm::group_norm(&x, 2, &wt, &bt, EPS).unwrap().y.to_vec().unwrap(), &want, 0.0, 2e-3);
    let d = 99;
    let (lw, lb) = (upload(&[d], &vec![1.0; d]), upload(&[d], &vec![0.0; d]));
    let want = cpu::layer_norm(&x64, d, &vec![1.0; d], &vec![0.0; d], 1e-5);
    let x_rows = x.reshape(&[48, 99]).unwrap();
    assert_close("layer_norm", &norm::layer_norm(&x_rows, &lw, &lb, EPS).unwrap().y.to_vec().unwrap(), &want, 0.0, 2e-3);
    let state = BatchNormState::new(gpu(), 8).unwrap();
    let (mut rm, mut rv) = (vec![0.0; 8], vec![1.0; 8]);
    let want = cpu::batch_norm(&x64, 6, 8, 99, &f64s(&w), &f64s(&b), (&mut rm, &mut rv), true, 0.1, 1e-5);
    assert_close("batch_norm", &state.forward(&x, &wt, &bt, true).unwrap().y.to_vec().unwrap(), &want, 0.0, 2e-3);
    assert_close("running_var", &state.running_var.to_vec().unwrap(), &rv, 1e-3, 0.0);
}
