//! One whole training step (MODEL.md §5) against PyTorch running the released loop
//! (tools/reference/train_reference.py → tests/fixtures/train_tiny): every loss term, MA-GP,
//! L_D's NetD/NetC gradients (and MA-GP's alone), L_G's G gradients, every parameter after
//! both Adam updates and G's BatchNorm running statistics.
//!
//! Errors are max |ours − torch| / max |torch| per tensor. Tolerances:
//! - losses 1e-4: a few ulp per op through CLIP, G and D in f32;
//! - first-order gradients 2e-4, as tests/model.rs, or an absolute error within 1e-6 of the
//!   largest gradient of the part (see check_named: L_G's gradient goes back through NetD,
//!   CLIP and G, and shuffle attention's gate gradients are cancelling sums ~1e-4 of G's
//!   largest; measured 8.9e-4 relative = 1.3e-7 of the largest for ratlip's `se.sweight`);
//! - MA-GP's parameter gradient, alone and within L_D's, 2e-4 as well: the central difference
//!   runs on D with its LeakyReLU slopes frozen (affine in the input), so it only adds f32
//!   rounding of the two gradients divided by the relative step (≈ 1e-7 at MAGP_STEP = 1;
//!   the sweep test prints it growing as 1/step below that);
//! - parameters after Adam: the first Adam step moves each parameter by lr·g/(|g| + eps),
//!   ≈ lr·sign(g), so moves are compared in units of lr (1e-2), except where torch's gradient
//!   element is within the gradient tolerance of 0 and its sign is undetermined;
//! - BN running statistics 1e-4, as outputs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use ratlip::model::{Model, NET_C, NET_D, NET_G};
use ratlip::train::adam::{Adam, BETAS, EPS, LR_D, LR_G};
use ratlip::train::{self, Batch};
use ratlip::{Gpu, GpuOptions, Tensor};

#[path = "support/reference.rs"]
mod reference;
use reference::{rel, Ref};

const TOL_LOSS: f64 = 1e-4;
const TOL_GRAD: f64 = 2e-4;
const TOL_FLOOR: f64 = 1e-6;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/train_tiny")
}

fn gpu() -> Gpu {
    Gpu::new(&GpuOptions::default()).expect("train tests need a GPU adapter (lavapipe is enough)")
}

fn load_ref(arch: &str) -> Ref {
    Ref::open(&dir().join(format!("{arch}_step.safetensors")))
}


fn check_loss(what: &str, got: f32, want: f32) -> f64 {
    let e = (got as f64 - want as f64).abs() / (want.abs() as f64).max(1e-30);
    println!("{what}: ours {got:.7} torch {want:.7}, relative error {e:.2e}");
    // A hinge term can be exactly 0 on both sides.
    assert!(e <= TOL_LOSS || (got == 0.0 && want == 0.0), "{what}: relative error {e:.2e} > {TOL_LOSS:.0e}");
    e
}

fn max_abs(v: &[f32]) -> f64 {
    v.iter().fold(0f32, |m, x| m.max(x.abs())) as f64
}

/// Tensors by full name against the reference's `<tag>.<full name>` tensors under `prefix`;
/// a tensor we lack must be all zero in the reference (an unreached parameter).
///
/// Error per tensor: max |Δ| / max |torch|, at most `tol`, OR max |Δ| at most TOL_FLOOR of
/// the largest reference value of the whole group: a gradient that is a cancelling sum over
/// every pixel (shuffle attention's gates and GroupNorm, ~1e-4 of G's largest gradient) keeps
/// the rounding of its summands, which is relative to them, not to the small result.
fn check_named(what: &str, ours: &BTreeMap<String, Tensor>, reference: BTreeMap<String, (Vec<usize>, Vec<f32>)>, prefix: &str, tol: f64) -> f64 {
    let reference: BTreeMap<_, _> = reference.into_iter().filter(|(n, _)| n.starts_with(prefix)).collect();
    assert!(!reference.is_empty(), "{what}: reference has nothing under {prefix}");
    let group = reference.values().map(|(_, w)| max_abs(w)).fold(0f64, f64::max);
    let (mut worst, mut worst_name) = (0f64, String::new());
    for (name, (shape, want)) in &reference {
        match ours.get(name) {
            Some(g) => {
                assert_eq!(g.shape(), shape.as_slice(), "{name}");
                let got = g.to_vec().unwrap();
                let e = rel(&got, want);
                let abs = e * max_abs(want);
                if e > tol {
                    assert!(abs <= TOL_FLOOR * group, "{what}: {name}: max relative error {e:.2e} > {tol:.0e}, and max |Δ| {abs:.2e} > {TOL_FLOOR:.0e} of the group's max {group:.2e}");
                    println!("{what}: {name}: relative error {e:.2e}, but max |Δ| = {:.2e} of the group's largest value (max |torch| here {:.2e} of it)", abs / group, max_abs(want) / group);
                } else if e > worst {
                    worst = e;
                    worst_name = name.clone();
                }
            }
            None => assert!(want.iter().all(|&w| w == 0.0), "{what}: nothing for {name}, reference has a nonzero one"),
        }
    }
    for name in ours.keys().filter(|n| n.starts_with(prefix)) {
        assert!(reference.contains_key(name), "{what}: we have {name}, the reference lacks it");
    }
    println!("{what}: {} tensors, worst relative error {worst:.2e} ({worst_name}) among those within {tol:.0e}", reference.len());
    worst
}

/// Ours minus the tensors torch's double backward leaves None (parameters MA-GP does not
/// depend on: biases, which the central difference cancels), after checking that ours are
/// zero to within the gradient tolerance of the largest reference gradient.
fn without_vanishing(ours: &BTreeMap<String, Tensor>, reference: &BTreeMap<String, (Vec<usize>, Vec<f32>)>) -> BTreeMap<String, Tensor> {
    let scale = reference.values().flat_map(|(_, v)| v.iter()).fold(0f32, |m, x| m.max(x.abs())) as f64;
    let mut kept = BTreeMap::new();
    for (name, t) in ours {
        if reference.contains_key(name) {
            kept.insert(name.clone(), t.clone());
        } else {
            let m = t.to_vec().unwrap().iter().fold(0f32, |m, x| m.max(x.abs())) as f64;
            println!("{name}: torch None, ours max {m:.2e} ({:.2e} of the largest MA-GP gradient)", m / scale);
            assert!(m <= TOL_GRAD * scale, "{name}: MA-GP gradient {m:.2e} where torch has none");
        }
    }
    kept
}

fn load(g: &Gpu, arch: &str) -> (Model, Ref, Batch) {
    let model = Model::load(g, &dir().join(format!("{arch}.safetensors"))).unwrap();
    assert_eq!(model.config.arch.name(), arch);
    let mut r = load_ref(arch);
    let batch = Batch { images: r.tensor(g, "images"), sent_emb: r.tensor(g, "sent_emb"), noise: r.tensor(g, "noise"), shifts: None, noise2: None, contrast: None };
    (model, r, batch)
}

fn step_matches_pytorch(arch: &str) {
    let g = gpu();
    let (mut model, mut r, batch) = load(&g, arch);
    let conv_s = "netD.DBlocks.0.conv_s.weight";
    let conv_s_before = model.params.get(conv_s).unwrap().to_vec().unwrap();
    let mut opt_d = Adam::new(&[NET_D, NET_C], BETAS, EPS);
    let mut opt_g = Adam::new(&[NET_G], BETAS, EPS);
    let before: BTreeMap<String, Vec<f32>> =
        r.0.names().filter_map(|n| n.strip_prefix("after.")).map(|n| (n.to_string(), model.params.get(n).unwrap().to_vec().unwrap())).collect();

    let t0 = Instant::now();
    let fake = train::generate_fake(&mut model, &batch).unwrap();
    let d = train::d_step(&mut model, &mut opt_d, &batch, &fake, LR_D).unwrap();
    let gs = train::g_step(&mut model, &mut opt_g, &batch, fake, LR_G).unwrap();
    println!("{arch}: one step (B = 2) took {:.2} s", t0.elapsed().as_secs_f64());

    check_loss("L_real", d.loss_real, r.scalar("loss.real"));
    check_loss("L_mis", d.loss_mis, r.scalar("loss.mis"));
    check_loss("L_fake", d.loss_fake, r.scalar("loss.fake"));
    check_loss("MA-GP", d.magp, r.scalar("loss.magp"));
    check_loss("L_D", d.loss_d, r.scalar("loss.d"));
    check_loss("L_G", gs.loss_g, r.scalar("loss.g"));
    check_loss("L_G adversarial", gs.loss_adv, r.scalar("loss.g_adv"));
    check_loss("cos", gs.cos, r.scalar("loss.cos"));
    println!("MA-GP central-difference step ε = {:.3e}", d.magp_step);

    let magp_ref = r.under("magp_grad.");
    check_named(&format!("{arch} MA-GP gradient (NetD/NetC)"), &without_vanishing(&d.magp_grads, &magp_ref), magp_ref, "net", TOL_GRAD);
    let grads = r.under("grad.");
    check_named(&format!("{arch} L_D gradient, NetD"), &d.grads, grads.clone(), NET_D, TOL_GRAD);
    check_named(&format!("{arch} L_D gradient, NetC"), &d.grads, grads.clone(), NET_C, TOL_GRAD);
    check_named(&format!("{arch} L_G gradient"), &gs.grads, grads, NET_G, TOL_GRAD);

    // BN running statistics after the step (G ran once, in training mode).
    let mut after = r.under("after.");
    let stats: BTreeMap<String, Tensor> = after.keys().filter(|n| n.contains("running_")).map(|n| (n.clone(), model.params.get(n).unwrap().clone())).collect();
    // GALIP's G has no BatchNorm; RATLIP's Conv_shuffle blocks do.
    assert_eq!(stats.is_empty(), arch == "galip", "{arch}: BN statistics in the reference");
    if !stats.is_empty() {
        check_named(&format!("{arch} BN running statistics after the step"), &stats, after.iter().filter(|(n, _)| n.contains("running_")).map(|(n, v)| (n.clone(), v.clone())).collect(), NET_G, TOL_LOSS);
    }
    after.retain(|n, _| !n.contains("running_"));

    // Parameters after Adam. The first step moves each by lr·g/(|g| + eps), ≈ ±lr, so compare
    // the moves in units of lr. A move may differ only where torch's gradient element is within
    // the gradient tolerance of 0 (its sign is then not determined by a 2e-4 match).
    let grads_ref = r.under("grad.");
    let (mut worst, mut flips, mut total) = (0f64, 0usize, 0usize);
    for (name, (_, want)) in &after {
        let lr = if name.starts_with(NET_G) { LR_G } else { LR_D } as f64;
        let now = model.params.get(name).unwrap().to_vec().unwrap();
        let was = &before[name];
        let g = grads_ref.get(name).map(|(_, g)| g.clone()).unwrap_or_else(|| vec![0.0; want.len()]);
        let gmax = g.iter().fold(0f32, |m, x| m.max(x.abs())) as f64;
        for i in 0..want.len() {
            let (ours, theirs) = (now[i] as f64 - was[i] as f64, want[i] as f64 - was[i] as f64);
            let e = (ours - theirs).abs() / lr;
            total += 1;
            if e > 1e-2 {
                assert!((g[i].abs() as f64) <= TOL_GRAD * gmax, "{arch}: {name}[{i}] moved {ours:.3e}, torch {theirs:.3e}, torch gradient {:.3e} (max {gmax:.3e})", g[i]);
                flips += 1;
            } else {
                worst = worst.max(e);
            }
        }
    }
    println!("{arch} Adam: {total} parameters; worst move error {worst:.2e} lr elsewhere; {flips} moved differently, each with |torch gradient| ≤ {TOL_GRAD:.0e}·max");
    // torch skips a parameter whose grad is None: NetD's unused conv_s keeps its value and has no state.
    assert_eq!(model.params.get(conv_s).unwrap().to_vec().unwrap(), conv_s_before);
    assert!(opt_d.state(conv_s).is_none());
    assert_eq!(opt_d.state("netC.joint_conv.0.weight").unwrap().step, 1);
}

#[test]
fn galip_step_matches_pytorch() {
    step_matches_pytorch("galip");
}

#[test]
fn ratlip_step_matches_pytorch() {
    step_matches_pytorch("ratlip");
}

/// The whole-step entry point gives the same losses and finite norms; a bad batch is an error.
#[test]
fn train_step_reports_metrics_and_rejects_bad_batches() {
    let g = gpu();
    let (mut model, mut r, batch) = load(&g, "ratlip");
    let mut opt_d = Adam::new(&[NET_D, NET_C], BETAS, EPS);
    let mut opt_g = Adam::new(&[NET_G], BETAS, EPS);
    let counts = |model: &ratlip::model::Model| -> Vec<(String, f32)> {
        model.params.names().filter(|n| n.ends_with("num_batches_tracked")).map(|n| (n.to_string(), model.params.get(n).unwrap().to_vec().unwrap()[0])).collect()
    };
    let counted_before = counts(&model);
    let m = train::train_step(&mut model, &mut opt_d, &mut opt_g, &batch).unwrap();
    println!("{m:?}");
    // A second step (kernels compiled by now; Adam's step 2 bias correction) is the timing.
    let t0 = Instant::now();
    let m2 = train::train_step(&mut model, &mut opt_d, &mut opt_g, &batch).unwrap();
    println!("ratlip: second train_step (B = 2) took {:.2} s: {m2:?}", t0.elapsed().as_secs_f64());
    assert!(m2.loss_d.is_finite() && m2.loss_g.is_finite());
    assert_eq!(opt_g.state("netG.fc_code.weight").unwrap().step, 2);
    // Two training-mode passes of G: every BatchNorm counted both, as torch's would.
    let counted = counts(&model);
    assert!(!counted.is_empty(), "ratlip's G has BatchNorms");
    for ((name, before), (_, after)) in counted_before.iter().zip(&counted) {
        assert_eq!(after - before, 2.0, "{name} after two steps: {before} → {after}");
    }
    check_loss("L_D", m.loss_d, r.scalar("loss.d"));
    check_loss("L_G", m.loss_g, r.scalar("loss.g"));
    assert!(m.grad_norm_d.is_finite() && m.grad_norm_d > 0.0 && m.grad_norm_g.is_finite() && m.grad_norm_g > 0.0);

    let short = Batch { images: batch.images.clone(), sent_emb: batch.sent_emb.clone(), noise: Tensor::zeros(&g, &[1, model.config.z_dim]).unwrap(), shifts: None, noise2: None, contrast: None };
    assert!(train::train_step(&mut model, &mut opt_d, &mut opt_g, &short).is_err());
    let mut bad = std::collections::BTreeMap::new();
    bad.insert("netG.fc_code.weight".to_string(), Tensor::zeros(&g, &[1]).unwrap());
    assert!(opt_d.step(&mut model.params, &bad, LR_D).is_err(), "NetD's optimiser must refuse a G gradient");
}

/// MA-GP's central-difference gradient at several steps against torch's double backward:
/// shows the rounding (small steps) / kink (large steps) trade-off behind MAGP_STEP.
#[test]
fn magp_central_difference_step_sweep() {
    let g = gpu();
    for arch in ["galip", "ratlip"] {
        let (model, mut r, batch) = load(&g, arch);
        let scratch = ratlip::Tape::new(&g);
        let (feats, _) = model.clip_features(&scratch, &scratch.constant(batch.images.clone())).unwrap();
        let want = r.under("magp_grad.");
        let magp = r.scalar("loss.magp");
        for step in [1e1f32, 1.0, 1e-1, 1e-2, 1e-3] {
            let gp = train::ma_gp(&model, feats.value(), &batch.sent_emb, train::MAGP_W, step).unwrap();
            let worst = want
                .iter()
                .filter(|(n, _)| !n.contains("conv_s.bias"))
                .map(|(n, (_, w))| rel(&gp.grads.get(n).map(|t| t.to_vec().unwrap()).unwrap_or_else(|| vec![0.0; w.len()]), w))
                .fold(0f64, f64::max);
            println!("{arch}: MA-GP {:.6} (torch {magp:.6}); relative step {step:.0e} (ε {:.2e}): worst gradient error {worst:.2e}", gp.value, gp.step);
            if step == train::MAGP_STEP {
                assert!(worst <= TOL_GRAD, "{arch}: MA-GP gradient error {worst:.2e} at the default step");
            }
        }
    }
}



/// The mismatched captions are the released `cat(s[1:], s[:1])`: image i against caption
/// i + 1 (mod B). At B = 2 every roll agrees, so this checks the direction at B = 3.
#[test]
fn mismatched_captions_pair_image_i_with_caption_i_plus_1() {
    let g = gpu();
    let (mut model, _, two) = load(&g, "galip");
    let si = two.images.shape().to_vec();
    let (images, sent, noise) = (two.images.to_vec().unwrap(), two.sent_emb.to_vec().unwrap(), two.noise.to_vec().unwrap());
    let row = |v: &[f32], n: usize, i: usize| v[i * n..(i + 1) * n].to_vec();
    let (ni, ns, nz) = (images.len() / 2, sent.len() / 2, noise.len() / 2);
    // A third sample: the first image flipped in sign, the second caption reversed.
    let img3: Vec<f32> = [images.clone(), row(&images, ni, 0).iter().map(|x| -x).collect()].concat();
    let sent3: Vec<f32> = [sent.clone(), row(&sent, ns, 1).into_iter().rev().collect()].concat();
    let noise3: Vec<f32> = [noise.clone(), row(&noise, nz, 0)].concat();
    let b3 = |shape: &[usize], d: &[f32]| {
        let mut s = shape.to_vec();
        s[0] = 3;
        Tensor::from_slice(&g, &s, d).unwrap()
    };
    let batch = Batch { images: b3(&si, &img3), sent_emb: b3(&[2, ns], &sent3), noise: b3(&[2, nz], &noise3), shifts: None, noise2: None, contrast: None };
    let fake = train::generate_fake(&mut model, &batch).unwrap();
    let d = train::d_losses(&model, &batch, &fake, &train::DTerms::RELEASED).unwrap();

    let tape = ratlip::Tape::new(&g);
    let (feats, _) = model.clip_features(&tape, &tape.constant(batch.images.clone())).unwrap();
    let cx = ratlip::model::Bind::inference(&tape, &model.params);
    let l_mis = |shift: usize| -> f32 {
        let rolled: Vec<f32> = (0..3).flat_map(|i| row(&sent3, ns, (i + shift) % 3)).collect();
        let out = model.judge(&cx, &feats, &tape.constant(b3(&[2, ns], &rolled))).unwrap().value().to_vec().unwrap();
        out.iter().map(|o| (1.0 + o).max(0.0)).sum::<f32>() / 3.0
    };
    let (next, prev) = (l_mis(1), l_mis(2));
    println!("L_mis {:.7}: with caption i+1 {next:.7}, with caption i−1 {prev:.7}", d.loss_mis);
    assert!((next - prev).abs() > 1e-3, "the test batch does not tell the two directions apart");
    assert!((d.loss_mis - next).abs() <= 1e-5 * next.abs().max(1.0), "L_mis {} ≠ {next}", d.loss_mis);
}

/// `--hard-negative-w`: L_D gains w/2 · mean relu(1 + NetC(NetD(feats_r), s̃)) over the rows
/// with a contrast caption s̃. Checked: the term is host-computable from `judge` on those rows
/// (1e-5); with every row's contrast set to the next row's caption it is L_mis exactly; at
/// weight 0 it is measured but L_D and its gradients are the released ones, bit for bit; L_D
/// and its gradient are linear in w (1e-5 of the largest); bad rows are refused.
#[test]
fn hard_negative_w_shows_d_real_images_with_their_contrast() {
    let g = gpu();
    let (mut model, _, batch) = load(&g, "galip");
    let fake = train::generate_fake(&mut model, &batch).unwrap();
    let (b, ns) = (batch.sent_emb.shape()[0], batch.sent_emb.shape()[1]);
    let sent = batch.sent_emb.to_vec().unwrap();
    // Row 1 of the batch against a caption of its own making: row 0's caption, reversed.
    let con_row: Vec<f32> = sent[..ns].iter().rev().copied().collect();
    let with = |rows: Vec<usize>, emb: &[f32], w: f32| {
        let mut batch = Batch { images: batch.images.clone(), sent_emb: batch.sent_emb.clone(), noise: batch.noise.clone(), shifts: None, noise2: None, contrast: None };
        let k = rows.len();
        batch.contrast = Some(train::Contrast { rows, sent_emb: Tensor::from_slice(&g, &[k, ns], emb).unwrap() });
        train::d_losses(&model, &batch, &fake, &train::DTerms { hard_negative_w: w, ..train::DTerms::RELEASED })
    };
    let released = train::d_losses(&model, &batch, &fake, &train::DTerms::RELEASED).unwrap();
    assert_eq!(released.loss_contrast, None);
    let off = with(vec![1], &con_row, 0.0).unwrap();
    let one = with(vec![1], &con_row, 1.0).unwrap();
    let two = with(vec![1], &con_row, 2.0).unwrap();

    // The term from the judge on row 1's features alone.
    let tape = ratlip::Tape::new(&g);
    let (feats, _) = model.clip_features(&tape, &tape.constant(batch.images.clone())).unwrap();
    let f = feats.value();
    let per = f.numel() / b;
    let row1 = Tensor::from_slice(&g, &[&[1usize][..], &f.shape()[1..]].concat(), &f.to_vec().unwrap()[per..]).unwrap();
    let cx = ratlip::model::Bind::inference(&tape, &model.params);
    let out = model.judge(&cx, &tape.constant(row1), &tape.constant(Tensor::from_slice(&g, &[1, ns], &con_row).unwrap())).unwrap().value().to_vec().unwrap();
    let want = out.iter().map(|o| (1.0 + o).max(0.0)).sum::<f32>() / out.len() as f32;
    let got = off.loss_contrast.expect("measured at weight 0");
    println!("loss_contrast {got:.7} (host {want:.7}); L_D {:.7} / {:.7} / {:.7} at w 0 / 1 / 2", off.loss_d, one.loss_d, two.loss_d);
    assert!(want > 1e-3, "the fixture's term is not trivially 0");
    assert!((got - want).abs() <= 1e-5 * want.max(1.0), "loss_contrast {got} ≠ {want}");
    assert_eq!(one.loss_contrast, Some(got));

    // Weight 0: the released L_D and gradients, bit for bit.
    assert_eq!(off.loss_d.to_bits(), released.loss_d.to_bits());
    for (name, t) in &released.grads {
        assert_eq!(t.to_vec().unwrap(), off.grads[name].to_vec().unwrap(), "{name}: weight 0 changes the gradient");
    }
    // Linear in w: L_D(w) = L_D(0) + w/2 · term; ∇(2) − ∇(0) = 2 (∇(1) − ∇(0)).
    for (w, d) in [(1.0f32, &one), (2.0, &two)] {
        let want = off.loss_d + w / 2.0 * got;
        assert!((d.loss_d - want).abs() <= 1e-5 * want.abs().max(1.0), "w {w}: L_D {} ≠ {want}", d.loss_d);
    }
    let mut moved = 0;
    for (name, t) in &off.grads {
        let (z, o, t2) = (t.to_vec().unwrap(), one.grads[name].to_vec().unwrap(), two.grads[name].to_vec().unwrap());
        let scale = t2.iter().chain(&z).fold(0f32, |m, x| m.max(x.abs())).max(1e-12);
        for ((a, b1), c) in z.iter().zip(&o).zip(&t2) {
            assert!(((c - a) - 2.0 * (b1 - a)).abs() <= 1e-5 * scale, "{name}: {c} − {a} ≠ 2 ({b1} − {a})");
            moved += usize::from((b1 - a).abs() > 1e-6 * scale);
        }
    }
    assert!(moved > 0, "the term moves D's gradient");

    // Every row's contrast = the next row's caption: the released mismatched pairs.
    let rolled: Vec<f32> = (0..b).flat_map(|i| sent[((i + 1) % b) * ns..((i + 1) % b + 1) * ns].to_vec()).collect();
    let as_mis = with((0..b).collect(), &rolled, 1.0).unwrap();
    let c = as_mis.loss_contrast.unwrap();
    assert!((c - as_mis.loss_mis).abs() <= 1e-6 * c.max(1.0), "contrast {c} vs L_mis {}", as_mis.loss_mis);

    for (rows, why) in [(vec![], "no rows"), (vec![1, 0], "rows out of order"), (vec![b], "a row past the batch")] {
        let emb = vec![0.5f32; rows.len().max(1) * ns];
        let k = rows.len();
        let bad = Batch { images: batch.images.clone(), sent_emb: batch.sent_emb.clone(), noise: batch.noise.clone(), shifts: None, noise2: None, contrast: Some(train::Contrast { rows, sent_emb: Tensor::from_slice(&g, &[k.max(1), ns], &emb).unwrap() }) };
        assert!(train::d_losses(&model, &bad, &fake, &train::DTerms::RELEASED).is_err(), "{why} is refused");
    }
}

/// `--augment-shift`: zero shifts change nothing, bit for bit; real shifts move what CLIP sees
/// (the fake's features are exactly CLIP's of the moved fake) and G's gradient still flows
/// back through the move.
#[test]
fn shifts_move_what_clip_sees() {
    let g = gpu();
    let with = |shifts: Option<[f32; 4]>| {
        let (mut model, _, mut batch) = load(&g, "galip");
        batch.shifts = shifts.map(|s| train::Shifts {
            real: Tensor::from_slice(&g, &[2, 2], &s).unwrap(),
            fake: Tensor::from_slice(&g, &[2, 2], &[s[3], s[2], s[1], s[0]]).unwrap(),
        });
        let fake = train::generate_fake(&mut model, &batch).unwrap();
        if let Some(sh) = &batch.shifts {
            let tape = ratlip::Tape::new(&g);
            let moved = ratlip::ops::shape::translate(fake.images.value(), &sh.fake).unwrap();
            let (want, _) = model.clip_features(&tape, &tape.constant(moved)).unwrap();
            assert_eq!(fake.features.value().to_vec().unwrap(), want.value().to_vec().unwrap(), "the fake's features are CLIP's of the moved fake");
        }
        let d = train::d_losses(&model, &batch, &fake, &train::DTerms::RELEASED).unwrap();
        let gs = train::g_losses(&model, &batch, fake, &train::GTerms::RELEASED).unwrap();
        (d.loss_real, d.loss_fake, gs.loss_g, train::grad_norm(&gs.grads).unwrap())
    };
    let plain = with(None);
    assert_eq!(with(Some([0.0; 4])), plain, "zero shifts are the identity");
    let moved = with(Some([1.0, -2.0, 0.0, 3.0]));
    println!("unmoved {plain:?}\nmoved   {moved:?}");
    assert!((moved.0 - plain.0).abs() > 1e-4 && (moved.1 - plain.1).abs() > 1e-4, "moving the images changes what D sees");
    assert!(moved.3.is_finite() && moved.3 > 0.0 && (moved.3 - plain.3).abs() > 1e-6 * plain.3, "G's gradient flows through the move");
    let (mut model, _, mut batch) = load(&g, "galip");
    batch.shifts = Some(train::Shifts { real: Tensor::zeros(&g, &[3, 2]).unwrap(), fake: Tensor::zeros(&g, &[2, 2]).unwrap() });
    assert!(train::generate_fake(&mut model, &batch).is_err(), "shifts for the wrong batch size are refused");
}

/// `--magp-w`: the penalty and its parameter gradient scale with the weight (the central
/// difference's step scales as 1/w, so the moved inputs are the same and only the seed of
/// the backward changes: equal to f32 rounding, 1e-5 relative); 0 switches the penalty off,
/// leaving the hinge's gradients alone.
#[test]
fn magp_w_weighs_the_penalty() {
    let g = gpu();
    let (mut model, _, batch) = load(&g, "galip");
    let fake = train::generate_fake(&mut model, &batch).unwrap();
    let released = train::d_losses(&model, &batch, &fake, &train::DTerms::RELEASED).unwrap();
    let half = train::d_losses(&model, &batch, &fake, &train::DTerms { magp_w: train::MAGP_W / 2.0, ..train::DTerms::RELEASED }).unwrap();
    let off = train::d_losses(&model, &batch, &fake, &train::DTerms { magp_w: 0.0, ..train::DTerms::RELEASED }).unwrap();
    assert!(released.magp > 1e-6, "the fixture's penalty is not trivially 0: {}", released.magp);
    assert!((half.magp - released.magp / 2.0).abs() <= 1e-5 * released.magp, "{} vs {}", half.magp, released.magp);
    assert!(!released.magp_grads.is_empty());
    for (name, t) in &released.magp_grads {
        let (full, h) = (t.to_vec().unwrap(), half.magp_grads[name].to_vec().unwrap());
        let scale = full.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-12);
        for (a, b) in full.iter().zip(&h) {
            assert!((a / 2.0 - b).abs() <= 1e-5 * scale, "{name}: {b} vs half of {a}");
        }
    }
    assert_eq!(off.magp, 0.0);
    assert!(off.magp_grads.is_empty());
    assert!((off.loss_d - (released.loss_d - released.magp)).abs() <= 1e-6 * released.loss_d.abs(), "L_D without the penalty is the hinge sum");
    // With the penalty off, L_D's gradients are the hinge's: the released ones minus MA-GP's.
    for (name, t) in &off.grads {
        let (hinge, full) = (t.to_vec().unwrap(), released.grads[name].to_vec().unwrap());
        let gp = released.magp_grads.get(name).map(|t| t.to_vec().unwrap()).unwrap_or_else(|| vec![0.0; hinge.len()]);
        let scale = full.iter().chain(&gp).fold(0f32, |m, x| m.max(x.abs())).max(1e-12);
        for ((h, f), p) in hinge.iter().zip(&full).zip(&gp) {
            assert!((h - (f - p)).abs() <= 1e-5 * scale, "{name}: hinge {h} vs {f} − {p}");
        }
    }
}

/// `--pixel-w`: L_G gains pixel_w · mean |G(z, s) − x| (measured as `pixel` at any weight),
/// its gradient scales with the weight, and it is the L1 gradient: at G's output bias it is
/// the mean sign of (fake − real) per colour channel, which this test counts on the host.
#[test]
fn pixel_w_pulls_fakes_towards_their_real_image() {
    let g = gpu();
    let (mut model, _, batch) = load(&g, "galip");
    let mut run = |w: f32| {
        let fake = train::generate_fake(&mut model, &batch).unwrap();
        let images = fake.images.value().to_vec().unwrap();
        (images, train::g_losses(&model, &batch, fake, &train::GTerms { pixel_w: w, ..train::GTerms::RELEASED }).unwrap())
    };
    let (fake, off) = run(0.0);
    let (again, one) = run(1.0);
    let (_, three) = run(3.0);
    assert_eq!(fake, again, "G in training mode draws the same fake for the same batch");
    let real = batch.images.to_vec().unwrap();
    let n = real.len();
    let want = fake.iter().zip(&real).map(|(f, r)| (f - r).abs() as f64).sum::<f64>() / n as f64;
    println!("mean |fake − real| {want:.6}; measured {} {} {}", off.pixel, one.pixel, three.pixel);
    for s in [&off, &one, &three] {
        assert!((s.pixel as f64 - want).abs() <= 1e-5 * want, "pixel {} vs {want}", s.pixel);
    }
    assert!(want > 0.05, "the fixture's fake is not its real image");
    assert!((one.loss_g - off.loss_g - one.pixel).abs() <= 1e-5 * (1.0 + off.loss_g.abs()), "L_G adds 1 × the term");
    assert!((three.loss_g - off.loss_g - 3.0 * three.pixel).abs() <= 1e-5 * (1.0 + off.loss_g.abs()), "L_G adds 3 × the term");
    // The term's own gradient, (L_G(1) − L_G(0))', must be a third of (L_G(3) − L_G(0))'.
    let mut seen = 0;
    for (name, t0) in &off.grads {
        let (a, b, c) = (t0.to_vec().unwrap(), one.grads[name].to_vec().unwrap(), three.grads[name].to_vec().unwrap());
        let scale = c.iter().chain(&a).fold(0f32, |m, x| m.max(x.abs())).max(1e-12);
        for ((a, b), c) in a.iter().zip(&b).zip(&c) {
            assert!(((c - a) - 3.0 * (b - a)).abs() <= 2e-4 * scale, "{name}: {c} − {a} vs 3 × ({b} − {a})");
        }
        seen += usize::from(b.iter().zip(&a).any(|(b, a)| b != a));
    }
    assert!(seen > 10, "the term reaches G's parameters ({seen} tensors)");
    // to_rgb's bias adds straight onto the image, so d mean|f − x| / d bias_c is
    // Σ sign(f − x) over channel c's pixels / n.
    let bias = off.grads.keys().find(|k| k.contains("to_rgb") && k.ends_with("bias")).expect("G has an output bias").clone();
    let (a, b) = (off.grads[&bias].to_vec().unwrap(), one.grads[&bias].to_vec().unwrap());
    let shape = batch.images.shape();
    let hw = shape[2] * shape[3];
    for c in 0..3 {
        let signs: f64 = (0..n).filter(|i| (i / hw) % 3 == c).map(|i| (fake[i] - real[i]).signum() as f64).sum();
        let want = signs / n as f64;
        assert!(((b[c] - a[c]) as f64 - want).abs() <= 1e-5, "{bias}[{c}]: {} vs {want}", b[c] - a[c]);
    }
}

/// `--div-w`: G draws a second fake on the same tape from a second noise; `diversity` is
/// mean |G(z₁, s) − G(z₂, s)| / mean |z₁ − z₂| (host-counted to 1e-5), L_G loses div_w × it
/// below the cap and div_w × cap (no gradient) above, the gradient scales with the weight,
/// vanishes at G's output bias (a bias moves both fakes alike) and matches a central
/// difference of the ratio at to_rgb's largest-gradient weight.
#[test]
fn div_w_rewards_two_noises_drawing_apart() {
    let g = gpu();
    let (mut model, _, mut batch) = load(&g, "galip");
    let z1 = batch.noise.to_vec().unwrap();
    let z2: Vec<f32> = z1.iter().enumerate().map(|(i, x)| 0.5 * x.sin() + ((i * 7919 % 13) as f32 / 6.0 - 1.0)).collect();
    let dz = z1.iter().zip(&z2).map(|(a, b)| (a - b).abs() as f64).sum::<f64>() / z1.len() as f64;
    let released = {
        let fake = train::generate_fake(&mut model, &batch).unwrap();
        let images = fake.images.value().to_vec().unwrap();
        (images, train::g_losses(&model, &batch, fake, &train::GTerms::RELEASED).unwrap())
    };
    assert!(released.1.diversity.is_none(), "no second noise, nothing measured");
    let want_second = {
        let alone = Batch { noise: Tensor::from_slice(&g, batch.noise.shape(), &z2).unwrap(), noise2: None, shifts: None, contrast: None, images: batch.images.clone(), sent_emb: batch.sent_emb.clone() };
        train::generate_fake(&mut model, &alone).unwrap().images.value().to_vec().unwrap()
    };
    batch.noise2 = Some(Tensor::from_slice(&g, batch.noise.shape(), &z2).unwrap());
    let mut run = |w: f32, tau: f32| {
        let fake = train::generate_fake(&mut model, &batch).unwrap();
        let pair = (fake.images.value().to_vec().unwrap(), fake.images2.as_ref().expect("a second fake").value().to_vec().unwrap());
        (pair, train::g_losses(&model, &batch, fake, &train::GTerms { div_w: w, div_tau: tau, ..train::GTerms::RELEASED }).unwrap())
    };
    let ((first, second), off) = run(0.0, 10.0);
    assert_eq!(first, released.0, "the second pass leaves the first fake alone");
    assert_eq!(second, want_second, "the second fake is G of the second noise");
    let ratio = first.iter().zip(&second).map(|(a, b)| (a - b).abs() as f64).sum::<f64>() / first.len() as f64 / dz;
    println!("mean |Δz| {dz:.4}, ratio {ratio:.6}; measured {:?}", off.diversity);
    assert!(ratio > 1e-3, "the fixture's G draws two different fakes");
    assert!((off.diversity.unwrap() as f64 - ratio).abs() <= 1e-5 * ratio);
    assert_eq!(off.loss_g, released.1.loss_g, "measured at weight 0, not added");
    for (name, t) in &released.1.grads {
        assert_eq!(t.to_vec().unwrap(), off.grads[name].to_vec().unwrap(), "{name}: weight 0 leaves the gradient alone");
    }
    let (_, one) = run(1.0, 10.0);
    let (_, three) = run(3.0, 10.0);
    let (_, capped) = run(3.0, (ratio / 2.0) as f32);
    let tol = 1e-5 * (1.0 + off.loss_g.abs());
    assert!((one.loss_g - (off.loss_g - ratio as f32)).abs() <= tol, "L_G loses 1 × the ratio: {} vs {}", one.loss_g, off.loss_g);
    assert!((three.loss_g - (off.loss_g - 3.0 * ratio as f32)).abs() <= tol, "L_G loses 3 × the ratio");
    assert!((capped.loss_g - (off.loss_g - 3.0 * (ratio / 2.0) as f32)).abs() <= tol, "above the cap L_G loses 3 × the cap");
    let mut seen = 0;
    for (name, t0) in &off.grads {
        let (a, b, c, k) = (t0.to_vec().unwrap(), one.grads[name].to_vec().unwrap(), three.grads[name].to_vec().unwrap(), capped.grads[name].to_vec().unwrap());
        assert_eq!(a, k, "{name}: above the cap the term gives no gradient");
        let scale = c.iter().chain(&a).fold(0f32, |m, x| m.max(x.abs())).max(1e-12);
        for ((a, b), c) in a.iter().zip(&b).zip(&c) {
            assert!(((c - a) - 3.0 * (b - a)).abs() <= 2e-4 * scale, "{name}: {c} − {a} vs 3 × ({b} − {a})");
        }
        seen += usize::from(b.iter().zip(&a).any(|(b, a)| b != a));
    }
    assert!(seen > 10, "the term reaches G's parameters ({seen} tensors)");
    let names: Vec<String> = off.grads.keys().filter(|k| k.contains("to_rgb")).cloned().collect();
    let bias = names.iter().find(|k| k.ends_with("bias")).expect("G has an output bias");
    let weight = names.iter().find(|k| k.ends_with("weight")).expect("G has an output weight");
    let (a, b) = (off.grads[bias].to_vec().unwrap(), one.grads[bias].to_vec().unwrap());
    let scale = b.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-6);
    for c in 0..3 {
        assert!((b[c] - a[c]).abs() <= 1e-5 * scale.max(1.0), "{bias}[{c}]: the term's gradient {} is not 0", b[c] - a[c]);
    }
    // −∂ratio/∂θ from the tape against a central difference of the ratio, at the weight where
    // the term's gradient is largest. The ratio is piecewise linear in the images; a step of
    // 1e-3 crosses few of its kinks, and the ratio is summed in f64 on the host.
    let (a, b) = (off.grads[weight].to_vec().unwrap(), one.grads[weight].to_vec().unwrap());
    let (k, analytic) = a.iter().zip(&b).map(|(a, b)| (a - b) as f64).enumerate().max_by(|x, y| x.1.abs().total_cmp(&y.1.abs())).unwrap();
    let w0 = model.params.get(weight).unwrap().clone();
    let shape = w0.shape().to_vec();
    let host = w0.to_vec().unwrap();
    let eps = 1e-3f32;
    let mut ratio_at = |delta: f32| {
        let mut v = host.clone();
        v[k] += delta;
        model.params.set(weight, Tensor::from_slice(&g, &shape, &v).unwrap()).unwrap();
        let draw = |z: &[f32]| model.generate(&Tensor::from_slice(&g, batch.noise.shape(), z).unwrap(), &batch.sent_emb).unwrap().to_vec().unwrap();
        let (p, q) = (draw(&z1), draw(&z2));
        p.iter().zip(&q).map(|(a, b)| (a - b).abs() as f64).sum::<f64>() / p.len() as f64 / dz
    };
    let numeric = (ratio_at(eps) - ratio_at(-eps)) / (2.0 * eps as f64);
    println!("{weight}[{k}]: ∂ratio/∂θ tape {analytic:.6e}, central difference {numeric:.6e}");
    assert!(analytic.abs() > 1e-6, "the chosen weight moves the ratio");
    assert!((analytic - numeric).abs() <= 2e-2 * analytic.abs(), "tape {analytic} vs difference {numeric}");
    batch.noise2 = Some(Tensor::zeros(&g, &[1, model.config.z_dim]).unwrap());
    assert!(train::generate_fake(&mut model, &batch).is_err(), "a second noise of the wrong batch size is refused");
    batch.noise2 = None;
    let fake = train::generate_fake(&mut model, &batch).unwrap();
    assert!(train::g_losses(&model, &batch, fake, &train::GTerms { div_w: 1.0, ..train::GTerms::RELEASED }).is_err(), "div_w without a second noise is refused");
}
