//! Quantization-aware BitNet training on candle.
//!
//! - [`layers`]: `BitLinear` (fake quantization with straight-through estimators, defined by
//!   [`bitnet_core::quant`]) and differentiable RMSNorm, RoPE, grouped-query attention and FFNs.
//! - [`fused`]: the CPU training ops (fused forward and backward of BitLinear through the
//!   integer kernels, RMSNorm, RoPE, attention, GLU, embedding, cross-entropy), the default path.
//! - [`models`]: `BitNetForCausalLM` (microsoft/bitnet-b1.58-2B-4T) and LLaMA with Hugging Face
//!   `config.json` keys and tensor names, and the size presets.
//! - [`data`]: tokenizers (load or train byte-level BPE), memory-mapped token shards, seeded batches.
//! - [`trainer`]: AdamW, the two-stage b1.58 schedule, gradient accumulation and clipping, atomic
//!   checkpoints that resume bit-identically, JSONL metrics and a loss-curve PNG.

pub mod bundled;
pub mod data;
pub mod error;
pub mod fused;
pub mod layers;
pub mod models;
pub mod trainer;

pub use error::{Result, TrainError};

/// The device to train on: the first CUDA GPU with `cuda` (needs the `cuda` feature), else the
/// CPU.
pub fn device(cuda: bool) -> Result<candle_core::Device> {
    if cuda {
        if !candle_core::utils::cuda_is_available() {
            return Err(TrainError::Invalid(
                "--cuda: this build has no CUDA support (build with --features cuda) or no GPU"
                    .into(),
            ));
        }
        return Ok(candle_core::Device::new_cuda(0)?);
    }
    Ok(candle_core::Device::Cpu)
}
