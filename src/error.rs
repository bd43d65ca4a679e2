//! One error type for the whole engine. Every failure a user can cause or meet (no adapter,
//! out of memory, a lost device, a shape that does not fit) becomes a value with a message
//! that says what happened and, where there is one, what to do about it. Nothing panics.

use std::fmt;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "no GPU adapter found (backends tried: {backends}).\n\
         ratlip runs on any Vulkan, Metal or DX12 device, or on the CPU through Mesa's lavapipe.\n\
         On Debian/Ubuntu without a GPU: sudo apt-get install mesa-vulkan-drivers libvulkan1\n\
         On Fedora: sudo dnf install mesa-vulkan-drivers vulkan-loader\n\
         With an NVIDIA driver but no display stack (a headless server or container): its Vulkan\n\
         driver, libGLX_nvidia.so.0, also needs libglvnd: sudo apt-get install libvulkan1 libglvnd0\n\
         (VK_LOADER_DEBUG=error,warn shows why the loader rejected a driver)"
    )]
    NoAdapter { backends: String },

    #[error("no GPU adapter matches {wanted:?}; available adapters:\n{available}")]
    AdapterNotFound { wanted: String, available: String },

    #[error("could not open the GPU device {adapter:?}: {message}")]
    RequestDevice { adapter: String, message: String },

    #[error("out of GPU memory while allocating {bytes} bytes for {what}")]
    OutOfMemory { bytes: u64, what: String },

    #[error("the GPU device was lost: {0}")]
    DeviceLost(String),

    #[error("GPU error: {0}")]
    Gpu(String),

    #[error(
        "tensor {what} of shape {shape:?} needs a {bytes}-byte binding, larger than this \
         device's max_storage_buffer_binding_size ({limit} bytes); split the batch"
    )]
    BindingTooLarge { what: String, shape: Vec<usize>, bytes: u64, limit: u64 },

    #[error("shape error in {op}: {message}")]
    Shape { op: &'static str, message: String },

    #[error("{0}")]
    Other(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn shape(op: &'static str, message: impl fmt::Display) -> Self {
        Error::Shape { op, message: message.to_string() }
    }
}

/// `ensure_shape!(cond, "op", "format", args)` returns a shape error naming the op when the
/// condition fails; op wrappers check their operands with it at the boundary.
#[macro_export]
macro_rules! ensure_shape {
    ($cond:expr, $op:expr, $($fmt:tt)+) => {
        if !($cond) {
            return Err($crate::Error::shape($op, format!($($fmt)+)));
        }
    };
}
