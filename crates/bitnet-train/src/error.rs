//! The error type of `bitnet-train`.

use std::path::PathBuf;

/// Everything that can go wrong while preparing data, building a model or training one.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Candle(#[from] candle_core::Error),

    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },

    #[error("tokenizer: {0}")]
    Tokenizer(String),

    #[error("config {path}: {msg}")]
    Config { path: String, msg: String },

    #[error("data: {0}")]
    Data(String),

    #[error("checkpoint {path}: {msg}")]
    Checkpoint { path: PathBuf, msg: String },

    #[error("invalid argument: {0}")]
    Invalid(String),

    #[error(
        "preset needs about {need_gib:.1} GiB to train (weights, gradients, AdamW state and \
         activations) but only {avail_gib:.1} GiB of memory is available"
    )]
    OutOfMemory { need_gib: f64, avail_gib: f64 },

    #[error("training stopped: {0}")]
    Diverged(String),
}

pub type Result<T> = std::result::Result<T, TrainError>;

impl TrainError {
    /// An I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TrainError::Io { path: path.into(), source }
    }
}
