//! The real desktop app (`ratlip::app::App`) driven headless by egui_kittest on its wgpu
//! renderer (lavapipe here): the generator, the compute pass that writes the texture and
//! egui's drawing all share the harness's device, as in a window.
//!
//! Snapshots live in tests/snapshots/ (`UPDATE_SNAPSHOTS=1 cargo test --test app` rewrites
//! them). The tiny model's images are those of an untrained G: the snapshots check layout
//! and that pixels arrive, not beauty.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use egui::accesskit::Role;
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use ratlip::app::{App, AppOptions, Tab};
use ratlip::model::{Arch, Model, ModelConfig};
use ratlip::{Gpu, GpuOptions};

/// A file dropped on the window, as the winit integration reports one.
#[derive(Debug)]
struct Dropped(PathBuf);

impl egui::DroppedFile for Dropped {
    fn path(&self) -> &Path {
        &self.0
    }
    fn bytes(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.0).map_err(|e| e.to_string())
    }
}

fn tiny_model(dir: &Path) -> PathBuf {
    let gpu = Gpu::new(&GpuOptions::default()).unwrap();
    let m = Model::init(&gpu, ModelConfig::tiny(Arch::Ratlip), None, 7, false).unwrap();
    let path = dir.join("tiny.safetensors");
    m.save(&path).unwrap();
    path
}

fn tempdir(name: &str) -> PathBuf {
    // Relative to the package root (the tests' working directory) and fixed: the path is
    // on screen, and snapshots must not change from run to run or checkout to checkout.
    let d = PathBuf::from(format!("target/app-tests/{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn harness(options: AppOptions) -> Harness<'static, App> {
    Harness::builder()
        .with_size(egui::vec2(900.0, 700.0))
        .wgpu_setup(ratlip::app::wgpu_setup(None))
        .build_eframe(move |cc| App::new(cc, options))
}

fn options(model: Option<PathBuf>) -> AppOptions {
    AppOptions { model, search: vec![], adapter: None, run: None }
}

/// Steps frames until the worker has answered everything (or fails after two minutes).
fn settle(h: &mut Harness<'static, App>) -> u64 {
    let start = Instant::now();
    let mut frames = 0;
    loop {
        h.step();
        frames += 1;
        if !h.state().busy() && h.state().opening.is_none() {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "the app stayed busy for two minutes");
        std::thread::sleep(Duration::from_millis(5));
    }
    h.run_steps(2);
    frames
}

/// Timings differ from run to run; the snapshots show a fixed one.
fn snapshot(h: &mut Harness<'static, App>, name: &str) {
    let app = h.state_mut();
    let shown = [app.prompt.result.as_mut(), app.interp.strip.as_mut(), app.interp.frame.as_mut(), app.compare.result.as_mut().map(|x| &mut x.2)];
    for s in shown.into_iter().flatten() {
        s.ms_per_image = 100.0;
    }
    h.run_steps(2);
    h.snapshot(name);
}

fn opened(model: &Path) -> Harness<'static, App> {
    let mut h = harness(options(Some(model.to_path_buf())));
    settle(&mut h);
    assert!(h.state().errors.is_empty(), "{:?}", h.state().errors);
    assert!(h.state().model.is_some());
    h
}

#[test]
fn prompt_enter_generates_images_and_saves_a_png() {
    let dir = tempdir("prompt");
    let model = tiny_model(&dir);
    let mut h = opened(&model);
    assert_eq!(h.state().model.as_ref().unwrap().image_size, 24);

    h.get_by_label("Prompt:").focus();
    h.get_by_label("Prompt:").type_text("a small red bird");
    h.step();
    h.key_press(egui::Key::Enter);
    h.run_steps(2);
    assert!(h.state().busy(), "Enter should start a generation");
    settle(&mut h);
    let app = h.state();
    assert!(app.errors.is_empty(), "{:?}", app.errors);
    assert_eq!(app.prompt.text, "a small red bird");
    let r = app.prompt.result.as_ref().expect("images after Enter");
    assert_eq!((r.count, r.size), (4, 24));
    assert!(r.ms_per_image > 0.0);
    h.get_by_label_contains("ms per image");
    snapshot(&mut h, "app_prompt");

    // Save PNG: the file carries the prompt and seed like `ratlip generate` output.
    let out = dir.join("saved.png");
    h.state_mut().prompt.save_path = out.display().to_string();
    h.get_by_label("Save PNG").click();
    h.step();
    settle(&mut h);
    assert!(h.state().errors.is_empty(), "{:?}", h.state().errors);
    let text = ratlip::images::png_text(&out).unwrap();
    assert!(text.contains(&("prompt".to_string(), "a small red bird".to_string())), "{text:?}");
    assert!(text.contains(&("seed".to_string(), "0".to_string())), "{text:?}");
    let img = image::open(&out).unwrap();
    assert_eq!((img.width(), img.height()), (2 * 24 + 3 * 2, 2 * 24 + 3 * 2), "2×2 grid with 2 px gaps");

    // The screen shows the bytes the PNG holds: the compute pass that writes the texture
    // converts as images::from_chw does, and egui draws it unchanged (nearest filtering, so
    // the centre of each screen block is one texel).
    let png = image::open(&out).unwrap().to_rgb8();
    assert_screen_shows_png(&mut h, &png, 2, 24);
    assert!(png.pixels().any(|p| p.0 != [255, 255, 255]), "the image is not blank white");

    // Same seed, same prompt → the same images (locked seed); a new seed changes them.
    let before = h.state().prompt.result.as_ref().unwrap().ms_per_image;
    assert!(before > 0.0);
    h.state_mut().prompt.new_seed_each_time = true;
    h.get_by_label("Generate").click();
    h.step();
    settle(&mut h);
    assert!(h.state().prompt.result.is_some());
    std::fs::remove_dir_all(&dir).ok();
}

/// Each image on screen shows the texels of its tile in `png` (a saved grid with 2 px gaps):
/// the compute pass that writes the texture converts as images::from_chw does, and egui
/// draws it unchanged (nearest filtering, so the centre of each screen block is one texel).
fn assert_screen_shows_png(h: &mut Harness<'static, App>, png: &image::RgbImage, cols: usize, size: usize) {
    let screen = h.render().unwrap();
    let rects: Vec<egui::Rect> = h.get_all_by_role(Role::Image).map(|n| n.rect()).collect();
    let rows = (png.height() as usize - 2) / (size + 2);
    assert_eq!(rects.len(), cols * rows, "one image on screen per tile of the PNG");
    let ppp = h.ctx.pixels_per_point();
    let mut worst = 0i32;
    for (k, r) in rects.iter().enumerate() {
        let (gx, gy) = (2 + (k % cols) * (size + 2), 2 + (k / cols) * (size + 2));
        for (x, y) in [(0, 0), (5, 17), (12, 12), (23, 23), (20, 3)] {
            let sx = (r.min.x + (x as f32 + 0.5) * r.width() / size as f32) * ppp;
            let sy = (r.min.y + (y as f32 + 0.5) * r.height() / size as f32) * ppp;
            let on_screen = screen.get_pixel(sx as u32, sy as u32);
            let in_png = png.get_pixel((gx + x) as u32, (gy + y) as u32);
            for c in 0..3 {
                worst = worst.max((on_screen[c] as i32 - in_png[c] as i32).abs());
            }
        }
    }
    println!("screen vs PNG: largest difference {worst} levels over {} images", rects.len());
    // Measured 0 on lavapipe; one level of slack for sRGB framebuffer rounding elsewhere.
    assert!(worst <= 1, "screen and PNG differ by {worst} levels");
}

#[test]
fn tabs_slider_and_play() {
    let dir = tempdir("tabs");
    let model = tiny_model(&dir);
    let mut h = opened(&model);

    h.get_by_label("Interpolate").click();
    h.step();
    assert_eq!(h.state().tab, Tab::Interpolate);
    h.get_by_label("Make strip").click();
    h.step();
    settle(&mut h);
    let strip = h.state().interp.strip.as_ref().expect("a strip");
    assert_eq!(strip.count, 8);
    assert!(h.state().interp.frame.is_some(), "the frame at the slider is drawn too");

    // Moving the slider renders the frame at the new position.
    h.get_by_role(Role::Slider).set_value_accesskit(0.5);
    h.step();
    settle(&mut h);
    assert!((h.state().interp.t - 0.5).abs() < 1e-9, "t = {}", h.state().interp.t);
    assert!(h.state().errors.is_empty(), "{:?}", h.state().errors);
    snapshot(&mut h, "app_interpolate");

    // Play: the slider moves on its own and frames keep being generated without blocking
    // the UI. Count UI frames (each one rendered, as a window would) against images made.
    h.get_by_label("Play").click();
    h.step();
    assert!(h.state().interp.playing);
    let t0 = h.state().interp.t;
    let start = Instant::now();
    // First the UI's own passes (layout, polling, input: what runs on the UI thread), then
    // passes each drawn to pixels by wgpu on the device G shares.
    let (logic_fps, _, _) = play_for(&mut h, Duration::from_secs(2), false);
    let mut frames = 0u32;
    let mut images = 0u32;
    let mut last_ms = 0.0;
    let mut shown = h.state().interp.frame.as_ref().map(|f| f.ms_per_image);
    while start.elapsed() < Duration::from_secs(3) {
        h.step();
        h.render().unwrap();
        frames += 1;
        let now = h.state().interp.frame.as_ref().map(|f| f.ms_per_image);
        if now != shown {
            images += 1;
            shown = now;
            last_ms = now.unwrap_or(0.0);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "while playing: {logic_fps:.1} UI passes/s; {:.1} frames/s drawn by wgpu, {:.1} images/s, last {:.0} ms per image",
        frames as f64 / secs,
        images as f64 / secs,
        last_ms
    );
    assert!(h.state().interp.t != t0, "play moves the slider");
    assert!(images >= 1, "frames were generated while playing");
    assert!(frames as f64 > images as f64, "the UI drew more frames than G made images (it never waits on G)");
    h.get_by_label("Pause").click();
    settle(&mut h);

    // Two prompts instead of two seeds.
    h.get_by_label("two prompts (one seed)").click();
    h.step();
    settle(&mut h);
    assert!(h.state().errors.is_empty(), "{:?}", h.state().errors);

    h.get_by_label("Compare").click();
    h.step();
    assert_eq!(h.state().tab, Tab::Compare);
    std::fs::remove_dir_all(&dir).ok();
}

/// Steps the app for `time` while playing: (UI passes per second, images made, passes).
fn play_for(h: &mut Harness<'static, App>, time: Duration, render: bool) -> (f64, u32, u32) {
    let start = Instant::now();
    let (mut passes, mut images) = (0u32, 0u32);
    let mut shown = h.state().interp.frame.as_ref().map(|f| f.ms_per_image);
    while start.elapsed() < time {
        h.step();
        if render {
            h.render().unwrap();
        }
        passes += 1;
        let now = h.state().interp.frame.as_ref().map(|f| f.ms_per_image);
        if now != shown {
            images += 1;
            shown = now;
        }
    }
    (passes as f64 / start.elapsed().as_secs_f64(), images, passes)
}

#[test]
fn compare_grid_is_labelled() {
    let dir = tempdir("compare");
    let model = tiny_model(&dir);
    let mut h = opened(&model);
    h.state_mut().tab = Tab::Compare;
    h.step();
    h.state_mut().compare.prompts = "a small bird\na red flower".into();
    h.state_mut().compare.seeds = "3, 4, 5".into();
    h.get_all_by_label("Compare").last().unwrap().click();
    h.step();
    settle(&mut h);
    let (prompts, seeds, shown) = h.state().compare.result.as_ref().expect("a compare grid");
    assert_eq!(prompts.len(), 2);
    assert_eq!(seeds, &[3, 4, 5]);
    assert_eq!(shown.count, 6);
    h.get_by_label("seed 4");
    h.get_by_label("a red flower");
    snapshot(&mut h, "app_compare");
    // Six images are made in two passes of G (the worker's pieces) into one texture: the
    // screen and a saved PNG agree tile for tile.
    let out = dir.join("compare.png");
    h.state_mut().prompt.save_path = out.display().to_string();
    h.get_by_label("Save PNG").click();
    h.step();
    settle(&mut h);
    assert!(h.state().errors.is_empty(), "{:?}", h.state().errors);
    let png = image::open(&out).unwrap().to_rgb8();
    assert_eq!((png.width(), png.height()), (3 * 24 + 4 * 2, 2 * 24 + 3 * 2));
    assert_screen_shows_png(&mut h, &png, 3, 24);

    h.state_mut().compare.seeds = "3, x".into();
    h.get_all_by_label("Compare").last().unwrap().click();
    h.step();
    assert!(h.state().errors.iter().any(|e| e.contains("seeds must be whole numbers")), "{:?}", h.state().errors);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_bad_model_file_shows_an_error_in_the_window() {
    let dir = tempdir("bad");
    let bad = dir.join("bad.safetensors");
    std::fs::write(&bad, b"this is not a safetensors file").unwrap();
    let mut h = harness(options(Some(bad.clone())));
    settle(&mut h);
    let app = h.state();
    assert!(app.model.is_none());
    assert_eq!(app.errors.len(), 1, "{:?}", app.errors);
    assert!(app.errors[0].contains("could not open") && app.errors[0].contains("bad.safetensors"), "{}", app.errors[0]);
    h.get_by_label_contains("could not open");
    // Still usable: the no-model help stays on screen, and a missing file is another error.
    h.get_by_label("No model is open");
    snapshot(&mut h, "app_bad_model");
    h.state_mut().path_field = dir.join("missing.safetensors").display().to_string();
    h.get_by_label("Open").click();
    h.step();
    settle(&mut h);
    assert_eq!(h.state().errors.len(), 2, "{:?}", h.state().errors);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn no_model_screen_explains_how_to_get_one_and_opens_a_dropped_file() {
    let dir = tempdir("none");
    // The default search list, pointed at places that do not exist.
    let search = vec![dir.join("ratlip.safetensors"), dir.join("assets/default.safetensors")];
    let mut h = harness(AppOptions { model: None, search, adapter: None, run: None });
    h.run_steps(2);
    assert!(h.state().model.is_none());
    assert!(h.state().errors.is_empty(), "{:?}", h.state().errors);
    h.get_by_label("No model is open");
    h.get_by_label_contains(&format!("There is none at {}", dir.join("ratlip.safetensors").display()));
    h.get_by_label_contains("assets/default.safetensors in its source folder");
    h.get_by_label_contains("ratlip import --checkpoint");
    h.get_by_label("ratlip train --data DIR --out RUN");
    snapshot(&mut h, "app_no_model");

    let model = tiny_model(&dir);
    h.event(egui::Event::WindowFocused(true));
    h.input_mut().dropped_files.push(std::sync::Arc::new(Dropped(model.clone())));
    h.step();
    settle(&mut h);
    assert_eq!(h.state().model.as_ref().map(|m| m.path.clone()), Some(model));
    assert!(h.state().errors.is_empty(), "{:?}", h.state().errors);
    std::fs::remove_dir_all(&dir).ok();
}

/// While G works on a long job, egui's frames still reach the screen: the worker submits G's
/// pass in pieces and waits for each, so the renderer's submissions slot in between instead
/// of queueing behind the whole job (lavapipe runs one queue in order).
#[test]
fn frames_keep_being_drawn_while_generating() {
    let dir = tempdir("pace");
    let model = tiny_model(&dir);
    let mut h = opened(&model);
    h.state_mut().prompt.count = 64;
    // Once to build the pipelines and encode the prompt, so the timed job is G alone.
    h.state_mut().generate_prompt();
    settle(&mut h);
    // The frame rate with nothing generating, for comparison.
    let idle = Instant::now();
    let mut idle_frames = 0;
    while idle.elapsed() < Duration::from_secs(2) {
        h.step();
        h.render().unwrap();
        idle_frames += 1;
    }
    let idle_fps = idle_frames as f64 / idle.elapsed().as_secs_f64();
    let mut gaps = Vec::new();
    let mut frames = 0u32;
    h.state_mut().generate_prompt();
    let start = Instant::now();
    let mut last = start;
    while h.state().busy() {
        h.step();
        h.render().unwrap();
        frames += 1;
        gaps.push(last.elapsed().as_secs_f64());
        last = Instant::now();
        assert!(start.elapsed() < Duration::from_secs(120), "generation took over two minutes");
    }
    let secs = start.elapsed().as_secs_f64();
    let shown = h.state().prompt.result.as_ref().expect("images");
    assert_eq!(shown.count, 64);
    let worst = gaps.iter().cloned().fold(0.0, f64::max);
    let drawing_ms = shown.ms_per_image;
    // The same job with no frames drawn meanwhile: G's own cost, pieces and waits included.
    h.state_mut().generate_prompt();
    settle(&mut h);
    let alone_ms = h.state().prompt.result.as_ref().unwrap().ms_per_image;
    println!(
        "idle: {idle_fps:.1} frames/s; while generating 64 images: {frames} frames drawn in {secs:.2} s ({:.1} frames/s), longest gap {:.0} ms, {drawing_ms:.1} ms per image; {alone_ms:.1} ms per image with no frames drawn",
        frames as f64 / secs,
        worst * 1e3,
    );
    assert!(frames >= 4, "only {frames} frames were drawn while generating for {secs:.2} s");
    assert!(worst < secs / 3.0, "one frame waited {worst:.2} s of a {secs:.2} s job: the job was not split");
    std::fs::remove_dir_all(&dir).ok();
}

/// One metrics.jsonl line as `ratlip train` writes it, with made-up figures.
fn metrics_line(step: u64) -> String {
    let s = step as f64;
    serde_json::json!({
        "step": step, "loss_real": 0.9, "loss_mis": 0.4, "loss_fake": 0.7, "magp": 0.05 + 0.01 * (s * 0.7).sin(),
        "loss_d": 2.0 - 0.03 * s + 0.1 * (s * 1.3).sin(), "loss_g": 1.0 + 0.02 * s + 0.1 * (s * 0.9).cos(), "loss_g_adv": 0.5,
        "cos": 0.1 + 0.005 * s, "pixel": 0.4 - 0.004 * s, "grad_norm_d": 1.0, "grad_norm_g": 2.0, "magp_step": 0.0,
        "images_per_s": 4.0, "step_s": 2.0, "wall_s": 2.0 * s, "epoch": 0, "skipped_images": 0,
    })
    .to_string()
}

/// A sample grid PNG of one colour (so the screen can be checked for it).
fn sample_png(path: &Path, rgb: [u8; 3]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbImage::from_pixel(54, 54, image::Rgb(rgb)).save(path).unwrap();
}

/// The colour at the centre of the one image on screen.
fn shown_colour(h: &mut Harness<'static, App>) -> [u8; 3] {
    let rects: Vec<egui::Rect> = h.get_all_by_role(Role::Image).map(|n| n.rect()).collect();
    assert_eq!(rects.len(), 1, "one sample grid on screen");
    let ppp = h.ctx.pixels_per_point();
    let c = rects[0].center();
    let screen = h.render().unwrap();
    let p = screen.get_pixel((c.x * ppp) as u32, (c.y * ppp) as u32);
    [p[0], p[1], p[2]]
}

#[test]
fn run_tab_draws_a_run_and_follows_it() {
    let dir = tempdir("run");
    let config = serde_json::json!({"data": "data/synth", "steps": 40, "batch": 8, "model": {"arch": "ratlip", "image_size": 24}});
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let mut lines: String = (1..=10).map(|s| metrics_line(s) + "\n").collect();
    // The trainer is half-way through appending step 11.
    let next = metrics_line(11);
    let (head, rest) = next.split_at(next.len() / 2);
    lines += head;
    std::fs::write(dir.join("metrics.jsonl"), &lines).unwrap();
    sample_png(&dir.join("samples/step_000005.png"), [200, 30, 30]);
    sample_png(&dir.join("samples/step_000010.png"), [30, 160, 40]);
    // A complete checkpoint (model file and train state) and a newer incomplete one.
    std::fs::create_dir_all(dir.join("checkpoints")).unwrap();
    let ckpt = dir.join("checkpoints/step_000008.safetensors");
    std::fs::rename(tiny_model(&dir), &ckpt).unwrap();
    std::fs::write(dir.join("checkpoints/train_state_000008.safetensors"), b"state").unwrap();
    std::fs::write(dir.join("checkpoints/step_000010.safetensors"), b"being written").unwrap();

    let mut h = harness(AppOptions { run: Some(dir.clone()), ..options(None) });
    h.run_steps(2);
    assert_eq!(h.state().tab, Tab::Run, "--run opens the Run tab");
    let run = h.state().run.as_ref().expect("a run");
    assert!(run.problems.is_empty(), "{:?}", run.problems);
    assert_eq!(run.points.len(), 10, "the half-written line is not read yet");
    assert_eq!(run.bad_lines, 0);
    assert_eq!(run.sample_step, Some(10), "the newest sample grid");
    h.get_by_label_contains("step 10 of 40");
    h.get_by_label_contains("4.0 images/s");
    h.get_by_label_contains("about 1m 00s left");
    h.get_by_label("D loss");
    h.get_by_label("MA-GP");
    h.get_by_label_contains("Samples at step 10");
    assert_eq!(shown_colour(&mut h), [30, 160, 40], "the step 10 grid is on screen");
    h.snapshot("app_run");

    // The run goes on: the rest of step 11, steps 12..=20 and a new grid.
    let more: String = std::iter::once(rest.to_string() + "\n").chain((12..=20).map(|s| metrics_line(s) + "\n")).collect();
    std::fs::OpenOptions::new().append(true).open(dir.join("metrics.jsonl")).unwrap().write_all(more.as_bytes()).unwrap();
    sample_png(&dir.join("samples/step_000020.png"), [40, 60, 220]);
    std::thread::sleep(ratlip::app::run_view::REFRESH + Duration::from_millis(100));
    h.run_steps(2);
    let run = h.state().run.as_ref().unwrap();
    assert_eq!(run.points.len(), 20, "steps 11..=20 were read");
    assert_eq!(run.points[10].step, 11.0);
    assert_eq!(run.sample_step, Some(20));
    h.get_by_label_contains("step 20 of 40");
    assert_eq!(shown_colour(&mut h), [40, 60, 220], "the step 20 grid replaced the old one");

    // Smoothing is an exponential moving average over the steps, drawn without trouble.
    let smoothed = ratlip::app::run_view::smooth(&[(1.0, 0.0), (2.0, 1.0), (3.0, 1.0)], 0.5);
    assert_eq!(smoothed, [(1.0, 0.0), (2.0, 0.5), (3.0, 0.75)]);
    h.state_mut().run.as_mut().unwrap().smoothing = 0.9;
    h.run_steps(2);

    // A resumed run rewrites metrics.jsonl shorter: read again from the start.
    std::fs::write(dir.join("metrics.jsonl"), (1..=3).map(|s| metrics_line(s) + "\n").collect::<String>()).unwrap();
    h.get_by_label("Refresh").click();
    h.run_steps(2);
    assert_eq!(h.state().run.as_ref().unwrap().points.len(), 3);

    // Its newest complete checkpoint opens in the Prompt tab.
    h.get_by_label("Load latest checkpoint (step 8)").click();
    h.step();
    settle(&mut h);
    assert!(h.state().errors.is_empty(), "{:?}", h.state().errors);
    assert_eq!(h.state().tab, Tab::Prompt);
    assert_eq!(h.state().model.as_ref().map(|m| m.path.clone()), Some(ckpt));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_bad_run_folder_shows_messages() {
    let dir = tempdir("badrun");
    std::fs::write(dir.join("metrics.jsonl"), "not json\n{\"step\": 1, \"loss_d\": 0.5}\n{\"loss_d\": 1}\n{\"ste").unwrap();
    std::fs::create_dir_all(dir.join("samples")).unwrap();
    std::fs::write(dir.join("samples/step_000001.png"), b"not a png").unwrap();
    let mut h = harness(options(None));
    h.run_steps(2);
    // A folder dropped on the window opens as a run.
    h.event(egui::Event::WindowFocused(true));
    h.input_mut().dropped_files.push(std::sync::Arc::new(Dropped(dir.clone())));
    h.run_steps(2);
    assert_eq!(h.state().tab, Tab::Run);
    let run = h.state().run.as_ref().expect("a run");
    assert_eq!(run.points.len(), 1);
    assert_eq!(run.bad_lines, 2, "the line that is not JSON and the one without a step");
    assert!(run.problems.iter().any(|p| p.contains("no config.json")), "{:?}", run.problems);
    assert!(run.problems.iter().any(|p| p.contains("step_000001.png")), "{:?}", run.problems);
    assert_eq!(run.sample_step, None);
    h.get_by_label_contains("step 1");
    h.get_by_label_contains("are not step records");

    // A folder that is not there, and one that holds no run.
    h.state_mut().run_field = dir.join("missing").display().to_string();
    h.get_by_label("Show run").click();
    h.run_steps(2);
    assert!(h.state().run.as_ref().unwrap().problems.iter().any(|p| p.contains("is not a folder")));
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    h.state_mut().run_field = empty.display().to_string();
    h.get_by_label("Show run").click();
    h.run_steps(2);
    h.get_by_label_contains("does not look like a training run");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn open_dialog_browses_to_a_model() {
    let dir = tempdir("dialog");
    let model = tiny_model(&dir);
    std::fs::create_dir_all(dir.join("runs")).unwrap();
    std::fs::write(dir.join("notes.txt"), "not a model").unwrap();
    std::fs::write(dir.join("released.pth"), "a pickle").unwrap();
    let mut h = harness(options(None));
    h.run_steps(2);
    h.get_by_label("Open…").click();
    // A window appears on the frame after its first (sizing) one.
    h.run_steps(2);
    assert!(h.state().dialog.visible);

    // Type a folder, go into a listed one, up and back in.
    h.state_mut().dialog.dir_field = "target/app-tests".into();
    h.get_by_label("Folder:").focus();
    h.step();
    h.key_press(egui::Key::Enter);
    h.run_steps(2);
    assert!(h.state().dialog.error.is_none(), "{:?}", h.state().dialog.error);
    assert_eq!(h.state().dialog.dir, PathBuf::from("target/app-tests"));
    h.get_by_label("dialog/").click();
    h.run_steps(2);
    assert_eq!(h.state().dialog.dir, dir);
    h.get_by_label("Up").click();
    h.run_steps(2);
    assert_eq!(h.state().dialog.dir, PathBuf::from("target/app-tests"));
    h.get_by_label("dialog/").click();
    h.run_steps(2);
    let names: Vec<(String, bool)> = h.state().dialog.entries.iter().map(|e| (e.name.clone(), e.is_model())).collect();
    assert_eq!(
        names,
        [("runs".into(), false), ("notes.txt".into(), false), ("released.pth".into(), true), ("tiny.safetensors".into(), true)]
    );
    h.get_by_label("tiny.safetensors").click();
    h.step();
    assert_eq!(h.state().dialog.selected.as_ref(), Some(&model));
    h.run_steps(2);
    h.snapshot("app_open_dialog");

    h.get_all_by_label("Open").last().unwrap().click();
    h.step();
    settle(&mut h);
    assert!(!h.state().dialog.visible);
    assert!(h.state().errors.is_empty(), "{:?}", h.state().errors);
    assert_eq!(h.state().model.as_ref().map(|m| m.path.clone()), Some(model.clone()));
    h.get_by_label("Generate").click();
    h.step();
    settle(&mut h);
    assert_eq!(h.state().prompt.result.as_ref().map(|r| r.count), Some(4), "images from the model opened");

    // The dialog remembers its folder; a .pth gets told how to import it.
    h.get_by_label("Open…").click();
    h.run_steps(2);
    assert_eq!(h.state().dialog.dir, dir);
    // Double-click picks a file (the clock moved on from the clicks before, which would
    // otherwise make this a triple click).
    h.input_mut().time = Some(1000.0);
    h.get_by_label("released.pth").click();
    h.get_by_label("released.pth").click();
    h.step();
    assert!(!h.state().dialog.visible, "a double-click picks the file and closes the dialog");
    settle(&mut h);
    assert!(h.state().errors.iter().any(|e| e.contains("ratlip import --checkpoint")), "{:?}", h.state().errors);
    assert_eq!(h.state().model.as_ref().map(|m| m.path.clone()), Some(model), "the open model stays");
    std::fs::remove_dir_all(&dir).ok();
}
