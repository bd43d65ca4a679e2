//! The renderer's labels as an auxiliary loss on CLIP's image side (`train-clip
//! --attribute-w W`, not CLIP's recipe): a linear read-out of the normalised image embedding
//! per attribute of attributes.jsonl, trained by cross-entropy beside the contrastive loss.
//!
//! Why: contrastive training starts with neither side following an attribute, and the gradient
//! that would make one side follow it is proportional to how much the other already does, so a
//! small attribute can sit at that saddle for the whole run. Measured on the synthetic faces:
//! every CLIP trained here (2000 steps, with hard negatives, with twins that differ in nothing
//! but the mouth) separates smiling from sad faces no better than chance (linear probe
//! 0.47–0.58), while the mean smiling and sad faces differ at the mouth plainly. The head
//! gives the image side a gradient of its own; the text side then learns the words from the
//! captions, since the image embeddings now differ along the attribute.
//!
//! `--text-attribute-w` adds the same kind of head, with its own W, on the caption's sentence
//! embedding (labelled with its image's classes): the text side then says the words it would
//! otherwise barely move for (CLIP A's caption and its mood contrast: cosine 0.988), and a
//! generator conditioned on it can tell the two prompts apart.
//!
//! The head is W [embed_dim, Σ classes], zero at the start; an attribute's logits are
//! [`HEAD_SCALE`] · norm(img) · W[:, its classes]. Its loss is the mean over attributes of the
//! mean cross-entropy over the images that have the attribute. W lives in the train state (not
//! in the CLIP file, which stays a plain CLIP): zero-shot prompts are never trained on, so
//! `clip eval`'s zero-shot accuracy still measures what the captions taught the text side.

use crate::autograd::{Tape, Var};
use crate::error::{Error, Result};
use crate::ops::elementwise::Activation;
use crate::ops::loss::targets_tensor;
use crate::tensor::Tensor;

/// The image head's name among the trained tensors (Adam's state and the train state file).
pub const HEAD: &str = "attribute_head";
/// The text head's (`--text-attribute-w`).
pub const TEXT_HEAD: &str = "attribute_head_text";

/// Which embedding a head reads: the image's, or its caption's (labelled with the image's
/// classes: a caption that does not name an attribute leaves its head at the prior there,
/// one that names it teaches the text side to say it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Image,
    Text,
}

impl Side {
    /// The head's tensor name.
    pub fn name(self) -> &'static str {
        match self {
            Side::Image => HEAD,
            Side::Text => TEXT_HEAD,
        }
    }
}
/// norm(img) has unit length, so a unit-length column of W gives logits in [−10, 10]: the
/// range CLIP's own learned scale reaches (e^logit_scale ≈ 14–24 in the runs here).
pub const HEAD_SCALE: f32 = 10.0;

/// Which columns of W belong to which attribute.
#[derive(Clone, Debug, PartialEq)]
pub struct Spans {
    /// (attribute, first column, classes).
    pub spans: Vec<(String, usize, usize)>,
}

impl Spans {
    pub fn new(attributes: &[(String, Vec<String>)]) -> Spans {
        let mut start = 0;
        let spans = attributes
            .iter()
            .map(|(name, classes)| {
                let s = (name.clone(), start, classes.len());
                start += classes.len();
                s
            })
            .collect();
        Spans { spans }
    }

    /// Σ classes: W's columns.
    pub fn columns(&self) -> usize {
        self.spans.iter().map(|s| s.2).sum()
    }
}

/// The head's loss on one batch, and its accuracy (the share of (image, attribute) pairs whose
/// largest logit is the true class).
pub struct HeadLoss {
    pub loss: Var,
    pub accuracy: f32,
    /// Per attribute the batch has: (name, accuracy).
    pub by_attribute: Vec<(String, f32)>,
}

/// `img` [B, E] (the image embeddings, unnormalised), `w` [E, Σ classes], `labels` one row of
/// class indices per image (None: the image lacks that attribute). Attributes no image of the
/// batch has are left out of the mean.
pub fn head_loss(tape: &Tape, img: &Var, w: &Var, spans: &Spans, labels: &[Vec<Option<u32>>]) -> Result<HeadLoss> {
    let b = labels.len();
    let (e, c) = (w.value().shape()[0], spans.columns());
    if img.value().shape() != [b, e] || w.value().shape() != [e, c] || labels.iter().any(|l| l.len() != spans.spans.len()) {
        return Err(Error::shape(
            "attribute head",
            format!("image embeddings {:?}, W {:?} for {b} label rows of {} attributes ({c} classes)", img.value().shape(), w.value().shape(), spans.spans.len()),
        ));
    }
    let gpu = tape.gpu();
    let logits = tape.matmul(&tape.l2_normalize(img)?, w, false, false)?;
    let logits = tape.activation(&logits, Activation::Scale(HEAD_SCALE, 0.0))?;
    let values = logits.value().to_vec()?;
    let mut total: Option<Var> = None;
    let (mut terms, mut right, mut seen) = (0usize, 0usize, 0usize);
    let mut by_attribute = Vec::new();
    for (a, (name, start, k)) in spans.spans.iter().enumerate() {
        let have = labels.iter().filter(|l| l[a].is_some()).count();
        if have == 0 {
            continue;
        }
        // Rows without the attribute get target 0 and weight 0.
        let targets: Vec<u32> = labels.iter().map(|l| l[a].unwrap_or(0)).collect();
        let mask: Vec<f32> = labels.iter().map(|l| if l[a].is_some() { 1.0 / have as f32 } else { 0.0 }).collect();
        let mut here = 0usize;
        for (i, l) in labels.iter().enumerate() {
            if let Some(t) = l[a] {
                let row = &values[i * c + start..i * c + start + k];
                let pred = row.iter().enumerate().fold((0, f32::NEG_INFINITY), |m, (j, &v)| if v > m.1 { (j, v) } else { m }).0;
                here += usize::from(pred == t as usize);
            }
        }
        right += here;
        seen += have;
        by_attribute.push((name.clone(), here as f32 / have as f32));
        let ce = tape.cross_entropy(&tape.slice(&logits, 1, *start, *k)?, &targets_tensor(gpu, &targets, *k)?)?;
        let mean = tape.sum(&tape.mul(&ce, &tape.constant(Tensor::from_slice(gpu, &[b], &mask)?))?, &[0], false)?;
        total = Some(match total {
            None => mean,
            Some(t) => tape.add(&t, &mean)?,
        });
        terms += 1;
    }
    let total = total.ok_or_else(|| Error::Other("attribute head: no image of the batch has a label".into()))?;
    let loss = tape.activation(&total, Activation::Scale(1.0 / terms as f32, 0.0))?;
    Ok(HeadLoss { loss, accuracy: right as f32 / seen.max(1) as f32, by_attribute })
}
