//! Hard negatives for contrastive CLIP training (`ratlip train-clip --hard-negatives`), after
//! NegCLIP (Yuksekgonul et al. 2023): beside each caption, its *contrast* — the same sentence
//! with one attribute said the other way round — joins the batch as one more text, which the
//! caption's image must score below its own caption. The GAN's discriminator gets the same
//! pairs as mismatched ones (`ratlip train --hard-negative-w`, `objective::d_losses`).
//!
//! Why: in a batch of 64 random faces, two captions differ in hair colour, age or background
//! long before they differ only in a smile, so a CLIP trained on random batches learns the easy
//! attributes and never needs the few pixels of a mouth, glasses or a beard (it reads them at
//! chance: docs/evaluation.md). A negative that differs in exactly one of them makes it need
//! them.
//!
//! The rewrites know the synthetic faces' vocabulary (`data::synth::faces::captions`): mood
//! words, glasses and beards, each only where the renderer's own captions use both values in
//! the same place. A caption that names none of them that way has no contrast, so on other
//! data the option adds nothing.

use crate::data::synth::FaceAttrs;
use crate::rng::Rng;

/// Which attribute a contrast flips.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flip {
    Mood,
    Glasses,
    Beard,
}

const FLIPS: [Flip; 3] = [Flip::Mood, Flip::Glasses, Flip::Beard];

/// Each mood word and its opposite, chosen so every caption template stays a sentence
/// ("who is frowning", "looking happy", "a sad young man").
const MOOD: [(&str, &str); 7] = [
    ("smiling", "frowning"),
    ("grinning", "frowning"),
    ("happy", "sad"),
    ("cheerful", "sad"),
    ("sad", "happy"),
    ("unhappy", "happy"),
    ("frowning", "smiling"),
];
const GLASSES: [&str; 3] = ["glasses", "spectacles", "eyeglasses"];

/// `caption` split into words (letters, digits, '-') and what lies between them, in order;
/// joining the pieces gives it back.
fn pieces(caption: &str) -> Vec<(bool, String)> {
    let mut out: Vec<(bool, String)> = Vec::new();
    for c in caption.chars() {
        let word = c.is_alphanumeric() || c == '-';
        match out.last_mut() {
            Some((w, s)) if *w == word => s.push(c),
            _ => out.push((word, c.to_string())),
        }
    }
    out
}

fn lower(w: &str) -> String {
    w.to_lowercase()
}

/// Index of the word before piece `i` (skipping separators), if any.
fn prev(words: &[String], i: usize) -> Option<usize> {
    (0..i).rev().find(|&j| words[j].chars().next().is_some_and(|c| c.is_alphanumeric() || c == '-'))
}

/// A glasses word in a slot the renderer also fills with the other value: "wearing glasses"
/// ↔ "no glasses" / "without glasses". Elsewhere ("with red hair and glasses", "glasses on")
/// the renderer says nothing when there are none, so there is no faithful contrast.
fn glasses_slot(words: &[String], i: usize) -> Option<usize> {
    if !GLASSES.contains(&lower(&words[i]).as_str()) {
        return None;
    }
    prev(words, i).filter(|&j| matches!(lower(&words[j]).as_str(), "wearing" | "no" | "without"))
}

/// The attributes `caption` names in a way a contrast can reverse.
pub fn flippable(caption: &str) -> Vec<Flip> {
    let words: Vec<String> = pieces(caption).into_iter().map(|p| p.1).collect();
    let has = |f: Flip| {
        (0..words.len()).any(|i| {
            let w = lower(&words[i]);
            match f {
                Flip::Mood => MOOD.iter().any(|m| m.0 == w),
                Flip::Glasses => glasses_slot(&words, i).is_some(),
                Flip::Beard => w == "bearded" || w == "clean-shaven",
            }
        })
    };
    FLIPS.into_iter().filter(|&f| has(f)).collect()
}

/// `caption` with `flip` said the other way round (every mention of it), or None when the
/// caption does not name it where a contrast can reverse it. Every rewrite gives wording the
/// renderer itself uses for the other value in the same place: a contrast phrased as no
/// caption ever is ("wearing no glasses") could be told from captions by its wording alone,
/// and CLIP would learn that instead of looking (measured: docs/evaluation.md).
pub fn contrast_of(caption: &str, flip: Flip) -> Option<String> {
    let mut words: Vec<String> = pieces(caption).into_iter().map(|p| p.1).collect();
    let mut changed = false;
    for i in 0..words.len() {
        let w = lower(&words[i]);
        match flip {
            Flip::Mood => {
                if let Some(m) = MOOD.iter().find(|m| m.0 == w) {
                    words[i] = same_case(&words[i], m.1);
                    // "an unhappy man" → "a happy man", as the renderer writes it.
                    if let Some(j) = prev(&words, i).filter(|&j| matches!(lower(&words[j]).as_str(), "a" | "an")) {
                        let vowel = m.1.starts_with(['a', 'e', 'i', 'o', 'u']);
                        words[j] = same_case(&words[j], if vowel { "an" } else { "a" });
                    }
                    changed = true;
                }
            }
            Flip::Glasses => {
                if let Some(j) = glasses_slot(&words, i) {
                    // "wearing spectacles" → "no glasses"; "no glasses", "without glasses" →
                    // "wearing glasses".
                    let to = if lower(&words[j]) == "wearing" { "no" } else { "wearing" };
                    words[j] = same_case(&words[j], to);
                    words[i] = "glasses".into();
                    changed = true;
                }
            }
            Flip::Beard if w == "bearded" => {
                words[i] = same_case(&words[i], "clean-shaven");
                changed = true;
            }
            Flip::Beard if w == "clean-shaven" => {
                words[i] = same_case(&words[i], "bearded");
                changed = true;
            }
            Flip::Beard => {}
        }
    }
    changed.then(|| words.concat())
}

/// `to` capitalised like `like` (captions may start with a flipped word).
fn same_case(like: &str, to: &str) -> String {
    if like.chars().next().is_some_and(char::is_uppercase) {
        let mut c = to.chars();
        c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
    } else {
        to.to_string()
    }
}

/// The attribute `pick` chooses among those `caption` names (any u64: it is reduced modulo
/// their number), or None when it names none.
pub fn pick_flip(caption: &str, pick: u64) -> Option<Flip> {
    let flips = flippable(caption);
    (!flips.is_empty()).then(|| flips[(pick % flips.len() as u64) as usize])
}

/// Each caption's contrast for one training step, as (row, attribute reversed, contrast), for
/// the rows that have one. One draw from `pick` per caption, whether or not it has one, so
/// the choices are a pure function of the stream (a resumed run makes the same ones).
pub fn contrasts<'a>(captions: impl IntoIterator<Item = &'a str>, pick: &mut Rng) -> Vec<(usize, Flip, String)> {
    let mut out = Vec::new();
    for (row, caption) in captions.into_iter().enumerate() {
        let Some(flip) = pick_flip(caption, pick.next_u64()) else { continue };
        if let Some(c) = contrast_of(caption, flip) {
            out.push((row, flip, c));
        }
    }
    out
}

/// The face with `flip` the other way round: what a contrast caption describes.
pub fn reverse(a: &FaceAttrs, flip: Flip) -> FaceAttrs {
    let mut b = a.clone();
    match flip {
        Flip::Mood => b.expression = if a.expression == "smiling" { "sad" } else { "smiling" },
        Flip::Glasses => b.glasses = !a.glasses,
        Flip::Beard => b.beard = !a.beard,
    }
    b
}
