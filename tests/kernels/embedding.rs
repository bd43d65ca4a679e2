//! Embedding lookup. The forward is a copy, so it must be exact. The backward adds at most
//! a handful of f32 values per table element in token order: 1e-6 relative + 1e-7 absolute
//! against the f64 sum. Splitting the tokens into chunks keeps that order: bit-identical.

use ratlip::ops::embedding::{self, cpu};
use ratlip::{Gpu, GpuOptions, Tape, Tensor};

use crate::common::*;

fn random_ids(rng: &mut Rng, n: usize, vocab: usize) -> Vec<u32> {
    (0..n).map(|_| rng.range(0, vocab - 1) as u32).collect()
}

/// The f64 scatter-add the backward must reproduce.
fn scatter(ids: &[u32], dout: &[f32], vocab: usize, d: usize) -> Vec<f64> {
    let mut g = vec![0.0; vocab * d];
    for (n, &id) in ids.iter().enumerate() {
        for j in 0..d {
            g[id as usize * d + j] += dout[n * d + j] as f64;
        }
    }
    g
}

#[test]
fn embedding_forward_gathers_rows() {
    let mut rng = Rng::new(51);
    for &(vocab, d, ref shape) in &[(13usize, 7usize, vec![3usize, 5usize]), (1, 1, vec![1]), (300, 64, vec![2, 77]), (50, 3, vec![4, 3, 2])] {
        let (table, tv) = random(&mut rng, &[vocab, d]);
        let n: usize = shape.iter().product();
        let ids = random_ids(&mut rng, n, vocab);
        let out = embedding::embedding(&table, &embedding::ids_tensor(gpu(), shape, &ids, vocab).unwrap()).unwrap();
        let mut want_shape = shape.clone();
        want_shape.push(d);
        assert_eq!(out.shape(), &want_shape[..]);
        assert_close(&format!("V{vocab} D{d} {shape:?}"), &out.to_vec().unwrap(), &cpu::embedding(&to_f64(&tv), d, &ids), 0.0, 0.0);
    }
}

#[test]
fn embedding_backward_accumulates_repeated_ids() {
    let mut rng = Rng::new(52);
    let (vocab, d) = (11, 9);
    // Id 3 four times, id 0 twice, id 10 (the last row) once; most rows never appear.
    let ids: Vec<u32> = vec![3, 0, 3, 10, 3, 0, 3, 7];
    let shape = [2, 4];
    let (table, tv) = random(&mut rng, &[vocab, d]);
    let w = rng.vec(ids.len() * d);
    let tape = Tape::new(gpu());
    let tvar = tape.var(table);
    let y = tape.embedding(&tvar, &embedding::ids_tensor(gpu(), &shape, &ids, vocab).unwrap()).unwrap();
    assert_eq!(y.shape(), &[2, 4, d]);
    let grads = tape.backward_with(&y, Some(upload(&[2, 4, d], &w)), &[]).unwrap();
    let g = grads.get(&tvar).unwrap().to_vec().unwrap();
    assert_close("dtable", &g, &scatter(&ids, &w, vocab, d), 1e-6, 1e-7);
    // The same through finite differences of the reference (a linear map: exact).
    let loss = |t: &[f64]| dot(&cpu::embedding(t, d, &ids), &w);
    check_grad("dtable", &loss, &tv, &g, 99, 1e-5);
}

#[test]
fn embedding_backward_at_clip_width() {
    let mut rng = Rng::new(53);
    let (vocab, d, n) = (1000, 512, 2 * 77);
    let ids = random_ids(&mut rng, n, vocab);
    let dout = rng.vec(n * d);
    let g = embedding::embedding_backward(
        &embedding::ids_tensor(gpu(), &[2, 77], &ids, vocab).unwrap(),
        &upload(&[2, 77, d], &dout),
        vocab,
    )
    .unwrap();
    assert_eq!(g.shape(), &[vocab, d]);
    let got = g.to_vec().unwrap();
    assert_close("dtable", &got, &scatter(&ids, &dout, vocab, d), 1e-6, 1e-7);
    // GPUs split each column's rows over several threads: the same bits for any count.
    let (it, dt) = (embedding::ids_tensor(gpu(), &[n], &ids, vocab).unwrap(), upload(&[n, d], &dout));
    for buckets in [1, 3, 16, 5000] {
        let g = embedding::embedding_backward_with_buckets(&it, &dt, vocab, buckets).unwrap();
        assert_eq!(g.to_vec().unwrap(), got, "{buckets} buckets");
    }
}

#[test]
fn out_of_range_id_is_an_error_naming_it_and_the_vocabulary() {
    let e = embedding::ids_tensor(gpu(), &[3], &[0, 49408, 2], 49408).unwrap_err().to_string();
    assert!(e.contains("49408") && e.contains("V = 49408") && e.contains("position 1"), "{e}");
    let e = embedding::ids_tensor(gpu(), &[2], &[1, 2, 3], 10).unwrap_err().to_string();
    assert!(e.contains("[2]"), "{e}");
    let table = upload(&[4], &[0.0; 4]);
    let ids = embedding::ids_tensor(gpu(), &[1], &[0], 4).unwrap();
    let e = embedding::embedding(&table, &ids).unwrap_err().to_string();
    assert!(e.contains("embedding") && e.contains("[4]"), "{e}");
}

#[test]
fn embedding_splits_tokens_too_many_for_one_binding() {
    let (vocab, d, n) = (40, 8, 300);
    let mut rng = Rng::new(54);
    let tv = rng.vec(vocab * d);
    let dout = rng.vec(n * d);
    let ids = random_ids(&mut rng, n, vocab);
    let run = |g: &Gpu| -> (Vec<f32>, Vec<f32>) {
        let table = Tensor::from_slice(g, &[vocab, d], &tv).unwrap();
        let it = embedding::ids_tensor(g, &[n], &ids, vocab).unwrap();
        let out = embedding::embedding(&table, &it).unwrap().to_vec().unwrap();
        let dt = embedding::embedding_backward(&it, &Tensor::from_slice(g, &[n, d], &dout).unwrap(), vocab).unwrap();
        (out, dt.to_vec().unwrap())
    };
    let whole = run(gpu());
    let g = Gpu::new(&GpuOptions::default()).unwrap();
    // 32 bytes of output per token: 4096 bytes hold 128 tokens, so 3 chunks.
    g.set_binding_limit_for_tests(4096);
    let before = g.stats().dispatches;
    let split = run(&g);
    assert_eq!(g.stats().dispatches - before, 6, "3 forward + 3 backward chunks");
    assert_eq!(whole, split);
}

/// Timing at CLIP's token embedding (batch 64 × 77 tokens into [49408, 512]):
/// `cargo test --test kernels embedding_timing -- --ignored --nocapture`.
#[test]
#[ignore]
fn embedding_timing_at_clip_shapes() {
    let g = gpu();
    let (vocab, d, n) = (49408, 512, 64 * 77);
    let mut rng = Rng::new(55);
    let table = Tensor::zeros(g, &[vocab, d]).unwrap();
    let ids = embedding::ids_tensor(g, &[64, 77], &random_ids(&mut rng, n, vocab), vocab).unwrap();
    let dout = Tensor::zeros(g, &[64, 77, d]).unwrap();
    let fwd = ratlip::bench::time(g, 3, || embedding::embedding(&table, &ids).map(|_| ())).unwrap();
    let bwd = ratlip::bench::time(g, 3, || embedding::embedding_backward(&ids, &dout, vocab).map(|_| ())).unwrap();
    let clear = ratlip::bench::time(g, 3, || Tensor::zeros(g, &[vocab, d]).map(|_| ())).unwrap();
    println!("embedding [64, 77] from [{vocab}, {d}]: forward {fwd:.1} ms, backward {bwd:.1} ms (of which clearing the table {clear:.1} ms)");
}
