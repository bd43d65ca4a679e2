//! Getting pixels into CLIP, two ways (MODEL.md §2).
//!
//! - `released`: what GALIP/RATLIP's code does to G's output inside training and the
//!   discriminator — nearest resize to the CLIP size and a double rescale. Imported
//!   checkpoints were trained with exactly this, so it is kept, quirk included.
//! - `for_scoring`: standard CLIP preprocessing of an image file (bicubic resize of the short
//!   side, centre crop, CLIP mean/std), used by `ratlip clip score`.

use std::path::Path;

use crate::autograd::{Tape, Var};
use crate::error::{Error, Result};
use crate::ops::elementwise::Activation;
use crate::tensor::Tensor;
use crate::weights::HostTensor;

pub const MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
pub const STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];

/// x in [-1, 1], [B, 3, H, W] → CLIP input [B, 3, size, size]:
/// `y = nearest_resize(x·0.5 + 0.5, size); y = ((y + 1)·0.5 − mean) / std`.
pub fn released(tape: &Tape, x: &Var, size: usize) -> Result<Var> {
    let s = x.shape();
    if s.len() != 4 || s[1] != 3 {
        return Err(Error::shape("clip preprocess", format!("image {s:?}, expected [B, 3, H, W]")));
    }
    // ((y + 1)·0.5 − mean)/std = y·(0.5/std) + (0.5 − mean)/std, per channel.
    let gpu = tape.gpu();
    let scale: Vec<f32> = STD.iter().map(|s| 0.5 / s).collect();
    let shift: Vec<f32> = MEAN.iter().zip(STD).map(|(m, s)| (0.5 - m) / s).collect();
    let scale = tape.constant(Tensor::from_slice(gpu, &[1, 3, 1, 1], &scale)?);
    let shift = tape.constant(Tensor::from_slice(gpu, &[1, 3, 1, 1], &shift)?);
    let y = tape.activation(x, Activation::Scale(0.5, 0.5))?;
    let y = if s[2] == size && s[3] == size { y } else { tape.resize_nearest(&y, size, size)? };
    tape.add_b(&tape.mul_b(&y, &scale)?, &shift)
}

/// An image file → [3, size, size], normalised for CLIP: the short side is resized to
/// `size` with a bicubic (Catmull-Rom, antialiased when shrinking, as PIL) filter, the centre
/// cropped, then `(pixel/255 − mean)/std`.
pub fn for_scoring(path: &Path, size: usize) -> Result<HostTensor> {
    let img = image::open(path).map_err(|e| Error::Other(format!("cannot read image {}: {e}", path.display())))?;
    Ok(for_scoring_rgb(&img.to_rgb8(), size))
}

pub fn for_scoring_rgb(img: &image::RgbImage, size: usize) -> HostTensor {
    let (w, h) = img.dimensions();
    let short = w.min(h) as f64;
    // torchvision's Resize(int): the short side becomes `size`, the long side int(size·long/short).
    let (nw, nh) = if w <= h {
        (size as u32, (size as f64 * h as f64 / short) as u32)
    } else {
        ((size as f64 * w as f64 / short) as u32, size as u32)
    };
    let resized = image::imageops::resize(img, nw, nh, image::imageops::FilterType::CatmullRom);
    // CenterCrop: torchvision rounds the offsets with Python's round(), ties to even.
    let left = ((nw as f64 - size as f64) / 2.0).round_ties_even() as u32;
    let top = ((nh as f64 - size as f64) / 2.0).round_ties_even() as u32;
    let mut data = vec![0f32; 3 * size * size];
    for y in 0..size {
        for x in 0..size {
            let p = resized.get_pixel(left + x as u32, top + y as u32);
            for c in 0..3 {
                data[c * size * size + y * size + x] = (p[c] as f32 / 255.0 - MEAN[c]) / STD[c];
            }
        }
    }
    HostTensor::new(vec![3, size, size], data)
}
