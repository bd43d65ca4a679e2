//! What each CLI subcommand does; `main.rs` only parses arguments and reports errors.

pub mod clip;
pub mod dataset;
pub mod eval;
pub mod explore;
mod font;
pub mod model;
pub mod train;
pub mod train_clip;
