//! CLIP's training gradients at the sizes the in-house CLIPs train at, against central
//! differences: 32 px in 4 px patches is 64 patches + the class token = 65 tokens, past the
//! 5 tokens of the PyTorch parity fixture (tests/clip_train.rs) and past a 64-wide tile.
//! Checked: the patch embedding and the positional embedding of tokens all over the grid
//! (the mouth of a face sits in patch rows 5–6).

use std::collections::BTreeMap;

use ratlip::clip::config::{ClipConfig, TextConfig, VisionConfig};
use ratlip::clip::model::Clip;
use ratlip::train::clip::contrastive_grads;
use ratlip::weights::{HostTensor, WeightFile};
use ratlip::{Gpu, Tensor};

fn config() -> ClipConfig {
    ClipConfig {
        text: TextConfig { width: 32, layers: 1, heads: 2, context_length: 8, vocab_size: 64 },
        vision: VisionConfig { width: 32, layers: 2, heads: 2, patch_size: 4, image_size: 32 },
        embed_dim: 16,
        layer_norm_eps: 1e-5,
    }
}

fn clip(gpu: &Gpu, sd: &BTreeMap<String, HostTensor>) -> Clip {
    Clip::from_weights(gpu, &mut WeightFile::from_tensors("(test)", sd.clone()), "", config()).unwrap()
}

#[test]
fn patch_and_position_gradients_match_central_differences_on_65_tokens() {
    let gpu = Gpu::new(&Default::default()).unwrap();
    let mut sd = ratlip::clip::init::random_state_dict(&config(), 3);
    let b = 4;
    let mut r = ratlip::rng::Rng::new(9);
    let pixels: Vec<f32> = (0..b * 3 * 32 * 32).map(|_| r.uniform(-1.5, 1.5)).collect();
    let pixels = Tensor::from_slice(&gpu, &[b, 3, 32, 32], &pixels).unwrap();
    let ids: Vec<Vec<u32>> = (0..b as u32).map(|i| vec![62, 3 + i, 7 + 2 * i, 11, 63, 0, 0, 0]).collect();
    let scale = Tensor::from_slice(&gpu, &[], &[2.0f32]).unwrap();
    let loss = |sd: &BTreeMap<String, HostTensor>| -> f64 { contrastive_grads(&clip(&gpu, sd), &scale, &pixels, &ids, &[], None).unwrap().loss as f64 };
    let out = contrastive_grads(&clip(&gpu, &sd), &scale, &pixels, &ids, &[], None).unwrap();

    let width = 32;
    // (tensor, flat index): positional rows of the class token and of patches at the top,
    // the middle, the mouth's rows and the last; patch-embedding weights of several filters.
    let mut probes = Vec::new();
    for token in [0usize, 1, 20, 37, 45, 52, 60, 64] {
        for c in [0usize, 17] {
            probes.push(("visual.positional_embedding", token * width + c));
        }
    }
    for k in [0usize, 55, 101, 300, 777, 1535] {
        probes.push(("visual.conv1.weight", k));
    }
    let mut worst = 0.0f64;
    for (name, k) in probes {
        let g = out.grads[name].to_vec().unwrap()[k] as f64;
        let h = 1e-2f32;
        let mut plus = sd.clone();
        plus.get_mut(name).unwrap().data[k] += h;
        let mut minus = sd.clone();
        minus.get_mut(name).unwrap().data[k] -= h;
        let fd = (loss(&plus) - loss(&minus)) / (2.0 * h as f64);
        let err = (g - fd).abs() / (g.abs().max(fd.abs()).max(1e-3));
        eprintln!("{name}[{k}]: analytic {g:.6e}, central difference {fd:.6e}");
        worst = worst.max(err);
        // f32 loss differences over h = 1e-2: a few 1e-3 of the gradient's size.
        assert!(err < 0.05, "{name}[{k}]: analytic {g:.6e} against central difference {fd:.6e}");
    }
    sd.clear();
    eprintln!("worst relative difference {worst:.2e}");
}
