//! `bitnet generate`: complete a prompt (text or token ids), streaming the text, or print one
//! JSON object with the ids, the text and the top-10 logits of every step.

use super::model_args::ModelArgs;
use anyhow::{bail, Context, Result};
use bitnet_infer::generate::{generate, GenerateOptions};
use bitnet_infer::sampling::SamplerConfig;
use serde_json::json;
use std::io::Write;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The prompt text.
    #[arg(long, short = 'p', conflicts_with = "tokens")]
    pub prompt: Option<String>,
    /// The prompt as comma-separated token ids.
    #[arg(long, value_delimiter = ',')]
    pub tokens: Option<Vec<u32>>,
    /// Tokens to generate.
    #[arg(long, short = 'n', default_value_t = 128)]
    pub max_tokens: usize,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Stop at this text (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,
    /// Context size (KV cache); 0 for the model's own.
    #[arg(long, short = 'c', default_value_t = 4096)]
    pub ctx: usize,
    /// Element type of the KV cache: f32 or f16 (half the memory).
    #[arg(long = "cache-type", default_value = "f32", value_parser = super::bench::parse_kv_type)]
    pub cache_type: bitnet_infer::KvType,
    /// Do not add BOS in front of a text prompt.
    #[arg(long)]
    pub no_bos: bool,
    /// Print one JSON object instead of streaming text.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug, Clone)]
pub struct SamplingArgs {
    /// 0 is greedy.
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f32,
    /// 0 disables it.
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    /// 1 disables it.
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// 0 disables it.
    #[arg(long, default_value_t = 0.05)]
    pub min_p: f32,
    /// 1 disables it.
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// Tokens the repetition penalty looks back over.
    #[arg(long, default_value_t = 64)]
    pub repeat_last_n: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl SamplingArgs {
    pub fn config(&self) -> Result<SamplerConfig> {
        let c = SamplerConfig {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: self.repeat_last_n,
            seed: self.seed,
        };
        c.validate()?;
        Ok(c)
    }
}

pub fn run(a: Args) -> Result<()> {
    let sampler = a.sampling.config()?;
    let (engine, tok) = a.model.load()?;
    let prompt: Vec<u32> = match (&a.prompt, &a.tokens) {
        (Some(text), None) => {
            let tok = tok.as_ref().context("a text prompt needs a tokenizer: pass --tokenizer")?;
            tok.encode(text, tok.add_bos && !a.no_bos)?
        }
        (None, Some(ids)) => ids.clone(),
        _ => bail!("give the prompt with --prompt TEXT or --tokens 1,2,3"),
    };
    if prompt.is_empty() {
        bail!("the prompt is empty");
    }
    let mut st = engine.new_state_with(a.ctx, a.cache_type)?;
    let opts = GenerateOptions {
        max_tokens: a.max_tokens,
        sampler,
        stop_ids: tok.as_ref().map(|t| t.stop_ids.clone()).unwrap_or_default(),
        stop_strings: a.stop.clone(),
        record_top: if a.json { 10 } else { 0 },
    };
    let stream = !a.json;
    let mut out = std::io::stdout().lock();
    let g = generate(&engine, &mut st, tok.as_ref(), &prompt, &opts, |t| {
        if stream {
            let _ = out.write_all(t.as_bytes());
            let _ = out.flush();
        }
        true
    })?;
    if a.json {
        let steps: Vec<_> = g
            .steps
            .iter()
            .map(|s| json!({"token": s.token, "top": s.top.iter().map(|(i, l)| json!([i, l])).collect::<Vec<_>>()}))
            .collect();
        let v = json!({
            "prompt_tokens": prompt,
            "tokens": g.tokens,
            "text": g.text,
            "stop": format!("{:?}", g.stop),
            "steps": steps,
            "prompt_tokens_per_s": prompt.len() as f64 / g.prefill_s.max(1e-9),
            "tokens_per_s": g.tokens.len() as f64 / g.decode_s.max(1e-9),
        });
        writeln!(out, "{}", serde_json::to_string(&v)?)?;
    } else {
        writeln!(out)?;
        eprintln!(
            "[{} prompt tokens at {:.1} tok/s, {} generated at {:.1} tok/s, stop: {:?}]",
            prompt.len(),
            prompt.len() as f64 / g.prefill_s.max(1e-9),
            g.tokens.len(),
            g.tokens.len() as f64 / g.decode_s.max(1e-9),
            g.stop
        );
    }
    Ok(())
}
