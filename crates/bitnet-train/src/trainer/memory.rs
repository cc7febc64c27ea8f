//! Training memory estimate, checked against the memory available before any work starts.

use crate::error::{Result, TrainError};
use crate::models::ModelConfig;

/// Bytes to train `cfg` with f32 latent weights: weights, gradients and two AdamW moments
/// (16 bytes per parameter) plus the activations kept for backward of one micro-batch.
pub fn training_bytes(cfg: &ModelConfig, batch: usize, seq: usize) -> u64 {
    let params = cfg.num_params() as u64 * 16;
    let (bt, h, i) = ((batch * seq) as u64, cfg.hidden_size as u64, cfg.intermediate_size as u64);
    let heads = cfg.num_attention_heads as u64;
    // Per layer: about 16 hidden-sized and 6 GLU-sized f32 tensors per token (inputs, fake-quantized
    // copies, norms), plus the attention scores and probabilities.
    let per_layer = bt * (16 * h + 6 * i) * 4 + 3 * batch as u64 * heads * (seq * seq) as u64 * 4;
    let logits = 4 * bt * cfg.vocab_size as u64 * 4;
    params + cfg.num_hidden_layers as u64 * per_layer + logits
}

/// `MemAvailable` from `/proc/meminfo`, if the system reports it.
pub fn available_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Fails with [`TrainError::OutOfMemory`] if the estimate exceeds the available memory.
pub fn check_fits(cfg: &ModelConfig, batch: usize, seq: usize) -> Result<()> {
    let need = training_bytes(cfg, batch, seq);
    if let Some(avail) = available_bytes() {
        if need > avail {
            let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
            return Err(TrainError::OutOfMemory { need_gib: gib(need), avail_gib: gib(avail) });
        }
    }
    Ok(())
}
