//! An in-window "Open…" browser for model files. A native dialog (rfd) needs a desktop
//! portal or GTK, which servers, CI and minimal desktops lack; this one needs only the
//! filesystem. It lists folders and model files (.safetensors; .pth shown too, so a user who
//! has one learns what to do with it), other files greyed out.

use std::path::{Path, PathBuf};

use eframe::egui;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub path: PathBuf,
    pub is_dir: bool,
}

impl Entry {
    /// A file the dialog can open (or explain).
    pub fn is_model(&self) -> bool {
        !self.is_dir && is_model_path(&self.path)
    }
}

pub fn is_model_path(p: &Path) -> bool {
    matches!(p.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref(), Some("safetensors" | "pth"))
}

pub struct FileDialog {
    pub visible: bool,
    /// The folder listed; kept between openings (the last folder used).
    pub dir: PathBuf,
    /// The editable path field.
    pub dir_field: String,
    pub entries: Vec<Entry>,
    pub selected: Option<PathBuf>,
    pub error: Option<String>,
}

impl FileDialog {
    pub fn new(start: PathBuf) -> FileDialog {
        let mut d =
            FileDialog { visible: false, dir: PathBuf::new(), dir_field: String::new(), entries: Vec::new(), selected: None, error: None };
        d.go(start);
        d
    }

    /// Shows the dialog at the last folder, re-listed (files may have appeared since).
    pub fn show_again(&mut self) {
        self.visible = true;
        let dir = self.dir.clone();
        self.go(dir);
    }

    /// Lists `dir`; on failure stays where it was and says why.
    pub fn go(&mut self, dir: PathBuf) {
        let dir = if dir.as_os_str().is_empty() { PathBuf::from(".") } else { dir };
        match list(&dir) {
            Ok(entries) => {
                // Kept as given (relative stays relative): the path on screen is the one typed.
                self.dir = dir;
                self.entries = entries;
                self.error = None;
                self.selected = None;
            }
            Err(e) => self.error = Some(format!("cannot list {}: {e}", dir.display())),
        }
        self.dir_field = self.dir.display().to_string();
    }

    /// Draws the dialog; returns the file chosen (double-click or Open).
    pub fn ui(&mut self, ctx: &egui::Context) -> Option<PathBuf> {
        if !self.visible {
            return None;
        }
        let mut picked = None;
        let mut go_to: Option<PathBuf> = None;
        let mut open = true;
        let mut cancel = false;
        egui::Window::new("Open a model")
            .open(&mut open)
            .collapsible(false)
            .default_size([520.0, 420.0])
            .anchor(egui::Align2::CENTER_TOP, [0.0, 60.0])
            .show(ctx, |ui| {
                ui.horizontal(|ui| {
                    if ui.button("Up").on_hover_text("the parent folder").clicked() {
                        match parent(&self.dir) {
                            Some(p) => go_to = Some(p),
                            None => self.error = Some(format!("{} has no parent folder", self.dir.display())),
                        }
                    }
                    let l = ui.label("Folder:");
                    let r = ui
                        .add(egui::TextEdit::singleline(&mut self.dir_field).desired_width(380.0).id_salt("dialog folder"))
                        .labelled_by(l.id);
                    if r.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter)) {
                        go_to = Some(PathBuf::from(self.dir_field.trim()));
                    }
                });
                if let Some(e) = &self.error {
                    ui.colored_label(egui::Color32::from_rgb(255, 160, 160), e);
                }
                ui.separator();
                egui::ScrollArea::vertical().max_height(300.0).auto_shrink([false, true]).show(ui, |ui| {
                    if self.entries.is_empty() {
                        ui.weak("(empty folder)");
                    }
                    for e in &self.entries {
                        if e.is_dir {
                            let r = ui.selectable_label(false, format!("{}/", e.name));
                            if r.clicked() || r.double_clicked() {
                                go_to = Some(e.path.clone());
                            }
                        } else if e.is_model() {
                            let chosen = self.selected.as_ref() == Some(&e.path);
                            let r = ui.selectable_label(chosen, e.name.as_str());
                            if r.clicked() {
                                self.selected = Some(e.path.clone());
                            }
                            if r.double_clicked() {
                                picked = Some(e.path.clone());
                            }
                        } else {
                            ui.add_enabled(false, egui::Label::new(e.name.as_str()));
                        }
                    }
                });
                ui.separator();
                ui.horizontal(|ui| {
                    let can = self.selected.is_some();
                    if ui.add_enabled(can, egui::Button::new("Open")).clicked() {
                        picked = self.selected.clone();
                    }
                    if ui.button("Cancel").clicked() {
                        cancel = true;
                    }
                    ui.weak("model files: .safetensors (.pth: import first)");
                });
            });
        if let Some(d) = go_to {
            self.go(d);
        }
        if picked.is_some() || cancel || !open {
            self.visible = false;
        }
        picked
    }
}

/// The folder above `dir`: lexically while the path names one ("a/b" → "a", "a" → "."),
/// through the real path for "." and "..".
fn parent(dir: &Path) -> Option<PathBuf> {
    match dir.parent() {
        Some(p) if dir.file_name().is_some() => Some(if p.as_os_str().is_empty() { PathBuf::from(".") } else { p.to_path_buf() }),
        _ => std::fs::canonicalize(dir).ok()?.parent().map(Path::to_path_buf),
    }
}

/// Folders first, then files, each by name; hidden entries left out.
fn list(dir: &Path) -> std::io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let Ok(e) = e else { continue };
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        // Follows links, so a linked folder is entered like a folder.
        let is_dir = e.path().is_dir();
        out.push(Entry { name, path: e.path(), is_dir });
    }
    out.sort_by(|a, b| b.is_dir.cmp(&a.is_dir).then_with(|| a.name.to_lowercase().cmp(&b.name.to_lowercase())));
    Ok(out)
}
