//! Synthetic captioned datasets for tests, demos and training runs that must not wait on a
//! download: coloured shapes and cartoon faces, each image with ten captions that state its
//! attributes.
//!
//! Output (the plain-folder layout `ratlip train` reads):
//! - `images/00000.png` and `images/00000.txt` (ten captions, one a line), side by side;
//! - `attributes.jsonl`: one JSON object per image, `file`, `kind` and every attribute;
//! - `dataset.json`: kind, count, size, seed and generator version, written last, so a folder
//!   that has one is complete.
//!
//! Image `i` depends only on (kind, seed, i, size) and [`GENERATOR_VERSION`]: not on the count,
//! the thread that draws it, or the machine.

mod faces;
mod raster;
mod shapes;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

pub use faces::{FaceAttrs, BACKGROUNDS, HAIR, SKINS};
pub use shapes::{Shape, ShapesAttrs};

use crate::weights::write_atomic;
use crate::{Error, Result};

/// Bumped whenever a seed would draw a different image or caption than before.
pub const GENERATOR_VERSION: u32 = 2;
pub const CAPTIONS_PER_IMAGE: usize = 10;
pub const MIN_SIZE: usize = 16;
/// The supersampled canvas has 9× the pixels of the output; this keeps one under 30 MB.
pub const MAX_SIZE: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Shapes,
    Faces,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Shapes => "shapes",
            Kind::Faces => "faces",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Attrs {
    Shapes(ShapesAttrs),
    Faces(FaceAttrs),
}

impl Attrs {
    /// The attributes of image `index`, as [`sample`] draws them.
    pub fn draw(kind: Kind, seed: u64, index: u64) -> Attrs {
        let mut rng = image_rng(seed, index);
        match kind {
            Kind::Shapes => Attrs::Shapes(shapes::sample(&mut rng)),
            Kind::Faces => Attrs::Faces(faces::sample(&mut rng)),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        let (kind, v) = match self {
            Attrs::Shapes(a) => ("shapes", serde_json::to_value(a)),
            Attrs::Faces(a) => ("faces", serde_json::to_value(a)),
        };
        let mut v = v.unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.insert("kind".into(), kind.into());
        }
        v
    }
}

/// The colour names a shape can have.
pub fn shape_colours() -> impl Iterator<Item = &'static str> {
    shapes::COLOURS.iter().map(|c| c.0)
}

/// The nominal RGB of a named shape colour (before the small per-image jitter).
pub fn shape_colour(name: &str) -> [u8; 3] {
    shapes::colour(name)
}

/// One rendered image: `size`×`size` RGB bytes, row-major.
pub struct Sample {
    pub size: usize,
    pub rgb: Vec<u8>,
    pub captions: Vec<String>,
    pub attrs: Attrs,
}

fn image_rng(seed: u64, index: u64) -> raster::Rng {
    raster::Rng::new(seed, index)
}

/// Captions draw from their own stream so rewording them never changes a picture.
fn caption_rng(seed: u64, index: u64) -> raster::Rng {
    raster::Rng::new(seed ^ 0x6361_7074_696f_6e73, index)
}

/// Image `index` of the dataset with this seed.
pub fn sample(kind: Kind, seed: u64, index: u64, size: usize) -> Sample {
    render(&Attrs::draw(kind, seed, index), size, seed, index)
}

/// Draws given attributes; `seed` and `index` only vary the small jitter (placement, shades)
/// and the caption wording. Tests use this to change one attribute and keep the rest.
pub fn render(attrs: &Attrs, size: usize, seed: u64, index: u64) -> Sample {
    // Jitter has its own stream, apart from the attribute draws, so that `sample` and
    // `render` of the same attributes give the same picture.
    let mut rng = image_rng(seed, index ^ 0x8000_0000_0000_0000);
    let mut crng = caption_rng(seed, index);
    let (rgb, captions) = match attrs {
        Attrs::Shapes(a) => (shapes::render(a, size, &mut rng), shapes::captions(a, &mut crng)),
        Attrs::Faces(a) => (faces::render(a, size, &mut rng), faces::captions(a, &mut crng)),
    };
    let mut captions: Vec<String> = captions.iter().map(|c| fix_articles(c)).collect();
    crng.shuffle(&mut captions);
    Sample { size, rgb, captions, attrs: attrs.clone() }
}

/// "a orange" → "an orange", "a old man" → "an old man": templates write "a" throughout.
fn fix_articles(s: &str) -> String {
    let words: Vec<&str> = s.split(' ').collect();
    let mut out = String::with_capacity(s.len() + 4);
    for (i, w) in words.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let next_vowel = words.get(i + 1).and_then(|n| n.chars().next()).is_some_and(|c| "aeiouAEIOU".contains(c));
        match *w {
            "a" if next_vowel => out.push_str("an"),
            "A" if next_vowel => out.push_str("An"),
            _ => out.push_str(w),
        }
    }
    out
}

pub struct Options {
    pub kind: Kind,
    pub count: usize,
    pub size: usize,
    pub seed: u64,
    pub out: PathBuf,
    /// Worker threads; the output is the same for any number.
    pub threads: usize,
}

impl Options {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Other(m));
        if self.count == 0 {
            return bad("--count must be at least 1".into());
        }
        if self.size < MIN_SIZE || self.size > MAX_SIZE {
            return bad(format!("--size must be between {MIN_SIZE} and {MAX_SIZE} pixels, got {}", self.size));
        }
        Ok(())
    }
}

/// Name of image `index`'s files without extension: zero-padded to five digits, or more when
/// the count needs them, so names sort in index order.
pub fn stem(index: usize, count: usize) -> String {
    let width = (count.saturating_sub(1)).to_string().len().max(5);
    format!("{index:0width$}")
}

/// Renders and writes the dataset on `opts.threads` workers, calling `progress(done)` after
/// each image.
pub fn write_dataset(opts: &Options, progress: &(dyn Fn(usize) + Sync)) -> Result<()> {
    opts.validate()?;
    let io = |what: &Path, e: std::io::Error| Error::Other(format!("{}: {e}", what.display()));
    for existing in ["dataset.json", "attributes.jsonl", "images"] {
        let p = opts.out.join(existing);
        if p.exists() {
            // Writing over a larger dataset would leave its extra images behind, mixed in.
            return Err(Error::Other(format!(
                "{} already holds a dataset ({} exists); remove it or choose another --out",
                opts.out.display(),
                p.display()
            )));
        }
    }
    let images = opts.out.join("images");
    std::fs::create_dir_all(&images).map_err(|e| io(&images, e))?;

    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let lines: Mutex<Vec<String>> = Mutex::new(vec![String::new(); opts.count]);
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    let worker = || {
        while !failed.load(Ordering::Relaxed) {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= opts.count {
                break;
            }
            match write_one(opts, &images, i) {
                Ok(line) => {
                    if let Ok(mut l) = lines.lock() {
                        l[i] = line;
                    }
                    progress(done.fetch_add(1, Ordering::Relaxed) + 1);
                }
                Err(e) => {
                    failed.store(true, Ordering::Relaxed);
                    if let Ok(mut f) = first_error.lock() {
                        f.get_or_insert(e);
                    }
                }
            }
        }
    };
    std::thread::scope(|s| {
        for _ in 0..opts.threads.clamp(1, opts.count) {
            s.spawn(worker);
        }
    });
    if let Some(e) = first_error.into_inner().ok().flatten() {
        return Err(e);
    }
    let lines = lines.into_inner().map_err(|_| Error::Other("a worker thread panicked".into()))?;
    let mut jsonl = lines.join("\n");
    jsonl.push('\n');
    write_atomic(&opts.out.join("attributes.jsonl"), jsonl.as_bytes())?;
    let meta = serde_json::json!({
        "kind": opts.kind.name(),
        "count": opts.count,
        "size": opts.size,
        "seed": opts.seed,
        "captions_per_image": CAPTIONS_PER_IMAGE,
        "generator": "ratlip dataset synth",
        "generator_version": GENERATOR_VERSION,
        "layout": "images/NNNNN.png with images/NNNNN.txt (one caption a line); attributes.jsonl (one object per image)",
    });
    let text = serde_json::to_string_pretty(&meta).map_err(|e| Error::Other(e.to_string()))? + "\n";
    write_atomic(&opts.out.join("dataset.json"), text.as_bytes())
}

/// Writes image `i`'s PNG and captions; returns its attributes line.
fn write_one(opts: &Options, images: &Path, i: usize) -> Result<String> {
    let s = sample(opts.kind, opts.seed, i as u64, opts.size);
    let name = stem(i, opts.count);
    write_atomic(&images.join(format!("{name}.png")), &encode_png(&s)?)?;
    write_atomic(&images.join(format!("{name}.txt")), (s.captions.join("\n") + "\n").as_bytes())?;
    let mut v = s.attrs.to_json();
    if let Some(o) = v.as_object_mut() {
        o.insert("file".into(), format!("images/{name}.png").into());
    }
    Ok(v.to_string())
}

pub fn encode_png(s: &Sample) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let side = s.size as u32;
    image::write_buffer_with_format(
        &mut std::io::Cursor::new(&mut bytes),
        &s.rgb,
        side,
        side,
        image::ExtendedColorType::Rgb8,
        image::ImageFormat::Png,
    )
    .map_err(|e| Error::Other(format!("encoding PNG: {e}")))?;
    Ok(bytes)
}
