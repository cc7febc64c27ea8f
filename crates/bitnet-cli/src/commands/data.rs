//! `bitnet data prepare`: text files → memory-mappable token shards with a validation split.

use anyhow::Result;
use bitnet_train::data::{prepare, tokenizer, PrepareOptions};
use std::path::PathBuf;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Tokenize text into train-NNN.bin / val-NNN.bin shards plus meta.json and tokenizer.json.
    Prepare(PrepareArgs),
}

#[derive(clap::Args, Debug)]
pub struct PrepareArgs {
    /// Text files, or directories of .txt files.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// tokenizer.json to encode with (default: the bundled Shakespeare tokenizer).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Output directory.
    #[arg(long, short)]
    out: PathBuf,
    /// Fraction of each file's tokens (its end) kept for validation.
    #[arg(long, default_value_t = 0.05)]
    val_fraction: f64,
    /// Tokens per shard file.
    #[arg(long, default_value_t = 100_000_000)]
    shard_tokens: usize,
}

pub fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::Prepare(a) => {
            let tk = match &a.tokenizer {
                Some(p) => tokenizer::load(p)?,
                None => tokenizer::from_bytes(bitnet_train::bundled::TOKENIZER_JSON.as_bytes())?,
            };
            let opts =
                PrepareOptions { val_fraction: a.val_fraction, shard_tokens: a.shard_tokens };
            let r = prepare(&a.inputs, &tk, &a.out, &opts)?;
            println!(
                "{}: {} train tokens in {} shard(s), {} validation tokens, vocabulary {}",
                a.out.display(),
                r.train_tokens,
                r.train_shards.len(),
                r.val_tokens,
                r.vocab_size
            );
            Ok(())
        }
    }
}
