//! Asked for, then not: does G draw a smile or glasses *because the prompt says so*?
//!
//! The other measures cannot tell. The evaluation caption does not state glasses, and a
//! zero-shot prompt ("a smiling face") is read at chance even on real faces by the CLIPs
//! trained on these captions (docs/evaluation.md). So this measure asks twice:
//! - **Pairs**: face i of the renderer (`synth` faces of seed [`PAIR_SEED`], at the model's
//!   size) whose captions name the attribute where [`hard_negatives::contrast_of`] can say
//!   it the other way round; c is the first such caption, c' its reversal ("wearing glasses"
//!   → "no glasses", "smiling" → "frowning"). The renderer draws the same face with the
//!   attribute reversed and every jitter equal, so the real pair are exact twins: the ceiling.
//! - **Generated pair**: G(z_i, c) and G(z_i, c'), the same noise
//!   (`seed_noise(seed ^ PAIR_STREAM, i)`).
//! - **Score**: under a judge CLIP, margin(x) = cos(x, c) − cos(x, c'). A pair *follows* the
//!   prompt when margin(image asked with c) > margin(image asked with c'); a tie counts half.
//!   Whatever the judge thinks of one wording over the other is the same for both images and
//!   cancels, and two images that ignore the reversed word score 0.5: chance.
//!
//! - **Pixels**, a judge that needs no CLIP: the renderer's change D = twin(c) − twin(c')
//!   (bytes read as [-1, 1], non-zero only where the mouth and brows or the frames are). A
//!   generated pair follows when ⟨G(z, c) − G(z, c'), D⟩ > 0 (ties half), and its *share* of
//!   the change is ⟨G(z, c) − G(z, c'), D⟩ / ⟨D, D⟩: 1 for the twins themselves, 0 for a G
//!   that draws the same image for both prompts. It assumes G puts the mouth and eyes about
//!   where the renderer does, which the faces' small jitter (a pixel or so at 32 px) allows.
//!
//! The CLIP judge must read the attribute on real faces for its number to mean anything: the
//! real twins' score says whether it does (measured: a CLIP trained with `--hard-negatives`
//! tells the glasses twins apart 0.805 of the time and the mood twins at chance,
//! docs/evaluation.md).

use serde::Serialize;

use crate::clip::model::Clip;
use crate::data::synth::{self, Attrs};
use crate::error::Result;
use crate::images::Rgb8;
use crate::latent::seed_noise;
use crate::model::Model;
use crate::train::hard_negatives::{contrast_of, flippable, Flip};
use crate::train::twins::render_twin;

use super::{cosine, draw, embed_images};

/// The attributes asked for and then not.
pub const FLIPS: [Flip; 2] = [Flip::Mood, Flip::Glasses];
/// The renderer's seed for the pairs: the evaluation set's (`dataset synth --seed 7`).
pub const PAIR_SEED: u64 = 7;
/// The pairs' noise stream, apart from the other measures' (seed ^ this).
const PAIR_STREAM: u64 = 0x434f_4e54_5241_5354;

pub fn name(flip: Flip) -> &'static str {
    match flip {
        Flip::Mood => "mood",
        Flip::Glasses => "glasses",
        Flip::Beard => "beard",
    }
}

/// One face asked for with the attribute (`caption`) and without it (`contrast`).
pub struct Pair {
    pub caption: String,
    pub contrast: String,
    /// The renderer's twins: the face as `caption` says, then as `contrast` says.
    pub real: [Rgb8; 2],
}

/// The first `n` pairs for `flip` at `size` px.
pub fn pairs(flip: Flip, n: usize, size: usize) -> Vec<Pair> {
    let mut out = Vec::with_capacity(n);
    // Every face names its mood, and 4 in 10 wear glasses (the others are captioned "no
    // glasses" only sometimes): a few times n faces always suffice.
    for i in 0..(n as u64) * 50 {
        if out.len() == n {
            break;
        }
        let s = synth::sample(synth::Kind::Faces, PAIR_SEED, i, size);
        let Attrs::Faces(a) = &s.attrs else { unreachable!("faces were asked for") };
        let Some(caption) = s.captions.iter().find(|c| flippable(c).contains(&flip)) else { continue };
        let Some(contrast) = contrast_of(caption, flip) else { continue };
        let twin = render_twin(a, flip, size, PAIR_SEED, i);
        let img = |rgb: Vec<u8>| Rgb8 { width: size, height: size, data: rgb };
        out.push(Pair { caption: caption.clone(), contrast, real: [img(s.rgb), img(twin)] });
    }
    out
}

/// G's pair for each: image 2k asked with caption k, image 2k + 1 with its contrast, both
/// from noise k.
pub fn generate(model: &Model, pairs: &[Pair], seed: u64, batch: usize) -> Result<Vec<[Rgb8; 2]>> {
    let prompts: Vec<String> = pairs.iter().flat_map(|p| [p.caption.clone(), p.contrast.clone()]).collect();
    let z = model.config.z_dim;
    let imgs = draw(model, &prompts, &|i| seed_noise(seed ^ PAIR_STREAM, (i / 2) as u64, z), batch, &|_, _| {})?;
    Ok(imgs.chunks(2).map(|c| [c[0].clone(), c[1].clone()]).collect())
}

/// The fraction of pairs whose images follow their prompts under `judge` (ties half).
pub fn follows(judge: &Clip, pairs: &[Pair], images: &[[Rgb8; 2]]) -> Result<f64> {
    let flat: Vec<Rgb8> = images.iter().flat_map(|p| p.iter().cloned()).collect();
    let f = embed_images(judge, &flat)?;
    let c = judge.embed_texts(&pairs.iter().map(|p| p.caption.clone()).collect::<Vec<_>>())?;
    let r = judge.embed_texts(&pairs.iter().map(|p| p.contrast.clone()).collect::<Vec<_>>())?;
    let mut score = 0.0;
    for k in 0..pairs.len() {
        let margin = |x: &[f32]| cosine(x, &c[k]) - cosine(x, &r[k]);
        let (asked, reversed) = (margin(&f[2 * k]), margin(&f[2 * k + 1]));
        score += if asked > reversed { 1.0 } else if asked == reversed { 0.5 } else { 0.0 };
    }
    Ok(score / pairs.len().max(1) as f64)
}

fn signed(bytes: &[u8]) -> impl Iterator<Item = f64> + '_ {
    bytes.iter().map(|&b| b as f64 * (2.0 / 255.0) - 1.0)
}

/// The pixel judge: (fraction of G's pairs whose change points the renderer's way, ties half;
/// mean share of the renderer's change G draws).
pub fn pixel_follows(pairs: &[Pair], images: &[[Rgb8; 2]]) -> Result<(f64, f64)> {
    let (mut follow, mut share) = (0.0, 0.0);
    for (p, g) in pairs.iter().zip(images) {
        if g[0].data.len() != p.real[0].data.len() || g[1].data.len() != p.real[1].data.len() {
            return Err(crate::error::Error::shape("contrast pixels", format!("images of {} values, twins of {}", g[0].data.len(), p.real[0].data.len())));
        }
        let d: Vec<f64> = signed(&p.real[0].data).zip(signed(&p.real[1].data)).map(|(a, b)| a - b).collect();
        let dot: f64 = signed(&g[0].data).zip(signed(&g[1].data)).zip(&d).map(|((a, b), d)| (a - b) * d).sum();
        let dd: f64 = d.iter().map(|x| x * x).sum();
        follow += if dot > 0.0 { 1.0 } else if dot == 0.0 { 0.5 } else { 0.0 };
        share += dot / dd.max(1e-12);
    }
    let n = pairs.len().max(1) as f64;
    Ok((follow / n, share / n))
}

/// One attribute's result.
#[derive(Debug, Clone, Serialize)]
pub struct Contrast {
    pub attribute: String,
    pub pairs: usize,
    /// Fraction of G's pairs that follow their prompts under the judge CLIP (chance 0.5).
    pub generated: f64,
    /// The same for the renderer's twins: what the judge can read.
    pub real: f64,
    /// Fraction of G's pairs whose change points the renderer's way (chance 0.5; twins 1).
    pub pixel_follows: f64,
    /// Mean share of the renderer's change that G's pair draws (twins 1, a G that ignores
    /// the word 0).
    pub pixel_share: f64,
}

/// Every attribute of [`FLIPS`], `n` pairs each.
pub fn measure(model: &Model, judge: &Clip, n: usize, seed: u64, batch: usize) -> Result<Vec<Contrast>> {
    let size = model.config.image_size;
    let mut out = Vec::new();
    for flip in FLIPS {
        let ps = pairs(flip, n, size);
        let fake = generate(model, &ps, seed, batch)?;
        let real: Vec<[Rgb8; 2]> = ps.iter().map(|p| p.real.clone()).collect();
        let (pixel_follows, pixel_share) = pixel_follows(&ps, &fake)?;
        out.push(Contrast {
            attribute: name(flip).into(),
            pairs: ps.len(),
            generated: follows(judge, &ps, &fake)?,
            real: follows(judge, &ps, &real)?,
            pixel_follows,
            pixel_share,
        });
    }
    Ok(out)
}
