//! Token shards: a 32-byte header then little-endian token ids, memory-mapped for reading.
//!
//! ```text
//! offset  size  field
//! 0       8     magic b"BNTOKEN1"
//! 8       4     bytes per token: 2 (u16, vocab <= 65536) or 4 (u32)
//! 12      4     vocab size
//! 16      8     number of tokens n
//! 24      8     reserved (0)
//! 32      n*w   token ids
//! ```
//!
//! `bitnet data prepare` tokenizes each input file, appends the end-of-text id after each
//! document, keeps the last `val_fraction` of every file's tokens for validation, and writes
//! `train-NNN.bin`, `val-NNN.bin`, the tokenizer and `meta.json` into the output directory.

use super::tokenizer;
use crate::error::{Result, TrainError};
use crate::trainer::checkpoint::write_atomic;
use memmap2::Mmap;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::path::{Path, PathBuf};
use tokenizers::Tokenizer;

pub const MAGIC: &[u8; 8] = b"BNTOKEN1";
pub const HEADER_LEN: usize = 32;

/// A read-only token shard.
#[derive(Debug)]
pub enum TokenShard {
    Mapped { map: Mmap, width: usize, len: usize },
    Owned(Vec<u32>),
}

impl TokenShard {
    pub fn open(path: &Path) -> Result<Self> {
        let bad = |msg: String| TrainError::Data(format!("{}: {msg}", path.display()));
        let file = File::open(path).map_err(|e| TrainError::io(path, e))?;
        // SAFETY: the shard is opened read-only and never written while mapped by this process;
        // a concurrent writer would be a user error that at worst yields wrong token ids, which
        // are range-checked against the vocabulary before use.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| TrainError::io(path, e))?;
        if map.len() < HEADER_LEN || &map[..8] != MAGIC {
            return Err(bad("not a token shard (bad magic or truncated header)".into()));
        }
        let u32_at = |o: usize| u32::from_le_bytes(map[o..o + 4].try_into().expect("4 bytes"));
        let width = u32_at(8) as usize;
        let n = u64::from_le_bytes(map[16..24].try_into().expect("8 bytes"));
        if width != 2 && width != 4 {
            return Err(bad(format!("token width {width} is not 2 or 4")));
        }
        let need = (n as u128) * width as u128 + HEADER_LEN as u128;
        if need != map.len() as u128 {
            return Err(bad(format!(
                "header says {n} tokens ({need} bytes), file has {}",
                map.len()
            )));
        }
        Ok(TokenShard::Mapped { map, width, len: n as usize })
    }

    pub fn len(&self) -> usize {
        match self {
            TokenShard::Mapped { len, .. } => *len,
            TokenShard::Owned(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies `out.len()` tokens starting at `start` into `out`.
    pub fn read(&self, start: usize, out: &mut [u32]) {
        match self {
            TokenShard::Owned(v) => out.copy_from_slice(&v[start..start + out.len()]),
            TokenShard::Mapped { map, width, .. } => {
                let w = *width;
                let bytes = &map[HEADER_LEN + start * w..HEADER_LEN + (start + out.len()) * w];
                for (o, b) in out.iter_mut().zip(bytes.chunks_exact(w)) {
                    *o = if w == 2 {
                        u16::from_le_bytes([b[0], b[1]]) as u32
                    } else {
                        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
                    };
                }
            }
        }
    }

    /// The largest id in the shard.
    pub fn max_id(&self) -> u32 {
        let mut buf = vec![0u32; 1 << 16];
        let mut max = 0;
        let mut i = 0;
        while i < self.len() {
            let n = buf.len().min(self.len() - i);
            self.read(i, &mut buf[..n]);
            max = buf[..n].iter().fold(max, |m, &v| m.max(v));
            i += n;
        }
        max
    }
}

/// Serializes a shard.
pub fn shard_bytes(tokens: &[u32], vocab: usize) -> Vec<u8> {
    let width = if vocab <= 1 << 16 { 2 } else { 4 };
    let mut out = Vec::with_capacity(HEADER_LEN + tokens.len() * width);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(width as u32).to_le_bytes());
    out.extend_from_slice(&(vocab as u32).to_le_bytes());
    out.extend_from_slice(&(tokens.len() as u64).to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    for &t in tokens {
        if width == 2 {
            out.extend_from_slice(&(t as u16).to_le_bytes());
        } else {
            out.extend_from_slice(&t.to_le_bytes());
        }
    }
    out
}

#[derive(Debug, Clone)]
pub struct PrepareOptions {
    pub val_fraction: f64,
    /// Tokens per shard file.
    pub shard_tokens: usize,
}

impl Default for PrepareOptions {
    fn default() -> Self {
        Self { val_fraction: 0.05, shard_tokens: 100_000_000 }
    }
}

/// `meta.json` of a prepared data directory.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PrepareReport {
    pub vocab_size: usize,
    pub train_tokens: usize,
    pub val_tokens: usize,
    pub train_shards: Vec<String>,
    pub val_shards: Vec<String>,
    pub sources: Vec<String>,
}

/// The text files under `input` (a file, or every `.txt` file of a directory, sorted).
pub fn text_files(input: &Path) -> Result<Vec<PathBuf>> {
    if input.is_file() {
        return Ok(vec![input.to_path_buf()]);
    }
    if !input.is_dir() {
        return Err(TrainError::Data(format!("{}: no such file or directory", input.display())));
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(input)
        .map_err(|e| TrainError::io(input, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(TrainError::Data(format!("{}: no .txt files", input.display())));
    }
    Ok(files)
}

/// Tokenizes `texts` (name, contents) and splits each into train and validation tokens.
pub fn tokenize_split(
    tk: &Tokenizer,
    texts: &[(String, String)],
    val_fraction: f64,
) -> Result<(Vec<u32>, Vec<u32>)> {
    if !(0.0..1.0).contains(&val_fraction) {
        return Err(TrainError::Invalid(format!("val fraction {val_fraction} is not in [0, 1)")));
    }
    let eos = tokenizer::eos_id(tk);
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for (_, text) in texts {
        let mut ids = tokenizer::encode(tk, text)?;
        if ids.is_empty() {
            continue;
        }
        ids.extend(eos);
        let n_val = ((ids.len() as f64) * val_fraction).round() as usize;
        let split = ids.len() - n_val;
        train.extend_from_slice(&ids[..split]);
        val.extend_from_slice(&ids[split..]);
    }
    if train.is_empty() {
        let names: Vec<_> = texts.iter().map(|(n, _)| n.as_str()).collect();
        return Err(TrainError::Data(format!("the corpus is empty: {}", names.join(", "))));
    }
    Ok((train, val))
}

pub fn read_texts(files: &[PathBuf]) -> Result<Vec<(String, String)>> {
    files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).map_err(|e| TrainError::io(f, e))?;
            Ok((f.display().to_string(), text))
        })
        .collect()
}

/// `bitnet data prepare`: tokenizes the inputs and writes shards, the tokenizer and `meta.json`.
pub fn prepare(
    inputs: &[PathBuf],
    tk: &Tokenizer,
    out_dir: &Path,
    opts: &PrepareOptions,
) -> Result<PrepareReport> {
    let mut files = Vec::new();
    for i in inputs {
        files.extend(text_files(i)?);
    }
    let texts = read_texts(&files)?;
    let (train, val) = tokenize_split(tk, &texts, opts.val_fraction)?;
    std::fs::create_dir_all(out_dir).map_err(|e| TrainError::io(out_dir, e))?;
    let vocab = tk.get_vocab_size(true);
    let write = |prefix: &str, toks: &[u32]| -> Result<Vec<String>> {
        let mut names = Vec::new();
        for (k, chunk) in toks.chunks(opts.shard_tokens.max(1)).enumerate() {
            let name = format!("{prefix}-{k:03}.bin");
            write_atomic(&out_dir.join(&name), &shard_bytes(chunk, vocab))?;
            names.push(name);
        }
        Ok(names)
    };
    let report = PrepareReport {
        vocab_size: vocab,
        train_tokens: train.len(),
        val_tokens: val.len(),
        train_shards: write("train", &train)?,
        val_shards: write("val", &val)?,
        sources: files.iter().map(|f| f.display().to_string()).collect(),
    };
    tokenizer::save(tk, &out_dir.join("tokenizer.json"))?;
    let meta = serde_json::to_string_pretty(&report).expect("report serializes");
    write_atomic(&out_dir.join("meta.json"), meta.as_bytes())?;
    Ok(report)
}
