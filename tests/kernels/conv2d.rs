//! conv2d forward and backward against the f64 CPU reference.
//!
//! Tolerances: every output is a sum of K = Cin·kh·kw products of values in [-1, 1] (dx: Cout·
//! taps, dw: B·Ho·Wo) accumulated in f32 in an order the CPU does not follow, so the error grows
//! like √K·6e-8 per unit of magnitude; with K ≤ 650 here, forward and dx/dw comparisons use
//! 2e-5 relative + 2e-5 absolute. Finite differences of the f64 reference are exact to ~1e-9,
//! so gradient checks allow 1e-4 of the largest gradient. Split and unsplit batches run the
//! same per-element arithmetic (forward, dx) and must agree exactly; dw and dbias add chunk
//! partial sums in another order and get the f32 tolerance above.

use ratlip::ops::conv2d::{self, codegen, cpu, Conv2dParams, Path};
use ratlip::{Gpu, Tape, Tensor};

use crate::common::*;

struct Case {
    x: [usize; 4],
    w: [usize; 4],
    p: Conv2dParams,
    bias: bool,
}

fn case(x: [usize; 4], w: [usize; 4], stride: (usize, usize), padding: (usize, usize), bias: bool) -> Case {
    Case { x, w, p: Conv2dParams { stride, padding }, bias }
}

/// Shapes covering every kernel: 3-wide stride-1 kernels on rows of at least 12 pixels
/// (conv_k3, dw_k3) and everything else (conv_any, dw_any), dx by stride phases and with the
/// phases merged into rows (kernel and padding multiples of the stride), tile edges (Cout 70 >
/// 64 rows, rows of 28 and 31 pixels = partial 16-pixel blocks), odd sizes.
fn cases() -> Vec<Case> {
    vec![
        case([2, 3, 7, 9], [5, 3, 3, 3], (1, 1), (1, 1), true),   // odd everything, 3×3 pad 1
        case([1, 8, 6, 6], [4, 8, 1, 1], (1, 1), (0, 0), true),   // 1×1
        case([2, 6, 7, 7], [3, 6, 4, 4], (1, 1), (0, 0), false),  // NetC's 4×4 pad 0
        case([1, 4, 7, 7], [6, 4, 5, 5], (1, 1), (2, 2), true),   // 5×5 pad 2
        case([2, 5, 9, 8], [7, 5, 3, 3], (2, 2), (1, 1), true),   // stride 2
        case([1, 3, 17, 24], [6, 3, 8, 8], (8, 8), (0, 0), false), // patchify, CLIP's 32/32 scaled down
        case([1, 2, 9, 11], [3, 2, 4, 4], (2, 2), (2, 2), true),   // merged phases, odd H and W
        case([1, 3, 5, 28], [70, 3, 3, 3], (1, 1), (1, 1), true), // Cout over one 64-row tile, W 28
        case([3, 2, 4, 33], [3, 2, 3, 3], (1, 1), (0, 0), false), // 3 taps, no padding, W over 32
        case([1, 3, 8, 7], [2, 3, 3, 2], (2, 1), (0, 1), true),   // asymmetric stride and padding
        case([2, 3, 6, 5], [4, 3, 2, 3], (1, 3), (1, 0), false),  // horizontal stride 3
        case([1, 2, 7, 14], [3, 2, 3, 3], (2, 1), (1, 1), true),  // 3-tap kernels with vertical phases
    ]
}

fn to64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

struct Data {
    x: Vec<f32>,
    w: Vec<f32>,
    b: Vec<f32>,
}

fn data(rng: &mut Rng, c: &Case) -> Data {
    Data { x: rng.vec(c.x.iter().product()), w: rng.vec(c.w.iter().product()), b: rng.vec(c.w[0]) }
}

fn reference(c: &Case, d: &Data) -> Vec<f64> {
    let b = c.bias.then(|| to64(&d.b));
    cpu::conv2d(&to64(&d.x), c.x, &to64(&d.w), c.w, b.as_deref(), c.p)
}

fn forward_on(g: &Gpu, c: &Case, d: &Data) -> Vec<f32> {
    let x = Tensor::from_slice(g, &c.x, &d.x).unwrap();
    let w = Tensor::from_slice(g, &c.w, &d.w).unwrap();
    let b = Tensor::from_slice(g, &[c.w[0]], &d.b).unwrap();
    let y = conv2d::conv2d(&x, &w, c.bias.then_some(&b), c.p).unwrap();
    y.to_vec().unwrap()
}

/// (dx, dw, dbias) for the seed dy.
fn backward_on(g: &Gpu, c: &Case, d: &Data, dy: &[f32]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let x = Tensor::from_slice(g, &c.x, &d.x).unwrap();
    let w = Tensor::from_slice(g, &c.w, &d.w).unwrap();
    let (ho, wo) = c.p.output_size(c.x[2], c.x[3], c.w[2], c.w[3]).unwrap();
    let dy = Tensor::from_slice(g, &[c.x[0], c.w[0], ho, wo], dy).unwrap();
    let (dx, dw, db) = conv2d::conv2d_backward(&x, &w, &dy, c.p, [true, true, true]).unwrap();
    (dx.unwrap().to_vec().unwrap(), dw.unwrap().to_vec().unwrap(), db.unwrap().to_vec().unwrap())
}

fn out_len(c: &Case) -> usize {
    let (ho, wo) = c.p.output_size(c.x[2], c.x[3], c.w[2], c.w[3]).unwrap();
    c.x[0] * c.w[0] * ho * wo
}

#[test]
fn conv2d_forward_matches_cpu() {
    let mut rng = Rng::new(11);
    for c in cases() {
        let d = data(&mut rng, &c);
        let want = reference(&c, &d);
        let got = forward_on(gpu(), &c, &d);
        assert_close(&format!("conv2d {:?} * {:?} {:?}", c.x, c.w, c.p), &got, &want, 2e-5, 2e-5);
    }
}

#[test]
fn conv2d_portable_kernels_match_cpu() {
    let mut rng = Rng::new(12);
    conv2d::with_path(Path::Portable, || {
        for c in cases() {
            let d = data(&mut rng, &c);
            let what = format!("portable {:?} * {:?} {:?}", c.x, c.w, c.p);
            assert_close(&what, &forward_on(gpu(), &c, &d), &reference(&c, &d), 2e-5, 2e-5);
            check_backward(&c, &d, &mut rng, &what);
        }
    });
}

/// dx, dw and dbias of loss = Σ dy ⊙ conv2d(x, w, b) against finite differences of the
/// reference, at up to 48 coordinates of each.
fn check_backward(c: &Case, d: &Data, rng: &mut Rng, what: &str) {
    let dy = rng.vec(out_len(c));
    let (dx, dw, db) = backward_on(gpu(), c, d, &dy);
    let (x64, w64, b64) = (to64(&d.x), to64(&d.w), to64(&d.b));
    let loss_x = |x: &[f64]| dot(&cpu::conv2d(x, c.x, &w64, c.w, Some(&b64), c.p), &dy);
    let loss_w = |w: &[f64]| dot(&cpu::conv2d(&x64, c.x, w, c.w, Some(&b64), c.p), &dy);
    let loss_b = |b: &[f64]| dot(&cpu::conv2d(&x64, c.x, &w64, c.w, Some(b), c.p), &dy);
    check_grad(&format!("{what} dx"), &loss_x, &d.x, &dx, 48, 1e-4);
    check_grad(&format!("{what} dw"), &loss_w, &d.w, &dw, 48, 1e-4);
    check_grad(&format!("{what} dbias"), &loss_b, &d.b, &db, 48, 1e-4);
}

#[test]
fn conv2d_backward_matches_finite_differences() {
    let mut rng = Rng::new(13);
    for c in cases() {
        let d = data(&mut rng, &c);
        check_backward(&c, &d, &mut rng, &format!("{:?} * {:?} {:?}", c.x, c.w, c.p));
    }
}

/// Every input pixel and weight, not just sampled ones: dx and dw against an exact CPU
/// backward (the transposed sums written out), for a strided case where phases have
/// different tap counts and one (3×3 stride 1) that takes the 3-tap kernels.
#[test]
fn conv2d_backward_matches_cpu_everywhere() {
    let mut rng = Rng::new(14);
    for c in [case([2, 5, 9, 8], [7, 5, 3, 3], (2, 2), (1, 1), false), case([2, 4, 6, 26], [66, 4, 3, 3], (1, 1), (1, 1), false)] {
        let d = data(&mut rng, &c);
        let dy = rng.vec(out_len(&c));
        let (dx, dw, _) = backward_on(gpu(), &c, &d, &dy);
        let [b, cin, h, wd] = c.x;
        let [cout, _, kh, kw] = c.w;
        let (ho, wo) = c.p.output_size(h, wd, kh, kw).unwrap();
        let (sh, sw) = c.p.stride;
        let (ph, pw) = c.p.padding;
        let mut want_dx = vec![0.0f64; d.x.len()];
        let mut want_dw = vec![0.0f64; d.w.len()];
        for bi in 0..b {
            for co in 0..cout {
                for oy in 0..ho {
                    for ox in 0..wo {
                        let g = dy[((bi * cout + co) * ho + oy) * wo + ox] as f64;
                        for ci in 0..cin {
                            for ky in 0..kh {
                                for kx in 0..kw {
                                    let iy = (oy * sh + ky) as isize - ph as isize;
                                    let ix = (ox * sw + kx) as isize - pw as isize;
                                    if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                                        continue;
                                    }
                                    let xi = ((bi * cin + ci) * h + iy as usize) * wd + ix as usize;
                                    let wi = ((co * cin + ci) * kh + ky) * kw + kx;
                                    want_dx[xi] += g * d.w[wi] as f64;
                                    want_dw[wi] += g * d.x[xi] as f64;
                                }
                            }
                        }
                    }
                }
            }
        }
        assert_close(&format!("dx {:?}", c.x), &dx, &want_dx, 2e-5, 2e-5);
        assert_close(&format!("dw {:?}", c.w), &dw, &want_dw, 2e-5, 2e-5);
    }
}

#[test]
fn conv2d_on_the_tape() {
    let mut rng = Rng::new(15);
    let c = case([2, 3, 5, 6], [4, 3, 3, 3], (1, 1), (1, 1), true);
    let d = data(&mut rng, &c);
    let dy = rng.vec(out_len(&c));
    let (ho, wo) = (5, 6);
    let tape = Tape::new(gpu());
    let x = tape.var(upload(&c.x, &d.x));
    let w = tape.var(upload(&c.w, &d.w));
    let b = tape.var(upload(&[4], &d.b));
    let y = tape.conv2d(&x, &w, Some(&b), c.p).unwrap();
    assert_eq!(y.shape(), [2, 4, ho, wo]);
    let grads = tape.backward_with(&y, Some(upload(&[2, 4, ho, wo], &dy)), &[]).unwrap();
    let (dx, dw, db) = backward_on(gpu(), &c, &d, &dy);
    assert_eq!(grads.get(&x).unwrap().to_vec().unwrap(), dx);
    assert_eq!(grads.get(&w).unwrap().to_vec().unwrap(), dw);
    assert_eq!(grads.get(&b).unwrap().to_vec().unwrap(), db);

    // A frozen weight (CLIP's patchify): the gradient still reaches x, and w gets none.
    let tape = Tape::new(gpu());
    let x = tape.var(upload(&c.x, &d.x));
    let w = tape.constant(upload(&c.w, &d.w));
    let y = tape.conv2d(&x, &w, None, c.p).unwrap();
    let grads = tape.backward_with(&y, Some(upload(&[2, 4, ho, wo], &dy)), &[]).unwrap();
    assert!(grads.get(&w).is_none());
    assert_eq!(grads.get(&x).unwrap().to_vec().unwrap(), dx);
}

/// Batches larger than one storage binding are split; the results must not change.
#[test]
fn conv2d_split_batches_match_unsplit() {
    let g = Gpu::new(&Default::default()).unwrap();
    let mut rng = Rng::new(16);
    for c in [case([5, 4, 9, 8], [6, 4, 3, 3], (1, 1), (1, 1), true), case([6, 3, 8, 8], [5, 3, 4, 4], (2, 2), (1, 1), true)] {
        let d = data(&mut rng, &c);
        let dy = rng.vec(out_len(&c));
        g.set_binding_limit_for_tests(0);
        let y = forward_on(&g, &c, &d);
        let (dx, dw, db) = backward_on(&g, &c, &d, &dy);
        // Two batch items (4·9·8·4 = 1152 bytes of x) per binding: 3 chunks of the first case.
        g.set_binding_limit_for_tests(2 * (c.x[1] * c.x[2] * c.x[3] * 4) as u64 + 64);
        let y2 = forward_on(&g, &c, &d);
        let (dx2, dw2, db2) = backward_on(&g, &c, &d, &dy);
        assert_eq!(y, y2, "forward");
        assert_eq!(dx, dx2, "dx");
        assert_close("dw", &dw2, &to64(&dw), 2e-5, 2e-5);
        assert_close("dbias", &db2, &to64(&db), 2e-5, 2e-5);
    }
}

#[test]
fn conv2d_shape_errors_name_the_op_and_shapes() {
    let t = |s: &[usize]| upload(s, &vec![0.0; s.iter().product()]);
    let err = |r: ratlip::Result<Tensor>| r.unwrap_err().to_string();
    let p = Conv2dParams::same(3);
    let e = err(conv2d::conv2d(&t(&[1, 3, 8, 8]), &t(&[4, 2, 3, 3]), None, p));
    assert!(e.contains("conv2d") && e.contains("[1, 3, 8, 8]") && e.contains("[4, 2, 3, 3]"), "{e}");
    let e = err(conv2d::conv2d(&t(&[1, 3, 2, 8]), &t(&[4, 3, 5, 5]), None, Conv2dParams::new(1, 1)));
    assert!(e.contains("conv2d") && e.contains("does not fit") && e.contains("[5, 5]"), "{e}");
    let e = err(conv2d::conv2d(&t(&[1, 3, 8, 8]), &t(&[4, 3, 3, 3]), Some(&t(&[3])), p));
    assert!(e.contains("bias") && e.contains("[3]"), "{e}");
    let e = err(conv2d::conv2d(&t(&[3, 8, 8]), &t(&[4, 3, 3, 3]), None, p));
    assert!(e.contains("[B, Cin, H, W]"), "{e}");
    let e = err(conv2d::conv2d(&t(&[1, 3, 8, 8]), &t(&[4, 3, 3, 3]), None, Conv2dParams::new(0, 1)));
    assert!(e.contains("stride"), "{e}");
    let dy = t(&[1, 4, 7, 8]);
    let e = conv2d::conv2d_backward(&t(&[1, 3, 8, 8]), &t(&[4, 3, 3, 3]), &dy, p, [true; 3]).unwrap_err().to_string();
    assert!(e.contains("conv2d_backward") && e.contains("[1, 4, 7, 8]") && e.contains("[1, 4, 8, 8]"), "{e}");
}

/// The GEMM shaders are generated; the checked-in files must be what the generator writes.
#[test]
fn conv2d_shaders_are_generated() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    for (file, src) in [("conv2d_sg.wgsl", codegen::subgroup_source()), ("conv2d_portable.wgsl", codegen::portable_source())] {
        let path = dir.join(file);
        if std::env::var_os("RATLIP_REGEN_SHADERS").is_some() {
            std::fs::write(&path, &src).unwrap();
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(on_disk == src, "shaders/{file} is stale: run RATLIP_REGEN_SHADERS=1 cargo test --test kernels conv2d_shaders");
    }
}
