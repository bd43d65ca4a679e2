//! The Run tab: a training run folder as `ratlip train` writes it (see `crate::train::run`),
//! watched while the run goes on. metrics.jsonl is read incrementally from the byte offset
//! of the last complete line, so a run of a million steps costs one read of the new tail per
//! refresh, and a line the trainer is half-way through writing is left for the next one.
//! Nothing here may panic on a bad folder: every problem becomes a line in `problems`.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use eframe::egui;

/// How often the folder is looked at again.
pub const REFRESH: Duration = Duration::from_secs(1);

/// One metrics.jsonl line, the figures the tab draws (absent keys are NaN).
#[derive(Clone, Copy, Debug)]
pub struct Point {
    pub step: f64,
    pub loss_d: f64,
    pub loss_g: f64,
    pub cos: f64,
    pub magp: f64,
    /// mean |fake − its real image| (runs from before it was logged: NaN, not drawn).
    pub pixel: f64,
    /// mean |G(z₁) − G(z₂)| / mean |z₁ − z₂| (only runs that reward diversity log it).
    pub diversity: f64,
    pub images_per_s: f64,
    pub step_s: f64,
    pub wall_s: f64,
}

impl Point {
    fn parse(line: &str) -> Option<Point> {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        let f = |k: &str| v.get(k).and_then(serde_json::Value::as_f64).unwrap_or(f64::NAN);
        let step = v.get("step")?.as_f64()?;
        Some(Point {
            step,
            loss_d: f("loss_d"),
            loss_g: f("loss_g"),
            cos: f("cos"),
            magp: f("magp"),
            pixel: f("pixel"),
            diversity: f("diversity"),
            images_per_s: f("images_per_s"),
            step_s: f("step_s"),
            wall_s: f("wall_s"),
        })
    }
}

/// What config.json says, as far as the tab needs it (any of it may be missing).
#[derive(Clone, Debug, Default)]
pub struct RunSummary {
    pub steps: Option<u64>,
    pub batch: Option<u64>,
    pub arch: Option<String>,
    pub image_size: Option<u64>,
    pub data: Option<String>,
}

pub struct RunView {
    pub dir: PathBuf,
    pub summary: RunSummary,
    pub points: Vec<Point>,
    /// Bytes of metrics.jsonl consumed: always the end of a complete line.
    offset: u64,
    /// Lines that were complete but not a metrics object.
    pub bad_lines: usize,
    /// The newest sample grid on screen: its step and texture.
    pub sample_step: Option<u64>,
    sample: Option<egui::TextureHandle>,
    pub sample_size: [usize; 2],
    /// The newest complete checkpoint (model file), if any.
    pub checkpoint: Option<(u64, PathBuf)>,
    /// What is wrong with the folder right now (recomputed on every refresh).
    pub problems: Vec<String>,
    pub smoothing: f64,
    last_refresh: Option<Instant>,
    /// When metrics.jsonl last grew.
    last_growth: Option<Instant>,
}

impl RunView {
    /// Opens `dir` as a run and reads what is there (never fails: problems are shown).
    pub fn open(ctx: &egui::Context, dir: PathBuf) -> RunView {
        let mut v = RunView {
            dir,
            summary: RunSummary::default(),
            points: Vec::new(),
            offset: 0,
            bad_lines: 0,
            sample_step: None,
            sample: None,
            sample_size: [0, 0],
            checkpoint: None,
            problems: Vec::new(),
            smoothing: 0.0,
            last_refresh: None,
            last_growth: None,
        };
        v.refresh(ctx);
        v
    }

    /// Re-reads the folder if a second has passed since the last look.
    pub fn tick(&mut self, ctx: &egui::Context) {
        if self.last_refresh.is_none_or(|t| t.elapsed() >= REFRESH) {
            self.refresh(ctx);
        }
        ctx.request_repaint_after(REFRESH);
    }

    /// Reads the new tail of metrics.jsonl, the config and the newest sample and checkpoint.
    pub fn refresh(&mut self, ctx: &egui::Context) {
        self.last_refresh = Some(Instant::now());
        self.problems.clear();
        if !self.dir.is_dir() {
            self.problems.push(format!("{} is not a folder", self.dir.display()));
            return;
        }
        self.read_config();
        self.read_metrics();
        self.read_sample(ctx);
        self.checkpoint = crate::train::run::checkpoint_steps(&self.dir)
            .last()
            .map(|&s| (s, self.dir.join("checkpoints").join(format!("step_{s:06}.safetensors"))));
        if self.summary.steps.is_none() && self.points.is_empty() && self.sample_step.is_none() {
            self.problems.push(format!(
                "{} does not look like a training run (no config.json, metrics.jsonl or samples/); `ratlip train --out DIR` makes one",
                self.dir.display()
            ));
        }
    }

    fn read_config(&mut self) {
        let path = self.dir.join("config.json");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.problems.push("no config.json: the total number of steps (for the ETA) is unknown".into());
                return;
            }
            Err(e) => return self.problems.push(format!("config.json: {e}")),
        };
        let v: serde_json::Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => return self.problems.push(format!("config.json is not valid JSON: {e}")),
        };
        let model = &v["model"];
        self.summary = RunSummary {
            steps: v["steps"].as_u64(),
            batch: v["batch"].as_u64(),
            arch: model["arch"].as_str().map(String::from),
            image_size: model["image_size"].as_u64(),
            data: v["data"].as_str().map(String::from),
        };
    }

    fn read_metrics(&mut self) {
        let path = self.dir.join("metrics.jsonl");
        let mut f = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.problems.push("no metrics.jsonl yet (the run has not finished a step)".into());
                return;
            }
            Err(e) => return self.problems.push(format!("metrics.jsonl: {e}")),
        };
        let len = match f.metadata() {
            Ok(m) => m.len(),
            Err(e) => return self.problems.push(format!("metrics.jsonl: {e}")),
        };
        if len < self.offset {
            // Shorter than what was read: the file was rewritten (a resume trims the steps
            // after its checkpoint), so start over.
            self.points.clear();
            self.offset = 0;
            self.bad_lines = 0;
        }
        if len == self.offset {
            return;
        }
        let mut tail = Vec::new();
        if let Err(e) = f.seek(SeekFrom::Start(self.offset)).and_then(|_| f.read_to_end(&mut tail)) {
            return self.problems.push(format!("metrics.jsonl: {e}"));
        }
        // Only complete lines: the trainer may be in the middle of appending one.
        let Some(end) = tail.iter().rposition(|&b| b == b'\n') else { return };
        for line in tail[..end].split(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(line);
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            match Point::parse(line) {
                Some(p) => {
                    // A resumed run appends steps again from its checkpoint: keep the newest.
                    while self.points.last().is_some_and(|q| q.step >= p.step) {
                        self.points.pop();
                    }
                    self.points.push(p);
                }
                None => self.bad_lines += 1,
            }
        }
        self.offset += end as u64 + 1;
        self.last_growth = Some(Instant::now());
    }

    fn read_sample(&mut self, ctx: &egui::Context) {
        let Some((step, path)) = newest_sample(&self.dir) else {
            if !self.dir.join("samples").is_dir() {
                self.problems.push("no samples/ folder yet".into());
            }
            return;
        };
        if self.sample_step == Some(step) {
            return;
        }
        // A PNG is written atomically (renamed into place), so one that fails to decode is
        // broken, not half-written; keep showing the previous grid.
        match image::open(&path) {
            Ok(img) => {
                let rgba = img.to_rgba8();
                let size = [rgba.width() as usize, rgba.height() as usize];
                let color = egui::ColorImage::from_rgba_unmultiplied(size, rgba.as_raw());
                self.sample = Some(ctx.load_texture("run sample", color, egui::TextureOptions::NEAREST));
                self.sample_size = size;
                self.sample_step = Some(step);
            }
            Err(e) => self.problems.push(format!("{}: {e}", path.display())),
        }
    }

    /// Step, speed and time-left figures, for the status line.
    pub fn status(&self) -> String {
        let Some(last) = self.points.last() else { return "no steps logged yet".into() };
        let mut s = match self.summary.steps {
            Some(n) => format!("step {} of {n}", last.step),
            None => format!("step {}", last.step),
        };
        let recent: Vec<&Point> = self.points.iter().rev().take(20).collect();
        let mean = |f: fn(&Point) -> f64| {
            let v: Vec<f64> = recent.iter().map(|p| f(p)).filter(|x| x.is_finite()).collect();
            (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
        };
        if let Some(ips) = mean(|p| p.images_per_s) {
            s += &format!(" · {ips:.1} images/s");
        }
        if let Some(sps) = mean(|p| p.step_s) {
            s += &format!(" · {sps:.2} s/step");
            if let Some(n) = self.summary.steps {
                let left = (n as f64 - last.step).max(0.0);
                s += &if left == 0.0 { " · finished".to_string() } else { format!(" · about {} left", duration(left * sps)) };
            }
        }
        if last.wall_s.is_finite() {
            s += &format!(" · trained {}", duration(last.wall_s));
        }
        s
    }

    /// Seconds since metrics.jsonl last grew (None before it has).
    pub fn quiet_for(&self) -> Option<f64> {
        self.last_growth.map(|t| t.elapsed().as_secs_f64())
    }

    pub fn ui(&mut self, ui: &mut egui::Ui) -> RunAction {
        let mut action = RunAction::None;
        ui.horizontal(|ui| {
            ui.label(format!("Run: {}", self.dir.display()));
            if ui.button("Refresh").clicked() {
                self.refresh(ui.ctx());
            }
            if let Some((step, path)) = &self.checkpoint {
                if ui.button(format!("Load latest checkpoint (step {step})")).clicked() {
                    action = RunAction::OpenModel(path.clone());
                }
            }
        });
        let s = &self.summary;
        let mut about = Vec::new();
        if let Some(a) = &s.arch {
            about.push(format!("arch {a}"));
        }
        if let Some(i) = s.image_size {
            about.push(format!("{i}x{i}"));
        }
        if let Some(b) = s.batch {
            about.push(format!("batch {b}"));
        }
        if let Some(d) = &s.data {
            about.push(format!("data {d}"));
        }
        if !about.is_empty() {
            ui.label(about.join(" · "));
        }
        ui.label(self.status());
        for p in &self.problems {
            ui.colored_label(egui::Color32::from_rgb(230, 170, 60), p);
        }
        if self.bad_lines > 0 {
            ui.colored_label(
                egui::Color32::from_rgb(230, 170, 60),
                format!("{} line(s) of metrics.jsonl are not step records and were skipped", self.bad_lines),
            );
        }
        ui.horizontal(|ui| {
            let l = ui.label("Smoothing:");
            ui.add(egui::Slider::new(&mut self.smoothing, 0.0..=0.99).fixed_decimals(2)).labelled_by(l.id);
        });
        // Curves on the left, the newest sample grid on the right.
        let sample_w = match self.sample_step {
            Some(_) => (ui.available_width() * 0.4).min(self.sample_size[0] as f32 * 3.0),
            None => 0.0,
        };
        ui.horizontal_top(|ui| {
            ui.vertical(|ui| {
                let w = (ui.available_width() - sample_w - 16.0).max(240.0);
                let size = egui::vec2(w, 150.0);
                if self.points.is_empty() {
                    return;
                }
                let pick = |f: fn(&Point) -> f64| -> Vec<(f64, f64)> {
                    self.points.iter().map(|p| (p.step, f(p))).filter(|(_, y)| y.is_finite()).collect()
                };
                let a = self.smoothing;
                plot(ui, "Losses", size, &[
                    ("D loss", egui::Color32::from_rgb(230, 90, 80), smooth(&pick(|p| p.loss_d), a)),
                    ("G loss", egui::Color32::from_rgb(90, 160, 240), smooth(&pick(|p| p.loss_g), a)),
                ]);
                plot(ui, "Text match and penalty", size, &[
                    ("cos (image, text)", egui::Color32::from_rgb(110, 200, 110), smooth(&pick(|p| p.cos), a)),
                    ("MA-GP", egui::Color32::from_rgb(220, 180, 60), smooth(&pick(|p| p.magp), a)),
                    ("L1 to its real image", egui::Color32::from_rgb(180, 120, 220), smooth(&pick(|p| p.pixel), a)),
                    ("change per unit of noise", egui::Color32::from_rgb(90, 200, 210), smooth(&pick(|p| p.diversity), a)),
                ]);
            });
            if let (Some(t), Some(step)) = (&self.sample, self.sample_step) {
                ui.vertical(|ui| {
                    ui.label(format!("Samples at step {step}:"));
                    let [w, h] = self.sample_size;
                    // Whole multiples when enlarging, so pixels stay square blocks.
                    let mut scale = sample_w / w as f32;
                    if scale >= 1.0 {
                        scale = scale.floor();
                    }
                    let size = egui::vec2(w as f32 * scale, h as f32 * scale);
                    ui.add(egui::Image::new(egui::load::SizedTexture::new(t.id(), size)).fit_to_exact_size(size));
                    ui.weak("fixed noise and captions");
                });
            }
        });
        action
    }
}

pub enum RunAction {
    None,
    OpenModel(PathBuf),
}

/// samples/step_NNNNNN.png with the largest step.
fn newest_sample(dir: &Path) -> Option<(u64, PathBuf)> {
    let rd = std::fs::read_dir(dir.join("samples")).ok()?;
    rd.filter_map(|e| e.ok())
        .filter_map(|e| {
            let n = e.file_name().to_str()?.strip_prefix("step_")?.strip_suffix(".png")?.parse::<u64>().ok()?;
            Some((n, e.path()))
        })
        .max_by_key(|(n, _)| *n)
}

fn duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
    }
}

/// Exponential moving average (TensorBoard's smoothing): `a` = 0 leaves the data as is.
pub fn smooth(points: &[(f64, f64)], a: f64) -> Vec<(f64, f64)> {
    let mut acc: Option<f64> = None;
    points
        .iter()
        .map(|&(x, y)| {
            let v = acc.map_or(y, |m| a * m + (1.0 - a) * y);
            acc = Some(v);
            (x, v)
        })
        .collect()
}

/// A line plot with a step axis, the y range at the left and a legend, drawn with egui's
/// painter. Long series are thinned to about one point per pixel.
fn plot(ui: &mut egui::Ui, title: &str, size: egui::Vec2, series: &[(&str, egui::Color32, Vec<(f64, f64)>)]) {
    let visuals = ui.visuals().clone();
    let text = visuals.text_color();
    let font = egui::FontId::proportional(11.0);
    ui.horizontal(|ui| {
        ui.label(egui::RichText::new(title).strong());
        // A series the run never logged (an older run's `pixel`) gets no legend entry.
        for (name, color, _) in series.iter().filter(|s| !s.2.is_empty()) {
            let (swatch, _) = ui.allocate_exact_size(egui::vec2(18.0, 3.0), egui::Sense::hover());
            ui.painter().rect_filled(swatch, 0.0, *color);
            ui.label(*name);
        }
    });
    let (rect, _) = ui.allocate_exact_size(size, egui::Sense::hover());
    let painter = ui.painter_at(rect);
    painter.rect_filled(rect, 2.0, visuals.extreme_bg_color);
    let all = series.iter().flat_map(|s| s.2.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in all {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if x0 > x1 {
        return;
    }
    if x1 - x0 < 1.0 {
        x1 = x0 + 1.0;
    }
    if y1 - y0 < 1e-9 {
        (y0, y1) = (y0 - 0.5, y1 + 0.5);
    }
    let pad = (y1 - y0) * 0.05;
    (y0, y1) = (y0 - pad, y1 + pad);
    let left = 52.0;
    let bottom = 16.0;
    let area = egui::Rect::from_min_max(rect.min + egui::vec2(left, 4.0), rect.max - egui::vec2(6.0, bottom));
    let to_screen = |x: f64, y: f64| {
        egui::pos2(
            area.min.x + ((x - x0) / (x1 - x0)) as f32 * area.width(),
            area.max.y - ((y - y0) / (y1 - y0)) as f32 * area.height(),
        )
    };
    let grid = egui::Stroke::new(1.0, visuals.widgets.noninteractive.bg_stroke.color);
    for k in 0..=4 {
        let y = y0 + (y1 - y0) * k as f64 / 4.0;
        let p = to_screen(x0, y);
        painter.line_segment([egui::pos2(area.min.x, p.y), egui::pos2(area.max.x, p.y)], grid);
        painter.text(egui::pos2(area.min.x - 4.0, p.y), egui::Align2::RIGHT_CENTER, format!("{y:.3}"), font.clone(), text);
    }
    for k in 0..=4 {
        let x = x0 + (x1 - x0) * k as f64 / 4.0;
        let p = to_screen(x, y0);
        let align = match k {
            0 => egui::Align2::LEFT_TOP,
            4 => egui::Align2::RIGHT_TOP,
            _ => egui::Align2::CENTER_TOP,
        };
        painter.text(egui::pos2(p.x, area.max.y + 2.0), align, format!("{}", x.round()), font.clone(), text);
    }
    let per_pixel = 1.0_f64.max(series.iter().map(|s| s.2.len()).max().unwrap_or(0) as f64 / area.width() as f64);
    for (_, color, pts) in series {
        let step = per_pixel.ceil() as usize;
        let mut line: Vec<egui::Pos2> = pts.iter().step_by(step).map(|&(x, y)| to_screen(x, y)).collect();
        if let Some(&(x, y)) = pts.last() {
            if (pts.len() - 1) % step != 0 {
                line.push(to_screen(x, y));
            }
        }
        if line.len() == 1 {
            painter.circle_filled(line[0], 2.5, *color);
        } else {
            painter.line(line, egui::Stroke::new(1.5, *color));
        }
    }
}
