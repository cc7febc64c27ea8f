//! `bitnet-train` will own quantization-aware training: candle-based `BitLinear` layers with
//! straight-through estimators, the BitNet / LLaMA model definitions, the token-shard data
//! pipeline, AdamW with the two-stage b1.58 schedule, atomic checkpoints in Hugging Face layout and
//! export to packed formats through [`bitnet_core::format`]. Nothing is implemented yet.
