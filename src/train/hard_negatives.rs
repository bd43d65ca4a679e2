//! Hard negatives for contrastive CLIP training (`ratlip train-clip --hard-negatives`), after
//! NegCLIP (Yuksekgonul et al. 2023): beside each caption, its *contrast* — the same sentence
//! with one attribute said the other way round — joins the batch as one more text, which the
//! caption's image must score below its own caption.
//!
//! Why: in a batch of 64 random faces, two captions differ in hair colour, age or background
//! long before they differ only in a smile, so a CLIP trained on random batches learns the easy
//! attributes and never needs the few pixels of a mouth, glasses or a beard (it reads them at
//! chance: docs/evaluation.md). A negative that differs in exactly one of them makes it need
//! them.
//!
//! The rewrites know the synthetic faces' vocabulary (`data::synth::faces::captions`): mood
//! words, glasses and beards. A caption that names none of them has no contrast, so on other
//! data the option adds nothing.

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

/// The attributes `caption` names that a contrast could flip.
pub fn flippable(caption: &str) -> Vec<Flip> {
    let words: Vec<String> = pieces(caption).into_iter().filter(|p| p.0).map(|p| lower(&p.1)).collect();
    let has = |f: Flip| {
        words.iter().any(|w| match f {
            Flip::Mood => MOOD.iter().any(|m| m.0 == w),
            Flip::Glasses => GLASSES.contains(&w.as_str()),
            Flip::Beard => w == "beard" || w == "bearded" || w == "clean-shaven",
        })
    };
    FLIPS.into_iter().filter(|&f| has(f)).collect()
}

/// `caption` with `flip` said the other way round (every mention of it), or None when the
/// caption does not name it.
pub fn contrast_of(caption: &str, flip: Flip) -> Option<String> {
    let mut words: Vec<String> = pieces(caption).into_iter().map(|p| p.1).collect();
    let is_word = |s: &str| s.chars().next().is_some_and(|c| c.is_alphanumeric() || c == '-');
    // Index of the word before piece i (skipping separators), if any.
    let prev = |words: &[String], i: usize| (0..i).rev().find(|&j| is_word(&words[j]));
    let mut changed = false;
    let mut i = 0;
    while i < words.len() {
        let w = lower(&words[i]);
        match flip {
            Flip::Mood => {
                if let Some(m) = MOOD.iter().find(|m| m.0 == w) {
                    words[i] = same_case(&words[i], m.1);
                    changed = true;
                }
            }
            Flip::Glasses if GLASSES.contains(&w.as_str()) => {
                changed = true;
                match prev(&words, i).map(|j| (j, lower(&words[j]))) {
                    Some((j, p)) if p == "no" => {
                        let before = prev(&words, j).map(|k| lower(&words[k]));
                        let on = words.get(i + 2).is_some_and(|w| lower(w) == "on");
                        if matches!(before.as_deref(), Some("wearing" | "wears" | "and")) || on {
                            // Undoes the "no" below: "wearing no glasses" → "wearing glasses".
                            words[j].clear();
                            words[j + 1].clear();
                        } else {
                            // A list item: "bald, no glasses" → "bald, wearing glasses".
                            words[j] = same_case(&words[j], "wearing");
                        }
                    }
                    Some((j, p)) if p == "without" => words[j] = same_case(&words[j], "with"),
                    Some((j, p)) if p == "with" => words[j] = same_case(&words[j], "without"),
                    // "wearing glasses" → "wearing no glasses", "and spectacles" → "and no
                    // spectacles", ", glasses on" → ", no glasses on".
                    _ => {
                        let first = same_case(&words[i], "no");
                        words[i] = format!("{first} {}", lower(&words[i]));
                    }
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
            Flip::Beard if w == "beard" && prev(&words, i).is_some_and(|j| lower(&words[j]) == "no") => {
                let j = prev(&words, i).unwrap_or(i);
                words[j] = same_case(&words[j], "a");
                changed = true;
            }
            Flip::Beard if w == "beard" => {
                // "a beard", "a full beard", "a thick beard" → "no beard".
                let mut start = i;
                while let Some(j) = prev(&words, start) {
                    if matches!(lower(&words[j]).as_str(), "full" | "thick" | "a") {
                        start = j;
                    } else {
                        break;
                    }
                }
                let first = same_case(&words[start], "no");
                words.splice(start..=i, [format!("{first} beard")]);
                i = start;
                changed = true;
            }
            _ => {}
        }
        i += 1;
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

/// The contrast of `caption` that `pick` chooses among the attributes it names (any u64: it
/// is reduced modulo their number), or None when it names none.
pub fn contrast(caption: &str, pick: u64) -> Option<String> {
    let flips = flippable(caption);
    if flips.is_empty() {
        return None;
    }
    contrast_of(caption, flips[(pick % flips.len() as u64) as usize])
}
