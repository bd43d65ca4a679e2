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
fn paced_work_is_split_into_waited_submissions_with_the_same_results() {
    let g = ratlip::Gpu::new(&ratlip::GpuOptions::default()).unwrap();
    let x = Tensor::from_slice(&g, &[1000], &(0..1000).map(|i| i as f32 / 500.0 - 1.0).collect::<Vec<_>>()).unwrap();
    let pass = || {
        let a = elementwise::activation(&x, Activation::Tanh).unwrap();
        let b = elementwise::mul(&a, &x).unwrap();
        let c = elementwise::add(&b, &a).unwrap();
        c.to_vec().unwrap()
    };
    let whole = pass();
    let s0 = g.stats();
    g.set_pace(2);
    assert_eq!(pass(), whole, "pacing changes when work is submitted, not what it computes");
    let s1 = g.stats();
    // Dispatches 1-2 (paced), then dispatch 3 with the readback.
    assert_eq!(s1.submits - s0.submits, 2);
    g.wait().unwrap();
    g.set_pace(0);
    assert_eq!(pass(), whole);
    assert_eq!(g.stats().submits - s1.submits, 1, "pace 0 is one submission again");
}

#[test]
fn oversized_binding_is_an_error_not_a_crash() {
    // A kernel that cannot split its operand must get an error naming the limit.
    static COPY: ratlip::gpu::Kernel = ratlip::gpu::Kernel {
        name: "test_copy",
        source: "@group(0) @binding(0) var<storage, read_write> x: array<f32>;
                 @compute @workgroup_size(64) fn main(@builtin(global_invocation_id) i: vec3<u32>) { x[i.x] = 1.0; }",
    };
    let g = ratlip::Gpu::new(&ratlip::GpuOptions::default()).unwrap();
    g.set_binding_limit_for_tests(4096);
    let t = Tensor::zeros(&g, &[2048]).unwrap();
    let e = g.dispatch(&COPY, "main", &(), &[&t], [1, 1, 1]).unwrap_err().to_string();
    assert!(e.contains("max_storage_buffer_binding_size") && e.contains("[2048]"), "{e}");
}

#[test]
fn elementwise_on_a_tensor_larger_than_the_real_binding_limit() {
    let g = gpu();
    let n = (g.max_binding_bytes() / 4 + 4099) as usize;
    if (n as u64) * 4 > g.limits().max_buffer_size {
        return; // this device's buffers cannot exceed one binding
    }
    let x = Tensor::full(g, &[n], -2.0).unwrap();
    let y = elementwise::activation(&x, Activation::LeakyRelu(0.25)).unwrap();
    let tail = y.narrow0(n - 4104, 4104).unwrap().to_vec().unwrap();
    assert!(tail.iter().all(|&v| v == -0.5), "the last piece was computed");
}

#[test]
fn elementwise_ops_split_tensors_larger_than_a_binding() {
    let g = ratlip::Gpu::new(&ratlip::GpuOptions::default()).unwrap();
    let mut rng = Rng::new(11);
    let (av, bv) = (rng.vec(5003), rng.vec(5003));
    let run = |g: &ratlip::Gpu| {
        let a = Tensor::from_slice(g, &[5003], &av).unwrap();
        let b = Tensor::from_slice(g, &[5003], &bv).unwrap();
        let t = elementwise::activation(&a, Activation::Tanh).unwrap();
        let m = elementwise::mul(&t, &b).unwrap();
        let d = elementwise::activation_backward(&a, &m, Activation::QuickGelu).unwrap();
        d.to_vec().unwrap()
    };
    let whole = run(&g);
    g.set_binding_limit_for_tests(1024); // 256 floats per binding: 20 pieces
    let d0 = g.stats().dispatches;
    let split = run(&g);
    assert_eq!(whole, split);
    assert!(g.stats().dispatches - d0 >= 60, "split into pieces");
}

#[test]
fn a_tensor_larger_than_the_device_allows_is_an_error() {
    let g = gpu();
    let n = (g.limits().max_buffer_size / 4 + 1) as usize;
    let e = Tensor::empty(g, &[n]).unwrap_err().to_string();
    assert!(e.contains("max_buffer_size") && e.contains(&format!("{n}")), "{e}");
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

#[test]
fn forward_memory_is_released_after_backward() {
    let g = ratlip::Gpu::new(&ratlip::GpuOptions::default()).unwrap();
    let x = Tensor::full(&g, &[4096], 0.3).unwrap();
    let base = g.stats().bytes_in_use;
    let tape = Tape::new(&g);
    let v = tape.var(x.clone());
    let mut h = v.clone();
    for _ in 0..8 {
        h = tape.activation(&h, Activation::Tanh).unwrap();
    }
    let during = g.stats().bytes_in_use;
    assert!(during >= base + 8 * 4096 * 4, "activations are held for backward");
    let grads = tape.backward(&h).unwrap();
    drop(h);
    // Only the gradient of the leaf survives (and the tape's saved tensors are gone).
    assert_eq!(g.stats().bytes_in_use, base + 4096 * 4);
    drop(grads);
    assert_eq!(g.stats().bytes_in_use, base);
}

#[test]
fn uploads_stay_in_stream_order_without_submitting() {
    let g = ratlip::Gpu::new(&ratlip::GpuOptions::default()).unwrap();
    let a = Tensor::from_slice(&g, &[512], &vec![2.0; 512]).unwrap();
    let y = elementwise::activation(&a, Activation::Scale(3.0, 0.0)).unwrap();
    drop(a); // its buffer goes back to the pool while the pending dispatch still reads it
    let s0 = g.stats();
    let b = Tensor::from_slice(&g, &[512], &vec![-1.0; 512]).unwrap();
    let s1 = g.stats();
    assert_eq!(s1.buffers_created, s0.buffers_created, "the recycled buffer is reused");
    assert_eq!(s1.submits, s0.submits, "an upload does not submit pending work");
    assert_eq!(y.to_vec().unwrap(), vec![6.0; 512], "the dispatch saw the old contents");
    assert_eq!(b.to_vec().unwrap(), vec![-1.0; 512]);
}
