//! Perplexity by llama.cpp's method: the text is tokenized without BOS and cut into
//! non-overlapping windows of `ctx` tokens from the start (a partial last window is dropped);
//! each window is evaluated from an empty cache and its positions 1..ctx-1 are scored.

use crate::engine::{Engine, Logits};
use crate::error::{InferError, Result};

/// The outcome of a perplexity run.
#[derive(Debug, Clone, PartialEq)]
pub struct Perplexity {
    pub ppl: f64,
    pub nll_per_token: f64,
    pub windows: usize,
    pub scored_tokens: usize,
}

/// `-log softmax(logits)[target]`, in f64.
pub fn nll(logits: &[f32], target: u32) -> f64 {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
    let sum: f64 = logits.iter().map(|&v| (v as f64 - max).exp()).sum();
    max + sum.ln() - logits[target as usize] as f64
}

/// Perplexity of `tokens` in windows of `ctx`; `progress(done, total)` after each window.
pub fn perplexity(
    engine: &Engine,
    tokens: &[u32],
    ctx: usize,
    mut progress: impl FnMut(usize, usize, f64),
) -> Result<Perplexity> {
    if ctx < 2 {
        return Err(InferError::BadConfig("perplexity needs a context of at least 2".into()));
    }
    let windows = tokens.len() / ctx;
    if windows == 0 {
        return Err(InferError::ContextFull { tokens: tokens.len(), ctx });
    }
    let vocab = engine.config().vocab_size;
    let mut st = engine.new_state(ctx)?;
    let (mut total, mut count) = (0.0f64, 0usize);
    for w in 0..windows {
        let win = &tokens[w * ctx..(w + 1) * ctx];
        st.reset();
        let logits = engine.forward(&mut st, win, Logits::All)?;
        for j in 0..ctx - 1 {
            total += nll(&logits[j * vocab..(j + 1) * vocab], win[j + 1]);
            count += 1;
        }
        progress(w + 1, windows, (total / count as f64).exp());
    }
    let nll_per_token = total / count as f64;
    Ok(Perplexity { ppl: nll_per_token.exp(), nll_per_token, windows, scored_tokens: count })
}
