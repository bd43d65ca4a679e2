//! Zero-shot attribute accuracy of a CLIP on synthetic images (`ratlip dataset synth`): per
//! attribute of `attributes.jsonl`, one prompt per class ("a face with red hair", ...), the
//! prediction is the class whose prompt embedding is most similar to the image's, scored
//! against the truth, next to chance (1/classes) and the majority-class rate.
//!
//! Also, per attribute a caption can contrast (`hard_negatives`), how often the image prefers
//! its own caption to the contrast; and per attribute, how well the image embeddings alone
//! separate its classes (a linear discriminant, no text): when zero-shot fails, whether
//! the image side or the text side is missing the attribute.
//!
//! The classes mirror src/data/synth/{faces,shapes}.rs; a truth value outside them is an
//! error naming it, so the two cannot drift apart silently.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::hard_negatives::{self, Flip};
use crate::clip::model::Clip;
use crate::clip::preprocess::{MEAN, STD};
use crate::error::{Error, Result};
use crate::eval::frechet::{symmetric_eigen, Gaussian};

/// One attribute: how to read its truth from an attributes line, and a prompt per class.
struct Task {
    name: &'static str,
    /// (class as attributes.jsonl writes it, prompt).
    classes: Vec<(String, String)>,
    truth: fn(&serde_json::Value) -> Option<String>,
}

fn field(v: &serde_json::Value, key: &str) -> Option<String> {
    match v.get(key)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The only shape of a one-shape image (two-shape images are skipped for per-shape attributes:
/// a prompt for one of them says nothing about which).
fn single_shape(v: &serde_json::Value, key: &str) -> Option<String> {
    let shapes = v.get("shapes")?.as_array()?;
    if shapes.len() != 1 {
        return None;
    }
    field(&shapes[0], key)
}

fn classes(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(c, p)| (c.to_string(), p.to_string())).collect()
}

fn each(names: &[&str], prompt: impl Fn(&str) -> String) -> Vec<(String, String)> {
    names.iter().map(|n| (n.to_string(), prompt(n))).collect()
}

fn face_tasks() -> Vec<Task> {
    vec![
        Task { name: "gender", classes: classes(&[("man", "portrait of a man"), ("woman", "portrait of a woman")]), truth: |v| field(v, "gender") },
        Task {
            name: "age",
            classes: classes(&[("young", "cartoon face of a young person"), ("old", "cartoon face of an old person")]),
            truth: |v| field(v, "age"),
        },
        Task { name: "expression", classes: classes(&[("smiling", "a smiling face"), ("sad", "a sad face")]), truth: |v| field(v, "expression") },
        Task {
            name: "hair_color",
            classes: each(&["black", "brown", "blonde", "red", "grey", "white"], |c| format!("a face with {c} hair")),
            truth: |v| field(v, "hair_color"),
        },
        Task {
            name: "hair_style",
            classes: classes(&[("full", "a face with hair"), ("receding", "a face with a receding hairline"), ("bald", "a face with a bald head")]),
            truth: |v| field(v, "hair_style"),
        },
        Task { name: "glasses", classes: classes(&[("true", "a face wearing glasses"), ("false", "a face without glasses")]), truth: |v| field(v, "glasses") },
        Task { name: "beard", classes: classes(&[("true", "a face with a beard"), ("false", "a clean-shaven face")]), truth: |v| field(v, "beard") },
        Task { name: "skin", classes: each(&["light", "tan", "brown", "dark"], |c| format!("a face with {c} skin")), truth: |v| field(v, "skin") },
        Task {
            name: "background",
            classes: each(&["blue", "green", "yellow", "pink", "grey", "purple", "orange", "white"], |c| format!("a face on a {c} background")),
            truth: |v| field(v, "background"),
        },
    ]
}

fn shape_tasks() -> Vec<Task> {
    const COLOURS: [&str; 8] = ["red", "green", "blue", "yellow", "purple", "orange", "black", "white"];
    vec![
        Task {
            name: "background",
            classes: each(&["red", "green", "blue", "yellow", "purple", "orange", "black", "white", "grey"], |c| format!("a shape on a {c} background")),
            truth: |v| field(v, "background"),
        },
        Task { name: "shape", classes: each(&["circle", "square", "triangle", "star", "diamond", "hexagon"], |c| format!("a {c}")), truth: |v| single_shape(v, "shape") },
        Task { name: "color", classes: each(&COLOURS, |c| format!("a {c} shape")), truth: |v| single_shape(v, "color") },
        Task { name: "size", classes: each(&["small", "large"], |c| format!("a {c} shape")), truth: |v| single_shape(v, "size") },
        Task {
            name: "position",
            classes: each(&["left", "right", "top", "bottom", "center"], |c| if c == "center" { "a shape in the center".to_string() } else { format!("a shape on the {c}") }),
            truth: |v| single_shape(v, "position"),
        },
    ]
}

#[derive(Clone, Debug, Serialize)]
pub struct AttributeScore {
    pub classes: Vec<String>,
    pub prompts: Vec<String>,
    /// Images that have this attribute.
    pub n: usize,
    pub accuracy: f64,
    /// 1 / classes.
    pub chance: f64,
    /// The most frequent true class's share: what always answering it would score.
    pub majority: f64,
    /// confusion[true class][predicted class], in `classes` order.
    pub confusion: Vec<Vec<usize>>,
    /// The image embeddings alone, without any prompt: [`linear_probe_accuracy`] over these
    /// images, balanced over classes (chance: `chance`). Well above chance while `accuracy` is
    /// not: the image side reads the attribute and the text side does not say it. None with
    /// fewer than 2 images per fold.
    pub probe: Option<f64>,
}

/// How often an image scores one of its own captions above that caption's contrast (the same
/// sentence with one attribute said the other way round, `hard_negatives`): the distinction
/// `train-clip --hard-negatives` trains, and the one the GAN's cosine term needs. Chance 0.5.
#[derive(Clone, Debug, Serialize)]
pub struct ContrastScore {
    /// (image, caption) pairs whose caption names the attribute.
    pub n: usize,
    pub accuracy: f64,
    /// The same, split by the image's true value of the attribute (attributes.jsonl: e.g.
    /// glasses "true" / "false"), and their mean. A CLIP that tells the contrast from the
    /// caption by wording alone (some contrasts are phrased as no caption is, "wearing no
    /// glasses") can score well on one side only; reading the image scores on both.
    pub by_truth: BTreeMap<String, (usize, f64)>,
    pub balanced: f64,
    /// Mean cosine between the caption's and the contrast's text embeddings: how far apart
    /// the two sentences are for this CLIP, which is all a generator conditioned on them (and
    /// a discriminator judging with them) can go by. Compare `Report::other_face_text_cos`.
    pub text_cos: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub kind: String,
    pub data: PathBuf,
    pub images: usize,
    pub attributes: BTreeMap<String, AttributeScore>,
    /// By flipped attribute ("Mood", "Glasses", "Beard"), over every caption of every image
    /// (the caption files beside the images); empty when no caption names one.
    pub contrasts: BTreeMap<String, ContrastScore>,
    /// Mean cosine between caption k of image i and caption k of image i + 1 (the same
    /// template, another face), over the images with the most common caption count: how far
    /// apart two captions usually are. None without caption files.
    pub other_face_text_cos: Option<f64>,
    /// Means over the attributes.
    pub mean_accuracy: f64,
    pub mean_chance: f64,
    pub mean_majority: f64,
}

/// An image file → CLIP input [3, S, S] the way training sees it, without the randomness:
/// the short side resized to S·76/64 (triangle filter, as the loader), the centre S×S.
pub fn eval_pixels(path: &Path, size: usize) -> Result<Vec<f32>> {
    let img = image::open(path).map_err(|e| Error::Other(format!("cannot read image {}: {e}", path.display())))?.to_rgb8();
    Ok(eval_pixels_rgb(&img, size))
}

/// [`eval_pixels`] of an image in memory (e.g. a generated one).
pub fn eval_pixels_rgb(img: &image::RgbImage, size: usize) -> Vec<f32> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let short = size * 76 / 64;
    let (nw, nh) = if w <= h { (short, (short as f64 * h as f64 / w as f64) as usize) } else { ((short as f64 * w as f64 / h as f64) as usize, short) };
    let resized;
    let img = if (nw, nh) == (w, h) {
        img
    } else {
        resized = image::imageops::resize(img, nw as u32, nh as u32, image::imageops::FilterType::Triangle);
        &resized
    };
    let (top, left) = ((nh - size) / 2, (nw - size) / 2);
    let mut out = vec![0f32; 3 * size * size];
    for y in 0..size {
        for x in 0..size {
            let p = img.get_pixel((left + x) as u32, (top + y) as u32).0;
            for c in 0..3 {
                out[(c * size + y) * size + x] = (p[c] as f32 / 255.0 - MEAN[c]) / STD[c];
            }
        }
    }
    out
}

/// The faces attributes' zero-shot classes: (attribute, [(class, prompt)]), the prompts
/// `ratlip clip eval` uses, so `ratlip eval` reads generated faces the same way.
pub fn face_class_prompts() -> Vec<(&'static str, Vec<(String, String)>)> {
    face_tasks().into_iter().map(|t| (t.name, t.classes)).collect()
}

fn normalised(r: &[f32]) -> Vec<f32> {
    let n = r.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    r.iter().map(|x| x / n).collect()
}

const IMAGE_BATCH: usize = 32;

/// Scores `clip` on the synthetic set in `data` (its attributes.jsonl), on the images in
/// `only` when given (held-out ones), else on all. `progress(done, total)` after each batch.
/// The lines of `data`/attributes.jsonl as (image path, object), of the images in `only` when
/// given; why the folder cannot serve names what it needs.
fn attribute_lines(data: &Path, only: Option<&[PathBuf]>, needed_by: &str) -> Result<Vec<(PathBuf, serde_json::Value)>> {
    let path = data.join("attributes.jsonl");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::Other(format!("{}: {e} ({needed_by} needs a `ratlip dataset synth` folder)", path.display())))?;
    let mut lines: Vec<(PathBuf, serde_json::Value)> = Vec::new();
    for (i, l) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(l).map_err(|e| Error::Other(format!("{} line {}: {e}", path.display(), i + 1)))?;
        let file = v.get("file").and_then(|f| f.as_str()).ok_or_else(|| Error::Other(format!("{} line {}: no \"file\"", path.display(), i + 1)))?;
        let image = data.join(file);
        if only.is_none_or(|o| o.contains(&image)) {
            lines.push((image, v));
        }
    }
    if lines.is_empty() {
        return Err(Error::Other(format!("{}: no images to evaluate", path.display())));
    }
    Ok(lines)
}

/// The attributes of the kind of the first line ("faces" or "shapes").
fn tasks_of(lines: &[(PathBuf, serde_json::Value)], data: &Path) -> Result<(String, Vec<Task>)> {
    let kind = lines[0].1.get("kind").and_then(|k| k.as_str()).unwrap_or("").to_string();
    let tasks = match kind.as_str() {
        "faces" => face_tasks(),
        "shapes" => shape_tasks(),
        k => return Err(Error::Other(format!("{}: kind {k:?}; attribute classes exist for faces and shapes", data.join("attributes.jsonl").display()))),
    };
    Ok((kind, tasks))
}

/// The index of `truth` among `task`'s classes; an error naming it when the renderer wrote a
/// class this file does not know.
fn class_index(task: &Task, truth: &str, file: &Path) -> Result<usize> {
    task.classes.iter().position(|c| c.0 == truth).ok_or_else(|| {
        Error::Other(format!("{}: {} = {truth:?} is not one of the classes {:?}", file.display(), task.name, task.classes.iter().map(|c| &c.0).collect::<Vec<_>>()))
    })
}

/// Every image's class per attribute, for supervising on them (`train-clip --attribute-w`).
#[derive(Clone, Debug)]
pub struct AttributeLabels {
    /// (attribute, its classes) in a fixed order: the order of each image's labels.
    pub attributes: Vec<(String, Vec<String>)>,
    /// Image path → class index per attribute (None where the image has none, e.g. a
    /// per-shape attribute of a two-shape image).
    pub by_image: HashMap<PathBuf, Vec<Option<u32>>>,
}

impl AttributeLabels {
    /// Only the attributes named in `names` (in that order), so a head can be asked for the
    /// ones training leaves unread without the rest sharing its weight. An unknown name is an
    /// error that lists the attributes there are.
    pub fn only(&self, names: &[String]) -> Result<AttributeLabels> {
        let mut keep = Vec::with_capacity(names.len());
        for n in names {
            match self.attributes.iter().position(|(a, _)| a == n) {
                Some(i) if !keep.contains(&i) => keep.push(i),
                Some(_) => return Err(Error::Other(format!("attribute {n:?} is named twice"))),
                None => {
                    let there: Vec<&str> = self.attributes.iter().map(|(a, _)| a.as_str()).collect();
                    return Err(Error::Other(format!("no attribute {n:?} in attributes.jsonl; it has: {}", there.join(", "))));
                }
            }
        }
        Ok(AttributeLabels {
            attributes: keep.iter().map(|&i| self.attributes[i].clone()).collect(),
            by_image: self.by_image.iter().map(|(f, l)| (f.clone(), keep.iter().map(|&i| l[i]).collect())).collect(),
        })
    }
}

/// The renderer's labels of every image in `data` (its attributes.jsonl).
pub fn attribute_labels(data: &Path) -> Result<AttributeLabels> {
    let lines = attribute_lines(data, None, "supervising on attributes")?;
    let (_, tasks) = tasks_of(&lines, data)?;
    let mut by_image = HashMap::with_capacity(lines.len());
    for (file, v) in &lines {
        let labels = tasks.iter().map(|t| (t.truth)(v).map(|truth| class_index(t, &truth, file).map(|c| c as u32)).transpose()).collect::<Result<Vec<_>>>()?;
        by_image.insert(file.clone(), labels);
    }
    Ok(AttributeLabels { attributes: tasks.iter().map(|t| (t.name.to_string(), t.classes.iter().map(|c| c.0.clone()).collect())).collect(), by_image })
}

pub fn evaluate_with(clip: &Clip, data: &Path, only: Option<&[PathBuf]>, progress: &mut dyn FnMut(usize, usize)) -> Result<Report> {
    let lines = attribute_lines(data, only, "zero-shot evaluation")?;
    let (kind, tasks) = tasks_of(&lines, data)?;
    // Image embeddings, in batches.
    let s = clip.config.vision.image_size;
    let mut img_emb = Vec::with_capacity(lines.len());
    for (k, chunk) in lines.chunks(IMAGE_BATCH).enumerate() {
        let mut px = Vec::with_capacity(chunk.len() * 3 * s * s);
        for (p, _) in chunk {
            px.extend(eval_pixels(p, s)?);
        }
        img_emb.extend(clip.embed_pixels(&px)?.iter().map(|r| normalised(r)));
        progress((k * IMAGE_BATCH + chunk.len()).min(lines.len()), lines.len());
    }
    let mut attributes = BTreeMap::new();
    for task in &tasks {
        let prompts: Vec<String> = task.classes.iter().map(|c| c.1.clone()).collect();
        let txt: Vec<Vec<f32>> = clip.embed_texts(&prompts)?.iter().map(|r| normalised(r)).collect();
        let k = task.classes.len();
        let mut confusion = vec![vec![0usize; k]; k];
        let (mut probe_emb, mut probe_label) = (Vec::new(), Vec::new());
        for (i, (file, v)) in lines.iter().enumerate() {
            let Some(truth) = (task.truth)(v) else { continue };
            let t = class_index(task, &truth, file)?;
            let sims = txt.iter().map(|t| t.iter().zip(&img_emb[i]).map(|(a, b)| a * b).sum::<f32>());
            let pred = sims.enumerate().fold((0, f32::NEG_INFINITY), |m, (j, s)| if s > m.1 { (j, s) } else { m }).0;
            confusion[t][pred] += 1;
            probe_emb.push(img_emb[i].as_slice());
            probe_label.push(t);
        }
        let n: usize = confusion.iter().flatten().sum();
        if n == 0 {
            continue;
        }
        let correct: usize = (0..k).map(|c| confusion[c][c]).sum();
        let majority = confusion.iter().map(|row| row.iter().sum::<usize>()).max().unwrap_or(0);
        attributes.insert(
            task.name.to_string(),
            AttributeScore {
                classes: task.classes.iter().map(|c| c.0.clone()).collect(),
                prompts,
                n,
                accuracy: correct as f64 / n as f64,
                chance: 1.0 / k as f64,
                majority: majority as f64 / n as f64,
                confusion,
                probe: linear_probe_accuracy(&probe_emb, &probe_label, k),
            },
        );
    }
    let (contrasts, other_face_text_cos) = contrast_scores(clip, &lines, &img_emb)?;
    let m = attributes.len().max(1) as f64;
    Ok(Report {
        kind,
        data: data.to_path_buf(),
        images: lines.len(),
        contrasts,
        other_face_text_cos,
        mean_accuracy: attributes.values().map(|a| a.accuracy).sum::<f64>() / m,
        mean_chance: attributes.values().map(|a| a.chance).sum::<f64>() / m,
        mean_majority: attributes.values().map(|a| a.majority).sum::<f64>() / m,
        attributes,
    })
}

/// How much of its mean variance the probe's covariance takes from the identity. A 64 × 64
/// covariance from 250 images is invertible without it; a little keeps fewer images than
/// dimensions (or equal embeddings) invertible without reshaping the rest.
const SHRINKAGE: f64 = 0.01;

/// Two-fold linear discriminant accuracy, balanced. The images of even position give each
/// class's mean and the pooled within-class covariance S, shrunk towards its mean variance
/// ((1 − λ) S + λ tr(S)/d I, λ = [`SHRINKAGE`]); the odd ones are classified by the largest
/// μ_cᵀ S⁻¹ x − ½ μ_cᵀ S⁻¹ μ_c (Gaussian classes of one covariance, equal priors), then the
/// other way round. The score is the mean over classes of the share of that class classified
/// right, so chance is 1/k whatever the class sizes.
///
/// Why a covariance and not the nearest mean: an attribute can live in a direction where the
/// embeddings vary little, under directions that vary much for other reasons; the Euclidean
/// nearest mean misses it there (measured: the judge CLIP's image embeddings tell glasses
/// contrasts apart 0.837 of the time, and their nearest mean reads glasses at 0.499). No
/// training and no seed, so it is the same number every run; a linear read-out, so it bounds
/// from below what a trained one would find. `labels` index 0..k. None when a fold has fewer
/// than 2 images.
pub fn linear_probe_accuracy(emb: &[&[f32]], labels: &[usize], k: usize) -> Option<f64> {
    assert_eq!(emb.len(), labels.len());
    if emb.len() < 4 {
        return None;
    }
    let d = emb[0].len();
    let (mut right, mut total) = (vec![0usize; k], vec![0usize; k]);
    for fit in 0..2 {
        let fold: Vec<(&[f32], usize)> = emb.iter().zip(labels).skip(fit).step_by(2).map(|(e, &l)| (*e, l)).collect();
        let mut count = vec![0usize; k];
        let mut mean = vec![vec![0f64; d]; k];
        for &(e, l) in &fold {
            assert_eq!(e.len(), d, "every embedding needs {d} values");
            count[l] += 1;
            mean[l].iter_mut().zip(e).for_each(|(m, &x)| *m += x as f64);
        }
        // A class the fitting fold never saw cannot be predicted.
        let classes: Vec<usize> = (0..k).filter(|&c| count[c] > 0).collect();
        for &c in &classes {
            mean[c].iter_mut().for_each(|m| *m /= count[c] as f64);
        }
        // The pooled within-class covariance is the covariance of the residuals from each
        // class's mean (whose own mean is 0), rescaled from n − 1 to n − classes.
        let residuals: Vec<Vec<f32>> =
            fold.iter().map(|&(e, l)| e.iter().zip(&mean[l]).map(|(&x, m)| (x as f64 - m) as f32).collect()).collect();
        let mut cov = Gaussian::fit(&residuals).ok()?.cov;
        let dof = (fold.len() - classes.len()).max(1) as f64;
        let rescale = (fold.len() - 1) as f64 / dof;
        let mean_var = (0..d).map(|i| cov[i * d + i]).sum::<f64>() * rescale / d as f64;
        cov.iter_mut().for_each(|c| *c *= (1.0 - SHRINKAGE) * rescale);
        for i in 0..d {
            // The tiny floor keeps equal embeddings (zero covariance) invertible.
            cov[i * d + i] += SHRINKAGE * mean_var + 1e-12;
        }
        // S⁻¹ b = V diag(1/λ) Vᵀ b; every λ is at least the shrinkage's floor.
        let (lambda, v) = symmetric_eigen(&cov, d);
        let solve = |b: &[f64]| -> Vec<f64> {
            let t: Vec<f64> = (0..d).map(|k| (0..d).map(|i| v[i * d + k] * b[i]).sum::<f64>() / lambda[k]).collect();
            (0..d).map(|i| (0..d).map(|k| v[i * d + k] * t[k]).sum()).collect()
        };
        // (class, S⁻¹ μ_c, ½ μ_cᵀ S⁻¹ μ_c)
        let disc: Vec<(usize, Vec<f64>, f64)> = classes
            .iter()
            .map(|&c| {
                let w = solve(&mean[c]);
                let half = 0.5 * w.iter().zip(&mean[c]).map(|(a, b)| a * b).sum::<f64>();
                (c, w, half)
            })
            .collect();
        for (e, &l) in emb.iter().zip(labels).skip(1 - fit).step_by(2) {
            let score = |w: &[f64], half: f64| w.iter().zip(e.iter()).map(|(a, &x)| a * x as f64).sum::<f64>() - half;
            // Ties go to the first class (max_by keeps the last, so compare reversed).
            let pred = disc.iter().rev().max_by(|a, b| score(&a.1, a.2).total_cmp(&score(&b.1, b.2))).map(|t| t.0);
            right[l] += usize::from(pred == Some(l));
            total[l] += 1;
        }
    }
    let seen: Vec<f64> = (0..k).filter(|&c| total[c] > 0).map(|c| right[c] as f64 / total[c] as f64).collect();
    Some(seen.iter().sum::<f64>() / seen.len() as f64)
}

pub fn evaluate(clip: &Clip, data: &Path, only: Option<&[PathBuf]>) -> Result<Report> {
    evaluate_with(clip, data, only, &mut |_, _| {})
}

/// [`ContrastScore`]s of the images in `lines` (embeddings `img_emb`, normalised), reading each
/// image's captions from the `.txt` beside it (`ratlip dataset synth` writes one per line),
/// and the mean text cosine of two faces' captions of one template (`other_face_text_cos`).
fn contrast_scores(clip: &Clip, lines: &[(PathBuf, serde_json::Value)], img_emb: &[Vec<f32>]) -> Result<(BTreeMap<String, ContrastScore>, Option<f64>)> {
    // (image, flip, caption, contrast) for every caption and every attribute it names.
    let mut pairs: Vec<(usize, String, String, String, String)> = Vec::new();
    let mut captions_of: Vec<Vec<String>> = Vec::new();
    for (i, (image, v)) in lines.iter().enumerate() {
        let path = image.with_extension("txt");
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        let captions: Vec<String> = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect();
        captions_of.push(captions.clone());
        for caption in &captions {
            let caption = caption.as_str();
            for f in hard_negatives::flippable(caption) {
                let key = match f {
                    Flip::Mood => "expression",
                    Flip::Glasses => "glasses",
                    Flip::Beard => "beard",
                };
                if let (Some(c), Some(truth)) = (hard_negatives::contrast_of(caption, f), field(v, key)) {
                    pairs.push((i, format!("{f:?}"), truth, caption.to_string(), c));
                }
            }
        }
    }
    let texts: Vec<String> = pairs.iter().flat_map(|p| [p.3.clone(), p.4.clone()]).collect();
    let emb: Vec<Vec<f32>> = clip.embed_texts(&texts)?.iter().map(|r| normalised(r)).collect();
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    // flip → truth → (pairs, right); flip → Σ cos(caption, contrast)
    let mut tally: BTreeMap<String, BTreeMap<String, (usize, usize)>> = BTreeMap::new();
    let mut cos_sum: BTreeMap<String, f64> = BTreeMap::new();
    for (k, (i, flip, truth, _, _)) in pairs.iter().enumerate() {
        let right = dot(&img_emb[*i], &emb[2 * k]) > dot(&img_emb[*i], &emb[2 * k + 1]);
        let t = tally.entry(flip.clone()).or_default().entry(truth.clone()).or_default();
        t.0 += 1;
        t.1 += usize::from(right);
        *cos_sum.entry(flip.clone()).or_default() += dot(&emb[2 * k], &emb[2 * k + 1]) as f64;
    }
    let scores = tally
        .into_iter()
        .map(|(f, by)| {
            let (n, ok) = by.values().fold((0, 0), |a, t| (a.0 + t.0, a.1 + t.1));
            let by_truth: BTreeMap<String, (usize, f64)> = by.into_iter().map(|(t, (n, ok))| (t, (n, ok as f64 / n as f64))).collect();
            let balanced = by_truth.values().map(|t| t.1).sum::<f64>() / by_truth.len() as f64;
            let text_cos = cos_sum[&f] / n as f64;
            (f, ContrastScore { n, accuracy: ok as f64 / n as f64, by_truth, balanced, text_cos })
        })
        .collect();
    Ok((scores, other_face_cos(clip, &captions_of)?))
}

/// Mean cosine of caption k of image i and caption k of image i + 1 among the images with the
/// most common caption count (the renderer writes its templates in one order, so k is one
/// template and only the faces differ).
fn other_face_cos(clip: &Clip, captions_of: &[Vec<String>]) -> Result<Option<f64>> {
    let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
    for c in captions_of.iter().filter(|c| !c.is_empty()) {
        *counts.entry(c.len()).or_default() += 1;
    }
    let Some((&len, _)) = counts.iter().max_by_key(|(&len, &n)| (n, len)) else { return Ok(None) };
    let same: Vec<&Vec<String>> = captions_of.iter().filter(|c| c.len() == len).collect();
    if same.len() < 2 {
        return Ok(None);
    }
    let texts: Vec<String> = same.iter().flat_map(|c| c.iter().cloned()).collect();
    let emb: Vec<Vec<f32>> = clip.embed_texts(&texts)?.iter().map(|r| normalised(r)).collect();
    let mut sum = 0.0;
    for i in 0..same.len() - 1 {
        for k in 0..len {
            sum += emb[i * len + k].iter().zip(&emb[(i + 1) * len + k]).map(|(x, y)| (x * y) as f64).sum::<f64>();
        }
    }
    Ok(Some(sum / ((same.len() - 1) * len) as f64))
}

#[cfg(test)]
mod tests {
    use super::linear_probe_accuracy;
    use crate::rng::Rng;

    fn probe(emb: &[Vec<f32>], labels: &[usize], k: usize) -> Option<f64> {
        let rows: Vec<&[f32]> = emb.iter().map(Vec::as_slice).collect();
        linear_probe_accuracy(&rows, labels, k)
    }

    /// One informative coordinate among 31 of unit noise: the class means differ by `gap` there.
    fn data(n: usize, k: usize, gap: f32, seed: u64) -> (Vec<Vec<f32>>, Vec<usize>) {
        let mut rng = Rng::new(seed);
        let labels: Vec<usize> = (0..n).map(|_| rng.below(k)).collect();
        let emb = labels.iter().map(|&l| { let mut e = rng.normals(31); e[7] += gap * l as f32; e }).collect();
        (emb, labels)
    }

    #[test]
    fn reads_a_class_written_in_one_coordinate() {
        let (emb, labels) = data(301, 3, 8.0, 1);
        assert!(probe(&emb, &labels, 3).unwrap() > 0.97);
    }

    #[test]
    fn finds_nothing_where_nothing_is() {
        // The same data with the labels of another draw: near chance (1/3), far from the above.
        let (emb, _) = data(600, 3, 8.0, 1);
        let (_, labels) = data(600, 3, 0.0, 2);
        let a = probe(&emb, &labels, 3).unwrap();
        assert!((0.25..0.42).contains(&a), "{a}");
    }

    #[test]
    fn equal_embeddings_score_chance_however_unequal_the_classes() {
        // Every score ties, so every prediction is the first class with a mean (class 0):
        // all of class 0 right, none of class 1, balanced 0.5 (plain accuracy would be 0.75).
        let emb = vec![vec![0.5f32; 4]; 8];
        let labels = [0, 0, 0, 1, 0, 0, 0, 1];
        assert_eq!(probe(&emb, &labels, 2), Some(0.5));
    }

    #[test]
    fn a_rare_class_read_right_counts_as_much_as_a_common_one() {
        // 3 classes: 0 common, 2 rare; class 2 sits far away, 0 and 1 coincide.
        let mut emb = Vec::new();
        let mut labels = Vec::new();
        for j in 0..20 {
            let l = if j % 5 == 4 { 2 } else { j % 2 };
            // Each label twice in a row, so both folds see every class.
            for _ in 0..2 {
                emb.push(vec![if l == 2 { 10.0 } else { 0.0 }, 1.0]);
                labels.push(l);
            }
        }
        // Class 2 all right; 0 and 1 coincide, so all are predicted 0: (1 + 0 + 1) / 3.
        assert!((probe(&emb, &labels, 3).unwrap() - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn reads_a_class_in_a_quiet_direction_under_loud_ones() {
        // The class moves coordinate 0 by 2 where the noise is 0.1; the other 15 coordinates
        // vary by 3 for no reason. A nearest mean drowns (0.61-0.71 on three numpy draws of
        // the same); the covariance finds it.
        let mut rng = Rng::new(3);
        let labels: Vec<usize> = (0..400).map(|_| rng.below(2)).collect();
        let emb: Vec<Vec<f32>> = labels
            .iter()
            .map(|&l| (0..16).map(|i| if i == 0 { 2.0 * l as f32 + 0.1 * rng.normal() } else { 3.0 * rng.normal() }).collect())
            .collect();
        let a = probe(&emb, &labels, 2).unwrap();
        assert!(a > 0.97, "{a}");
    }

    #[test]
    fn too_few_images_is_none() {
        assert_eq!(probe(&[vec![1.0], vec![2.0], vec![3.0]], &[0, 1, 0], 2), None);
    }
}
