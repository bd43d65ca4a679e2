//! What the evaluation knows about `ratlip dataset synth --kind faces`: one fixed caption per
//! attribute set (so every evaluated image states the same attributes), zero-shot class
//! prompts for the evaluator CLIP, and detectors that read attributes straight off the
//! pixels where the renderer (src/data/synth/faces.rs) paints them.

use crate::data::synth::{FaceAttrs, BACKGROUNDS, HAIR, SKINS};


/// The evaluation caption: the dataset's "portrait of …" template with fixed wording. It
/// states age, gender, expression, hair (colour unless bald), skin and background.
pub fn caption(a: &FaceAttrs) -> String {
    let man = a.gender == "man";
    let noun = if man { "man" } else { "woman" };
    let article = if a.age == "old" { "an" } else { "a" };
    let ing = if a.expression == "smiling" { "smiling" } else { "looking sad" };
    let hair = match a.hair_style {
        "full" if man => format!("{} hair", a.hair_color),
        "full" => format!("long {} hair", a.hair_color),
        "receding" => format!("receding {} hair", a.hair_color),
        _ => "a bald head".to_string(),
    };
    format!("portrait of {article} {} {noun} who is {ing}, with {hair} and {} skin, on a {} background", a.age, a.skin, a.background)
}

/// An attribute the evaluation checks: its classes, and the zero-shot prompt per class
/// (`ratlip clip eval`'s, from `train::zero_shot`).
pub struct Attribute {
    pub name: &'static str,
    pub classes: Vec<String>,
    pub prompts: Vec<String>,
}

/// The attributes the evaluation caption states (glasses, beard and hair style it does not).
pub fn attributes() -> Vec<Attribute> {
    const STATED: [&str; 6] = ["gender", "age", "expression", "hair_color", "skin", "background"];
    crate::train::zero_shot::face_class_prompts()
        .into_iter()
        .filter(|(name, _)| STATED.contains(name))
        .map(|(name, classes)| Attribute { name, classes: classes.iter().map(|c| c.0.clone()).collect(), prompts: classes.into_iter().map(|c| c.1).collect() })
        .collect()
}

/// The true class of `attr` for these attributes; None where the caption does not state it
/// (a bald head has no hair colour in the caption).
pub fn truth(a: &FaceAttrs, attr: &str) -> Option<&'static str> {
    Some(match attr {
        "gender" => a.gender,
        "age" => a.age,
        "expression" => a.expression,
        "hair_color" if a.hair_style == "bald" => return None,
        "hair_color" => a.hair_color,
        "skin" => a.skin,
        "background" => a.background,
        _ => return None,
    })
}

/// Attributes read off the pixels, each the palette entry nearest to where the renderer
/// paints it (positions as fractions of the image side; head centre ≈ (0.5, 0.47)).
#[derive(Debug, Clone, PartialEq)]
pub struct Detected {
    pub background: &'static str,
    pub skin: &'static str,
    /// None when the top of the head is nearer the skin than any hair colour (bald).
    pub hair_color: Option<&'static str>,
}

fn at(rgb: &[u8], size: usize, fx: f32, fy: f32) -> [f32; 3] {
    let x = ((fx * size as f32) as usize).min(size - 1);
    let y = ((fy * size as f32) as usize).min(size - 1);
    let i = 3 * (y * size + x);
    [rgb[i] as f32, rgb[i + 1] as f32, rgb[i + 2] as f32]
}

/// The per-channel median of a few sample points: robust to one point landing on an edge.
fn median(points: &[[f32; 3]]) -> [f32; 3] {
    let mut out = [0f32; 3];
    for (c, o) in out.iter_mut().enumerate() {
        let mut v: Vec<f32> = points.iter().map(|p| p[c]).collect();
        v.sort_by(f32::total_cmp);
        *o = v[v.len() / 2];
    }
    out
}

fn dist(a: [f32; 3], b: [u8; 3]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y as f32).powi(2)).sum()
}

fn nearest(c: [f32; 3], table: &[(&'static str, [u8; 3])]) -> (&'static str, f32) {
    table.iter().map(|(n, rgb)| (*n, dist(c, *rgb))).min_by(|a, b| a.1.total_cmp(&b.1)).expect("non-empty palette")
}

/// `rgb`: `size`×`size` RGB bytes, row-major.
pub fn detect(rgb: &[u8], size: usize) -> Detected {
    let p = |fx: f32, fy: f32| at(rgb, size, fx, fy);
    // Top corners: nothing is drawn there (long hair reaches x ≥ 0.24, y ≥ 0.15).
    let background = median(&[p(0.04, 0.04), p(0.96, 0.04), p(0.04, 0.12), p(0.96, 0.12), p(0.1, 0.06)]);
    // Cheeks below the eyes, outside blush, wrinkles and beard, between the brows, and beside
    // the nose: five points, so that glasses' frames (which reach the first three) can spoil
    // two and the median is still skin.
    let skin = median(&[p(0.37, 0.52), p(0.63, 0.52), p(0.5, 0.4), p(0.44, 0.56), p(0.56, 0.56)]);
    // The hair cap above the forehead.
    let top = median(&[p(0.44, 0.19), p(0.5, 0.19), p(0.56, 0.19)]);
    let (skin_name, _) = nearest(skin, &SKINS);
    let (hair_name, hair_d) = nearest(top, &HAIR);
    let skin_d = dist(top, SKINS.iter().find(|s| s.0 == skin_name).map_or([0; 3], |s| s.1));
    Detected { background: nearest(background, &BACKGROUNDS).0, skin: skin_name, hair_color: (hair_d < skin_d).then_some(hair_name) }
}

impl Detected {
    pub fn get(&self, attr: &str) -> Option<&'static str> {
        match attr {
            "background" => Some(self.background),
            "skin" => Some(self.skin),
            "hair_color" => self.hair_color,
            _ => None,
        }
    }
}

/// The attributes the detectors read.
pub const DETECTED: [&str; 3] = ["background", "skin", "hair_color"];

/// Lipstick-coloured pixels in the lower middle of the face (x 0.3–0.7, y 0.6–0.8): red far
/// above green and blue above green, as the renderer's women's lips ([205, 30, 65]) and no
/// hair, skin or background colour of its palettes (the red shirt is, so the box stops above
/// it). Women only: men's lips are mixed with their skin. The box is wider and reaches lower
/// than the renderer's mouth, so a G that draws its mouth a row or two lower (as the
/// fine-tunes here do, docs/evaluation.md) is still counted, which the pixel judge of
/// `contrast` is not. On the renderer's faces at 32 px a smiling woman's open mouth has about
/// 1.5 times the lipstick pixels of her sad twin's thin arc (the teeth cover part of it); the
/// fine-tuned G, which draws no teeth, 8 times. Compare the same noise asked both ways, since
/// one image's count depends on its face.
pub fn lipstick_pixels(rgb: &[u8], size: usize) -> usize {
    let span = |a: f32, b: f32| (a * size as f32).round() as usize..(b * size as f32).round() as usize;
    let mut n = 0;
    for y in span(0.6, 0.8) {
        for x in span(0.3, 0.7) {
            let i = 3 * (y * size + x);
            let (r, g, b) = (rgb[i] as i32, rgb[i + 1] as i32, rgb[i + 2] as i32);
            n += (r > 140 && r - g > 100 && b > g + 10) as usize;
        }
    }
    n
}
