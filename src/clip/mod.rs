//! CLIP, the frozen text and image encoders RATLIP is built around: configuration, CLIP's own
//! tokenizer (the encoder's weights only mean something for its token ids), and the towers.

pub mod config;
pub mod init;
pub mod model;
pub mod preprocess;
pub mod tokenizer;
