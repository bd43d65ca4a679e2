//! The tape end to end: a small network made of several families, every parameter's and the
//! input's gradient against central finite differences of the same network in f64 on the CPU.
//! Tolerance 5e-4 of the largest gradient: f32 through five ops, layer norm's backward the
//! least accurate of them.

use ratlip::ops::elementwise::{cpu as ew, Activation};
use ratlip::ops::norm::cpu as norm;
use ratlip::Tape;

use crate::common::*;

/// y = Σ w ⊙ (gelu(LN(x W1ᵀ + b1)) W2ᵀ + b2)
fn net(x: &[f64], p: &[Vec<f64>], n: usize, d: usize, h: usize, o: usize, wout: &[f32]) -> f64 {
    let linear = |x: &[f64], w: &[f64], b: &[f64], rows: usize, i: usize, j: usize| -> Vec<f64> {
        let mut y = vec![0.0; rows * j];
        for r in 0..rows {
            for c in 0..j {
                y[r * j + c] = b[c] + (0..i).map(|k| x[r * i + k] * w[c * i + k]).sum::<f64>();
            }
        }
        y
    };
    let a = linear(x, &p[0], &p[1], n, d, h);
    let a = norm::layer_norm(&a, h, &p[2], &p[3], 1e-5);
    let a: Vec<f64> = a.iter().map(|&v| ew::activation(v, Activation::QuickGelu)).collect();
    dot(&linear(&a, &p[4], &p[5], n, h, o), wout)
}

#[test]
fn a_small_network_backpropagates_through_every_family() {
    let (n, d, h, o) = (5, 7, 9, 3);
    let mut rng = Rng::new(99);
    let shapes: [&[usize]; 6] = [&[h, d], &[h], &[h], &[h], &[o, h], &[o]];
    let params: Vec<Vec<f32>> = shapes
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let v = rng.vec(s.iter().product());
            if i == 2 { v.iter().map(|x| 1.0 + 0.3 * x).collect() } else { v }
        })
        .collect();
    let x = rng.vec(n * d);
    let wout = rng.vec(n * o);

    let tape = Tape::new(gpu());
    let xv = tape.var(upload(&[n, d], &x));
    let pv: Vec<_> = params.iter().zip(shapes).map(|(p, s)| tape.var(upload(s, p))).collect();
    let a = tape.linear(&xv, &pv[0], Some(&pv[1])).unwrap();
    let a = tape.layer_norm(&a, &pv[2], &pv[3], 1e-5).unwrap();
    let a = tape.activation(&a, Activation::QuickGelu).unwrap();
    let y = tape.linear(&a, &pv[4], Some(&pv[5])).unwrap();
    let grads = tape.backward_with(&y, Some(upload(&[n, o], &wout)), &[]).unwrap();

    let p64: Vec<Vec<f64>> = params.iter().map(|p| to_f64(p)).collect();
    let gx = grads.get(&xv).unwrap().to_vec().unwrap();
    check_grad("d/dx", &|x| net(x, &p64, n, d, h, o, &wout), &x, &gx, 64, 5e-4);
    for (i, v) in pv.iter().enumerate() {
        let g = grads.get(v).unwrap().to_vec().unwrap();
        let f = |q: &[f64]| {
            let mut p = p64.clone();
            p[i] = q.to_vec();
            net(&to_f64(&x), &p, n, d, h, o, &wout)
        };
        check_grad(&format!("d/dparam{i}"), &f, &params[i], &g, 64, 5e-4);
    }
}
