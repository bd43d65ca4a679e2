//! The generation thread. It owns the model (which never crosses threads: only the
//! Arc-based `Gpu` does) and answers the UI's jobs in order; the UI polls the replies each
//! frame, so a slow model never freezes the window.

use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver, Sender, TryRecvError};
use std::time::Instant;

use crate::clip::tokenizer::ClipTokenizer;
use crate::error::{Error, Result};
use crate::images;
use crate::model::Model;
use crate::latent::{lerp, seed_noise, slerp};
use crate::{Gpu, Tape, Tensor};

use super::texture::{Atlas, ToTexture};

/// Which noise: sample `stream` of `seed`, as `ratlip generate --seed SEED` numbers its images.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NoiseId {
    pub seed: u64,
    pub stream: u64,
}

/// One image: the sentence embedding lerp(prompt a, prompt b, tp) and the noise
/// slerp(noise a, noise b, tz).
#[derive(Clone, Debug)]
pub struct Item {
    pub prompt_a: usize,
    pub prompt_b: usize,
    pub tp: f64,
    pub noise_a: NoiseId,
    pub noise_b: NoiseId,
    pub tz: f64,
}

impl Item {
    pub fn single(prompt: usize, noise: NoiseId) -> Item {
        Item { prompt_a: prompt, prompt_b: prompt, tp: 0.0, noise_a: noise, noise_b: noise, tz: 0.0 }
    }
}

pub enum Job {
    Open(PathBuf),
    Render { id: u64, prompts: Vec<String>, items: Vec<Item>, cols: usize },
    Save { images: Vec<Tensor>, cols: usize, path: PathBuf, text: Vec<(String, String)> },
}

/// Dispatches per submission while the app generates (see `Gpu::set_pace`).
const PACE: usize = 64;
/// Images per pass of G. A dispatch is the smallest piece a frame can wait behind, and its
/// length grows with the batch: smaller batches keep frames coming on a shared queue.
/// Measured on lavapipe (tests/app.rs frames_keep_being_drawn_while_generating, tiny model,
/// 64 images): one submission drew 0.5 frames/s with a 5 s gap; PACE 64 alone 0.6–0.8
/// (one dispatch over 64 images is long); with CHUNK 4, 1.8–2.3 frames/s and gaps under
/// 1.6 s, for about the same G time when no frames are drawn.
const CHUNK: usize = 4;

pub struct ModelSummary {
    pub path: PathBuf,
    pub arch: String,
    pub image_size: usize,
}

pub struct Rendered {
    pub id: u64,
    pub atlas: Atlas,
    /// The float images [k, 3, S, S] per piece (see CHUNK), kept on the device so "Save PNG"
    /// can read them back.
    pub images: Vec<Tensor>,
    pub ms_per_image: f64,
    /// Prompts CLIP had to cut to its context length.
    pub truncated: Vec<String>,
}

pub enum Reply {
    Opened(ModelSummary),
    Rendered(Box<Rendered>),
    Saved(PathBuf),
    Failed { id: Option<u64>, message: String },
}

pub struct Worker {
    jobs: Sender<Job>,
    replies: Receiver<Reply>,
    in_flight: usize,
}

impl Worker {
    pub fn spawn(gpu: Gpu, wake: impl Fn() + Send + 'static) -> std::result::Result<Worker, String> {
        // The device is shared with egui's renderer: G's work goes in pieces, each waited
        // for, so the window's frames run between them (see Gpu::set_pace).
        gpu.set_pace(PACE);
        let (jobs, job_rx) = channel::<Job>();
        let (reply_tx, replies) = channel();
        std::thread::Builder::new()
            .name("ratlip-generate".into())
            .spawn(move || {
                let mut state = State { gpu, model: None, tokenizer: None, to_texture: None, embeddings: Default::default() };
                for job in job_rx {
                    // A bug in one job must not take the app's generator down with it: report
                    // it in the window and keep serving.
                    let id = match &job {
                        Job::Render { id, .. } => Some(*id),
                        _ => None,
                    };
                    let reply = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| state.handle(job)))
                        .unwrap_or_else(|p| {
                            let what = p
                                .downcast_ref::<&str>()
                                .map(|s| s.to_string())
                                .or_else(|| p.downcast_ref::<String>().cloned())
                                .unwrap_or_else(|| "unknown panic".into());
                            Reply::Failed { id, message: format!("internal error: {what}") }
                        });
                    if reply_tx.send(reply).is_err() {
                        break;
                    }
                    wake();
                }
            })
            .map_err(|e| format!("could not start the generation thread: {e}"))?;
        Ok(Worker { jobs, replies, in_flight: 0 })
    }

    pub fn send(&mut self, job: Job) -> std::result::Result<(), String> {
        self.jobs.send(job).map_err(|_| "the generation thread has stopped".to_string())?;
        self.in_flight += 1;
        Ok(())
    }

    pub fn busy(&self) -> bool {
        self.in_flight > 0
    }

    pub fn try_recv(&mut self) -> Option<Reply> {
        match self.replies.try_recv() {
            Ok(r) => {
                self.in_flight -= 1;
                Some(r)
            }
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) if self.in_flight > 0 => {
                self.in_flight = 0;
                Some(Reply::Failed { id: None, message: "the generation thread stopped unexpectedly".into() })
            }
            Err(TryRecvError::Disconnected) => None,
        }
    }
}

struct State {
    gpu: Gpu,
    model: Option<Model>,
    tokenizer: Option<ClipTokenizer>,
    to_texture: Option<ToTexture>,
    /// Sentence embeddings of the open model, by prompt.
    embeddings: std::collections::HashMap<String, Vec<f32>>,
}

impl State {
    fn handle(&mut self, job: Job) -> Reply {
        match job {
            Job::Open(path) => match Model::load(&self.gpu, &path) {
                Ok(m) => {
                    let c = &m.config;
                    let summary =
                        ModelSummary { path, arch: c.arch.name().to_string(), image_size: c.image_size };
                    self.model = Some(m);
                    self.embeddings.clear();
                    Reply::Opened(summary)
                }
                Err(e) => Reply::Failed { id: None, message: format!("could not open {}: {e}", path.display()) },
            },
            Job::Render { id, prompts, items, cols } => match self.render(id, &prompts, &items, cols) {
                Ok(r) => Reply::Rendered(Box::new(r)),
                Err(e) => Reply::Failed { id: Some(id), message: format!("generating: {e}") },
            },
            Job::Save { images, cols, path, text } => match save(&images, cols, &path, &text) {
                Ok(()) => Reply::Saved(path),
                Err(e) => Reply::Failed { id: None, message: format!("saving {}: {e}", path.display()) },
            },
        }
    }

    fn render(&mut self, id: u64, prompts: &[String], items: &[Item], cols: usize) -> Result<Rendered> {
        let m = self.model.as_ref().ok_or_else(|| Error::Other("open a model first".into()))?;
        if items.is_empty() {
            return Err(Error::Other("nothing to generate".into()));
        }
        let started = Instant::now();
        let c = &m.config;
        if self.tokenizer.is_none() {
            self.tokenizer = Some(ClipTokenizer::bundled()?);
        }
        let tok = self.tokenizer.as_ref().expect("just set");
        let ctx = c.clip.text.context_length;
        // Playing an interpolation asks for the same prompts every frame: encode each once.
        let mut new = Vec::new();
        let mut ids = Vec::new();
        let mut truncated = Vec::new();
        for p in prompts {
            if self.embeddings.contains_key(p) || new.contains(p) {
                continue;
            }
            let enc = tok.encode(p, ctx)?;
            if enc.truncated {
                truncated.push(p.clone());
            }
            ids.push(enc.ids);
            new.push(p.clone());
        }
        if !new.is_empty() {
            let tape = Tape::new(&self.gpu);
            let emb = m.clip.encode_text(&tape, &ids)?.sent_emb.value().to_vec()?;
            for (p, e) in new.into_iter().zip(emb.chunks(c.cond_dim)) {
                self.embeddings.insert(p, e.to_vec());
            }
        }
        let emb: Vec<&[f32]> = prompts.iter().map(|p| self.embeddings[p].as_slice()).collect();
        let mut z = Vec::with_capacity(items.len() * c.z_dim);
        let mut sent = Vec::with_capacity(items.len() * c.cond_dim);
        for it in items {
            let (pa, pb) = (emb.get(it.prompt_a), emb.get(it.prompt_b));
            let (Some(pa), Some(pb)) = (pa, pb) else {
                return Err(Error::Other("an image refers to a prompt that was not given".into()));
            };
            sent.extend(lerp(pa, pb, it.tp));
            let na = seed_noise(it.noise_a.seed, it.noise_a.stream, c.z_dim);
            if it.noise_a == it.noise_b {
                z.extend(na);
            } else {
                let nb = seed_noise(it.noise_b.seed, it.noise_b.stream, c.z_dim);
                z.extend(slerp(&na, &nb, it.tz));
            }
        }
        let k = items.len();
        if self.to_texture.is_none() {
            self.to_texture = Some(ToTexture::new(&self.gpu)?);
        }
        let to_texture = self.to_texture.as_ref().expect("just set");
        let atlas = to_texture.atlas(&self.gpu, k, c.image_size, cols)?;
        let mut images = Vec::new();
        for first in (0..k).step_by(CHUNK) {
            let n = CHUNK.min(k - first);
            let zt = Tensor::from_slice(&self.gpu, &[n, c.z_dim], &z[first * c.z_dim..(first + n) * c.z_dim])?;
            let st = Tensor::from_slice(&self.gpu, &[n, c.cond_dim], &sent[first * c.cond_dim..(first + n) * c.cond_dim])?;
            let piece = m.generate(&zt, &st)?;
            to_texture.encode(&self.gpu, &piece, &atlas, first)?;
            images.push(piece);
        }
        // Waiting here (on this thread) makes the time honest and the texture complete
        // before the UI draws it.
        self.gpu.wait()?;
        let ms_per_image = started.elapsed().as_secs_f64() * 1e3 / k as f64;
        Ok(Rendered { id, atlas, images, ms_per_image, truncated })
    }
}

fn save(pieces: &[Tensor], cols: usize, path: &std::path::Path, text: &[(String, String)]) -> Result<()> {
    let mut imgs = Vec::new();
    for t in pieces {
        imgs.extend(images::from_chw(&t.to_vec()?, t.shape())?);
    }
    let img = if imgs.len() == 1 { imgs[0].clone() } else { images::grid(&imgs, cols.max(1), 2)? };
    let text: Vec<(&str, String)> = text.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    images::save_png(path, &img, &text)
}
