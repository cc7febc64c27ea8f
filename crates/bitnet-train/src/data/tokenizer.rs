//! Tokenizers through the `tokenizers` crate: load any `tokenizer.json`, or train a byte-level BPE
//! tokenizer (GPT-2 style pre-tokenization, every byte in the base alphabet, so any text encodes).

use crate::error::{Result, TrainError};
use std::path::{Path, PathBuf};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, NormalizerWrapper, Tokenizer, TokenizerImpl};

/// The one special token a trained tokenizer gets: document separator, BOS and EOS (id 0).
pub const END_OF_TEXT: &str = "<|endoftext|>";

fn tok_err(e: impl std::fmt::Display) -> TrainError {
    TrainError::Tokenizer(e.to_string())
}

pub fn load(path: &Path) -> Result<Tokenizer> {
    if !path.is_file() {
        return Err(TrainError::Tokenizer(format!("{}: no such file", path.display())));
    }
    Tokenizer::from_file(path).map_err(|e| tok_err(format!("{}: {e}", path.display())))
}

pub fn from_bytes(bytes: &[u8]) -> Result<Tokenizer> {
    Tokenizer::from_bytes(bytes).map_err(tok_err)
}

/// Trains a byte-level BPE tokenizer with `vocab_size` entries (special token included).
pub fn train_bpe(files: &[PathBuf], vocab_size: usize, min_frequency: u64) -> Result<Tokenizer> {
    if files.is_empty() {
        return Err(TrainError::Tokenizer("no training files given".into()));
    }
    let mut bytes = 0u64;
    for f in files {
        let meta = std::fs::metadata(f).map_err(|e| TrainError::io(f, e))?;
        bytes += meta.len();
    }
    if bytes == 0 {
        return Err(TrainError::Tokenizer("the training files are empty".into()));
    }
    if vocab_size < 257 {
        return Err(TrainError::Tokenizer(format!(
            "vocab size {vocab_size} is below the 256 bytes plus one special token"
        )));
    }
    let mut trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(min_frequency)
        .show_progress(false)
        .special_tokens(vec![AddedToken::from(END_OF_TEXT, true)])
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    let mut tk: TokenizerImpl<BPE, NormalizerWrapper, ByteLevel, ByteLevel, ByteLevelDecoder> =
        TokenizerImpl::new(BPE::default());
    tk.with_normalizer(None::<NormalizerWrapper>);
    tk.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    tk.with_post_processor(Some(ByteLevel::new(false, true, true)));
    tk.with_decoder(Some(ByteLevelDecoder::default()));
    let files: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    tk.train_from_files(&mut trainer, files).map_err(tok_err)?;
    let json = tk.to_string(false).map_err(tok_err)?;
    Tokenizer::from_bytes(json.as_bytes()).map_err(tok_err)
}

/// Encodes without adding special tokens.
pub fn encode(tk: &Tokenizer, text: &str) -> Result<Vec<u32>> {
    Ok(tk.encode(text, false).map_err(tok_err)?.get_ids().to_vec())
}

pub fn decode(tk: &Tokenizer, ids: &[u32]) -> Result<String> {
    tk.decode(ids, false).map_err(tok_err)
}

/// The id that separates documents: `<|endoftext|>`, `<|end_of_text|>`, `</s>` or `<eos>`,
/// whichever the vocabulary has.
pub fn eos_id(tk: &Tokenizer) -> Option<u32> {
    [END_OF_TEXT, "<|end_of_text|>", "</s>", "<eos>"].iter().find_map(|t| tk.token_to_id(t))
}

/// Writes `tokenizer.json` atomically.
pub fn save(tk: &Tokenizer, path: &Path) -> Result<()> {
    let json = tk.to_string(false).map_err(tok_err)?;
    crate::trainer::checkpoint::write_atomic(path, json.as_bytes())
}
