//! Shape ops: concat, slice, permute, nearest resize, channel shuffle, roll along dim 0,
//! per-sample translation.
//!
//! Tolerances: every forward moves values without arithmetic, so it must equal the CPU
//! reference exactly (rtol = atol = 0). Backwards are copies too, except the resize's, which
//! adds at most ceil(out/in)² gradients per input pixel in f32: ≤ a few ulp, so its exact
//! comparison uses 1e-6 relative. Gradient checks: the ops are linear, so the f64 central
//! difference of the CPU reference is exact up to rounding (~1e-11); 1e-5 of the largest
//! gradient leaves room only for the f32 sums of the resize backward.

use ratlip::ops::shape::{self, cpu};
use ratlip::{Error, Gpu, Tape, Tensor};

use crate::common::*;

fn exact(what: &str, got: &Tensor, want: &[f64]) {
    assert_close(what, &got.to_vec().unwrap(), want, 0.0, 0.0);
}

fn random_shape(rng: &mut Rng, rank: usize, max: usize) -> Vec<usize> {
    (0..rank).map(|_| rng.range(1, max)).collect()
}

fn random_perm(rng: &mut Rng, n: usize) -> Vec<usize> {
    let mut p: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        p.swap(i, rng.range(0, i));
    }
    p
}

/// Runs `op` on the tape with a random seed gradient w and checks the gradient of every
/// input against finite differences of `reference` (the f64 CPU forward) at every element.
fn check_op_grad(
    what: &str,
    rng: &mut Rng,
    shapes: &[Vec<usize>],
    op: &dyn Fn(&Tape, &[&ratlip::Var]) -> ratlip::Var,
    reference: &dyn Fn(&[Vec<f64>]) -> Vec<f64>,
) {
    let data: Vec<Vec<f32>> = shapes.iter().map(|s| rng.vec(s.iter().product())).collect();
    let tape = Tape::new(gpu());
    let vars: Vec<ratlip::Var> = shapes.iter().zip(&data).map(|(s, d)| tape.var(upload(s, d))).collect();
    let refs: Vec<&ratlip::Var> = vars.iter().collect();
    let y = op(&tape, &refs);
    let w = rng.vec(y.value().numel());
    let grads = tape.backward_with(&y, Some(upload(y.shape(), &w)), &[]).unwrap();
    for (i, v) in vars.iter().enumerate() {
        let g = grads.get(v).unwrap().to_vec().unwrap();
        let loss = |x: &[f64]| {
            let mut inputs: Vec<Vec<f64>> = data.iter().map(|d| to_f64(d)).collect();
            inputs[i] = x.to_vec();
            dot(&reference(&inputs), &w)
        };
        check_grad(&format!("{what}: input {i}"), &loss, &data[i], &g, data[i].len(), 1e-5);
    }
}

// ---- concat ---------------------------------------------------------------------------

#[test]
fn concat_of_one_to_four_tensors_along_every_dim() {
    let mut rng = Rng::new(11);
    for rank in 1..=5 {
        for dim in 0..rank {
            for count in 1..=4 {
                let base = random_shape(&mut rng, rank, if rank > 3 { 4 } else { 7 });
                let mut parts = Vec::new();
                for _ in 0..count {
                    let mut s = base.clone();
                    s[dim] = rng.range(1, 5);
                    parts.push((random(&mut rng, &s), s));
                }
                let ts: Vec<&Tensor> = parts.iter().map(|((t, _), _)| t).collect();
                let y = shape::concat(&ts, dim).unwrap();
                let d64: Vec<Vec<f64>> = parts.iter().map(|((_, v), _)| to_f64(v)).collect();
                let refs: Vec<(&[f64], &[usize])> = d64.iter().zip(&parts).map(|(d, (_, s))| (&d[..], &s[..])).collect();
                let want = cpu::concat(&refs, dim);
                let mut want_shape = base.clone();
                want_shape[dim] = parts.iter().map(|(_, s)| s[dim]).sum();
                assert_eq!(y.shape(), &want_shape[..]);
                exact(&format!("concat {count} of rank {rank} along {dim}"), &y, &want);
            }
        }
    }
}

#[test]
fn concat_backward_slices_the_gradient() {
    let mut rng = Rng::new(12);
    for dim in 0..3 {
        let shapes: Vec<Vec<usize>> = (0..3).map(|k| {
            let mut s = vec![3, 2, 5];
            s[dim] = k + 1;
            s
        }).collect();
        check_op_grad(
            &format!("concat along {dim}"),
            &mut rng,
            &shapes,
            &|t, v| t.concat(v, dim).unwrap(),
            &|x| {
                let refs: Vec<(&[f64], &[usize])> = x.iter().zip(&shapes).map(|(d, s)| (&d[..], &s[..])).collect();
                cpu::concat(&refs, dim)
            },
        );
    }
    // A constant input gets no gradient and costs no work; the var beside it still does.
    let tape = Tape::new(gpu());
    let a = tape.var(upload(&[2, 3], &[1.0; 6]));
    let b = tape.constant(upload(&[2, 1], &[2.0; 2]));
    let y = tape.concat(&[&a, &b], 1).unwrap();
    let grads = tape.backward(&y).unwrap();
    assert!(grads.get(&b).is_none());
    assert_eq!(grads.get(&a).unwrap().to_vec().unwrap(), vec![1.0; 6]);
}

// ---- slice ----------------------------------------------------------------------------

#[test]
fn slices_along_every_dim() {
    let mut rng = Rng::new(21);
    for rank in 1..=5 {
        for dim in 0..rank {
            for _ in 0..3 {
                let s = random_shape(&mut rng, rank, if rank > 3 { 5 } else { 9 });
                let start = rng.range(0, s[dim] - 1);
                let len = rng.range(1, s[dim] - start);
                let (x, v) = random(&mut rng, &s);
                let y = shape::slice(&x, dim, start, len).unwrap();
                exact(&format!("slice {start}+{len} of dim {dim} of {s:?}"), &y, &cpu::slice(&to_f64(&v), &s, dim, start, len));
            }
        }
    }
}

#[test]
fn slice_backward_writes_into_zeros() {
    let mut rng = Rng::new(22);
    let s = vec![3, 4, 5, 2];
    for dim in 0..4 {
        let (start, len) = (1, s[dim] - 1 - (dim % 2));
        check_op_grad(
            &format!("slice of dim {dim}"),
            &mut rng,
            std::slice::from_ref(&s),
            &|t, v| t.slice(v[0], dim, start, len).unwrap(),
            &|x| cpu::slice(&x[0], &s, dim, start, len),
        );
    }
}

// ---- permute --------------------------------------------------------------------------

#[test]
fn random_permutations_of_2_to_6_dims() {
    let mut rng = Rng::new(31);
    for rank in 2..=6 {
        for _ in 0..6 {
            let s = random_shape(&mut rng, rank, [0, 0, 13, 9, 6, 5, 4][rank]);
            let perm = random_perm(&mut rng, rank);
            let (x, v) = random(&mut rng, &s);
            let y = shape::permute(&x, &perm).unwrap();
            let want_shape: Vec<usize> = perm.iter().map(|&p| s[p]).collect();
            assert_eq!(y.shape(), &want_shape[..]);
            exact(&format!("permute {s:?} by {perm:?}"), &y, &cpu::permute(&to_f64(&v), &s, &perm));
        }
    }
}

/// Shapes that reach the tiled transpose (both sides ≥ 16 after merging dims), with edges that
/// are not multiples of the 32-wide tile, and the attention-style head split.
#[test]
fn transposes_through_the_tiled_kernel() {
    let mut rng = Rng::new(32);
    let cases: [(&[usize], &[usize]); 6] = [
        (&[37, 45], &[1, 0]),
        (&[64, 32], &[1, 0]),
        (&[3, 33, 50], &[0, 2, 1]),
        (&[2, 5, 7, 17], &[0, 3, 1, 2]),
        (&[2, 49, 3, 4, 16], &[2, 0, 3, 1, 4]),
        (&[2, 768, 49], &[0, 2, 1]),
    ];
    for (s, perm) in cases {
        let (x, v) = random(&mut rng, s);
        let y = shape::permute(&x, perm).unwrap();
        exact(&format!("permute {s:?} by {perm:?}"), &y, &cpu::permute(&to_f64(&v), s, perm));
    }
}

#[test]
fn permute_backward_is_the_inverse_permutation() {
    let mut rng = Rng::new(33);
    for rank in 2..=5 {
        let s = random_shape(&mut rng, rank, 4);
        let perm = random_perm(&mut rng, rank);
        check_op_grad(
            &format!("permute {s:?} by {perm:?}"),
            &mut rng,
            std::slice::from_ref(&s),
            &|t, v| t.permute(v[0], &perm).unwrap(),
            &|x| cpu::permute(&x[0], &s, &perm),
        );
    }
}

// ---- nearest resize -------------------------------------------------------------------

/// (in_h, in_w, out_h, out_w, channels)
const RESIZES: [(usize, usize, usize, usize, usize); 10] = [
    (7, 7, 8, 8, 3),
    (8, 8, 16, 16, 2),
    (128, 128, 224, 224, 2),
    (5, 5, 3, 3, 3),
    (3, 5, 7, 2, 2),
    (1, 1, 4, 3, 2),
    (9, 4, 1, 1, 1),
    (256, 256, 224, 224, 1),
    (3, 3, 123, 6, 1),
    (13, 7, 13, 7, 2),
];

#[test]
fn resize_nearest_matches_pytorch_indexing() {
    // PyTorch computes floor(dst · f32(in/out)) in f32, which is not the exact rational
    // floor(dst·in/out): for 3 → 123, position 41 reads input 0 (41·f32(3/123) < 1).
    assert_eq!(cpu::nearest_source(41, 3, 123), 0);
    assert_eq!((0..8).map(|d| cpu::nearest_source(d, 7, 8)).collect::<Vec<_>>(), [0, 0, 1, 2, 3, 4, 5, 6]);
    assert_eq!((0..3).map(|d| cpu::nearest_source(d, 5, 3)).collect::<Vec<_>>(), [0, 1, 3]);
    let mut rng = Rng::new(41);
    for (h, w, oh, ow, c) in RESIZES {
        let s = [2, c, h, w];
        let (x, v) = random(&mut rng, &s);
        let y = shape::resize_nearest(&x, oh, ow).unwrap();
        assert_eq!(y.shape(), &[2, c, oh, ow]);
        exact(&format!("resize {h}×{w} → {oh}×{ow}"), &y, &cpu::resize_nearest(&to_f64(&v), &s, oh, ow));
    }
}

#[test]
fn resize_nearest_backward_gathers_every_reader() {
    let mut rng = Rng::new(42);
    // Exact comparison with the adjoint (Σ over the outputs that read each input) at every size.
    for (h, w, oh, ow, c) in RESIZES {
        let s = [2, c, h, w];
        let (dy, dyv) = random(&mut rng, &[2, c, oh, ow]);
        let dx = shape::resize_nearest_backward(&dy, h, w).unwrap();
        let mut want = vec![0.0f64; 2 * c * h * w];
        for p in 0..2 * c {
            for oy in 0..oh {
                for ox in 0..ow {
                    let (sy, sx) = (cpu::nearest_source(oy, h, oh), cpu::nearest_source(ox, w, ow));
                    want[(p * h + sy) * w + sx] += dyv[(p * oh + oy) * ow + ox] as f64;
                }
            }
        }
        assert_eq!(dx.shape(), &s);
        assert_close(&format!("resize backward {h}×{w} → {oh}×{ow}"), &dx.to_vec().unwrap(), &want, 1e-6, 1e-6);
    }
    // And against finite differences through the tape at the small sizes.
    for (h, w, oh, ow, c) in RESIZES.into_iter().filter(|r| r.0 * r.1 * r.2 * r.3 < 5000) {
        let s = vec![2, c, h, w];
        check_op_grad(
            &format!("resize {h}×{w} → {oh}×{ow}"),
            &mut rng,
            std::slice::from_ref(&s),
            &|t, v| t.resize_nearest(v[0], oh, ow).unwrap(),
            &|x| cpu::resize_nearest(&x[0], &s, oh, ow),
        );
    }
}

// ---- per-sample translation ------------------------------------------------------------

fn shifts_tensor(shifts: &[(i64, i64)]) -> Tensor {
    upload(&[shifts.len(), 2], &shifts.iter().flat_map(|&(y, x)| [y as f32, x as f32]).collect::<Vec<_>>())
}

#[test]
fn translate_moves_each_image_by_its_own_shift() {
    let mut rng = Rng::new(41);
    // Odd sizes; shifts of either sign, zero, and past the edge (all zeros out).
    for s in [[3, 2, 5, 7], [1, 3, 1, 9], [4, 1, 6, 1], [2, 5, 13, 11]] {
        let shifts: Vec<(i64, i64)> = (0..s[0]).map(|_| (rng.range(0, 2 * s[2] + 1) as i64 - s[2] as i64, rng.range(0, 9) as i64 - 4)).collect();
        let (x, v) = random(&mut rng, &s);
        let sh = shifts_tensor(&shifts);
        exact(&format!("translate {s:?} by {shifts:?}"), &shape::translate(&x, &sh).unwrap(), &cpu::translate(&to_f64(&v), &s, &shifts));
        // The backward is the opposite translation.
        let back: Vec<(i64, i64)> = shifts.iter().map(|&(y, x)| (-y, -x)).collect();
        exact(&format!("translate backward {s:?}"), &shape::translate_backward(&x, &sh).unwrap(), &cpu::translate(&to_f64(&v), &s, &back));
    }
    // One pixel down, two left: the known answer on a 1×1×3×3 ramp.
    let x = upload(&[1, 1, 3, 3], &(1..=9).map(|v| v as f32).collect::<Vec<_>>());
    assert_eq!(shape::translate(&x, &shifts_tensor(&[(1, -2)])).unwrap().to_vec().unwrap(), [0.0, 0.0, 0.0, 3.0, 0.0, 0.0, 6.0, 0.0, 0.0]);
    let bad = shape::translate(&x, &shifts_tensor(&[(0, 0), (1, 1)])).unwrap_err();
    assert!(matches!(bad, Error::Shape { .. }), "{bad}");
    for s in [vec![2, 3, 4, 5], vec![3, 1, 7, 3]] {
        let shifts: Vec<(i64, i64)> = (0..s[0]).map(|i| (i as i64 - 1, 2 - i as i64)).collect();
        let sh = shifts_tensor(&shifts);
        check_op_grad(
            &format!("translate {s:?}"),
            &mut rng,
            std::slice::from_ref(&s),
            &|t, v| t.translate(v[0], &sh).unwrap(),
            &|x| cpu::translate(&x[0], &s, &shifts),
        );
    }
}

// ---- channel shuffle / roll -----------------------------------------------------------

#[test]
fn channel_shuffle_with_2_and_4_groups() {
    let mut rng = Rng::new(51);
    for (s, g) in [([2, 8, 3, 5], 2), ([1, 8, 4, 4], 4), ([3, 12, 1, 7], 4), ([2, 6, 2, 3], 2), ([1, 4, 1, 1], 4)] {
        let (x, v) = random(&mut rng, &s);
        let y = shape::channel_shuffle(&x, g).unwrap();
        exact(&format!("shuffle {s:?} g={g}"), &y, &cpu::channel_shuffle(&to_f64(&v), &s, g));
        let back = shape::channel_shuffle(&y, s[1] / g).unwrap();
        exact("shuffle then its inverse", &back, &to_f64(&v));
    }
    // ShuffleNet's example: channels 0..8 in 2 groups interleave.
    let x = upload(&[1, 8, 1, 1], &(0..8).map(|c| c as f32).collect::<Vec<_>>());
    assert_eq!(shape::channel_shuffle(&x, 2).unwrap().to_vec().unwrap(), [0.0, 4.0, 1.0, 5.0, 2.0, 6.0, 3.0, 7.0]);
    for g in [2, 4] {
        let s = vec![2, 8, 2, 3];
        check_op_grad(
            &format!("shuffle g={g}"),
            &mut rng,
            std::slice::from_ref(&s),
            &|t, v| t.channel_shuffle(v[0], g).unwrap(),
            &|x| cpu::channel_shuffle(&x[0], &s, g),
        );
    }
}

#[test]
fn roll0_matches_torch_roll() {
    let mut rng = Rng::new(61);
    for (s, shift) in [(vec![5, 3], 1), (vec![5, 3], 0), (vec![5, 3], 4), (vec![4, 2, 3], 6), (vec![1, 7], 3), (vec![3], 2)] {
        let (x, v) = random(&mut rng, &s);
        let y = shape::roll0(&x, shift).unwrap();
        exact(&format!("roll {s:?} by {shift}"), &y, &cpu::roll0(&to_f64(&v), &s, shift));
    }
    // torch.roll(arange(4), 1) = [3, 0, 1, 2]
    let x = upload(&[4], &[0.0, 1.0, 2.0, 3.0]);
    assert_eq!(shape::roll0(&x, 1).unwrap().to_vec().unwrap(), [3.0, 0.0, 1.0, 2.0]);
    for shift in [1, 2, 7] {
        let s = vec![4, 3, 2];
        check_op_grad(
            &format!("roll by {shift}"),
            &mut rng,
            std::slice::from_ref(&s),
            &|t, v| t.roll0(v[0], shift).unwrap(),
            &|x| cpu::roll0(&x[0], &s, shift),
        );
    }
}

// ---- tensors larger than one binding --------------------------------------------------

/// Every op on a private device whose bindings are limited to 128 alignment units (4 KiB on
/// lavapipe, 1024 floats) must split its work and give exactly what the unsplit run on the
/// shared device gives. Rows are multiples of 8 floats so that any chunk start meets a 32-byte
/// offset alignment (`batch_chunks` would otherwise need groups of several items).
#[test]
fn ops_split_large_tensors_and_match_the_unsplit_result() {
    let small = Gpu::new(&Default::default()).unwrap();
    let align = small.limits().min_storage_buffer_offset_alignment as u64;
    small.set_binding_limit_for_tests(128 * align);
    // With a larger alignment the limit grows and some tensors below fit whole.
    let expect_split = align <= 32;
    let mut rng = Rng::new(71);
    let mut pair = |s: &[usize]| {
        let v = rng.vec(s.iter().product());
        (upload(s, &v), Tensor::from_slice(&small, s, &v).unwrap())
    };
    let same = |what: &str, a: Tensor, b: Tensor| {
        assert_eq!(a.shape(), b.shape(), "{what}");
        assert_eq!(a.to_vec().unwrap(), b.to_vec().unwrap(), "{what}");
    };
    let (a, a_s) = pair(&[9, 3, 8, 8]); // 768-byte items: 5 per 4 KiB chunk
    let (b, b_s) = pair(&[9, 1, 8, 8]);
    let (c, c_s) = pair(&[4, 3, 8, 8]);
    let before = small.stats().dispatches;
    same("concat dim 1", shape::concat(&[&a, &b], 1).unwrap(), shape::concat(&[&a_s, &b_s], 1).unwrap());
    assert!(!expect_split || small.stats().dispatches - before > 2, "concat did not split");
    same("concat dim 0", shape::concat(&[&a, &c], 0).unwrap(), shape::concat(&[&a_s, &c_s], 0).unwrap());
    same("concat dim 3", shape::concat(&[&a, &a], 3).unwrap(), shape::concat(&[&a_s, &a_s], 3).unwrap());
    for dim in 0..4 {
        same(&format!("slice dim {dim}"), shape::slice(&a, dim, 1, 2).unwrap(), shape::slice(&a_s, dim, 1, 2).unwrap());
        let dy = shape::slice(&a, dim, 1, 2).unwrap();
        let dy_s = shape::slice(&a_s, dim, 1, 2).unwrap();
        same(
            &format!("slice_backward dim {dim}"),
            shape::slice_backward(&dy, a.shape(), dim, 1).unwrap(),
            shape::slice_backward(&dy_s, a.shape(), dim, 1).unwrap(),
        );
    }
    for perm in [[0, 3, 1, 2], [0, 1, 3, 2], [2, 0, 1, 3], [3, 2, 1, 0], [1, 0, 2, 3]] {
        let before = small.stats().dispatches;
        same(&format!("permute {perm:?}"), shape::permute(&a, &perm).unwrap(), shape::permute(&a_s, &perm).unwrap());
        assert!(!expect_split || small.stats().dispatches - before > 1, "permute {perm:?} did not split");
    }
    let (t, t_s) = pair(&[40, 64]); // 2-D transpose with both sides split (two-level blocks)
    same("transpose 40×64", shape::permute(&t, &[1, 0]).unwrap(), shape::permute(&t_s, &[1, 0]).unwrap());
    let (x, x_s) = pair(&[3, 4, 8, 8]);
    let before = small.stats().dispatches;
    same("resize 8 → 16", shape::resize_nearest(&x, 16, 16).unwrap(), shape::resize_nearest(&x_s, 16, 16).unwrap());
    assert!(!expect_split || small.stats().dispatches - before > 1, "resize did not split");
    let (x, x_s) = pair(&[3, 4, 16, 16]);
    same("resize 16 → 5", shape::resize_nearest(&x, 5, 8).unwrap(), shape::resize_nearest(&x_s, 5, 8).unwrap());
    let (dy, dy_s) = pair(&[3, 4, 16, 16]);
    same("resize backward", shape::resize_nearest_backward(&dy, 8, 8).unwrap(), shape::resize_nearest_backward(&dy_s, 8, 8).unwrap());
    let (y, y_s) = pair(&[6, 8, 4, 8]);
    same("shuffle", shape::channel_shuffle(&y, 2).unwrap(), shape::channel_shuffle(&y_s, 2).unwrap());
    same("roll", shape::roll0(&a, 4).unwrap(), shape::roll0(&a_s, 4).unwrap());

    // One item larger than a binding cannot be split: an error, not a crash.
    let big = Tensor::from_slice(&small, &[2, 20000], &vec![0.0; 40000]).unwrap();
    assert!(matches!(shape::permute(&big, &[1, 0]), Err(Error::BindingTooLarge { .. })));
    let plane = Tensor::from_slice(&small, &[1, 1, 128, 128], &vec![0.0; 128 * 128]).unwrap();
    assert!(matches!(shape::resize_nearest(&plane, 2, 2), Err(Error::BindingTooLarge { .. })));
}

// ---- shape errors ---------------------------------------------------------------------

fn shape_error(r: ratlip::Result<Tensor>, op: &str) -> String {
    match r {
        Err(e @ Error::Shape { .. }) => {
            let m = e.to_string();
            assert!(m.contains(op), "{m}");
            m
        }
        other => panic!("{op}: expected a shape error, got {other:?}"),
    }
}

#[test]
fn bad_shapes_are_errors_naming_the_op() {
    let a = upload(&[2, 3], &[0.0; 6]);
    let b = upload(&[3, 3], &[0.0; 9]);
    let m = shape_error(shape::concat(&[&a, &b], 1), "concat");
    assert!(m.contains("[2, 3]") && m.contains("[3, 3]"), "{m}");
    assert!(shape::concat(&[&a, &b], 0).is_ok());
    shape_error(shape::concat(&[], 0), "concat");
    shape_error(shape::concat(&[&a], 2), "concat");
    shape_error(shape::concat(&[&a, &upload(&[2, 3, 1], &[0.0; 6])], 0), "concat");
    shape_error(shape::slice(&a, 1, 2, 2), "slice");
    shape_error(shape::slice(&a, 2, 0, 1), "slice");
    shape_error(shape::slice_backward(&a, &[2, 2], 1, 0), "slice_backward");
    shape_error(shape::slice_backward(&a, &[3, 4], 1, 0), "slice_backward");
    shape_error(shape::permute(&a, &[0, 0]), "permute");
    shape_error(shape::permute(&a, &[1]), "permute");
    shape_error(shape::permute(&a, &[0, 2]), "permute");
    shape_error(shape::permute(&upload(&[1; 7], &[0.0]), &[6, 5, 4, 3, 2, 1, 0]), "permute");
    let img = upload(&[1, 6, 2, 2], &[0.0; 24]);
    shape_error(shape::resize_nearest(&a, 4, 4), "resize_nearest");
    shape_error(shape::resize_nearest(&img, 0, 4), "resize_nearest");
    shape_error(shape::resize_nearest_backward(&img, 0, 1), "resize_nearest_backward");
    shape_error(shape::channel_shuffle(&img, 4), "channel_shuffle");
    shape_error(shape::channel_shuffle(&img, 0), "channel_shuffle");
    shape_error(shape::channel_shuffle(&a, 2), "channel_shuffle");
    shape_error(shape::roll0(&upload(&[], &[1.0]), 1), "roll0");
}

/// Wall time of the ops at the model's sizes (lavapipe numbers in the report). Run with
/// `cargo test --test kernels shape_timings -- --ignored --nocapture`.
#[test]
#[ignore]
fn shape_timings() {
    let g = gpu();
    let time = |what: &str, f: &dyn Fn() -> Tensor| {
        f().to_vec().unwrap();
        let t = std::time::Instant::now();
        let reps = 3;
        for _ in 0..reps {
            let y = f();
            g.sync().unwrap();
            drop(y);
        }
        let ms = t.elapsed().as_secs_f64() * 1e3 / reps as f64;
        println!("{what}: {ms:.1} ms");
    };
    let mut rng = Rng::new(99);
    let (m, _) = random(&mut rng, &[2048, 2048]);
    time("transpose 2048×2048 (tiled)", &|| shape::permute(&m, &[1, 0]).unwrap());
    let (t, _) = random(&mut rng, &[16, 768, 49]);
    time("permute [16,768,49] → [16,49,768] (tiled)", &|| shape::permute(&t, &[0, 2, 1]).unwrap());
    let (q, _) = random(&mut rng, &[16, 50, 12, 64]);
    time("permute [16,50,12,64] → [16,12,50,64] (strided)", &|| shape::permute(&q, &[0, 2, 1, 3]).unwrap());
    let (c, _) = random(&mut rng, &[64, 64, 32, 32]);
    time("permute [64,64,32,32] by [3,2,1,0] (strided)", &|| shape::permute(&c, &[3, 2, 1, 0]).unwrap());
    let (x, _) = random(&mut rng, &[16, 64, 128, 128]);
    time("resize [16,64,128²] → 224² (205 MB out, split)", &|| shape::resize_nearest(&x, 224, 224).unwrap());
    let (dy, _) = random(&mut rng, &[16, 64, 224, 224]);
    time("resize backward 224² → 128²", &|| shape::resize_nearest_backward(&dy, 128, 128).unwrap());
    let (s, _) = random(&mut rng, &[16, 256, 32, 32]);
    time("channel_shuffle [16,256,32,32] g=2", &|| shape::channel_shuffle(&s, 2).unwrap());
    time("concat 2×[16,256,32,32] dim 1", &|| shape::concat(&[&s, &s], 1).unwrap());
}
