//! Training data: the synthetic captioned datasets ratlip generates for itself.

pub mod synth;
