//! A freshly initialised CLIP in OpenAI names, following OpenAI's `initialize_parameters`
//! (normal inits scaled by width and depth). Used for new in-house CLIPs and for tests that need
//! a whole model without downloading one.

use std::collections::BTreeMap;

use crate::clip::config::ClipConfig;
use crate::rng::Rng;
use crate::weights::HostTensor;

struct Init {
    rng: Rng,
    out: BTreeMap<String, HostTensor>,
}

impl Init {
    fn normal(&mut self, name: String, shape: &[usize], std: f32) {
        let data = self.rng.normals(shape.iter().product()).into_iter().map(|x| x * std).collect();
        self.out.insert(name, HostTensor::new(shape.to_vec(), data));
    }

    fn constant(&mut self, name: String, shape: &[usize], v: f32) {
        self.out.insert(name, HostTensor::new(shape.to_vec(), vec![v; shape.iter().product()]));
    }

    fn layer_norm(&mut self, name: &str, width: usize) {
        self.constant(format!("{name}.weight"), &[width], 1.0);
        self.constant(format!("{name}.bias"), &[width], 0.0);
    }

    fn tower(&mut self, prefix: &str, width: usize, layers: usize) {
        let attn_std = (width as f32).powf(-0.5);
        let proj_std = attn_std * ((2 * layers) as f32).powf(-0.5);
        let fc_std = ((2 * width) as f32).powf(-0.5);
        for i in 0..layers {
            let n = format!("{prefix}transformer.resblocks.{i}");
            self.normal(format!("{n}.attn.in_proj_weight"), &[3 * width, width], attn_std);
            self.constant(format!("{n}.attn.in_proj_bias"), &[3 * width], 0.0);
            self.normal(format!("{n}.attn.out_proj.weight"), &[width, width], proj_std);
            self.constant(format!("{n}.attn.out_proj.bias"), &[width], 0.0);
            self.normal(format!("{n}.mlp.c_fc.weight"), &[4 * width, width], fc_std);
            self.constant(format!("{n}.mlp.c_fc.bias"), &[4 * width], 0.0);
            self.normal(format!("{n}.mlp.c_proj.weight"), &[width, 4 * width], proj_std);
            self.constant(format!("{n}.mlp.c_proj.bias"), &[width], 0.0);
            self.layer_norm(&format!("{n}.ln_1"), width);
            self.layer_norm(&format!("{n}.ln_2"), width);
        }
    }
}

pub fn random_state_dict(cfg: &ClipConfig, seed: u64) -> BTreeMap<String, HostTensor> {
    let mut i = Init { rng: Rng::new(seed), out: BTreeMap::new() };
    let (t, v, e) = (&cfg.text, &cfg.vision, cfg.embed_dim);
    i.tower("", t.width, t.layers);
    i.normal("token_embedding.weight".into(), &[t.vocab_size, t.width], 0.02);
    i.normal("positional_embedding".into(), &[t.context_length, t.width], 0.01);
    i.normal("text_projection".into(), &[t.width, e], (t.width as f32).powf(-0.5));
    i.layer_norm("ln_final", t.width);
    i.tower("visual.", v.width, v.layers);
    let scale = (v.width as f32).powf(-0.5);
    let fan_in = 3 * v.patch_size * v.patch_size;
    i.normal("visual.conv1.weight".into(), &[v.width, 3, v.patch_size, v.patch_size], (fan_in as f32).powf(-0.5));
    i.normal("visual.class_embedding".into(), &[v.width], scale);
    let g = v.grid();
    i.normal("visual.positional_embedding".into(), &[g * g + 1, v.width], scale);
    i.normal("visual.proj".into(), &[v.width, e], scale);
    i.layer_norm("visual.ln_pre", v.width);
    i.layer_norm("visual.ln_post", v.width);
    i.out
}
