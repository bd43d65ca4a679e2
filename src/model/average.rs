//! G averaged over a run's last checkpoints (`ratlip model average`): Polyak averaging, as in
//! Yazıcı et al., "The unusual effectiveness of averaging in GAN training" (ICLR 2019).
//!
//! Why: a GAN's G at one step is one point of an oscillation around what D lets it reach;
//! FD of our runs moves by 2 or more between checkpoints 100 steps apart (docs/evaluation.md,
//! "Averaging G over checkpoints"). The mean of G's weights over the last checkpoints sits
//! nearer the centre of that oscillation, costs no training, and works on runs already made.
//!
//! What the file holds: netG's parameters (and BatchNorm running statistics) are the mean of
//! the files', in f64; `num_batches_tracked`, netD, netC and CLIP are the last file's, so the
//! result loads, generates and can be trained on like any checkpoint. Files must be the same
//! model (config, tensor names and shapes) around the same frozen CLIP (bit for bit): G's of
//! two CLIPs speak different embeddings, and their mean is neither.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{file_header, ModelConfig, Provenance, CLIP_PREFIX, NET_G};
use crate::error::{Error, Result};
use crate::weights::{save_safetensors, HostTensor, WeightFile};

/// The averaged model file's tensors and header, before it is written.
pub struct Averaged {
    pub tensors: BTreeMap<String, HostTensor>,
    pub config: ModelConfig,
    pub provenance: Provenance,
}

/// Whether G's mean takes this tensor: a count is not averaged, it is the last file's.
fn is_averaged(name: &str) -> bool {
    name.starts_with(NET_G) && !name.ends_with(".num_batches_tracked")
}

fn config_of(w: &WeightFile) -> Result<ModelConfig> {
    let j = w.metadata.get("ratlip_config").ok_or_else(|| {
        Error::Other(format!("{} has no ratlip_config in its header: it is not a ratlip model file", w.source.display()))
    })?;
    ModelConfig::from_json(j).map_err(|e| Error::Other(format!("{}: {e}", w.source.display())))
}

fn provenance_of(w: &WeightFile) -> Provenance {
    w.metadata.get("ratlip_provenance").and_then(|j| serde_json::from_str(j).ok()).unwrap_or_else(|| Provenance::new("unknown"))
}

/// The mean of G over `paths` (at least two model files of one run, any order; the last
/// one's netD, netC and CLIP are kept). Reads one file at a time.
pub fn average(paths: &[PathBuf]) -> Result<Averaged> {
    if paths.len() < 2 {
        return Err(Error::Other(format!("averaging needs at least two model files; got {}", paths.len())));
    }
    let mut first = Some(WeightFile::load(&paths[0])?);
    let first_ref = first.as_ref().expect("just loaded");
    let config = config_of(first_ref)?;
    let shapes: BTreeMap<String, Vec<usize>> = first_ref.names().map(|n| (n.to_string(), first_ref.shape(n).expect("listed").to_vec())).collect();
    if !shapes.keys().any(|n| is_averaged(n)) {
        return Err(Error::Other(format!("{}: no {NET_G} tensors to average", paths[0].display())));
    }
    let mut clip: BTreeMap<String, HostTensor> = BTreeMap::new();
    let mut sums: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut steps = Vec::new();
    let mut last = None;
    for path in paths {
        let mut w = match first.take() {
            Some(w) => w,
            None => WeightFile::load(path)?,
        };
        let c = config_of(&w)?;
        if c != config {
            return Err(Error::Other(format!(
                "{} and {} are different models (their ratlip_config differs): only checkpoints of one run can be averaged",
                paths[0].display(),
                path.display()
            )));
        }
        for n in w.names() {
            if !shapes.contains_key(n) {
                return Err(Error::Other(format!("{}: tensor {n} is not in {}", path.display(), paths[0].display())));
            }
        }
        let p = provenance_of(&w);
        steps.push(p.detail.get("step").cloned().unwrap_or_else(|| "?".into()));
        let mut kept = BTreeMap::new();
        for (name, shape) in &shapes {
            let t = w.take(name, shape).map_err(|e| Error::Other(format!("{e} (as in {})", paths[0].display())))?;
            if name.starts_with(CLIP_PREFIX) {
                match clip.get(name) {
                    None => {
                        clip.insert(name.clone(), t.clone());
                    }
                    Some(c) if c.data != t.data => {
                        return Err(Error::Other(format!(
                            "{} and {} were trained around different CLIPs (tensor {name} differs): \
                             their G's read different embeddings, so their mean means nothing",
                            paths[0].display(),
                            path.display()
                        )))
                    }
                    Some(_) => {}
                }
            }
            if is_averaged(name) {
                let s = sums.entry(name.clone()).or_insert_with(|| vec![0.0; t.data.len()]);
                for (a, x) in s.iter_mut().zip(&t.data) {
                    *a += *x as f64;
                }
            }
            kept.insert(name.clone(), t);
        }
        last = Some((kept, p));
    }
    let (mut tensors, last_provenance) = last.expect("at least two files");
    let k = paths.len() as f64;
    for (name, s) in sums {
        let t = tensors.get_mut(&name).expect("every file has every name");
        t.data = s.iter().map(|a| (a / k) as f32).collect();
    }
    let mut provenance = Provenance::new("average");
    provenance.sources = paths.iter().map(|p| p.display().to_string()).collect();
    provenance.detail = last_provenance.detail;
    provenance.detail.insert("averaged_steps".into(), steps.join(","));
    Ok(Averaged { tensors, config, provenance })
}

impl Averaged {
    /// Writes the model file atomically, with the header `Model::save` writes.
    pub fn save(&self, path: &Path) -> Result<()> {
        save_safetensors(path, &self.tensors, &file_header(&self.config, &self.provenance))
    }
}
