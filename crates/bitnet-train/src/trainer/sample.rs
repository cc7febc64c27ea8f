//! Text sampling from the training-side model (a full forward per token, no KV cache): used to
//! print a sample at the end of a run. The inference engine in `bitnet-infer` is the fast path.

use crate::error::Result;
use crate::models::CausalLm;
use candle_core::{DType, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Picks a token from `logits` with temperature and top-k, given a uniform draw `u` in [0, 1).
/// `temperature <= 0` is greedy (the lowest id among equal maxima).
pub fn sample_token(logits: &[f32], temperature: f32, top_k: usize, u: f64) -> u32 {
    let argmax = || {
        let mut best = 0;
        for (i, &v) in logits.iter().enumerate() {
            if v > logits[best] {
                best = i;
            }
        }
        best as u32
    };
    if temperature <= 0.0 || logits.is_empty() {
        return argmax();
    }
    let mut idx: Vec<usize> = (0..logits.len()).collect();
    idx.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    idx.truncate(if top_k == 0 { logits.len() } else { top_k.min(logits.len()) });
    let max = logits[idx[0]];
    let w: Vec<f64> =
        idx.iter().map(|&i| (((logits[i] - max) / temperature) as f64).exp()).collect();
    let total: f64 = w.iter().sum();
    let mut r = u * total;
    for (k, &wk) in w.iter().enumerate() {
        if r < wk {
            return idx[k] as u32;
        }
        r -= wk;
    }
    idx[idx.len() - 1] as u32
}

/// Continues `prompt` by `max_new` tokens.
pub fn generate(
    model: &CausalLm,
    prompt: &[u32],
    max_new: usize,
    temperature: f32,
    top_k: usize,
    seed: u64,
) -> Result<Vec<u32>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let ctx = model.config.max_position_embeddings;
    let mut ids = prompt.to_vec();
    for _ in 0..max_new {
        let window = &ids[ids.len().saturating_sub(ctx)..];
        let input = Tensor::from_slice(window, (1, window.len()), model.device())?;
        let logits = model.forward(&input)?.detach();
        let last = logits.narrow(1, window.len() - 1, 1)?.flatten_all()?;
        let last: Vec<f32> = last.to_dtype(DType::F32)?.to_vec1()?;
        ids.push(sample_token(&last, temperature, top_k, rng.gen()));
    }
    Ok(ids[prompt.len()..].to_vec())
}
