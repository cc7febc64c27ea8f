//! Prompt-processing and generation speed measured as llama-bench measures it: `pp N` runs an
//! N-token batch, `tg N` decodes N tokens one at a time, both from an empty cache or, at depth
//! `D` (llama-bench's `-d`), after `D` tokens already in the cache (filled once, untimed); one
//! untimed warm-up run, then `reps` timed runs; tokens are pseudo-random ids.

use crate::engine::{Engine, KvType, Logits, State};
use crate::error::Result;
use crate::sampling::Rng;
use std::time::Instant;

/// One test of one configuration and its timings.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchResult {
    pub n_prompt: usize,
    pub n_gen: usize,
    /// Tokens in the cache before each run.
    pub n_depth: usize,
    pub n_threads: usize,
    /// Wall time of each timed run, in nanoseconds.
    pub samples_ns: Vec<u64>,
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// The sample standard deviation (n - 1), as llama-bench reports it; 0 for one sample.
fn stddev(v: &[f64]) -> f64 {
    if v.len() < 2 {
        return 0.0;
    }
    let m = mean(v);
    (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
}

impl BenchResult {
    fn tokens(&self) -> usize {
        self.n_prompt + self.n_gen
    }
    /// Tokens per second of each run.
    pub fn samples_ts(&self) -> Vec<f64> {
        self.samples_ns.iter().map(|&ns| self.tokens() as f64 * 1e9 / ns as f64).collect()
    }
    pub fn avg_ts(&self) -> f64 {
        mean(&self.samples_ts())
    }
    pub fn stddev_ts(&self) -> f64 {
        stddev(&self.samples_ts())
    }
    pub fn avg_ns(&self) -> f64 {
        mean(&self.samples_ns.iter().map(|&n| n as f64).collect::<Vec<_>>())
    }
    pub fn stddev_ns(&self) -> f64 {
        stddev(&self.samples_ns.iter().map(|&n| n as f64).collect::<Vec<_>>())
    }
    /// llama-bench's test name: `pp128`, `tg64`, `tg64 @ d1024`.
    pub fn test_name(&self) -> String {
        let test = if self.n_gen == 0 {
            format!("pp{}", self.n_prompt)
        } else {
            format!("tg{}", self.n_gen)
        };
        match self.n_depth {
            0 => test,
            d => format!("{test} @ d{d}"),
        }
    }
}

/// Pseudo-random token ids below `vocab` (a fixed sequence).
fn tokens(n: usize, vocab: usize, seed: u64) -> Vec<u32> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| ((rng.next_f32() * vocab as f32) as u32).min(vocab as u32 - 1)).collect()
}

/// One timed run of a test from `depth` cached tokens: its wall time in nanoseconds.
type TimedRun = fn(&Engine, &mut State, usize, &[u32]) -> Result<u64>;

fn run_pp(e: &Engine, st: &mut State, depth: usize, toks: &[u32]) -> Result<u64> {
    st.truncate(depth);
    let t = Instant::now();
    e.forward(st, toks, Logits::Last)?;
    Ok(t.elapsed().as_nanos() as u64)
}

fn run_tg(e: &Engine, st: &mut State, depth: usize, toks: &[u32]) -> Result<u64> {
    st.truncate(depth);
    let t = Instant::now();
    for &tok in toks {
        e.forward(st, &[tok], Logits::Last)?;
    }
    Ok(t.elapsed().as_nanos() as u64)
}

/// Runs `pp n_prompt` (when non-zero) and `tg n_gen` (when non-zero) on `e`, each after
/// `n_depth` tokens in the cache. `kv` is the KV cache's element type.
pub fn bench(
    e: &Engine,
    n_prompt: usize,
    n_gen: usize,
    n_depth: usize,
    reps: usize,
    kv: KvType,
) -> Result<Vec<BenchResult>> {
    let vocab = e.config().vocab_size;
    let mut st = e.new_state_with(n_depth + n_prompt.max(n_gen).max(1), kv)?;
    if n_depth > 0 {
        e.forward(&mut st, &tokens(n_depth, vocab, 11), Logits::Last)?;
    }
    let mut out = Vec::new();
    let tests: [(usize, usize, TimedRun); 2] = [(n_prompt, 0, run_pp), (0, n_gen, run_tg)];
    for (p, g, run) in tests {
        if p + g == 0 {
            continue;
        }
        let toks = tokens(p + g, vocab, 7);
        run(e, &mut st, n_depth, &toks)?;
        let samples_ns = (0..reps.max(1))
            .map(|_| run(e, &mut st, n_depth, &toks))
            .collect::<Result<Vec<u64>>>()?;
        let n_threads = e.n_threads();
        out.push(BenchResult { n_prompt: p, n_gen: g, n_depth, n_threads, samples_ns });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_follow_llama_bench() {
        let r = BenchResult {
            n_prompt: 0,
            n_gen: 10,
            n_depth: 0,
            n_threads: 1,
            samples_ns: vec![1e9 as u64, 5e8 as u64],
        };
        assert_eq!(r.samples_ts(), vec![10.0, 20.0]);
        assert_eq!(r.avg_ts(), 15.0);
        // Sample standard deviation of {10, 20}.
        assert!((r.stddev_ts() - 50f64.sqrt()).abs() < 1e-12);
        assert_eq!(r.test_name(), "tg10");
        assert_eq!(BenchResult { n_depth: 512, ..r }.test_name(), "tg10 @ d512");
        assert!(tokens(100, 7, 1).iter().all(|&t| t < 7));
    }
}
