//! `bitnet ppl`: perplexity of a text file by llama.cpp's method (non-overlapping windows from
//! the start, no BOS, positions 1..ctx-1 of each window scored).

use super::model_args::ModelArgs;
use anyhow::{Context, Result};
use bitnet_infer::ppl::perplexity;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The text file.
    #[arg(long, short = 'f')]
    pub file: PathBuf,
    /// Window size in tokens.
    #[arg(long, short = 'c', default_value_t = 512)]
    pub ctx: usize,
    /// Score at most this many windows (0: all).
    #[arg(long, default_value_t = 0)]
    pub chunks: usize,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: Args) -> Result<()> {
    let text = std::fs::read_to_string(&a.file)
        .with_context(|| format!("reading {}", a.file.display()))?;
    let (engine, tok) = a.model.load_with_tokenizer()?;
    let mut tokens = tok.encode(&text, false)?;
    let total = tokens.len();
    if a.chunks > 0 {
        tokens.truncate(a.chunks * a.ctx);
    }
    let windows = tokens.len() / a.ctx.max(1);
    let bar = indicatif::ProgressBar::new(windows as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} windows, ppl {msg} [{elapsed}<{eta}]",
        )
        .expect("template"),
    );
    let r = perplexity(&engine, &tokens, a.ctx, |_, _, ppl| {
        bar.inc(1);
        bar.set_message(format!("{ppl:.4}"));
    })?;
    bar.finish_and_clear();
    if a.json {
        println!(
            "{}",
            serde_json::json!({"ppl": r.ppl, "nll_per_token": r.nll_per_token, "windows": r.windows,
                               "window": a.ctx, "scored_tokens": r.scored_tokens, "total_tokens_in_text": total})
        );
    } else {
        println!(
            "perplexity {:.4} ({} windows of {}, {} tokens scored, {} tokens in the text)",
            r.ppl, r.windows, a.ctx, r.scored_tokens, total
        );
    }
    Ok(())
}
