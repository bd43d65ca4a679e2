//! The GAN itself (MODEL.md §1, §3–§4): config, parameters, layers, G, NetD/NetC, and the
//! model file that holds them with CLIP.
//!
//! A model file is one `.safetensors`: `clip.` + CLIP in OpenAI names, `netG.` (+ `netD.`,
//! `netC.` for a training checkpoint) in the released code's state-dict names, and the
//! config and provenance as JSON in the header metadata (`ratlip_config`,
//! `ratlip_provenance`). The mapper's ViT is CLIP's own visual tower, stored once.

pub mod average;
pub mod config;
pub mod discriminator;
pub mod generator;
pub mod pytorch;
pub mod layers;
pub mod params;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::autograd::{Tape, Var};
use crate::clip::model::Clip;
use crate::clip::preprocess;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::rng::Rng;
use crate::tensor::Tensor;
use crate::weights::{save_safetensors, HostTensor, WeightFile};

pub use config::{Arch, ModelConfig};
pub use discriminator::{NetC, NetD};
pub use generator::Generator;
pub use params::{Bind, Builder, Params, Source};

/// Where a model came from, kept in its file so `ratlip model info` can say.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// "init", "import", "train".
    pub origin: String,
    /// Source files (checkpoint, CLIP weights) or run directory.
    #[serde(default)]
    pub sources: Vec<String>,
    #[serde(default)]
    pub ratlip_version: String,
    /// Free-form detail: training step, epoch of an imported checkpoint, seed.
    #[serde(default)]
    pub detail: BTreeMap<String, String>,
}

impl Provenance {
    pub fn new(origin: &str) -> Provenance {
        Provenance { origin: origin.into(), ratlip_version: env!("CARGO_PKG_VERSION").into(), ..Default::default() }
    }
}

/// The discriminator's two trained parts.
pub struct Discriminator {
    pub netd: NetD,
    pub netc: NetC,
}

pub struct Model {
    pub config: ModelConfig,
    pub clip: Clip,
    pub params: Params,
    pub g: Generator,
    pub d: Option<Discriminator>,
    pub provenance: Provenance,
}

/// Whether `path` is a ratlip model file: its header alone is read, for the callers that take
/// either a CLIP file or the CLIP inside a model file.
pub fn is_model_file(path: &Path) -> bool {
    path.is_file() && WeightFile::read_metadata(path).is_ok_and(|m| m.contains_key("ratlip_config"))
}

/// A model file's header metadata: config, provenance and format.
pub(crate) fn file_header(config: &ModelConfig, provenance: &Provenance) -> HashMap<String, String> {
    let mut meta = HashMap::new();
    meta.insert("ratlip_config".to_string(), config.to_json());
    meta.insert("ratlip_provenance".to_string(), serde_json::to_string(provenance).expect("provenance serialises"));
    meta.insert("format".to_string(), "ratlip-model".to_string());
    meta
}

/// The parameter-name prefixes of the three trained parts.
pub const NET_G: &str = "netG.";
pub const NET_D: &str = "netD.";
pub const NET_C: &str = "netC.";
pub const CLIP_PREFIX: &str = "clip.";

impl Model {
    /// G (and NetD/NetC when `with_d`) from `source`, around an already built CLIP.
    pub fn build(gpu: &Gpu, config: ModelConfig, clip: Clip, source: Source, with_d: bool, provenance: Provenance) -> Result<Model> {
        config.validate()?;
        if clip.config != config.clip {
            return Err(Error::Other("the CLIP weights do not match the model config's CLIP sizes".into()));
        }
        let mut params = Params::new(gpu);
        let (g, d) = {
            let mut b = Builder::new(&mut params, source);
            b.set_prefix(NET_G);
            let g = Generator::new(&mut b, &config)?;
            let d = if with_d {
                b.set_prefix(NET_D);
                let netd = NetD::new(&mut b, &config)?;
                b.set_prefix(NET_C);
                let netc = NetC::new(&mut b, &config)?;
                Some(Discriminator { netd, netc })
            } else {
                None
            };
            (g, d)
        };
        Ok(Model { config, clip, params, g, d, provenance })
    }

    /// A freshly initialised model (PyTorch's default inits + the spec's), with a given CLIP or
    /// a fresh one.
    pub fn init(gpu: &Gpu, config: ModelConfig, clip: Option<Clip>, seed: u64, with_d: bool) -> Result<Model> {
        let clip = match clip {
            Some(c) => c,
            None => {
                let mut w = WeightFile::from_tensors("(fresh CLIP)", crate::clip::init::random_state_dict(&config.clip, seed ^ 0xC11F));
                Clip::from_weights(gpu, &mut w, "", config.clip.clone())?
            }
        };
        let mut p = Provenance::new("init");
        p.detail.insert("seed".into(), seed.to_string());
        Model::build(gpu, config, clip, Source::Init(Rng::new(seed)), with_d, p)
    }

    /// Opens a ratlip model file. Every tensor is checked by name and shape; leftovers are errors.
    pub fn load(gpu: &Gpu, path: &Path) -> Result<Model> {
        let mut w = WeightFile::load(path)?;
        let config = match w.metadata.get("ratlip_config") {
            Some(j) => ModelConfig::from_json(j).map_err(|e| Error::Other(format!("{}: {e}", path.display())))?,
            None => {
                return Err(Error::Other(format!(
                    "{} has no ratlip_config in its header: it is not a ratlip model file \
                     (for the authors' .pth checkpoints use `ratlip import`; for CLIP weights use `ratlip clip`)",
                    path.display()
                )))
            }
        };
        let provenance = w
            .metadata
            .get("ratlip_provenance")
            .and_then(|j| serde_json::from_str(j).ok())
            .unwrap_or_else(|| Provenance::new("unknown"));
        let with_d = w.names().any(|n| n.starts_with(NET_D));
        let clip = Clip::from_weights(gpu, &mut w, CLIP_PREFIX, config.clip.clone())?;
        let model = Model::build(gpu, config, clip, Source::Load(&mut w), with_d, provenance)?;
        w.finish()?;
        Ok(model)
    }

    /// Every tensor in file names (CLIP under `clip.`).
    pub fn state_dict(&self) -> Result<BTreeMap<String, HostTensor>> {
        let mut out = self.params.to_host("")?;
        for (n, t) in self.clip.state_dict()? {
            out.insert(format!("{CLIP_PREFIX}{n}"), t);
        }
        Ok(out)
    }

    /// Writes the model file atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        save_safetensors(path, &self.state_dict()?, &file_header(&self.config, &self.provenance))
    }

    /// Generate at `size`×`size` instead of the trained S (the image blocks are convolutional).
    pub fn set_output_size(&mut self, size: usize) -> Result<()> {
        self.g.set_output_size(size)?;
        self.config.image_size = size;
        Ok(())
    }

    /// G(z, s) on a tape (`cx` decides what is differentiated and the BatchNorm mode).
    pub fn generate_on(&self, cx: &Bind, z: &Var, sent_emb: &Var) -> Result<Var> {
        self.g.forward(cx, &self.clip, z, sent_emb)
    }

    /// Images [B, 3, S, S] for noise [B, z_dim] and sentence embeddings [B, cond_dim]:
    /// eval mode, nothing differentiated, not clamped.
    pub fn generate(&self, z: &Tensor, sent_emb: &Tensor) -> Result<Tensor> {
        let tape = Tape::new(self.params.gpu());
        let cx = Bind::inference(&tape, &self.params);
        let img = self.generate_on(&cx, &tape.constant(z.clone()), &tape.constant(sent_emb.clone()))?;
        Ok(img.value().clone())
    }

    /// The discriminator's CLIP features of images in [-1, 1] (released preprocessing):
    /// ([B, n, W, g, g] maps, [B, embed] image embedding).
    pub fn clip_features(&self, tape: &Tape, images: &Var) -> Result<(Var, Var)> {
        let pixels = preprocess::released(tape, images, self.config.clip.vision.image_size)?;
        let out = self.clip.encode_image(tape, &pixels, &self.config.clip_features)?;
        Ok((out.features, out.embedding))
    }

    pub fn discriminator(&self) -> Result<&Discriminator> {
        self.d.as_ref().ok_or_else(|| Error::Other("this model file holds no discriminator (NetD/NetC): it is not a training checkpoint".into()))
    }

    /// NetC(NetD(features), s): the logits [B, 1, 1, 1].
    pub fn judge(&self, cx: &Bind, features: &Var, sent_emb: &Var) -> Result<Var> {
        let d = self.discriminator()?;
        let out = d.netd.forward(cx, features)?;
        d.netc.forward(cx, &out, sent_emb)
    }

    /// Scalars per part: (G, NetD, NetC) trainable parameters.
    pub fn parameter_counts(&self) -> (usize, usize, usize) {
        (self.params.count(NET_G, false), self.params.count(NET_D, false), self.params.count(NET_C, false))
    }
}
