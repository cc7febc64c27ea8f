//! GGUF, our own reader and writer (candle's reader rejects the ternary types).
//!
//! ```text
//! "GGUF" | u32 version (2, 3) | u64 n_tensors | u64 n_kv
//! n_kv × (string key, u32 value type, value)
//! n_tensors × (string name, u32 n_dims, u64 ne[n_dims], u32 ggml type, u64 offset)
//! padding to general.alignment (default 32) | tensor data (offsets relative to here, aligned)
//! strings are u64 length + UTF-8 bytes; arrays are u32 element type + u64 count + elements
//! ```
//!
//! Files are untrusted: every length is checked against the bytes that remain before anything is
//! allocated, dimensions and offsets use checked arithmetic, and each tensor must lie inside the
//! file.

mod reader;
mod value;
mod writer;

pub use reader::{parse_header, GgufFile, GgufHeader, TensorInfo};
pub use value::{Value, ValueType};
pub use writer::{GgufWriter, TensorSpec};

/// The default `general.alignment`.
pub const DEFAULT_ALIGNMENT: usize = 32;
/// ggml's limit on tensor dimensions.
pub const MAX_DIMS: usize = 4;
