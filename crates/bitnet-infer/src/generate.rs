//! The generation loop: prefill the prompt in batches, then sample one token at a time until a
//! stop token, a stop string or the token budget.

use crate::engine::{Engine, Logits, State};
use crate::error::{InferError, Result};
use crate::sampling::{sample, top_n, Rng, SamplerConfig};
use crate::tokenizer::Tokenizer;

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub max_tokens: usize,
    pub sampler: SamplerConfig,
    /// Token ids that end generation (not included in the output).
    pub stop_ids: Vec<u32>,
    /// Text that ends generation (the output is cut before it).
    pub stop_strings: Vec<String>,
    /// How many of the top logits to record at every step (0 for none).
    pub record_top: usize,
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    MaxTokens,
    StopToken,
    StopString,
    ContextFull,
}

/// One sampled token with the logits that produced it.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub token: u32,
    /// The `record_top` largest (id, logit) pairs, largest first.
    pub top: Vec<(u32, f32)>,
}

/// The result of a generation.
#[derive(Debug, Clone)]
pub struct Generation {
    pub tokens: Vec<u32>,
    pub steps: Vec<Step>,
    pub text: String,
    pub stop: StopReason,
    /// Seconds spent on the prompt and on the generated tokens.
    pub prefill_s: f64,
    pub decode_s: f64,
}

/// Turns generated ids into text chunks as they arrive, holding back incomplete UTF-8.
#[derive(Debug, Default)]
pub struct TextStream {
    emitted: usize,
}

impl TextStream {
    /// The new text after `tokens` (all tokens generated so far).
    pub fn next(&mut self, tok: &Tokenizer, tokens: &[u32]) -> Result<String> {
        let text = tok.decode(tokens)?;
        if text.ends_with('\u{FFFD}') || text.len() < self.emitted {
            return Ok(String::new());
        }
        let new = text[self.emitted..].to_string();
        self.emitted = text.len();
        Ok(new)
    }

    /// Bytes of text handed out so far.
    pub fn emitted(&self) -> usize {
        self.emitted
    }
}

/// Generates after `prompt` (which the state must not already hold). `on_text` receives each
/// chunk of new text when a tokenizer is given; returning false stops generation.
pub fn generate(
    engine: &Engine,
    st: &mut State,
    tok: Option<&Tokenizer>,
    prompt: &[u32],
    opts: &GenerateOptions,
    mut on_text: impl FnMut(&str) -> bool,
) -> Result<Generation> {
    opts.sampler.validate()?;
    if prompt.is_empty() {
        return Err(InferError::EmptyPrompt);
    }
    let mut rng = Rng::new(opts.sampler.seed);
    let t0 = std::time::Instant::now();
    let mut logits = engine.forward(st, prompt, Logits::Last)?.to_vec();
    let prefill_s = t0.elapsed().as_secs_f64();
    let t1 = std::time::Instant::now();
    let mut steps = Vec::new();
    // The prompt and what follows it: the penalty looks at both, the output is the tail.
    let mut history = prompt.to_vec();
    let n_prompt = prompt.len();
    let mut stream = TextStream::default();
    // Decoded text not yet handed to `on_text`: it may hold the start of a stop string.
    let mut pending = String::new();
    let mut stop = StopReason::MaxTokens;
    while history.len() - n_prompt < opts.max_tokens {
        let token = sample(&logits, &opts.sampler, &history, rng.next_f32());
        if opts.stop_ids.contains(&token) {
            stop = StopReason::StopToken;
            break;
        }
        steps.push(Step { token, top: top_n(&logits, opts.record_top) });
        history.push(token);
        if let Some(tok) = tok {
            pending.push_str(&stream.next(tok, &history[n_prompt..])?);
            if let Some(cut) = first_stop(&pending, &opts.stop_strings) {
                pending.truncate(cut);
                stop = StopReason::StopString;
                break;
            }
            let ready = pending.len() - held_back(&pending, &opts.stop_strings);
            if ready > 0 {
                let go_on = on_text(&pending[..ready]);
                pending.drain(..ready);
                if !go_on {
                    break;
                }
            }
        }
        if history.len() - n_prompt == opts.max_tokens {
            break;
        }
        if st.pos() >= st.ctx() {
            stop = StopReason::ContextFull;
            break;
        }
        logits.clear();
        logits.extend_from_slice(engine.forward(st, &[token], Logits::Last)?);
    }
    if !pending.is_empty() {
        on_text(&pending);
    }
    let tokens = history.split_off(n_prompt);
    let text = match tok {
        Some(t) => {
            let mut s = t.decode(&tokens)?;
            if stop == StopReason::StopString {
                if let Some(cut) = first_stop(&s, &opts.stop_strings) {
                    s.truncate(cut);
                }
            }
            s
        }
        None => String::new(),
    };
    Ok(Generation { tokens, steps, text, stop, prefill_s, decode_s: t1.elapsed().as_secs_f64() })
}

/// The byte offset of the earliest stop string in `text`.
pub fn first_stop(text: &str, stops: &[String]) -> Option<usize> {
    stops.iter().filter(|s| !s.is_empty()).filter_map(|s| text.find(s.as_str())).min()
}

/// Bytes at the end of `text` that could begin a stop string.
pub fn held_back(text: &str, stops: &[String]) -> usize {
    stops
        .iter()
        .flat_map(|s| (1..s.len()).filter(|&k| s.is_char_boundary(k) && text.ends_with(&s[..k])))
        .max()
        .unwrap_or(0)
}
