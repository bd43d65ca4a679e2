//! Reading a PyTorch reference fixture (a safetensors of named inputs, outputs and gradients
//! written by a script in tools/reference/), shared by the parity tests. Each tensor is taken
//! once, so a test cannot silently compare against the same value twice.

#![allow(dead_code)] // each test binary uses its own subset

use std::collections::BTreeMap;
use std::path::Path;

use ratlip::weights::WeightFile;
use ratlip::{Gpu, Tensor};

pub struct Ref(pub WeightFile);

impl Ref {
    pub fn open(path: &Path) -> Ref {
        Ref(WeightFile::load(path).unwrap_or_else(|e| panic!("{e}")))
    }
    pub fn host(&mut self, name: &str) -> (Vec<usize>, Vec<f32>) {
        let t = self.0.take_any(name).unwrap_or_else(|| panic!("reference has no {name}"));
        (t.shape, t.data)
    }
    pub fn tensor(&mut self, g: &Gpu, name: &str) -> Tensor {
        let (s, d) = self.host(name);
        Tensor::from_slice(g, &s, &d).unwrap()
    }
    pub fn scalar(&mut self, name: &str) -> f32 {
        self.host(name).1[0]
    }
    /// Every reference tensor under `prefix`, by the rest of its name.
    pub fn under(&mut self, prefix: &str) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
        let names: Vec<String> = self.0.names().filter(|n| n.starts_with(prefix)).map(str::to_string).collect();
        names.into_iter().map(|n| (n[prefix.len()..].to_string(), self.host(&n))).collect()
    }
}

/// max |got − want| / max |want|.
pub fn rel(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0f64, |m, &w| m.max(w.abs() as f64)).max(1e-30);
    got.iter().zip(want).fold(0f64, |m, (&g, &w)| m.max((g as f64 - w as f64).abs())) / scale
}
