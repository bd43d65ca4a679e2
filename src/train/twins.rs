//! Twin images for CLIP training (`ratlip train-clip --twins`): beside each image of a
//! synthetic faces batch, the renderer draws the same face with one attribute the other way
//! round (every jitter equal: only the mouth and brows, the frames or the beard change), and
//! the pair joins the batch as image + contrast caption.
//!
//! Why: a hard-negative *caption* (`hard_negatives`) asks CLIP to tell two texts apart for one
//! image, which it can learn from the wording in context without looking at the mouth
//! (measured on exact twins: docs/evaluation.md, "Asked for, then not"). A twin asks it to
//! tell two *images* apart that differ only there, for both captions, so the only way to lower
//! the loss is to read those pixels.

use std::collections::HashMap;
use std::path::Path;

use super::hard_negatives::{reverse, Flip};
use crate::data::synth::{self, Attrs, FaceAttrs};
use crate::error::{Error, Result};

/// What the renderer needs to draw any image of a `ratlip dataset synth --kind faces` folder
/// again: its seed and size, and each file's index and attributes.
pub struct Twins {
    seed: u64,
    size: usize,
    faces: HashMap<String, (u64, FaceAttrs)>,
}

impl Twins {
    pub fn open(data: &Path) -> Result<Twins> {
        let bad = |m: String| Error::Other(format!("{}: {m} (--twins needs a `ratlip dataset synth --kind faces` folder)", data.display()));
        let meta: serde_json::Value = std::fs::read_to_string(data.join("dataset.json"))
            .map_err(|e| bad(format!("dataset.json: {e}")))
            .and_then(|t| serde_json::from_str(&t).map_err(|e| bad(format!("dataset.json: {e}"))))?;
        if meta["kind"] != "faces" {
            return Err(bad(format!("a dataset of kind {}", meta["kind"])));
        }
        let (Some(seed), Some(size)) = (meta["seed"].as_u64(), meta["size"].as_u64()) else {
            return Err(bad("dataset.json has no seed or size".into()));
        };
        let text = std::fs::read_to_string(data.join("attributes.jsonl")).map_err(|e| bad(format!("attributes.jsonl: {e}")))?;
        let mut faces = HashMap::new();
        for (n, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
            let v: serde_json::Value = serde_json::from_str(line).map_err(|e| bad(format!("attributes.jsonl line {}: {e}", n + 1)))?;
            let attrs = crate::eval::face_attrs(&v).ok_or_else(|| bad(format!("attributes.jsonl line {}: missing or unknown attribute", n + 1)))?;
            let file = v["file"].as_str().and_then(|f| Path::new(f).file_name()).and_then(|f| f.to_str()).unwrap_or_default();
            faces.insert(file.to_string(), (n as u64, attrs));
        }
        Ok(Twins { seed, size: size as usize, faces })
    }

    /// The twin of the dataset image at `image` with `flip` reversed, as the dataset stores
    /// images (uncropped, at its size); None for a file the attributes do not list.
    pub fn twin(&self, image: &Path, flip: Flip) -> Option<image::RgbImage> {
        let (index, a) = self.faces.get(image.file_name()?.to_str()?)?;
        let s = synth::render(&Attrs::Faces(reverse(a, flip)), self.size, self.seed, *index);
        image::RgbImage::from_raw(self.size as u32, self.size as u32, s.rgb)
    }
}
