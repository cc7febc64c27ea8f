//! The error type of `bitnet-infer`: every variant names what was being read and the numbers.

use bitnet_core::CoreError;

/// Errors raised while loading model files, running the engine, tokenizing or sampling.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },

    #[error("not a GGUF file: magic {magic:?} (expected \"GGUF\")")]
    BadMagic { magic: [u8; 4] },

    #[error("GGUF version {version} is not supported (2 and 3 are)")]
    UnsupportedVersion { version: u32 },

    #[error("GGUF file truncated: {what} needs {need} bytes at offset {offset}, file has {len}")]
    Truncated { what: String, offset: usize, need: usize, len: usize },

    #[error("GGUF: {0}")]
    BadGguf(String),

    #[error("safetensors: {0}")]
    BadSafetensors(String),

    #[error("config: {0}")]
    BadConfig(String),

    #[error("missing tensor {name}")]
    MissingTensor { name: String },

    #[error("tensor {name}: shape {got:?}, expected {expected:?}")]
    TensorShape { name: String, expected: Vec<usize>, got: Vec<usize> },

    #[error("tensor {name}: type {ty} is not supported here")]
    UnsupportedTensorType { name: String, ty: String },

    #[error("missing metadata key {key}")]
    MissingKey { key: String },

    #[error("metadata key {key}: {msg}")]
    BadKey { key: String, msg: String },

    #[error("unknown architecture {0:?} (supported: llama, bitnet, bitnet-b1.58, BitNetForCausalLM, LlamaForCausalLM)")]
    UnknownArch(String),

    #[error("token id {id} is outside the vocabulary of {vocab} tokens")]
    TokenOutOfRange { id: u32, vocab: usize },

    #[error("the prompt is empty")]
    EmptyPrompt,

    #[error("{tokens} tokens do not fit the context of {ctx}")]
    ContextFull { tokens: usize, ctx: usize },

    #[error("tokenizer: {0}")]
    Tokenizer(String),

    #[error("chat template: {0}")]
    Template(String),

    #[error("sampling: {0}")]
    Sampling(String),

    #[error("{what}: {source}")]
    Core { what: String, source: CoreError },
}

impl InferError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        InferError::Io { path: path.display().to_string(), source }
    }

    /// Wraps a core error with what was being done; `what` becomes a `String` only on error, so
    /// the success path allocates nothing.
    pub(crate) fn core(what: impl Into<String>) -> impl FnOnce(CoreError) -> Self {
        move |source| InferError::Core { what: what.into(), source }
    }

    /// [`InferError::core`] with the context built only on error.
    pub(crate) fn core_with(what: impl FnOnce() -> String) -> impl FnOnce(CoreError) -> Self {
        move |source| InferError::Core { what: what(), source }
    }
}

/// Result alias for `bitnet-infer`.
pub type Result<T> = std::result::Result<T, InferError>;
