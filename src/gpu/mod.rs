//! The device layer: opening a GPU, pooling buffers, compiling and dispatching kernels.

mod context;
mod kernel;
mod pool;
mod queue;

pub use context::{Gpu, GpuOptions};
pub use kernel::{validate_wgsl, Kernel};
pub(crate) use pool::PooledBuffer;
pub use pool::Stats;
pub use queue::grid;
