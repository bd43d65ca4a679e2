//! Activations and same-shape arithmetic. Tolerance: exp/div in f32 on the GPU against f64
//! on the CPU: 1e-5 relative + 1e-6 absolute (f32 has 6e-8 ulp; transcendental functions in
//! shaders are allowed a few ulp more).

use ratlip::ops::elementwise::{self, cpu, Activation};
use ratlip::Tape;

use crate::common::*;

const ALL: [Activation; 6] = [
    Activation::Relu,
    Activation::LeakyRelu(0.2),
    Activation::Sigmoid,
    Activation::Tanh,
    Activation::QuickGelu,
    Activation::Scale(0.5, -0.25),
];

#[test]
fn activations_forward_match_cpu() {
    let mut rng = Rng::new(1);
    for (k, f) in ALL.into_iter().enumerate() {
        let n = [1, 7, 255, 1000, 4099][k % 5];
        let v: Vec<f32> = rng.vec(n).iter().map(|x| x * 6.0).collect();
        let y = elementwise::activation(&upload(&[n], &v), f).unwrap().to_vec().unwrap();
        let want: Vec<f64> = v.iter().map(|&x| cpu::activation(x as f64, f)).collect();
        assert_close(&format!("{f:?}"), &y, &want, 1e-5, 1e-6);
    }
}

#[test]
fn activations_backward_match_finite_differences() {
    let mut rng = Rng::new(2);
    for f in ALL {
        let n = 37;
        // Keep away from the kinks of relu / leaky relu where the derivative is undefined.
        let v: Vec<f32> = rng.vec(n).iter().map(|x| if x.abs() < 0.05 { x + 0.1 } else { x * 3.0 }).collect();
        let w = rng.vec(n);
        let tape = Tape::new(gpu());
        let x = tape.var(upload(&[n], &v));
        let y = tape.activation(&x, f).unwrap();
        let grads = tape.backward_with(&y, Some(upload(&[n], &w)), &[]).unwrap();
        let g = grads.get(&x).unwrap().to_vec().unwrap();
        let loss = |x: &[f64]| dot(&x.iter().map(|&v| cpu::activation(v, f)).collect::<Vec<_>>(), &w);
        check_grad(&format!("{f:?}"), &loss, &v, &g, 64, 1e-4);
    }
}

#[test]
fn binary_ops_and_their_gradients() {
    let mut rng = Rng::new(3);
    let n = 513;
    let (a, av) = random(&mut rng, &[n]);
    let (b, bv) = random(&mut rng, &[n]);
    let s = elementwise::add(&a, &b).unwrap().to_vec().unwrap();
    let m = elementwise::mul(&a, &b).unwrap().to_vec().unwrap();
    let x = elementwise::axpy(&a, -0.5, &b).unwrap().to_vec().unwrap();
    let want = |f: &dyn Fn(f64, f64) -> f64| -> Vec<f64> { av.iter().zip(&bv).map(|(&a, &b)| f(a as f64, b as f64)).collect() };
    assert_close("add", &s, &want(&|a, b| a + b), 1e-6, 1e-7);
    assert_close("mul", &m, &want(&|a, b| a * b), 1e-6, 1e-7);
    assert_close("axpy", &x, &want(&|a, b| a - 0.5 * b), 1e-6, 1e-7);

    // d/da Σ w·(a·b + a) = w·(b + 1); the product uses `a` twice, so the tape must add.
    let w = rng.vec(n);
    let tape = Tape::new(gpu());
    let va = tape.var(a.clone());
    let vb = tape.constant(b.clone());
    let prod = tape.mul(&va, &vb).unwrap();
    let y = tape.add(&prod, &va).unwrap();
    assert_eq!(tape.len(), 2);
    let grads = tape.backward_with(&y, Some(upload(&[n], &w)), &[]).unwrap();
    assert!(grads.get(&vb).is_none(), "a constant gets no gradient");
    let g = grads.get(&va).unwrap().to_vec().unwrap();
    let want: Vec<f64> = w.iter().zip(&bv).map(|(&w, &b)| w as f64 * (b as f64 + 1.0)).collect();
    assert_close("grad a", &g, &want, 1e-6, 1e-7);
}

#[test]
fn shape_mismatch_is_an_error_naming_the_op() {
    let a = upload(&[3], &[1.0, 2.0, 3.0]);
    let b = upload(&[2], &[1.0, 2.0]);
    let e = elementwise::add(&a, &b).unwrap_err().to_string();
    assert!(e.contains("add") && e.contains("[3]") && e.contains("[2]"), "{e}");
}
