//! The error type of `bitnet-core`: every variant names the operation and carries the numbers.

/// Errors raised by quantizers, format codecs and kernels.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CoreError {
    #[error("{what}: length {len} is not a multiple of {multiple}")]
    LengthNotMultiple { what: &'static str, len: usize, multiple: usize },

    #[error("{name}: shape mismatch, expected {expected} got {got}")]
    ShapeMismatch { name: &'static str, expected: usize, got: usize },

    #[error("{what}: buffer of {got} bytes is too small, need {need}")]
    BufferTooSmall { what: &'static str, need: usize, got: usize },

    #[error("{what}: data is not aligned to {align} bytes")]
    Misaligned { what: &'static str, align: usize },

    #[error("{what}: invalid 2-bit ternary code 3 at weight {index}")]
    InvalidCode { what: &'static str, index: usize },

    #[error("unsupported ggml tensor type id {id}")]
    UnknownTypeId { id: u32 },

    #[error("instruction set {isa} is not available on this CPU")]
    IsaUnavailable { isa: &'static str },

    #[error("{0} is not supported")]
    Unsupported(String),

    #[error("thread pool: {0}")]
    ThreadPool(String),
}

/// Result alias for `bitnet-core`.
pub type Result<T> = std::result::Result<T, CoreError>;
