//! Training batches: random windows of `seq_len` tokens drawn from a seeded ChaCha8 generator,
//! and the fixed validation windows.

use super::shards::{PrepareReport, TokenShard};
use crate::error::{Result, TrainError};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Train and validation tokens.
#[derive(Debug)]
pub struct TokenData {
    pub train: Vec<TokenShard>,
    pub val: Vec<TokenShard>,
    pub vocab_size: usize,
}

impl TokenData {
    pub fn from_tokens(train: Vec<u32>, val: Vec<u32>, vocab_size: usize) -> Result<Self> {
        let data = Self {
            train: vec![TokenShard::Owned(train)],
            val: vec![TokenShard::Owned(val)],
            vocab_size,
        };
        data.check_ids()?;
        Ok(data)
    }

    /// Opens a directory written by `bitnet data prepare`.
    pub fn open_prepared(dir: &Path) -> Result<Self> {
        let meta_path = dir.join("meta.json");
        let text =
            std::fs::read_to_string(&meta_path).map_err(|e| TrainError::io(&meta_path, e))?;
        let meta: PrepareReport = serde_json::from_str(&text)
            .map_err(|e| TrainError::Data(format!("{}: {e}", meta_path.display())))?;
        let open = |names: &[String]| -> Result<Vec<TokenShard>> {
            names.iter().map(|n| TokenShard::open(&dir.join(n))).collect()
        };
        let data = Self {
            train: open(&meta.train_shards)?,
            val: open(&meta.val_shards)?,
            vocab_size: meta.vocab_size,
        };
        data.check_ids()?;
        Ok(data)
    }

    fn check_ids(&self) -> Result<()> {
        for s in self.train.iter().chain(&self.val) {
            if !s.is_empty() && s.max_id() as usize >= self.vocab_size {
                return Err(TrainError::Data(format!(
                    "token id {} is outside the vocabulary of {}",
                    s.max_id(),
                    self.vocab_size
                )));
            }
        }
        Ok(())
    }

    pub fn train_tokens(&self) -> usize {
        self.train.iter().map(|s| s.len()).sum()
    }

    pub fn val_tokens(&self) -> usize {
        self.val.iter().map(|s| s.len()).sum()
    }

    /// Checks there is at least one window of `seq_len` tokens to train on.
    pub fn check_seq_len(&self, seq_len: usize) -> Result<()> {
        if self.train.iter().all(|s| s.len() < seq_len) {
            return Err(TrainError::Data(format!(
                "no training shard holds a window of {seq_len} tokens ({} tokens in all)",
                self.train_tokens()
            )));
        }
        Ok(())
    }

    /// Up to `max_windows` non-overlapping validation windows of `seq_len` tokens, from the
    /// start of each validation shard: the same windows at every evaluation.
    pub fn val_windows(&self, seq_len: usize, max_windows: usize) -> Vec<Vec<u32>> {
        let mut out = Vec::new();
        for s in &self.val {
            let mut start = 0;
            while start + seq_len <= s.len() && out.len() < max_windows {
                let mut w = vec![0; seq_len];
                s.read(start, &mut w);
                out.push(w);
                start += seq_len;
            }
        }
        out
    }
}

/// Position of the batch generator, saved in checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatcherState {
    pub seed: u64,
    /// ChaCha8 word position (a u128, as a decimal string for JSON).
    pub word_pos: String,
    pub batches_drawn: u64,
}

/// Draws batches of random windows.
#[derive(Debug, Clone)]
pub struct Batcher {
    seed: u64,
    rng: ChaCha8Rng,
    batches_drawn: u64,
}

impl Batcher {
    pub fn new(seed: u64) -> Self {
        Self { seed, rng: ChaCha8Rng::seed_from_u64(seed), batches_drawn: 0 }
    }

    pub fn state(&self) -> BatcherState {
        BatcherState {
            seed: self.seed,
            word_pos: self.rng.get_word_pos().to_string(),
            batches_drawn: self.batches_drawn,
        }
    }

    pub fn restore(state: &BatcherState) -> Result<Self> {
        let pos: u128 = state.word_pos.parse().map_err(|_| {
            TrainError::Data(format!("bad generator position {:?}", state.word_pos))
        })?;
        let mut rng = ChaCha8Rng::seed_from_u64(state.seed);
        rng.set_word_pos(pos);
        Ok(Self { seed: state.seed, rng, batches_drawn: state.batches_drawn })
    }

    /// `batch` windows of `seq_len` tokens, row-major. A shard is chosen with probability
    /// proportional to its number of window starts, then a start uniformly within it.
    pub fn next_batch(
        &mut self,
        data: &TokenData,
        batch: usize,
        seq_len: usize,
    ) -> Result<Vec<u32>> {
        data.check_seq_len(seq_len)?;
        let starts: Vec<u64> =
            data.train.iter().map(|s| (s.len() + 1).saturating_sub(seq_len) as u64).collect();
        let total: u64 = starts.iter().sum();
        let mut out = vec![0u32; batch * seq_len];
        for row in out.chunks_exact_mut(seq_len) {
            let mut r = self.rng.gen_range(0..total);
            let mut k = 0;
            while r >= starts[k] {
                r -= starts[k];
                k += 1;
            }
            data.train[k].read(r as usize, row);
        }
        self.batches_drawn += 1;
        Ok(out)
    }
}
