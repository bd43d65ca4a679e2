//! `ratlip app`: the desktop app. Tabs Prompt (text → images), Interpolate (a walk between
//! two seeds or two prompts, with a slider and play button) and Compare (prompts × seeds on
//! identical noise), and Run (a training run's curves and samples, refreshed while it goes).
//! Models open from the path field, the in-window "Open…" browser ([`file_dialog`]) or a
//! file dropped on the window; a dropped folder opens as a run ([`run_view`]).
//!
//! Generation runs on a worker thread ([`worker`]) that shares eframe's wgpu device, so
//! the generator, the conversion to an RGBA texture ([`texture`]) and egui's drawing all
//! stay on one device: images reach the screen without a CPU round trip. The UI only sends
//! jobs and polls replies each frame (repainting while a job is out).

pub mod file_dialog;
pub mod run_view;
mod texture;
mod worker;

use std::path::PathBuf;
use std::time::Instant;

use eframe::egui;
use eframe::egui_wgpu;

use crate::Gpu;
pub use file_dialog::FileDialog;
pub use run_view::RunView;
pub use worker::{Item, NoiseId};
use worker::{Job, ModelSummary, Rendered, Reply, Worker};

/// Where `ratlip app` and `ratlip generate` look for a model when none is given.
pub const DEFAULT_MODEL_PATHS: [&str; 2] = ["ratlip.safetensors", "assets/default.safetensors"];

/// How the app starts.
#[derive(Clone, Debug)]
pub struct AppOptions {
    /// A model to open at once (`--model`).
    pub model: Option<PathBuf>,
    /// Where to look when `model` is None, first found wins.
    pub search: Vec<PathBuf>,
    /// Case-insensitive substring of the adapter's name (`--adapter`, `RATLIP_ADAPTER`).
    pub adapter: Option<String>,
    /// A training run folder to show at once, in the Run tab (`--run`).
    pub run: Option<PathBuf>,
}

impl Default for AppOptions {
    fn default() -> Self {
        AppOptions { model: None, search: DEFAULT_MODEL_PATHS.iter().map(PathBuf::from).collect(), adapter: None, run: None }
    }
}

/// Runs the app in a window until it is closed.
pub fn run(options: AppOptions) -> Result<(), String> {
    let native = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default().with_inner_size([1100.0, 800.0]).with_title("ratlip"),
        wgpu_options: egui_wgpu::WgpuConfiguration { wgpu_setup: wgpu_setup(options.adapter.as_deref()), ..Default::default() },
        ..Default::default()
    };
    eframe::run_native("ratlip", native, Box::new(move |cc| Ok(Box::new(App::new(cc, options)))))
        .map_err(|e| format!("could not open the window: {e}"))
}

/// eframe's device, opened as the engine opens its own: the adapter's limits (egui asks
/// for wgpu's defaults, which cap a buffer at 256 MiB, too small for CLIP and G) and the
/// optional features the kernels use. GL is left out: our compute shaders need Vulkan,
/// Metal or DX12.
pub fn wgpu_setup(adapter: Option<&str>) -> egui_wgpu::WgpuSetup {
    let mut setup = egui_wgpu::WgpuSetupCreateNew::without_display_handle();
    setup.instance_descriptor.backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::PRIMARY);
    let wanted = adapter.map(str::to_string).or_else(|| std::env::var("RATLIP_ADAPTER").ok());
    if let Some(name) = wanted {
        let needle = name.to_lowercase();
        setup.native_adapter_selector = Some(std::sync::Arc::new(move |adapters, _surface| {
            adapters.iter().find(|a| a.get_info().name.to_lowercase().contains(&needle)).cloned().ok_or_else(|| {
                let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
                format!("no GPU adapter matches {name:?}; available: {}", names.join(", "))
            })
        }));
    }
    setup.device_descriptor = std::sync::Arc::new(|adapter| {
        let wanted = wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP;
        let mut limits = adapter.limits();
        // egui sizes depth buffers for 4k+ screens with this; never ask for less than it does.
        limits.max_texture_dimension_2d = limits.max_texture_dimension_2d.max(8192.min(adapter.limits().max_texture_dimension_2d));
        wgpu::DeviceDescriptor {
            label: Some("ratlip app"),
            required_features: adapter.features() & wanted,
            required_limits: limits,
            ..Default::default()
        }
    });
    egui_wgpu::WgpuSetup::CreateNew(setup)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tab {
    Prompt,
    Interpolate,
    Compare,
    Run,
}

/// What a finished job is drawn as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Prompt,
    Strip,
    Frame,
    Compare,
}

/// A generated result on screen.
pub struct Shown {
    texture: egui::TextureId,
    // Kept alive while egui draws from it.
    _wgpu_texture: wgpu::Texture,
    atlas_cols: usize,
    atlas_rows: usize,
    pub count: usize,
    pub size: usize,
    pub ms_per_image: f64,
    /// G's float output, in the pieces it was made in.
    images: Vec<crate::Tensor>,
    /// PNG text chunks for "Save PNG".
    meta: Vec<(String, String)>,
}

impl Shown {
    fn uv(&self, k: usize) -> egui::Rect {
        let (c, r) = ((k % self.atlas_cols) as f32, (k / self.atlas_cols) as f32);
        let (w, h) = (self.atlas_cols as f32, self.atlas_rows as f32);
        egui::Rect::from_min_max(egui::pos2(c / w, r / h), egui::pos2((c + 1.0) / w, (r + 1.0) / h))
    }

    fn image(&self, k: usize, side: f32) -> egui::Image<'static> {
        egui::Image::new(egui::load::SizedTexture::new(self.texture, egui::vec2(side, side)))
            .uv(self.uv(k))
            .fit_to_exact_size(egui::vec2(side, side))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Walk {
    Seeds,
    Prompts,
}

pub struct PromptTab {
    pub text: String,
    pub seed: u64,
    /// Off: every Generate draws a new seed.
    pub new_seed_each_time: bool,
    pub count: usize,
    pub save_path: String,
    pub result: Option<Shown>,
}

pub struct InterpolateTab {
    pub walk: Walk,
    pub prompt_a: String,
    pub prompt_b: String,
    pub seed_a: u64,
    pub seed_b: u64,
    pub steps: usize,
    pub t: f64,
    pub playing: bool,
    /// The slider position of the frame on screen and of the one being made.
    shown_t: Option<f64>,
    wanted_t: Option<f64>,
    pub strip: Option<Shown>,
    pub frame: Option<Shown>,
}

pub struct CompareTab {
    pub prompts: String,
    pub seeds: String,
    pub result: Option<(Vec<String>, Vec<u64>, Shown)>,
}

pub struct App {
    worker: Option<Worker>,
    render_state: Option<egui_wgpu::RenderState>,
    pub model: Option<ModelSummaryView>,
    pub opening: Option<PathBuf>,
    pub path_field: String,
    /// The latest errors, newest last; shown in the window until dismissed.
    pub errors: Vec<String>,
    pub notice: Option<String>,
    pub tab: Tab,
    pub prompt: PromptTab,
    pub interp: InterpolateTab,
    pub compare: CompareTab,
    next_id: u64,
    /// Job id → where its result goes; a stale id (superseded) is dropped.
    pending: Vec<(u64, Target, Vec<(String, String)>)>,
    pending_compare_labels: Option<(Vec<String>, Vec<u64>)>,
    seed_source: crate::rng::Rng,
    play_clock: Option<Instant>,
    /// Where a model was looked for (none was named).
    searched: Vec<PathBuf>,
    /// The "Open…" browser; remembers its folder between openings.
    pub dialog: FileDialog,
    /// The training run in the Run tab.
    pub run: Option<RunView>,
    pub run_field: String,
    egui_ctx: egui::Context,
}

/// What the UI knows of the open model.
#[derive(Clone, Debug)]
pub struct ModelSummaryView {
    pub path: PathBuf,
    pub arch: String,
    pub image_size: usize,
}

impl App {
    pub fn new(cc: &eframe::CreationContext<'_>, options: AppOptions) -> App {
        let mut app = App {
            worker: None,
            render_state: cc.wgpu_render_state.clone(),
            model: None,
            opening: None,
            path_field: String::new(),
            errors: Vec::new(),
            notice: None,
            tab: Tab::Prompt,
            prompt: PromptTab {
                text: String::new(),
                seed: 0,
                new_seed_each_time: false,
                count: 4,
                save_path: "ratlip.png".into(),
                result: None,
            },
            interp: InterpolateTab {
                walk: Walk::Seeds,
                prompt_a: "a small bird with a red head".into(),
                prompt_b: "a yellow flower".into(),
                seed_a: 0,
                seed_b: 1,
                steps: 8,
                t: 0.0,
                playing: false,
                shown_t: None,
                wanted_t: None,
                strip: None,
                frame: None,
            },
            compare: CompareTab { prompts: "a small bird\na red flower".into(), seeds: "0, 1, 2".into(), result: None },
            next_id: 0,
            pending: Vec::new(),
            pending_compare_labels: None,
            seed_source: crate::rng::Rng::new(
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1),
            ),
            play_clock: None,
            searched: if options.model.is_none() { options.search.clone() } else { Vec::new() },
            dialog: FileDialog::new(PathBuf::from(".")),
            run: None,
            run_field: String::new(),
            egui_ctx: cc.egui_ctx.clone(),
        };
        match &cc.wgpu_render_state {
            Some(rs) => {
                let gpu = Gpu::from_device(rs.device.clone(), rs.queue.clone(), rs.adapter.get_info());
                let ctx = cc.egui_ctx.clone();
                match Worker::spawn(gpu, move || ctx.request_repaint()) {
                    Ok(w) => app.worker = Some(w),
                    Err(e) => app.errors.push(e),
                }
            }
            None => app.errors.push(
                "this window has no wgpu renderer, so nothing can be generated (ratlip's app needs eframe's wgpu backend)".into(),
            ),
        }
        let found = options.model.clone().or_else(|| options.search.iter().find(|p| p.is_file()).cloned());
        match found {
            Some(p) => app.open(p),
            None => {}
        }
        if let Some(dir) = options.run.clone() {
            app.open_run(dir);
        }
        app
    }

    /// Shows the training run in `dir` in the Run tab (problems with it are shown there).
    pub fn open_run(&mut self, dir: PathBuf) {
        self.run_field = dir.display().to_string();
        self.run = Some(RunView::open(&self.egui_ctx, dir));
        self.tab = Tab::Run;
    }

    pub fn busy(&self) -> bool {
        self.worker.as_ref().is_some_and(Worker::busy)
    }

    /// Asks the worker to open a model file (the answer arrives in a later frame).
    pub fn open(&mut self, path: PathBuf) {
        self.path_field = path.display().to_string();
        if path.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("pth")) {
            // A PyTorch pickle needs the CLIP it was trained with to become a model file.
            self.errors.push(format!(
                "{} is a PyTorch checkpoint: convert it first with `ratlip import --checkpoint {} --clip ViT-B-32/ -o ratlip.safetensors`, then open the .safetensors file",
                path.display(),
                path.display()
            ));
            return;
        }
        self.opening = Some(path.clone());
        self.send(Job::Open(path));
    }

    fn send(&mut self, job: Job) {
        match self.worker.as_mut() {
            Some(w) => {
                if let Err(e) = w.send(job) {
                    self.errors.push(e);
                }
            }
            None => self.errors.push("nothing can run: no GPU device (see the message above)".into()),
        }
    }

    fn render(&mut self, target: Target, prompts: Vec<String>, items: Vec<Item>, cols: usize, meta: Vec<(String, String)>) {
        if self.model.is_none() {
            self.errors.push("open a model first".into());
            return;
        }
        self.next_id += 1;
        let id = self.next_id;
        // A newer request for the same place supersedes the older one's result.
        self.pending.retain(|(_, t, _)| *t != target);
        self.pending.push((id, target, meta));
        self.send(Job::Render { id, prompts, items, cols });
    }

    pub fn generate_prompt(&mut self) {
        if self.prompt.new_seed_each_time {
            self.prompt.seed = self.seed_source.next_u64() % 1_000_000;
        }
        let (seed, k) = (self.prompt.seed, self.prompt.count.max(1));
        let items = (0..k as u64).map(|i| Item::single(0, NoiseId { seed, stream: i })).collect();
        let meta = vec![("prompt".into(), self.prompt.text.clone()), ("seed".into(), seed.to_string()), ("count".into(), k.to_string())];
        let cols = (k as f64).sqrt().ceil() as usize;
        self.render(Target::Prompt, vec![self.prompt.text.clone()], items, cols, meta);
    }

    fn interp_item(&self, t: f64) -> (Vec<String>, Item, Vec<(String, String)>) {
        let i = &self.interp;
        match i.walk {
            Walk::Seeds => {
                let (a, b) = (NoiseId { seed: i.seed_a, stream: 0 }, NoiseId { seed: i.seed_b, stream: 0 });
                let item = Item { prompt_a: 0, prompt_b: 0, tp: 0.0, noise_a: a, noise_b: b, tz: t };
                let meta = vec![
                    ("prompt".into(), i.prompt_a.clone()),
                    ("seeds".into(), format!("{},{}", i.seed_a, i.seed_b)),
                    ("interpolation".into(), "slerp between the seeds' noises".into()),
                ];
                (vec![i.prompt_a.clone()], item, meta)
            }
            Walk::Prompts => {
                let n = NoiseId { seed: i.seed_a, stream: 0 };
                let item = Item { prompt_a: 0, prompt_b: 1, tp: t, noise_a: n, noise_b: n, tz: 0.0 };
                let meta = vec![
                    ("prompt".into(), i.prompt_a.clone()),
                    ("prompt_end".into(), i.prompt_b.clone()),
                    ("seed".into(), i.seed_a.to_string()),
                    ("interpolation".into(), "linear between the prompts' sentence embeddings".into()),
                ];
                (vec![i.prompt_a.clone(), i.prompt_b.clone()], item, meta)
            }
        }
    }

    pub fn generate_strip(&mut self) {
        let n = self.interp.steps.max(2);
        let mut prompts = Vec::new();
        let mut items = Vec::new();
        let mut meta = Vec::new();
        for s in 0..n {
            let (p, it, m) = self.interp_item(s as f64 / (n - 1) as f64);
            (prompts, meta) = (p, m);
            items.push(it);
        }
        meta.push(("steps".into(), n.to_string()));
        self.render(Target::Strip, prompts, items, n, meta);
        self.interp.shown_t = None;
        self.request_frame();
    }

    /// Renders the frame at the slider, unless one is already being made (then the latest
    /// position is made next: a slider dragged faster than G runs skips positions rather
    /// than queueing them).
    fn request_frame(&mut self) {
        let in_flight = self.pending.iter().any(|(_, t, _)| *t == Target::Frame);
        if in_flight {
            self.interp.wanted_t = Some(self.interp.t);
            return;
        }
        let t = self.interp.t;
        let (p, it, mut m) = self.interp_item(t);
        m.push(("t".into(), format!("{t:.3}")));
        self.interp.wanted_t = None;
        self.interp.shown_t = Some(t);
        self.render(Target::Frame, p, vec![it], 1, m);
    }

    pub fn generate_compare(&mut self) {
        let prompts: Vec<String> = self.compare.prompts.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
        let seeds: Result<Vec<u64>, _> =
            self.compare.seeds.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::parse::<u64>).collect();
        let seeds = match seeds {
            Ok(s) if !s.is_empty() => s,
            Ok(_) => return self.errors.push("give at least one seed, e.g. 0, 1, 2".into()),
            Err(e) => return self.errors.push(format!("seeds must be whole numbers separated by commas: {e}")),
        };
        if prompts.is_empty() {
            return self.errors.push("give at least one prompt, one per line".into());
        }
        let items = prompts
            .iter()
            .enumerate()
            .flat_map(|(p, _)| seeds.iter().map(move |&s| Item::single(p, NoiseId { seed: s, stream: 0 })))
            .collect();
        let meta = vec![
            ("prompts".into(), prompts.join(" | ")),
            ("seeds".into(), seeds.iter().map(u64::to_string).collect::<Vec<_>>().join(",")),
            ("layout".into(), "rows: prompts, columns: seeds (identical noise down each column)".into()),
        ];
        let cols = seeds.len();
        self.pending_compare_labels = Some((prompts.clone(), seeds));
        self.render(Target::Compare, prompts, items, cols, meta);
    }
}

impl App {
    /// Takes the worker's answers: models opened, images made, files saved, failures.
    fn poll(&mut self) {
        while let Some(reply) = self.worker.as_mut().and_then(Worker::try_recv) {
            match reply {
                Reply::Opened(ModelSummary { path, arch, image_size, .. }) => {
                    self.notice = Some(format!("opened {} ({arch}, {image_size}x{image_size})", path.display()));
                    self.model = Some(ModelSummaryView { path, arch, image_size });
                    self.opening = None;
                    // Results of the previous model would be mislabelled now.
                    self.prompt.result = None;
                    self.interp.strip = None;
                    self.interp.frame = None;
                    self.compare.result = None;
                }
                Reply::Rendered(r) => self.place(*r),
                Reply::Saved(p) => self.notice = Some(format!("saved {}", p.display())),
                Reply::Failed { id, message } => {
                    if let Some(id) = id {
                        self.pending.retain(|(i, _, _)| *i != id);
                    } else if self.opening.take().is_some() && self.model.is_none() {
                        self.path_field.clear();
                    }
                    self.errors.push(message);
                    self.interp.playing = false;
                }
            }
        }
    }

    fn place(&mut self, r: Rendered) {
        let Some(pos) = self.pending.iter().position(|(id, _, _)| *id == r.id) else {
            return; // superseded
        };
        let (_, target, mut meta) = self.pending.remove(pos);
        for p in &r.truncated {
            self.errors.push(format!("the prompt {p:?} is longer than CLIP's 77 tokens and was cut"));
        }
        let Some(rs) = &self.render_state else { return };
        let view = r.atlas.texture.create_view(&Default::default());
        let texture = rs.renderer.write().register_native_texture(&rs.device, &view, wgpu::FilterMode::Nearest);
        if let Some(m) = &self.model {
            meta.push(("model".into(), m.path.display().to_string()));
            meta.push(("arch".into(), m.arch.clone()));
        }
        meta.push(("Software".into(), format!("ratlip {}", env!("CARGO_PKG_VERSION"))));
        let shown = Shown {
            texture,
            _wgpu_texture: r.atlas.texture,
            atlas_cols: r.atlas.cols,
            atlas_rows: r.atlas.rows,
            count: r.atlas.count,
            size: r.atlas.size,
            ms_per_image: r.ms_per_image,
            images: r.images,
            meta,
        };
        let old = match target {
            Target::Prompt => self.prompt.result.replace(shown),
            Target::Strip => self.interp.strip.replace(shown),
            Target::Frame => self.interp.frame.replace(shown),
            Target::Compare => match self.pending_compare_labels.take() {
                Some((p, s)) => self.compare.result.replace((p, s, shown)).map(|x| x.2),
                None => None,
            },
        };
        if let Some(old) = old {
            rs.renderer.write().free_texture(&old.texture);
        }
        if target == Target::Frame && self.interp.wanted_t.is_some() {
            self.request_frame();
        }
    }

    fn save(&mut self, which: Target) {
        let shown = match which {
            Target::Prompt => self.prompt.result.as_ref(),
            Target::Strip => self.interp.strip.as_ref(),
            Target::Frame => self.interp.frame.as_ref(),
            Target::Compare => self.compare.result.as_ref().map(|x| &x.2),
        };
        let Some(s) = shown else { return };
        let path = PathBuf::from(self.prompt.save_path.trim());
        if path.as_os_str().is_empty() {
            return self.errors.push("give a file name to save to".into());
        }
        let job = Job::Save { images: s.images.clone(), cols: s.atlas_cols, path, text: s.meta.clone() };
        self.send(job);
    }

    fn top(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            ui.heading("ratlip");
            match (&self.model, &self.opening) {
                (_, Some(p)) => {
                    ui.spinner();
                    ui.label(format!("opening {}...", p.display()));
                }
                (Some(m), None) => {
                    ui.label(format!("model: {} ({}, {}x{})", m.path.display(), m.arch, m.image_size, m.image_size));
                }
                (None, None) => {
                    ui.label("no model open");
                }
            }
        });
        ui.horizontal(|ui| {
            let l = ui.label("Model file:");
            let field = ui.add(egui::TextEdit::singleline(&mut self.path_field).desired_width(360.0).hint_text("path/to/model.safetensors").id_salt("model path")).labelled_by(l.id);
            let enter = field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
            let open_clicked = ui.button("Open").clicked();
            if ui.button("Open…").on_hover_text("browse for a model file").clicked() {
                self.dialog.show_again();
            }
            if open_clicked || enter {
                let p = self.path_field.trim().to_string();
                if p.is_empty() {
                    self.errors.push("type the path of a model file (.safetensors) first".into());
                } else {
                    self.open(PathBuf::from(p));
                }
            }
            ui.label("(or drop a file on the window)");
        });
        if !self.errors.is_empty() {
            let mut clear = false;
            egui::Frame::new().fill(egui::Color32::from_rgb(90, 20, 20)).inner_margin(6.0).show(ui, |ui| {
                for e in self.errors.iter().rev().take(3) {
                    ui.colored_label(egui::Color32::from_rgb(255, 200, 200), format!("Error: {e}"));
                }
                clear = ui.button("Dismiss").clicked();
            });
            if clear {
                self.errors.clear();
            }
        } else if let Some(n) = &self.notice {
            ui.label(n);
        }
    }

    fn no_model(&mut self, ui: &mut egui::Ui) {
        ui.add_space(20.0);
        ui.heading("No model is open");
        let looked: Vec<String> = self.searched.iter().map(|p| p.display().to_string()).collect();
        ui.label(if looked.is_empty() {
            "No model file was given.".to_string()
        } else {
            format!("There is none at {}.", looked.join(" or "))
        });
        ui.label(
            "ratlip ships a small model of cartoon faces as assets/default.safetensors in its source folder: \
             start the app from that folder, or open that file.",
        );
        ui.add_space(8.0);
        ui.label("Other models:");
        ui.monospace("ratlip import --checkpoint state_epoch_1480.pth --clip ViT-B-32/ -o ratlip.safetensors");
        ui.label("converts the authors' released GALIP/RATLIP checkpoint (with the CLIP it was trained with);");
        ui.monospace("ratlip train --data DIR --out RUN");
        ui.label("trains one on a folder of captioned images; open a checkpoint from RUN/checkpoints/;");
        ui.monospace("ratlip model new --arch ratlip --size tiny -o tiny.safetensors");
        ui.label("makes an untrained toy model, to try the app (its images are noise-like).");
        ui.add_space(8.0);
        ui.label("Then type its path above and press Open, browse with Open…, drop the file on this window, or start with `ratlip app --model FILE`.");
        ui.label("The Run tab shows a training run's curves and samples while it goes (`ratlip app --run RUN`, or drop its folder here).");
    }

    fn status_line(&self, ui: &mut egui::Ui, shown: Option<&Shown>) {
        ui.horizontal(|ui| {
            if self.busy() {
                ui.spinner();
                ui.label("generating...");
            }
            if let Some(s) = shown {
                ui.label(format!("{:.0} ms per image ({} images of {}x{})", s.ms_per_image, s.count, s.size, s.size));
            }
        });
    }

    fn prompt_tab(&mut self, ui: &mut egui::Ui) {
        let mut go = false;
        ui.horizontal(|ui| {
            let label = ui.label("Prompt:");
            let r = ui.add(
                egui::TextEdit::singleline(&mut self.prompt.text)
                    .hint_text("a small bird with a red head (press Enter)")
                    .desired_width(480.0)
                    .id_salt("prompt"),
            ).labelled_by(label.id);
            go |= r.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
            go |= ui.button("Generate").clicked();
        });
        ui.horizontal(|ui| {
            let l = ui.label("Seed:");
            ui.add(egui::DragValue::new(&mut self.prompt.seed).range(0..=u32::MAX as u64)).labelled_by(l.id);
            ui.checkbox(&mut self.prompt.new_seed_each_time, "new seed each time");
            let l = ui.label("Count:");
            ui.add(egui::DragValue::new(&mut self.prompt.count).range(1..=64)).labelled_by(l.id);
        });
        if go {
            self.generate_prompt();
        }
        self.status_line(ui, self.prompt.result.as_ref());
        if self.prompt.result.is_some() {
            self.save_row(ui, Target::Prompt);
        }
        if let Some(s) = &self.prompt.result {
            let side = image_side(ui, s.atlas_cols, s.size);
            egui::Grid::new("prompt images").spacing([4.0, 4.0]).show(ui, |ui| {
                for k in 0..s.count {
                    ui.add(s.image(k, side));
                    if (k + 1) % s.atlas_cols == 0 {
                        ui.end_row();
                    }
                }
            });
        }
    }

    fn save_row(&mut self, ui: &mut egui::Ui, which: Target) {
        ui.horizontal(|ui| {
            let l = ui.label("Save as:");
            ui.add(egui::TextEdit::singleline(&mut self.prompt.save_path).desired_width(260.0).id_salt("save path")).labelled_by(l.id);
            if ui.button("Save PNG").clicked() {
                self.save(which);
            }
        });
    }

    fn interpolate_tab(&mut self, ui: &mut egui::Ui) {
        let before = (self.interp.walk, self.interp.prompt_a.clone(), self.interp.prompt_b.clone(), self.interp.seed_a, self.interp.seed_b);
        ui.horizontal(|ui| {
            ui.label("Between:");
            ui.radio_value(&mut self.interp.walk, Walk::Seeds, "two seeds (one prompt)");
            ui.radio_value(&mut self.interp.walk, Walk::Prompts, "two prompts (one seed)");
        });
        ui.horizontal(|ui| {
            let l = ui.label(if self.interp.walk == Walk::Seeds { "Prompt:" } else { "From prompt:" });
            ui.add(egui::TextEdit::singleline(&mut self.interp.prompt_a).desired_width(300.0).id_salt("interp a")).labelled_by(l.id);
            if self.interp.walk == Walk::Prompts {
                let l = ui.label("to prompt:");
                ui.add(egui::TextEdit::singleline(&mut self.interp.prompt_b).desired_width(300.0).id_salt("interp b")).labelled_by(l.id);
            }
        });
        ui.horizontal(|ui| {
            let l = ui.label(if self.interp.walk == Walk::Seeds { "From seed:" } else { "Seed:" });
            ui.add(egui::DragValue::new(&mut self.interp.seed_a).range(0..=u32::MAX as u64)).labelled_by(l.id);
            if self.interp.walk == Walk::Seeds {
                let l = ui.label("to seed:");
                ui.add(egui::DragValue::new(&mut self.interp.seed_b).range(0..=u32::MAX as u64)).labelled_by(l.id);
            }
            let l = ui.label("Steps:");
            ui.add(egui::DragValue::new(&mut self.interp.steps).range(2..=16)).labelled_by(l.id);
            if ui.button("Make strip").clicked() {
                self.generate_strip();
            }
        });
        let changed = before != (self.interp.walk, self.interp.prompt_a.clone(), self.interp.prompt_b.clone(), self.interp.seed_a, self.interp.seed_b);
        let mut moved = false;
        ui.horizontal(|ui| {
            let play = if self.interp.playing { "Pause" } else { "Play" };
            if ui.button(play).clicked() {
                self.interp.playing = !self.interp.playing;
                self.play_clock = None;
            }
            moved = ui.add(egui::Slider::new(&mut self.interp.t, 0.0..=1.0).text("t").fixed_decimals(2)).changed();
        });
        if self.interp.playing {
            // One walk there and back every 4 s, whatever the frame rate.
            let now = Instant::now();
            let dt = self.play_clock.map_or(0.0, |c| now.duration_since(c).as_secs_f64());
            self.play_clock = Some(now);
            let phase = (self.interp.t + dt / 4.0 * 2.0) % 2.0;
            self.interp.t = phase.min(1.0);
            if phase > 1.0 {
                self.interp.t = 2.0 - phase;
            }
            moved = true;
            ui.ctx().request_repaint();
        }
        let out_of_date = self.interp.shown_t != Some(self.interp.t) || changed;
        if self.model.is_some() && (moved || changed) && out_of_date {
            self.request_frame();
        }
        self.status_line(ui, self.interp.frame.as_ref().or(self.interp.strip.as_ref()));
        if let Some(f) = &self.interp.frame {
            ui.add(f.image(0, 192.0));
        }
        if self.interp.strip.is_some() {
            self.save_row(ui, Target::Strip);
        }
        if let Some(s) = &self.interp.strip {
            let side = image_side(ui, s.count, s.size);
            ui.horizontal(|ui| {
                for k in 0..s.count {
                    ui.add(s.image(k, side));
                }
            });
        }
    }

    fn compare_tab(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            ui.vertical(|ui| {
                let l = ui.label("Prompts (one per line):");
                ui.add(egui::TextEdit::multiline(&mut self.compare.prompts).desired_rows(3).desired_width(360.0).id_salt("compare prompts"))
                    .labelled_by(l.id);
            });
            ui.vertical(|ui| {
                let l = ui.label("Seeds (same noise down each column):");
                ui.add(egui::TextEdit::singleline(&mut self.compare.seeds).desired_width(160.0).id_salt("compare seeds")).labelled_by(l.id);
                if ui.button("Compare").clicked() {
                    self.generate_compare();
                }
            });
        });
        self.status_line(ui, self.compare.result.as_ref().map(|x| &x.2));
        if self.compare.result.is_some() {
            self.save_row(ui, Target::Compare);
        }
        if let Some((prompts, seeds, s)) = &self.compare.result {
            let side = image_side(ui, seeds.len() + 2, s.size);
            egui::Grid::new("compare grid").spacing([4.0, 4.0]).show(ui, |ui| {
                ui.label("");
                for seed in seeds {
                    ui.label(format!("seed {seed}"));
                }
                ui.end_row();
                for (r, p) in prompts.iter().enumerate() {
                    ui.add(egui::Label::new(p.as_str()).wrap());
                    for c in 0..seeds.len() {
                        ui.add(s.image(r * seeds.len() + c, side));
                    }
                    ui.end_row();
                }
            });
        }
    }
}

impl App {
    fn run_tab(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            let l = ui.label("Run folder:");
            let r = ui
                .add(egui::TextEdit::singleline(&mut self.run_field).desired_width(360.0).hint_text("RUN_DIR of `ratlip train --out`").id_salt("run path"))
                .labelled_by(l.id);
            let enter = r.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
            if ui.button("Show run").clicked() || enter {
                let p = self.run_field.trim().to_string();
                if p.is_empty() {
                    self.errors.push("type the folder of a training run (what `ratlip train --out` names) first".into());
                } else {
                    self.open_run(PathBuf::from(p));
                }
            }
        });
        let Some(run) = self.run.as_mut() else {
            ui.add_space(12.0);
            ui.label("No run open. A run folder is what `ratlip train --data DIR --out RUN` writes: its loss curves and sample grids are shown here and refresh while it trains.");
            ui.label("Type its path above, drop the folder on this window, or start with `ratlip app --run RUN`.");
            return;
        };
        run.tick(ui.ctx());
        match run.ui(ui) {
            run_view::RunAction::None => {}
            run_view::RunAction::OpenModel(p) => {
                self.open(p);
                self.tab = Tab::Prompt;
            }
        }
    }
}

/// Display side of one image: fills the width with `cols` images, shown at least at their
/// own size and at most 192 points.
fn image_side(ui: &egui::Ui, cols: usize, size: usize) -> f32 {
    let gap = ui.spacing().item_spacing.x.max(4.0);
    let fit = (ui.available_width() - gap * cols as f32) / cols.max(1) as f32;
    fit.clamp(size.min(64) as f32, 192.0)
}

impl eframe::App for App {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.poll();
        let dropped: Vec<PathBuf> = ui.ctx().input(|i| i.raw.dropped_files.iter().map(|f| f.path().to_path_buf()).collect());
        if let Some(p) = dropped.into_iter().next() {
            if p.is_dir() {
                self.open_run(p);
            } else {
                self.open(p);
            }
        }
        egui::CentralPanel::default_margins().show(ui, |ui| {
            self.top(ui);
            ui.separator();
            ui.horizontal(|ui| {
                ui.selectable_value(&mut self.tab, Tab::Prompt, "Prompt");
                ui.selectable_value(&mut self.tab, Tab::Interpolate, "Interpolate");
                ui.selectable_value(&mut self.tab, Tab::Compare, "Compare");
                ui.selectable_value(&mut self.tab, Tab::Run, "Run");
            });
            ui.separator();
            if self.model.is_none() && self.tab != Tab::Run {
                if self.opening.is_none() {
                    self.no_model(ui);
                }
                return;
            }
            egui::ScrollArea::vertical().show(ui, |ui| match self.tab {
                Tab::Prompt => self.prompt_tab(ui),
                Tab::Interpolate => self.interpolate_tab(ui),
                Tab::Compare => self.compare_tab(ui),
                Tab::Run => self.run_tab(ui),
            });
        });
        if let Some(p) = self.dialog.ui(ui.ctx()) {
            self.open(p);
        }
        if self.busy() {
            ui.ctx().request_repaint();
        }
    }
}

