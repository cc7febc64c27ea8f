//! `bitnet-infer`: the packed inference engine of bitnet-rs. Model files (GGUF and Hugging Face
//! safetensors, memory-mapped), the weights/state split, one top-down forward pass over the
//! [`bitnet_core::kernels`], the KV cache, sampling, tokenizers and chat templates, perplexity and
//! benchmarks. It never depends on candle.

pub mod atomic;
pub mod bench;
pub mod chat;
pub mod convert;
pub mod engine;
pub mod error;
pub mod export;
pub mod generate;
pub mod gguf;
pub mod load;
pub mod model;
pub mod ppl;
pub mod sampling;
pub mod tokenizer;

pub use engine::{Engine, KvType, Logits, State};
pub use error::{InferError, Result};
pub use model::Model;
pub use tokenizer::Tokenizer;
