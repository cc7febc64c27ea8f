//! `bitnet tokenizer train`: a byte-level BPE tokenizer from text files.

use anyhow::Result;
use bitnet_train::data::{shards::text_files, tokenizer};
use std::path::PathBuf;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Train a byte-level BPE tokenizer (GPT-2 style) and write its tokenizer.json.
    Train(TrainArgs),
}

#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// Text files, or directories of .txt files.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Vocabulary size, the special token <|endoftext|> included.
    #[arg(long, default_value_t = 4096)]
    vocab_size: usize,
    /// Minimum pair frequency for a merge.
    #[arg(long, default_value_t = 2)]
    min_frequency: u64,
    /// Output tokenizer.json.
    #[arg(long, short)]
    out: PathBuf,
}

pub fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::Train(a) => {
            let mut files = Vec::new();
            for i in &a.inputs {
                files.extend(text_files(i)?);
            }
            let tk = tokenizer::train_bpe(&files, a.vocab_size, a.min_frequency)?;
            tokenizer::save(&tk, &a.out)?;
            println!(
                "wrote {} ({} entries, trained on {} file(s))",
                a.out.display(),
                tk.get_vocab_size(true),
                files.len()
            );
            Ok(())
        }
    }
}
