//! CLIP on the engine: configuration, weights, text and image encoders, and the mapper.

pub mod config;
