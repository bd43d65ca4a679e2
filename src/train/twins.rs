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
        let rows = crate::eval::face_rows(data, usize::MAX).map_err(|e| bad(e.to_string()))?;
        let faces = rows
            .into_iter()
            .enumerate()
            .map(|(n, (file, attrs))| (Path::new(&file).file_name().and_then(|f| f.to_str()).unwrap_or_default().to_string(), (n as u64, attrs)))
            .collect();
        Ok(Twins { seed, size: size as usize, faces })
    }

    /// The twin of the dataset image at `image` with `flip` reversed, as the dataset stores
    /// images (uncropped, at its size); None for a file the attributes do not list.
    pub fn twin(&self, image: &Path, flip: Flip) -> Option<image::RgbImage> {
        let (index, a) = self.faces.get(image.file_name()?.to_str()?)?;
        image::RgbImage::from_raw(self.size as u32, self.size as u32, render_twin(a, flip, self.size, self.seed, *index))
    }
}

/// The twin of the renderer's face `index` of `seed` (attributes `a`): the same face with
/// `flip` reversed and every jitter as in the original, RGB bytes at `size`.
pub fn render_twin(a: &FaceAttrs, flip: Flip, size: usize, seed: u64, index: u64) -> Vec<u8> {
    synth::render(&Attrs::Faces(reverse(a, flip)), size, seed, index).rgb
}
