//! Training data: captioned image folders, the released augmentation, decoding on worker
//! threads, and the frozen text encoder's sentence embeddings computed once per caption.
//!
//! Layouts (`Dataset::open` tells them apart by what is on disk):
//! - **folder**: `DIR/images/X.png|jpg` with `DIR/images/X.txt` (one caption a line), as
//!   `ratlip dataset synth` writes; or the same pairs directly in `DIR`.
//! - **AttnGAN/CUB** (the released code's `TextImgDataset`): `DIR/train/filenames.pickle`
//!   (a pickled list of keys), `DIR/text/<key>.txt`, and `DIR/images/<key>.jpg`, or for CUB
//!   (`DIR/CUB_200_2011/images.txt` + `bounding_boxes.txt` present)
//!   `DIR/CUB_200_2011/images/<key>.jpg` cropped around the bird's box as `get_imgs` does.
//!
//! Order: the stream of samples runs epoch after epoch; epoch e visits the items in a
//! permutation drawn from (seed, e), and sample (e, position) draws its caption, crop and flip
//! from its own stream, so what a sample is depends on nothing but (seed, e, position) — not
//! on thread timing — and a run resumed at a position sees exactly what it would have seen.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};

use crate::autograd::Tape;
use crate::clip::tokenizer::ClipTokenizer;
use crate::error::{Error, Result};
use crate::model::Model;
use crate::rng::Rng;
use crate::weights::{save_safetensors, HostTensor, WeightFile};

/// One image with its captions; `bbox` = CUB's [x, y, w, h] box (integers, as the released
/// code's `.astype(int)`).
#[derive(Clone, Debug)]
pub struct Item {
    pub key: String,
    pub image: PathBuf,
    pub captions: Vec<String>,
    pub bbox: Option<[i64; 4]>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Layout {
    Folder,
    AttnGan,
    Cub,
}

pub struct Dataset {
    pub root: PathBuf,
    pub layout: Layout,
    pub items: Vec<Item>,
    /// Images left out at open time because they have no (non-empty) caption file.
    pub without_captions: usize,
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Other(format!("{}: {e}", path.display()))
}

/// The non-empty lines of a caption file (the released `get_caption` keeps `len(cap) != 0`).
pub fn read_captions(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read(path).map_err(|e| io_err(path, e))?;
    let text = String::from_utf8_lossy(&text);
    Ok(text.split('\n').map(|l| l.trim_end_matches('\r')).filter(|l| !l.trim().is_empty()).map(str::to_string).collect())
}

fn is_image(p: &Path) -> bool {
    matches!(p.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref(), Some("png" | "jpg" | "jpeg"))
}

impl Dataset {
    pub fn open(dir: &Path) -> Result<Dataset> {
        if !dir.is_dir() {
            return Err(Error::Other(format!("{}: no such dataset folder", dir.display())));
        }
        let ds = if dir.join("train/filenames.pickle").is_file() {
            Dataset::open_attngan(dir)?
        } else {
            let folder = if dir.join("images").is_dir() { dir.join("images") } else { dir.to_path_buf() };
            Dataset::open_folder(dir, &folder)?
        };
        if ds.items.is_empty() {
            return Err(Error::Other(format!(
                "{}: no captioned images found (expected images/X.png with images/X.txt, X.png + X.txt side by side, \
                 or the AttnGAN layout train/filenames.pickle + text/ + images/){}",
                dir.display(),
                if ds.without_captions > 0 { format!("; {} images have no caption file", ds.without_captions) } else { String::new() }
            )));
        }
        Ok(ds)
    }

    fn open_folder(root: &Path, folder: &Path) -> Result<Dataset> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(folder)
            .map_err(|e| io_err(folder, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && is_image(p))
            .collect();
        paths.sort();
        let mut items = Vec::new();
        let mut without = 0;
        for p in paths {
            let txt = p.with_extension("txt");
            let captions = if txt.is_file() { read_captions(&txt)? } else { Vec::new() };
            if captions.is_empty() {
                without += 1;
                continue;
            }
            let key = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            items.push(Item { key, image: p, captions, bbox: None });
        }
        Ok(Dataset { root: root.to_path_buf(), layout: Layout::Folder, items, without_captions: without })
    }

    fn open_attngan(root: &Path) -> Result<Dataset> {
        let keys = crate::weights::pth::load_string_list(&root.join("train/filenames.pickle"))?;
        let cub = root.join("CUB_200_2011");
        let bboxes = if cub.join("images.txt").is_file() && cub.join("bounding_boxes.txt").is_file() { Some(load_cub_boxes(&cub)?) } else { None };
        let mut items = Vec::with_capacity(keys.len());
        let mut without = 0;
        for key in keys {
            let txt = root.join("text").join(format!("{key}.txt"));
            let captions = if txt.is_file() { read_captions(&txt)? } else { Vec::new() };
            if captions.is_empty() {
                without += 1;
                continue;
            }
            let (image, bbox) = match &bboxes {
                Some(b) => {
                    let bbox = *b.get(&key).ok_or_else(|| Error::Other(format!("{}: no bounding box for {key}", cub.join("bounding_boxes.txt").display())))?;
                    (cub.join("images").join(format!("{key}.jpg")), Some(bbox))
                }
                None => (root.join("images").join(format!("{key}.jpg")), None),
            };
            items.push(Item { key, image, captions, bbox });
        }
        let layout = if bboxes.is_some() { Layout::Cub } else { Layout::AttnGan };
        Ok(Dataset { root: root.to_path_buf(), layout, items, without_captions: without })
    }

    /// Number of (image, caption) pairs.
    pub fn caption_count(&self) -> usize {
        self.items.iter().map(|i| i.captions.len()).sum()
    }
}

/// CUB's `images.txt` ("id path") and `bounding_boxes.txt` ("id x y w h"), matched by line
/// as the released `load_bbox` does, keyed by the path without ".jpg".
fn load_cub_boxes(cub: &Path) -> Result<HashMap<String, [i64; 4]>> {
    let read = |name: &str| -> Result<Vec<Vec<String>>> {
        let p = cub.join(name);
        let t = std::fs::read_to_string(&p).map_err(|e| io_err(&p, e))?;
        Ok(t.lines().filter(|l| !l.trim().is_empty()).map(|l| l.split_whitespace().map(str::to_string).collect()).collect())
    };
    let (files, boxes) = (read("images.txt")?, read("bounding_boxes.txt")?);
    if files.len() != boxes.len() {
        return Err(Error::Other(format!("{}: images.txt has {} lines, bounding_boxes.txt {}", cub.display(), files.len(), boxes.len())));
    }
    let mut out = HashMap::new();
    for (i, (f, b)) in files.iter().zip(&boxes).enumerate() {
        let bad = || Error::Other(format!("{}: line {} of images.txt / bounding_boxes.txt is malformed", cub.display(), i + 1));
        if f.len() < 2 || b.len() < 5 {
            return Err(bad());
        }
        let mut v = [0i64; 4];
        for (k, s) in b[1..5].iter().enumerate() {
            // pandas reads "60.0" as float, then .astype(int) truncates.
            v[k] = s.parse::<f64>().map_err(|_| bad())? as i64;
        }
        let key = f[1].strip_suffix(".jpg").unwrap_or(&f[1]).to_string();
        out.insert(key, v);
    }
    Ok(out)
}

/// One augmented sample: pixels [3, S, S] in [-1, 1] and the caption drawn for it.
#[derive(Clone, Debug)]
pub struct Sample {
    pub item: usize,
    pub caption: String,
    pub pixels: Vec<f32>,
    /// Where it was cropped from the resized image, so a twin can be cropped the same.
    pub crop: Crop,
}

/// The random part of the transform: the crop's top-left corner in the resized image, and
/// whether it was mirrored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Crop {
    pub top: usize,
    pub left: usize,
    pub flip: bool,
}

/// Where the sample stream stands: the next sample is position `cursor` of epoch `epoch`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub epoch: u64,
    pub cursor: u64,
}

impl Position {
    fn absolute(self, n: u64) -> u64 {
        self.epoch * n + self.cursor
    }
    fn from_absolute(a: u64, n: u64) -> Position {
        Position { epoch: a / n, cursor: a % n }
    }
}

/// The item order of epoch `epoch`: a Fisher–Yates shuffle drawn from (seed, epoch).
pub fn permutation(seed: u64, epoch: u64, n: usize) -> Vec<usize> {
    let mut rng = Rng::stream(seed ^ 0x0DA7_A0DE_u64, epoch);
    let mut p: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        p.swap(i, rng.below(i + 1));
    }
    p
}

/// The released crop for CUB: a square of side 2·int(0.75·max(w, h)) around the box centre,
/// clipped to the image.
fn crop_box(img: &image::RgbImage, b: [i64; 4]) -> image::RgbImage {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let r = (b[2].max(b[3]) as f64 * 0.75) as i64;
    let (cx, cy) = ((2 * b[0] + b[2]) / 2, (2 * b[1] + b[3]) / 2);
    let (x1, x2) = ((cx - r).max(0), (cx + r).min(w));
    let (y1, y2) = ((cy - r).max(0), (cy + r).min(h));
    if x2 <= x1 || y2 <= y1 {
        return img.clone();
    }
    image::imageops::crop_imm(img, x1 as u32, y1 as u32, (x2 - x1) as u32, (y2 - y1) as u32).to_image()
}

/// Decodes and augments as the released transform: (CUB box crop), Resize(S·76/64) on the
/// shorter side, RandomCrop(S), RandomHorizontalFlip, then to [-1, 1]. Draw order from `rng`:
/// caption, crop row, crop column, flip.
pub fn load_sample(item: &Item, index: usize, size: usize, rng: &mut Rng) -> std::result::Result<Sample, String> {
    load_sample_with(item, index, size, rng, true)
}

/// `load_sample`, with the horizontal flip optional: CLIP training turns it off, because a
/// mirrored image contradicts captions that say left or right. The flip is drawn either way,
/// so the crops are the same with and without it.
pub fn load_sample_with(item: &Item, index: usize, size: usize, rng: &mut Rng, allow_flip: bool) -> std::result::Result<Sample, String> {
    let caption = item.captions[rng.below(item.captions.len())].clone();
    let img = image::ImageReader::open(&item.image)
        .map_err(|e| e.to_string())?
        .with_guessed_format()
        .map_err(|e| e.to_string())?
        .decode()
        .map_err(|e| e.to_string())?
        .to_rgb8();
    let img = match item.bbox {
        Some(b) => crop_box(&img, b),
        None => img,
    };
    if img.width() == 0 || img.height() == 0 {
        return Err("empty image".into());
    }
    let img = resized(img, size);
    let top = rng.below(img.height() as usize - size + 1);
    let left = rng.below(img.width() as usize - size + 1);
    let crop = Crop { top, left, flip: rng.next_f64() < 0.5 && allow_flip };
    Ok(Sample { item: index, caption, pixels: crop_pixels(&img, size, crop), crop })
}

/// Resize(S·76/64) on the shorter side, as torchvision's Resize(int): the longer side becomes
/// int(short·long/short).
fn resized(img: image::RgbImage, size: usize) -> image::RgbImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let short = size * 76 / 64;
    let (nw, nh) = if w <= h { (short, (short as f64 * h as f64 / w as f64) as usize) } else { ((short as f64 * w as f64 / h as f64) as usize, short) };
    if (nw, nh) == (w, h) {
        img
    } else {
        image::imageops::resize(&img, nw as u32, nh as u32, image::imageops::FilterType::Triangle)
    }
}

/// The S×S crop (mirrored or not) of a resized image, to [-1, 1], channels first.
fn crop_pixels(img: &image::RgbImage, size: usize, crop: Crop) -> Vec<f32> {
    let mut pixels = vec![0f32; 3 * size * size];
    for y in 0..size {
        for x in 0..size {
            let sx = if crop.flip { size - 1 - x } else { x };
            let p = img.get_pixel((crop.left + sx) as u32, (crop.top + y) as u32).0;
            for c in 0..3 {
                pixels[(c * size + y) * size + x] = p[c] as f32 / 127.5 - 1.0;
            }
        }
    }
    pixels
}

/// Another image of the same size (an uncropped dataset image, e.g. its renderer's twin)
/// transformed exactly as a sample was: the same resize, crop and flip.
pub fn augment_like(img: image::RgbImage, size: usize, crop: Crop) -> Vec<f32> {
    crop_pixels(&resized(img, size), size, crop)
}

/// The augmentation stream of sample (epoch, position).
fn sample_rng(seed: u64, epoch: u64, cursor: u64) -> Rng {
    Rng::stream(seed ^ 0xA06_3E47_u64.wrapping_mul(epoch.wrapping_add(1)), cursor)
}

type Decoded = (u64, std::result::Result<Sample, String>);

/// The sample stream, decoded by worker threads into a bounded channel (so decoding runs
/// ahead of the GPU by at most `prefetch` samples) and put back in order here.
pub struct Loader {
    dataset: Arc<Dataset>,
    rx: Option<Receiver<Decoded>>,
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
    waiting: BTreeMap<u64, std::result::Result<Sample, String>>,
    start: u64,
    next: u64,
    /// Unreadable images: item index → the decoder's message. Counted once each.
    pub skipped: BTreeMap<usize, String>,
}

impl Loader {
    pub fn new(dataset: Arc<Dataset>, size: usize, seed: u64, from: Position, workers: usize, prefetch: usize) -> Loader {
        Loader::with_flip(dataset, size, seed, from, workers, prefetch, true)
    }

    /// `new`, with the random horizontal flip on or off (`load_sample_with`).
    pub fn with_flip(dataset: Arc<Dataset>, size: usize, seed: u64, from: Position, workers: usize, prefetch: usize, flip: bool) -> Loader {
        let n = dataset.items.len() as u64;
        let start = from.absolute(n);
        let (tx, rx) = sync_channel::<Decoded>(prefetch.max(1));
        let stop = Arc::new(AtomicBool::new(false));
        let counter = Arc::new(AtomicU64::new(0));
        let handles = (0..workers.max(1))
            .map(|_| {
                let (tx, stop, counter, ds) = (tx.clone(), stop.clone(), counter.clone(), dataset.clone());
                std::thread::spawn(move || {
                    let mut perm: Option<(u64, Vec<usize>)> = None;
                    while !stop.load(Ordering::Relaxed) {
                        let seq = counter.fetch_add(1, Ordering::Relaxed);
                        let pos = Position::from_absolute(start + seq, n);
                        if perm.as_ref().map(|p| p.0) != Some(pos.epoch) {
                            perm = Some((pos.epoch, permutation(seed, pos.epoch, n as usize)));
                        }
                        let index = perm.as_ref().map(|p| p.1[pos.cursor as usize]).unwrap_or(0);
                        let mut rng = sample_rng(seed, pos.epoch, pos.cursor);
                        // A decoder panic on a hostile file is one more unreadable image.
                        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| load_sample_with(&ds.items[index], index, size, &mut rng, flip)))
                            .unwrap_or_else(|_| Err(format!("the decoder panicked on item {index}")))
                            .map_err(|e| format!("{index}\u{0}{e}"));
                        if tx.send((seq, r)).is_err() {
                            break;
                        }
                    }
                })
            })
            .collect();
        Loader { dataset, rx: Some(rx), stop, workers: handles, waiting: BTreeMap::new(), start, next: 0, skipped: BTreeMap::new() }
    }

    /// The position of the next sample `next_batch` will hand out.
    pub fn position(&self) -> Position {
        Position::from_absolute(self.start + self.next, self.dataset.items.len() as u64)
    }

    fn take(&mut self, seq: u64) -> Result<std::result::Result<Sample, String>> {
        loop {
            if let Some(r) = self.waiting.remove(&seq) {
                return Ok(r);
            }
            let rx = self.rx.as_ref().ok_or_else(|| Error::Other("data loader stopped".into()))?;
            let (s, r) = rx.recv().map_err(|_| Error::Other("the data loader's worker threads stopped".into()))?;
            self.waiting.insert(s, r);
        }
    }

    /// The next `b` readable samples; unreadable images are skipped, counted and reported once.
    pub fn next_batch(&mut self, b: usize) -> Result<Vec<Sample>> {
        let n = self.dataset.items.len();
        let mut out = Vec::with_capacity(b);
        let mut failures_in_a_row = 0usize;
        while out.len() < b {
            let r = self.take(self.next)?;
            self.next += 1;
            match r {
                Ok(s) => {
                    failures_in_a_row = 0;
                    out.push(s)
                }
                Err(e) => {
                    let (idx, msg) = e.split_once('\u{0}').unwrap_or(("0", e.as_str()));
                    let idx: usize = idx.parse().unwrap_or(0);
                    if !self.skipped.contains_key(&idx) {
                        eprintln!("\nskipping unreadable image {}: {msg}", self.dataset.items[idx].image.display());
                        self.skipped.insert(idx, msg.to_string());
                    }
                    failures_in_a_row += 1;
                    if failures_in_a_row >= n {
                        return Err(Error::Other(format!("{}: none of the {n} images could be read", self.dataset.root.display())));
                    }
                }
            }
        }
        Ok(out)
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Workers blocked in send() wake up with an error once the receiver is gone.
        drop(self.rx.take());
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
    }
}

/// FNV-1a over the text tower's names and weights (and the embedding width): the cache key
/// that says which text encoder produced a cache file's embeddings.
pub fn clip_text_hash(model: &Model) -> Result<String> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    eat(&(model.config.cond_dim as u64).to_le_bytes());
    for (name, t) in model.clip.state_dict()? {
        if name.starts_with("visual.") {
            continue;
        }
        eat(name.as_bytes());
        for v in &t.data {
            eat(&v.to_bits().to_le_bytes());
        }
    }
    Ok(format!("{h:016x}"))
}

/// Sentence embeddings of captions (CLIP is frozen, so each is computed once): in memory, and
/// in a safetensors file keyed by the text encoder's hash, so a resumed run or a second run in
/// the same folder reuses them.
pub struct TextCache {
    path: PathBuf,
    key: String,
    dim: usize,
    order: Vec<String>,
    map: HashMap<String, Vec<f32>>,
    tokenizer: ClipTokenizer,
    saved: usize,
}

impl TextCache {
    /// Opens `path` if it was made by this model's text encoder; otherwise starts empty.
    pub fn open(path: &Path, model: &Model) -> Result<TextCache> {
        let key = clip_text_hash(model)?;
        let dim = model.config.cond_dim;
        let mut cache = TextCache { path: path.to_path_buf(), key, dim, order: Vec::new(), map: HashMap::new(), tokenizer: ClipTokenizer::bundled()?, saved: 0 };
        if path.is_file() {
            let mut w = WeightFile::load(path)?;
            let same = w.metadata.get("clip_text_hash") == Some(&cache.key);
            let captions: Vec<String> = w.metadata.get("captions").and_then(|j| serde_json::from_str(j).ok()).unwrap_or_default();
            if same {
                let t = w.take("sent_emb", &[captions.len(), dim])?;
                for (c, row) in captions.into_iter().zip(t.data.chunks(dim)) {
                    cache.map.insert(c.clone(), row.to_vec());
                    cache.order.push(c);
                }
                cache.saved = cache.order.len();
            }
        }
        Ok(cache)
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// [captions.len() · cond_dim]: cached rows, the missing ones encoded together in one pass
    /// (in chunks of 64).
    pub fn embed(&mut self, model: &Model, captions: &[String]) -> Result<Vec<f32>> {
        let mut missing: Vec<&String> = Vec::new();
        for c in captions {
            if !self.map.contains_key(c) && !missing.contains(&c) {
                missing.push(c);
            }
        }
        let ctx = model.config.clip.text.context_length;
        for chunk in missing.chunks(64) {
            let ids = chunk.iter().map(|c| self.tokenizer.encode(c, ctx).map(|e| e.ids)).collect::<Result<Vec<_>>>()?;
            let tape = Tape::new(&model.clip.gpu);
            let flat = model.clip.encode_text(&tape, &ids)?.sent_emb.value().to_vec()?;
            for (c, row) in chunk.iter().zip(flat.chunks(self.dim)) {
                self.map.insert((*c).clone(), row.to_vec());
                self.order.push((*c).clone());
            }
        }
        let mut out = Vec::with_capacity(captions.len() * self.dim);
        for c in captions {
            out.extend_from_slice(&self.map[c]);
        }
        Ok(out)
    }

    /// Writes the file (atomically) when something was added since the last save.
    pub fn save(&mut self) -> Result<()> {
        if self.saved == self.order.len() {
            return Ok(());
        }
        let mut data = Vec::with_capacity(self.order.len() * self.dim);
        for c in &self.order {
            data.extend_from_slice(&self.map[c]);
        }
        let mut t = BTreeMap::new();
        t.insert("sent_emb".to_string(), HostTensor::new(vec![self.order.len(), self.dim], data));
        let mut meta = HashMap::new();
        meta.insert("clip_text_hash".to_string(), self.key.clone());
        meta.insert("captions".to_string(), serde_json::to_string(&self.order).map_err(|e| Error::Other(e.to_string()))?);
        save_safetensors(&self.path, &t, &meta)?;
        self.saved = self.order.len();
        Ok(())
    }
}
