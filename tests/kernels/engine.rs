//! The engine itself: pooling, caching, batching, views, limits, and the tape's bookkeeping.

use ratlip::ops::elementwise::{self, Activation};
use ratlip::{Tape, Tensor};

use crate::common::*;

#[test]
fn upload_download_roundtrip_and_views() {
    let mut rng = Rng::new(10);
    let (t, v) = random(&mut rng, &[6, 64]);
    assert_eq!(t.to_vec().unwrap(), v);
    let r = t.reshape(&[3, 128]).unwrap();
    assert!(r.shares_buffer(&t));
    assert_eq!(r.to_vec().unwrap(), v);
    // Rows 4..6 start at byte 4·64·4 = 1024: a view, bound without a copy.
    let n = t.narrow0(4, 2).unwrap();
    assert!(n.shares_buffer(&t));
    assert_eq!(n.to_vec().unwrap(), v[256..].to_vec());
    let y = elementwise::activation(&n, Activation::Scale(2.0, 0.0)).unwrap().to_vec().unwrap();
    assert_eq!(y, v[256..].iter().map(|x| 2.0 * x).collect::<Vec<_>>());
    assert!(t.reshape(&[5, 5]).is_err());
}

#[test]
fn repeated_forward_allocates_nothing_new() {
    // A private device so that other tests running in parallel do not touch its counters.
    let g = ratlip::Gpu::new(&ratlip::GpuOptions::default()).unwrap();
    let x = Tensor::from_slice(&g, &[1000], &vec![0.5; 1000]).unwrap();
    let pass = || {
        let a = elementwise::activation(&x, Activation::Tanh).unwrap();
        let b = elementwise::mul(&a, &x).unwrap();
        let c = elementwise::add(&b, &a).unwrap();
        c.to_vec().unwrap()
    };
    let first = pass();
    let s1 = g.stats();
    for _ in 0..3 {
        assert_eq!(pass(), first);
    }
    let s2 = g.stats();
    assert_eq!(s1.buffers_created, s2.buffers_created, "buffers reused from the pool");
    assert_eq!(s1.pipelines_created, s2.pipelines_created, "pipelines cached");
    assert_eq!(s1.bind_groups_created, s2.bind_groups_created, "bind groups cached");
    assert_eq!(s2.dispatches - s1.dispatches, 9);
    // Three dispatches and a readback per pass: one submission each, not one per dispatch.
    assert_eq!(s2.submits - s1.submits, 3);
}

#[test]
fn oversized_binding_is_an_error_not_a_crash() {
    let g = gpu();
    let max = g.max_binding_bytes();
    let n = (max / 4 + 1024) as usize;
    if (n as u64) * 4 > g.limits().max_buffer_size {
        return; // A device whose buffers cannot exceed one binding cannot hit this case.
    }
    let t = Tensor::empty(g, &[n]).unwrap();
    let e = elementwise::activation(&t, Activation::Relu).unwrap_err().to_string();
    assert!(e.contains("max_storage_buffer_binding_size"), "{e}");
}

#[test]
fn frozen_path_records_nothing() {
    let tape = Tape::new(gpu());
    let c = tape.constant(upload(&[4], &[1.0, 2.0, 3.0, 4.0]));
    let y = tape.activation(&c, Activation::Sigmoid).unwrap();
    assert!(!y.requires_grad());
    assert!(tape.is_empty());
}

#[test]
fn unused_output_gradient_is_zero_and_intermediates_are_dropped() {
    let tape = Tape::new(gpu());
    let x = tape.var(upload(&[3], &[1.0, -2.0, 3.0]));
    let h = tape.activation(&x, Activation::Relu).unwrap();
    let y = tape.activation(&h, Activation::Scale(3.0, 1.0)).unwrap();
    let grads = tape.backward(&y).unwrap();
    assert!(grads.get(&h).is_none(), "intermediate gradients are not kept unless retained");
    assert_eq!(grads.get(&x).unwrap().to_vec().unwrap(), vec![3.0, 0.0, 3.0]);
}
