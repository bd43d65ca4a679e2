//! Attention core, both implementations (`Strategy::Rows`, `Strategy::Tiled`) on this
//! device whatever it is. Tolerances:
//! - forward: 2e-5 absolute + 1e-4 relative (but see the large-score test). Scores are f32
//!   sums of hd ≤ 130 products of values in [-1, 1], exp in f32 has a few ulp of error and
//!   the output sums T ≤ 77 weighted values: errors stay near 1e-6, the bound leaves room.
//! - backward vs central differences of the f64 reference: 2e-4 of the largest gradient
//!   (the differences are exact to ~1e-9; the GPU side accumulates T·hd f32 products twice).
//! - batch splitting: bit-identical, since each sample runs the very same arithmetic.

use ratlip::ops::attention::{self, cpu, Strategy};
use ratlip::{Gpu, GpuOptions, Tape, Tensor};

use crate::common::*;

const BOTH: [Strategy; 2] = [Strategy::Rows, Strategy::Tiled];

struct Case {
    b: usize,
    t: usize,
    heads: usize,
    hd: usize,
    causal: bool,
}

const fn case(b: usize, t: usize, heads: usize, hd: usize, causal: bool) -> Case {
    Case { b, t, heads, hd, causal }
}

fn inputs(rng: &mut Rng, c: &Case, gain: f32) -> [Vec<f32>; 3] {
    let n = c.b * c.t * c.heads * c.hd;
    [0, 1, 2].map(|_| rng.vec(n).iter().map(|x| x * gain).collect())
}

fn check_forward(rng: &mut Rng, c: &Case, gain: f32, tol: (f64, f64)) {
    let w = c.heads * c.hd;
    let shape = [c.b, c.t, w];
    let [qv, kv, vv] = inputs(rng, c, gain);
    let (want_out, want_probs) = cpu::attention(&to_f64(&qv), &to_f64(&kv), &to_f64(&vv), c.b, c.t, w, c.heads, c.causal);
    let (q, k, v) = (upload(&shape, &qv), upload(&shape, &kv), upload(&shape, &vv));
    for s in BOTH {
        let (out, probs) = attention::attention_with(s, &q, &k, &v, c.heads, c.causal).unwrap();
        assert_eq!(out.shape(), &shape);
        assert_eq!(probs.shape(), &[c.b, c.heads, c.t, c.t]);
        let what = format!("{s:?} B{} T{} heads{} hd{} causal {}", c.b, c.t, c.heads, c.hd, c.causal);
        assert_close(&format!("{what} probs"), &probs.to_vec().unwrap(), &want_probs, tol.0, tol.1);
        assert_close(&format!("{what} out"), &out.to_vec().unwrap(), &want_out, tol.0, tol.1);
    }
}

#[test]
fn attention_forward_matches_cpu() {
    let mut rng = Rng::new(41);
    let cases = [
        case(1, 1, 1, 3, false),
        case(1, 1, 2, 7, true),
        case(2, 5, 2, 7, true),
        case(3, 5, 1, 3, false),
        case(2, 17, 1, 20, true),
        case(1, 50, 8, 3, false),
        case(2, 50, 2, 7, true),
        case(1, 77, 8, 7, true),
        case(3, 77, 2, 16, false),
        case(1, 51, 1, 64, false),
        // Head dims past one 64-wide chunk of the Rows kernel.
        case(1, 9, 1, 70, true),
        case(2, 5, 2, 130, false),
    ];
    for c in &cases {
        check_forward(&mut rng, c, 1.0, (1e-4, 2e-5));
    }
}

/// Scores in the thousands: without max subtraction exp would overflow to inf (and the
/// comparison fails on any non-finite value). Logits that large carry f32 rounding of
/// ~|s|·2⁻²⁴ ≈ 2e-4, which the softmax passes on: 1e-3 relative + 5e-4 absolute here.
#[test]
fn attention_softmax_is_stable_for_large_scores() {
    let mut rng = Rng::new(42);
    check_forward(&mut rng, &case(2, 13, 2, 16, false), 30.0, (1e-3, 5e-4));
    check_forward(&mut rng, &case(1, 20, 1, 7, true), 30.0, (1e-3, 5e-4));
}

/// Causal rows put exactly zero weight on later keys, and every row sums to one.
#[test]
fn causal_probs_are_lower_triangular_and_normalised() {
    let mut rng = Rng::new(43);
    let (t, w) = (19, 6);
    let (q, _) = random(&mut rng, &[2, t, w]);
    let (k, _) = random(&mut rng, &[2, t, w]);
    let (v, _) = random(&mut rng, &[2, t, w]);
    for s in BOTH {
    let (_, probs) = attention::attention_with(s, &q, &k, &v, 3, true).unwrap();
    let p = probs.to_vec().unwrap();
    for row in 0..2 * 3 * t {
        let i = row % t;
        let r = &p[row * t..(row + 1) * t];
        assert!(r[i + 1..].iter().all(|&x| x == 0.0), "{s:?}: row {row} (query {i}) sees the future: {r:?}");
        let sum: f32 = r.iter().sum();
        assert!((sum - 1.0).abs() < 1e-5, "{s:?}: row {row} sums to {sum}");
    }
    }
}

fn check_backward(rng: &mut Rng, c: &Case) {
    let w = c.heads * c.hd;
    let shape = [c.b, c.t, w];
    let [qv, kv, vv] = inputs(rng, c, 1.5);
    let wt = rng.vec(c.b * c.t * w);
    let (q, k, v, dout) = (upload(&shape, &qv), upload(&shape, &kv), upload(&shape, &vv), upload(&shape, &wt));
    for s in BOTH {
        let (_, probs) = attention::attention_with(s, &q, &k, &v, c.heads, c.causal).unwrap();
        let (dq, dk, dv) = attention::attention_backward_with(s, &q, &k, &v, &probs, &dout, c.heads, c.causal).unwrap();
        let what = format!("{s:?} B{} T{} heads{} hd{} causal {}", c.b, c.t, c.heads, c.hd, c.causal);
        for (which, (name, g)) in [("dq", dq), ("dk", dk), ("dv", dv)].into_iter().enumerate() {
            let loss = |x: &[f64]| {
                let mut a = [to_f64(&qv), to_f64(&kv), to_f64(&vv)];
                a[which] = x.to_vec();
                dot(&cpu::attention(&a[0], &a[1], &a[2], c.b, c.t, w, c.heads, c.causal).0, &wt)
            };
            let x = [&qv, &kv, &vv][which];
            check_grad(&format!("{what} {name}"), &loss, x, &g.to_vec().unwrap(), 48, 2e-4);
        }
    }
}

#[test]
fn attention_backward_matches_finite_differences() {
    let mut rng = Rng::new(44);
    let cases = [
        case(1, 1, 1, 3, true),
        case(1, 1, 2, 3, false),
        case(2, 5, 2, 7, true),
        case(2, 5, 1, 3, false),
        case(1, 17, 1, 20, true),
        case(1, 18, 2, 17, false),
        case(1, 50, 8, 3, true),
        case(1, 77, 2, 7, true),
        case(1, 77, 1, 5, false),
        case(1, 6, 1, 67, true),
    ];
    for c in &cases {
        check_backward(&mut rng, c);
    }
}

/// The tape op gives the direct backward's gradients, and only to the inputs that need one:
/// a constant q still passes gradient to k and v.
#[test]
fn attention_tape_matches_direct_backward_and_skips_constants() {
    let mut rng = Rng::new(45);
    let shape = [2, 9, 6];
    let ((q, _), (k, _), (v, _), (dout, _)) =
        (random(&mut rng, &shape), random(&mut rng, &shape), random(&mut rng, &shape), random(&mut rng, &shape));
    let (_, probs) = attention::attention(&q, &k, &v, 3, true).unwrap();
    let (dq, dk, dv) = attention::attention_backward(&q, &k, &v, &probs, &dout, 3, true).unwrap();

    let tape = Tape::new(gpu());
    let vars = [&q, &k, &v].map(|x| tape.var(x.clone()));
    let y = tape.attention(&vars[0], &vars[1], &vars[2], 3, true).unwrap();
    let grads = tape.backward_with(&y, Some(dout.clone()), &[]).unwrap();
    for (var, want) in vars.iter().zip([&dq, &dk, &dv]) {
        assert_eq!(grads.get(var).unwrap().to_vec().unwrap(), want.to_vec().unwrap());
    }

    let tape = Tape::new(gpu());
    let qc = tape.constant(q.clone());
    let (kv, vv) = (tape.var(k.clone()), tape.var(v.clone()));
    let y = tape.attention(&qc, &kv, &vv, 3, true).unwrap();
    let grads = tape.backward(&y).unwrap();
    assert!(grads.get(&qc).is_none());
    assert!(grads.get(&kv).is_some() && grads.get(&vv).is_some());
}

/// A batch larger than one binding runs in chunks and gives exactly the unsplit result.
#[test]
fn attention_splits_a_batch_too_large_for_one_binding() {
    let (b, t, heads, hd) = (37, 8, 2, 4);
    let shape = [b, t, heads * hd];
    let mut rng = Rng::new(46);
    let data: Vec<Vec<f32>> = (0..4).map(|_| rng.vec(b * t * heads * hd)).collect();
    for s in BOTH {
        let run = |g: &Gpu| -> Vec<Vec<f32>> {
            let up = |d: &Vec<f32>| Tensor::from_slice(g, &shape, d).unwrap();
            let (q, k, v, dout) = (up(&data[0]), up(&data[1]), up(&data[2]), up(&data[3]));
            let (out, probs) = attention::attention_with(s, &q, &k, &v, heads, true).unwrap();
            let (dq, dk, dv) = attention::attention_backward_with(s, &q, &k, &v, &probs, &dout, heads, true).unwrap();
            [out, probs, dq, dk, dv].iter().map(|x| x.to_vec().unwrap()).collect()
        };
        let whole = run(gpu());
        let g = Gpu::new(&GpuOptions::default()).unwrap();
        // One sample: 256 bytes of q/k/v, 512 bytes of probs; 4096 bytes hold 8 samples.
        g.set_binding_limit_for_tests(4096);
        let before = g.stats().dispatches;
        let split = run(&g);
        assert_eq!(g.stats().dispatches - before, 3 * 5, "5 chunks × (1 forward + 2 backward) dispatches");
        for (name, (a, b)) in ["out", "probs", "dq", "dk", "dv"].iter().zip(whole.iter().zip(&split)) {
            assert_eq!(a, b, "{s:?}: {name} differs when split");
        }
    }
    let g = Gpu::new(&GpuOptions::default()).unwrap();
    // A single sample that cannot fit is an error, not a crash.
    g.set_binding_limit_for_tests(64);
    let q = Tensor::from_slice(&g, &shape, &data[0]).unwrap();
    let e = attention::attention(&q, &q, &q, heads, false).unwrap_err().to_string();
    assert!(e.contains("max_storage_buffer_binding_size"), "{e}");
}

#[test]
fn attention_shape_errors_name_the_op() {
    let q = upload(&[1, 3, 6], &[0.0; 18]);
    let k = upload(&[1, 4, 6], &[0.0; 24]);
    let e = attention::attention(&q, &k, &q, 2, false).unwrap_err().to_string();
    assert!(e.contains("attention") && e.contains("[1, 4, 6]") && e.contains("[1, 3, 6]"), "{e}");
    let e = attention::attention(&q, &q, &q, 4, false).unwrap_err().to_string();
    assert!(e.contains("attention") && e.contains("4 heads"), "{e}");
    let (_, probs) = attention::attention(&q, &q, &q, 2, false).unwrap();
    let e = attention::attention_backward(&q, &q, &q, &probs, &q, 3, false).unwrap_err().to_string();
    assert!(e.contains("attention_backward"), "{e}");
    // An empty batch is no error: empty results, nothing dispatched.
    let z = Tensor::empty(gpu(), &[0, 3, 6]).unwrap();
    let (out, probs) = attention::attention(&z, &z, &z, 2, true).unwrap();
    assert_eq!((out.shape(), probs.shape()), (&[0, 3, 6][..], &[0, 2, 3, 3][..]));
    assert_eq!(attention::attention_backward(&z, &z, &z, &probs, &z, 2, true).unwrap().0.shape(), &[0, 3, 6]);
}

/// CPU seconds used by this process so far (user + system), from /proc: on a shared
/// machine wall time depends on the neighbours, lavapipe's CPU time much less.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: f64 = fields.get(11..13).map(|f| f.iter().filter_map(|x| x.parse::<f64>().ok()).sum()).unwrap_or(0.0);
    ticks / 100.0
}

/// Timing at CLIP's shapes: `cargo test --test kernels attention_timing -- --ignored --nocapture`
/// (batch 64, or RATLIP_TIMING_BATCH), with the device's own strategy. Prints wall and CPU
/// milliseconds per call.
#[test]
#[ignore]
fn attention_timing_at_clip_shapes() {
    let g = gpu();
    let b: usize = std::env::var("RATLIP_TIMING_BATCH").ok().and_then(|s| s.parse().ok()).unwrap_or(64);
    let reps = 5;
    for s in [Strategy::for_device(g)] {
        for &(name, t, heads, w, causal) in &[("text", 77, 8, 512, true), ("image", 50, 12, 768, false)] {
            let mut rng = Rng::new(47);
            let shape = [b, t, w];
            let [q, k, v, dout] = [0; 4].map(|_| random(&mut rng, &shape).0);
            let mut probs = None;
            let c0 = cpu_seconds();
            let fwd = ratlip::bench::time(g, reps, || {
                probs = Some(attention::attention_with(s, &q, &k, &v, heads, causal)?.1);
                Ok(())
            })
            .unwrap();
            let c1 = cpu_seconds();
            let p = probs.unwrap();
            let bwd = ratlip::bench::time(g, reps, || {
                attention::attention_backward_with(s, &q, &k, &v, &p, &dout, heads, causal).map(|_| ())
            })
            .unwrap();
            let c2 = cpu_seconds();
            let per = |c: f64| c * 1e3 / (reps + 1) as f64;
            println!(
                "{s:?} {name}: B{b} T{t} heads {heads} W{w} causal {causal}: forward {fwd:.1} ms (cpu {:.1} ms), backward {bwd:.1} ms (cpu {:.1} ms)",
                per(c1 - c0),
                per(c2 - c1)
            );
        }
    }
}
