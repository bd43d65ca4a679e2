//! The authors' checkpoints in and out. GALIP's and RATLIP's `state_epoch_XXX.pth` hold
//! `{'model': {'netG', 'netD', 'netC'}, 'optimizers': ..., 'epoch': N}` in the released
//! modules' state-dict names, which are ours too; the sizes are read off the tensor shapes,
//! the mapper's copy of CLIP's ViT (`mapping.CLIP_ViT.*`) is checked against the CLIP given and
//! stored once, and the text encoder (absent from the checkpoint) comes from that CLIP.

use std::collections::BTreeSet;
use std::path::Path;

use crate::clip::model::Clip;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::model::config::{Arch, ModelConfig};
use crate::model::{Model, Provenance, Source, NET_C, NET_D, NET_G};
use crate::weights::pth::{load_pth, strip_module_prefix};
use crate::weights::{HostTensor, WeightFile};

/// The prefix of the mapper's ViT inside netG, and its counterpart in CLIP's state dict.
pub const MAPPER_VIT: &str = "mapping.CLIP_ViT.";
/// CLIP visual tensors the mapper does not hold (it stops before ln_post).
const NOT_IN_MAPPER: [&str; 3] = ["visual.ln_post.weight", "visual.ln_post.bias", "visual.proj"];

pub struct Imported {
    pub model: Model,
    /// Largest |Δ| / max |w| between the checkpoint's mapper ViT and the CLIP given.
    pub mapper_vit_difference: f32,
    pub epoch: Option<String>,
}

/// Where netG/netD/netC live in the checkpoint's flattened names.
fn find_parts(w: &WeightFile) -> Result<(String, bool)> {
    for root in ["model.netG.", "netG.", ""] {
        if w.contains(&format!("{root}fc_code.weight")) {
            let d_root = root.replace("netG", "netD");
            let with_d = !root.is_empty() && w.contains(&format!("{d_root}main.conv_r.0.weight"));
            return Ok((root.to_string(), with_d));
        }
    }
    Err(Error::Other(format!(
        "{}: no generator found (looked for model.netG.fc_code.weight, netG.fc_code.weight and fc_code.weight); \
         is this a GALIP/RATLIP checkpoint?",
        w.source.display()
    )))
}

fn shape<'a>(w: &'a WeightFile, name: &str) -> Result<&'a [usize]> {
    w.shape(name).ok_or_else(|| Error::Other(format!("{}: missing tensor {name}", w.source.display())))
}

fn count_indexed(w: &WeightFile, prefix: &str, suffix: &str) -> usize {
    let ids: BTreeSet<usize> = w
        .names()
        .filter_map(|n| n.strip_prefix(prefix))
        .filter_map(|rest| rest.split_once('.'))
        .filter(|(_, rest)| *rest == suffix)
        .filter_map(|(i, _)| i.parse().ok())
        .collect();
    ids.len()
}

/// Reads the config off the shapes of a netG/netD/netC state dict already renamed to our prefixes.
fn infer_config(w: &WeightFile, clip: &Clip, image_size: usize) -> Result<ModelConfig> {
    let g = |n: &str| shape(w, &format!("{NET_G}{n}"));
    let arch = if w.names().any(|n| n.ends_with(".rnn.weight_ih_l0")) {
        Arch::RatlipRelease
    } else if w.contains(&format!("{NET_G}mapping.rat.cell.weight_ih")) {
        Arch::Ratlip
    } else {
        Arch::Galip
    };
    let grid = clip.config.vision.grid();
    let fc_code = g("fc_code.weight")?;
    let z_dim = fc_code[1];
    let code_ch = fc_code[0] / (grid * grid);
    let prompt = g("mapping.fc_prompt.weight")?;
    let width = g("mapping.conv_fuse.weight")?[0];
    if width != clip.config.vision.width {
        return Err(Error::Other(format!(
            "the checkpoint's mapper is {width} wide but the CLIP given has vision width {}: wrong CLIP weights?",
            clip.config.vision.width
        )));
    }
    let mut cfg = ModelConfig::released(arch);
    cfg.clip = clip.config.clone();
    cfg.z_dim = z_dim;
    cfg.cond_dim = prompt[1] - z_dim;
    cfg.prompts = prompt[0] / width;
    cfg.code_ch = code_ch;
    cfg.mid_ch = g("mapping.FBlocks.0.conv1.weight")?[0];
    cfg.bridge_blocks = count_indexed(w, &format!("{NET_G}mapping.FBlocks."), "conv1.weight");
    cfg.ngf = g("mapping.conv.weight")?[0] / 8;
    cfg.image_blocks = count_indexed(w, &format!("{NET_G}GBlocks."), "fuse1.affine0.fc_gamma.linear1.weight");
    cfg.image_size = image_size;
    cfg.lstm_hidden = match arch {
        Arch::RatlipRelease => g("mapping.FBlocks.0.fuse1.affine0.rnn.weight_hh_l0")?[1],
        Arch::Ratlip => g("mapping.rat.cell.weight_hh")?[1],
        Arch::Galip => cfg.lstm_hidden,
    };
    if arch.shuffle_attention() {
        let c_out = g("GBlocks.0.c1.conv.weight")?[0];
        let half = g("GBlocks.0.c1.se.cweight")?[1];
        cfg.sa_groups = c_out / (2 * half);
    }
    if let Some(s) = w.shape(&format!("{NET_D}main.conv_r.0.weight")) {
        cfg.d_out = s[0];
    }
    if let Some(s) = w.shape(&format!("{NET_C}joint_conv.0.weight")) {
        cfg.netc_hidden = s[0];
    }
    cfg.validate()?;
    Ok(cfg)
}

/// Max |a − b| / max |b| over the mapper's ViT tensors. Released checkpoints trained on CUDA
/// hold CLIP in fp16 (clip.load on a GPU), so ~5e-4 is a match; a different CLIP is ~1.
fn mapper_difference(w: &mut WeightFile, prefix: &str, clip: &Clip) -> Result<f32> {
    let theirs: Vec<String> = w.names().filter(|n| n.starts_with(prefix)).map(str::to_string).collect();
    let ours = clip.state_dict()?;
    let mut worst = 0f32;
    let expected = ours.keys().filter(|k| k.starts_with("visual.") && !NOT_IN_MAPPER.contains(&k.as_str())).count();
    if theirs.len() != expected {
        return Err(Error::Other(format!(
            "the checkpoint's mapper ViT has {} tensors, the CLIP given has {expected}: wrong CLIP weights?",
            theirs.len()
        )));
    }
    for name in theirs {
        let t = w.take_any(&name).expect("listed above");
        let clip_name = format!("visual.{}", &name[prefix.len()..]);
        let c = ours.get(&clip_name).ok_or_else(|| Error::Other(format!("checkpoint tensor {name} has no CLIP counterpart {clip_name}")))?;
        if c.shape != t.shape {
            return Err(Error::Other(format!("checkpoint tensor {name} is {:?} but CLIP's {clip_name} is {:?}: wrong CLIP weights?", t.shape, c.shape)));
        }
        let scale = c.data.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
        let diff = t.data.iter().zip(&c.data).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        worst = worst.max(diff / scale);
    }
    Ok(worst)
}

/// Reads a GALIP/RATLIP `.pth` (never running pickle code) with CLIP from `clip_path`.
pub fn import_checkpoint(gpu: &Gpu, checkpoint: &Path, clip_path: &Path, image_size: usize) -> Result<Imported> {
    let raw = strip_module_prefix(load_pth(checkpoint)?);
    let (g_root, with_d) = find_parts(&raw)?;
    let epoch = raw.metadata.get("epoch").cloned();
    let roots = [(g_root.clone(), NET_G), (g_root.replace("netG", "netD"), NET_D), (g_root.replace("netG", "netC"), NET_C)];
    let mut w = WeightFile::from_tensors(checkpoint, Default::default());
    let mut raw = raw;
    let names: Vec<String> = raw.names().map(str::to_string).collect();
    for name in names {
        for (root, ours) in &roots {
            if !with_d && *ours != NET_G {
                continue;
            }
            if let Some(rest) = name.strip_prefix(root.as_str()) {
                // An optimizer's state lives elsewhere ("optimizers."), so a part prefix is enough.
                let t: HostTensor = raw.take_any(&name).expect("listed");
                w.insert(format!("{ours}{rest}"), t);
                break;
            }
        }
    }
    let clip = Clip::load(gpu, clip_path)?;
    let diff = mapper_difference(&mut w, &format!("{NET_G}{MAPPER_VIT}"), &clip)?;
    if diff > 2e-3 {
        return Err(Error::Other(format!(
            "the CLIP given ({}) is not the one this checkpoint was trained with: its mapper ViT differs by {diff:.2e} \
             (relative); released GALIP/RATLIP models use OpenAI's ViT-B/32",
            clip_path.display()
        )));
    }
    let config = infer_config(&w, &clip, image_size)?;
    let mut prov = Provenance::new("import");
    prov.sources = vec![checkpoint.display().to_string(), clip_path.display().to_string()];
    if let Some(e) = &epoch {
        prov.detail.insert("epoch".into(), e.clone());
    }
    prov.detail.insert("mapper_vit_difference".into(), format!("{diff:.3e}"));
    let model = Model::build(gpu, config, clip, Source::Load(&mut w), with_d, prov)?;
    w.finish()?;
    Ok(Imported { model, mapper_vit_difference: diff, epoch })
}

/// Writes the released checkpoint layout `{'model': {'netG', 'netD', 'netC'}, 'epoch': N}` as a
/// `.pth` the authors' code loads with `load_state_dict(strict=True)`: netG gets its
/// `mapping.CLIP_ViT.*` copy of CLIP's visual tower back, BatchNorm counters are int64.
/// Optimiser state is not included (their resume path wants it; their sampling path does not).
pub fn export_checkpoint(model: &Model, path: &Path, epoch: i64) -> Result<()> {
    use crate::weights::pth::{save_pth, PthDtype, PthValue};
    let params = model.params.to_host("")?;
    let part = |prefix: &str, extra: Vec<(String, HostTensor)>| -> PthValue {
        let mut items: Vec<(String, PthValue)> = params
            .iter()
            .filter_map(|(n, t)| n.strip_prefix(prefix).map(|rest| (rest.to_string(), t)))
            .map(|(rest, t)| {
                let dtype = if rest.ends_with("num_batches_tracked") { PthDtype::I64 } else { PthDtype::F32 };
                (rest, PthValue::Tensor(t.clone(), dtype))
            })
            .collect();
        items.extend(extra.into_iter().map(|(n, t)| (n, PthValue::Tensor(t, PthDtype::F32))));
        PthValue::OrderedDict(items)
    };
    let vit: Vec<(String, HostTensor)> = model
        .clip
        .state_dict()?
        .into_iter()
        .filter(|(n, _)| n.starts_with("visual.") && !NOT_IN_MAPPER.contains(&n.as_str()))
        .map(|(n, t)| (format!("{MAPPER_VIT}{}", &n["visual.".len()..]), t))
        .collect();
    let mut nets = vec![("netG".to_string(), part(NET_G, vit))];
    if model.d.is_some() {
        nets.push(("netD".to_string(), part(NET_D, vec![])));
        nets.push(("netC".to_string(), part(NET_C, vec![])));
    }
    let root = PthValue::Dict(vec![("model".into(), PthValue::Dict(nets)), ("epoch".into(), PthValue::Int(epoch))]);
    save_pth(path, &root)
}
