//! The options every engine subcommand shares: which model, which tokenizer, how many threads.

use anyhow::{Context, Result};
use bitnet_infer::load::{open_model, open_tokenizer};
use bitnet_infer::{Engine, Tokenizer};
use std::path::PathBuf;

#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// A .gguf file or a Hugging Face model directory (config.json + safetensors).
    #[arg(long, short = 'm')]
    pub model: PathBuf,
    /// A tokenizer.json (default: beside the model, or the GGUF's own vocabulary).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Threads.
    #[arg(long, short = 't', default_value_t = default_threads())]
    pub threads: usize,
}

pub fn default_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

impl ModelArgs {
    /// Loads the model into an engine, and its tokenizer when it has one.
    pub fn load(&self) -> Result<(Engine, Option<Tokenizer>)> {
        let model =
            open_model(&self.model).with_context(|| format!("loading {}", self.model.display()))?;
        let tok = open_tokenizer(&self.model, &model, self.tokenizer.as_deref())
            .with_context(|| format!("loading the tokenizer of {}", self.model.display()))?;
        Ok((Engine::new(model, self.threads)?, tok))
    }

    /// As [`ModelArgs::load`], but a tokenizer is required.
    pub fn load_with_tokenizer(&self) -> Result<(Engine, Tokenizer)> {
        let (engine, tok) = self.load()?;
        let tok = tok.with_context(|| {
            format!("{} has no tokenizer: pass --tokenizer tokenizer.json", self.model.display())
        })?;
        Ok((engine, tok))
    }
}
