pub mod bench;
pub mod bench_kernels;
pub mod chat;
pub mod convert;
pub mod data;
pub mod generate;
pub mod model_args;
pub mod ppl;
pub mod random_model;
pub mod serve;
pub mod tokenizer;
pub mod train;

use anyhow::{bail, Result};
use bitnet_core::format::GgmlType;

/// A dense type for embeddings and heads, by its lower-case name.
pub fn dense_type(name: &str) -> Result<GgmlType> {
    Ok(match name {
        "f32" => GgmlType::F32,
        "f16" => GgmlType::F16,
        "bf16" => GgmlType::BF16,
        "q8_0" => GgmlType::Q8_0,
        "q6_k" => GgmlType::Q6K,
        other => bail!("head type {other:?}: expected q6_k, q8_0, f16, bf16 or f32"),
    })
}
