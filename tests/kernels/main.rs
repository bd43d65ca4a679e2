//! GPU kernel tests: every kernel's forward against its CPU reference on random shapes (odd
//! sizes included) and its backward against central finite differences. One test binary, so
//! one link and one device for all of them. These run on lavapipe in CI; without an adapter
//! they fail, they never skip.

mod common;

mod attention;
mod autograd;
mod conv2d;
mod elementwise;
mod embedding;
mod engine;
mod loss;
mod lstm;
mod matmul;
mod norm;
mod reduce;
mod shape;
mod shaders;
