//! Images out: G's float output → 8-bit RGB, grids, and PNG files that carry how they were
//! made (prompt, seed, model, arch) as text chunks, written atomically.

use std::path::Path;

use crate::error::{Error, Result};
use crate::weights::write_atomic;

/// An 8-bit RGB image, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Rgb8 {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

/// G's output [K, 3, S, S] (roughly [-1, 1]; clamped here, as the released code does when
/// saving) → K images.
pub fn from_chw(data: &[f32], shape: &[usize]) -> Result<Vec<Rgb8>> {
    let &[k, 3, h, w] = shape else {
        return Err(Error::shape("images", format!("expected [K, 3, H, W], got {shape:?}")));
    };
    let plane = h * w;
    Ok((0..k)
        .map(|i| {
            let img = &data[i * 3 * plane..(i + 1) * 3 * plane];
            let mut out = vec![0u8; 3 * plane];
            for p in 0..plane {
                for c in 0..3 {
                    let v = (img[c * plane + p].clamp(-1.0, 1.0) + 1.0) * 127.5;
                    out[3 * p + c] = v.round() as u8;
                }
            }
            Rgb8 { width: w, height: h, data: out }
        })
        .collect())
}

/// Tiles equally sized images `cols` per row with a `gap`-pixel white border.
pub fn grid(images: &[Rgb8], cols: usize, gap: usize) -> Result<Rgb8> {
    let first = images.first().ok_or_else(|| Error::Other("no images to tile".into()))?;
    let (w, h) = (first.width, first.height);
    if images.iter().any(|i| i.width != w || i.height != h) {
        return Err(Error::Other("grid: images differ in size".into()));
    }
    let cols = cols.clamp(1, images.len());
    let rows = images.len().div_ceil(cols);
    let (gw, gh) = (cols * w + (cols + 1) * gap, rows * h + (rows + 1) * gap);
    let mut out = Rgb8 { width: gw, height: gh, data: vec![255u8; gw * gh * 3] };
    for (n, img) in images.iter().enumerate() {
        paste(&mut out, img, gap + (n % cols) * (w + gap), gap + (n / cols) * (h + gap));
    }
    Ok(out)
}

/// Each pixel as a k×k block: a small model's 32 px faces become viewable without the blur
/// a smooth filter would add (and without inventing detail).
pub fn zoom(img: &Rgb8, k: usize) -> Rgb8 {
    let k = k.max(1);
    let (w, h) = (img.width * k, img.height * k);
    let mut data = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            let i = 3 * ((y / k) * img.width + x / k);
            data.extend_from_slice(&img.data[i..i + 3]);
        }
    }
    Rgb8 { width: w, height: h, data }
}

/// [`from_chw`], each image then [`zoom`]ed k times (k ≤ 1: as they are, no copy): what the
/// CLI's `--zoom` writes.
pub fn from_chw_zoomed(data: &[f32], shape: &[usize], k: usize) -> Result<Vec<Rgb8>> {
    let imgs = from_chw(data, shape)?;
    Ok(if k > 1 { imgs.iter().map(|i| zoom(i, k)).collect() } else { imgs })
}

/// Copies `src` into `dst` with its top-left corner at (x0, y0), clipped to `dst`.
pub fn paste(dst: &mut Rgb8, src: &Rgb8, x0: usize, y0: usize) {
    let w = src.width.min(dst.width.saturating_sub(x0));
    for y in 0..src.height.min(dst.height.saturating_sub(y0)) {
        let d = ((y0 + y) * dst.width + x0) * 3;
        dst.data[d..d + 3 * w].copy_from_slice(&src.data[y * src.width * 3..(y * src.width + w) * 3]);
    }
}

/// Encodes a PNG with `text` as tEXt chunks (keyword, value) and writes it atomically.
pub fn save_png(path: &Path, img: &Rgb8, text: &[(&str, String)]) -> Result<()> {
    save_apng(path, std::slice::from_ref(img), &[], text)
}

/// Like [`save_png`] for several equally sized frames: an animated PNG looping forever, frame
/// i shown `delays_ms[i]` ms (100 where missing). Viewers without APNG support show frame 0.
/// One frame gives a plain PNG.
pub fn save_apng(path: &Path, frames: &[Rgb8], delays_ms: &[u16], text: &[(&str, String)]) -> Result<()> {
    let err = |e: &dyn std::fmt::Display| Error::Other(format!("encoding {}: {e}", path.display()));
    let first = frames.first().ok_or_else(|| Error::Other(format!("{}: no frames to write", path.display())))?;
    if frames.iter().any(|f| f.width != first.width || f.height != first.height) {
        return Err(Error::Other(format!("{}: frames differ in size", path.display())));
    }
    let mut bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut bytes, first.width as u32, first.height as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        for (k, v) in text {
            // tEXt is Latin-1; iTXt carries any prompt in UTF-8.
            enc.add_itxt_chunk(k.to_string(), v.clone()).map_err(|e| err(&e))?;
        }
        let animated = frames.len() > 1;
        if animated {
            enc.set_animated(frames.len() as u32, 0).map_err(|e| err(&e))?;
        }
        let mut wr = enc.write_header().map_err(|e| err(&e))?;
        for (i, f) in frames.iter().enumerate() {
            if animated {
                wr.set_frame_delay(delays_ms.get(i).copied().unwrap_or(100), 1000).map_err(|e| err(&e))?;
            }
            wr.write_image_data(&f.data).map_err(|e| err(&e))?;
        }
        wr.finish().map_err(|e| err(&e))?;
    }
    write_atomic(path, &bytes)
}

/// The text chunks of a PNG (for tests and `ratlip` reading its own outputs).
pub fn png_text(path: &Path) -> Result<Vec<(String, String)>> {
    let f = std::fs::File::open(path).map_err(|e| Error::Other(format!("cannot read {}: {e}", path.display())))?;
    let mut dec = png::Decoder::new(std::io::BufReader::new(f));
    dec.set_ignore_text_chunk(false);
    let reader = dec.read_info().map_err(|e| Error::Other(format!("{}: {e}", path.display())))?;
    let info = reader.info();
    let mut out: Vec<(String, String)> = info.uncompressed_latin1_text.iter().map(|t| (t.keyword.clone(), t.text.clone())).collect();
    for t in &info.utf8_text {
        out.push((t.keyword.clone(), t.get_text().unwrap_or_default()));
    }
    Ok(out)
}
