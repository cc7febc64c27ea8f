//! Sampling, as pure functions: the random draw is an argument, so the same logits, settings and
//! draw always give the same token. The chain follows llama.cpp's default order: repetition
//! penalty, top-k, top-p, min-p, temperature, then a draw from what is left.

use crate::error::{InferError, Result};

/// Sampler settings. `temperature <= 0` is greedy (argmax after the penalty).
#[derive(Debug, Clone, PartialEq)]
pub struct SamplerConfig {
    pub temperature: f32,
    /// 0 keeps every token.
    pub top_k: usize,
    /// 1 keeps every token.
    pub top_p: f32,
    /// 0 keeps every token.
    pub min_p: f32,
    /// 1 disables it; llama.cpp's rule: positive logits are divided, negative multiplied.
    pub repeat_penalty: f32,
    /// How many of the most recent tokens the penalty looks at.
    pub repeat_last_n: usize,
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: 0,
        }
    }
}

impl SamplerConfig {
    pub fn greedy() -> Self {
        Self { temperature: 0.0, ..Self::default() }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(InferError::Sampling(m.into()));
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return bad("temperature must be a finite number >= 0");
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top-p must be in (0, 1]");
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad("min-p must be in [0, 1]");
        }
        if self.repeat_penalty <= 0.0 || !self.repeat_penalty.is_finite() {
            return bad("repetition penalty must be > 0");
        }
        Ok(())
    }
}

/// llama.cpp's repetition penalty over the distinct tokens of `recent`.
pub fn apply_repetition_penalty(logits: &mut [f32], recent: &[u32], penalty: f32) {
    if penalty == 1.0 {
        return;
    }
    let mut seen = std::collections::HashSet::new();
    for &t in recent {
        if let Some(l) = logits.get_mut(t as usize) {
            if seen.insert(t) {
                *l = if *l > 0.0 { *l / penalty } else { *l * penalty };
            }
        }
    }
}

/// OpenAI's presence and frequency penalties over `tokens` (what was generated):
/// `logit -= count * frequency + (count > 0) * presence` for every token that occurs.
pub fn apply_presence_frequency(logits: &mut [f32], tokens: &[u32], presence: f32, frequency: f32) {
    if presence == 0.0 && frequency == 0.0 {
        return;
    }
    let mut counts = std::collections::HashMap::new();
    for &t in tokens {
        *counts.entry(t).or_insert(0u32) += 1;
    }
    for (t, n) in counts {
        if let Some(l) = logits.get_mut(t as usize) {
            *l -= n as f32 * frequency + presence;
        }
    }
}

/// `ln softmax(logits)` of every entry, in f64 sums.
pub fn log_softmax(logits: &[f32]) -> Vec<f32> {
    let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&v| ((v - m) as f64).exp()).sum();
    let ln = sum.ln() as f32 + m;
    logits.iter().map(|&v| v - ln).collect()
}

/// The index of the largest logit (the lowest index among equals).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// The `k` largest (id, logit) pairs, largest first (ties by lower id).
pub fn top_n(logits: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
    let k = k.min(idx.len());
    if k == 0 {
        return vec![];
    }
    let cmp = |a: &u32, b: &u32| logits[*b as usize].total_cmp(&logits[*a as usize]).then(a.cmp(b));
    idx.select_nth_unstable_by(k - 1, cmp);
    idx.truncate(k);
    idx.sort_by(cmp);
    idx.into_iter().map(|i| (i, logits[i as usize])).collect()
}

/// Picks a token from `logits` with the settings of `cfg`, the tokens generated so far
/// (`recent`, for the penalty) and a uniform draw `u` in [0, 1).
pub fn sample(logits: &[f32], cfg: &SamplerConfig, recent: &[u32], u: f32) -> u32 {
    let mut l = logits.to_vec();
    let start = recent.len().saturating_sub(cfg.repeat_last_n);
    apply_repetition_penalty(&mut l, &recent[start..], cfg.repeat_penalty);
    if cfg.temperature <= 0.0 {
        return argmax(&l);
    }
    // Candidates sorted by logit, cut by top-k.
    let k = if cfg.top_k == 0 { l.len() } else { cfg.top_k.min(l.len()) };
    let mut cand = top_n(&l, k);
    // Softmax over the candidates (at temperature 1, as llama.cpp's top-p / min-p see them).
    let probs = |c: &[(u32, f32)], t: f32| -> Vec<f32> {
        let m = c[0].1;
        let e: Vec<f32> = c.iter().map(|&(_, v)| ((v - m) / t).exp()).collect();
        let s: f32 = e.iter().sum();
        e.into_iter().map(|v| v / s).collect()
    };
    if cfg.top_p < 1.0 {
        let p = probs(&cand, 1.0);
        let mut cum = 0.0;
        let mut keep = cand.len();
        for (i, &pi) in p.iter().enumerate() {
            cum += pi;
            if cum >= cfg.top_p {
                keep = i + 1;
                break;
            }
        }
        cand.truncate(keep.max(1));
    }
    if cfg.min_p > 0.0 {
        let p = probs(&cand, 1.0);
        let floor = p[0] * cfg.min_p;
        let keep = p.iter().take_while(|&&pi| pi >= floor).count();
        cand.truncate(keep.max(1));
    }
    let p = probs(&cand, cfg.temperature);
    let mut cum = 0.0;
    for (&(id, _), &pi) in cand.iter().zip(&p) {
        cum += pi;
        if u < cum {
            return id;
        }
    }
    cand.last().map(|c| c.0).unwrap_or(0)
}

/// A small deterministic generator (SplitMix64) for the draws.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// A uniform f32 in [0, 1).
    pub fn next_f32(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 40) as f32 / (1u64 << 24) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_argmax_after_the_penalty() {
        let logits = [1.0, 3.0, 2.0];
        assert_eq!(sample(&logits, &SamplerConfig::greedy(), &[], 0.5), 1);
        let cfg = SamplerConfig { repeat_penalty: 2.0, ..SamplerConfig::greedy() };
        // 3.0 / 2 = 1.5 < 2.0: token 2 wins once token 1 is penalised.
        assert_eq!(sample(&logits, &cfg, &[1], 0.5), 2);
    }

    #[test]
    fn negative_logits_are_multiplied_by_the_penalty() {
        let mut l = [-1.0, 2.0];
        apply_repetition_penalty(&mut l, &[0, 0, 1], 2.0);
        assert_eq!(l, [-2.0, 1.0]);
    }

    /// Temperature 1 and no top-k, top-p or min-p cut.
    fn untruncated() -> SamplerConfig {
        SamplerConfig { temperature: 1.0, top_k: 0, top_p: 1.0, min_p: 0.0, ..Default::default() }
    }

    #[test]
    fn the_draw_walks_the_cumulative_distribution() {
        // Equal logits, temperature 1, no truncation: four tokens of 1/4 each.
        let cfg = untruncated();
        let l = [0.0; 4];
        assert_eq!(sample(&l, &cfg, &[], 0.0), 0);
        assert_eq!(sample(&l, &cfg, &[], 0.26), 1);
        assert_eq!(sample(&l, &cfg, &[], 0.74), 2);
        assert_eq!(sample(&l, &cfg, &[], 0.99), 3);
    }

    #[test]
    fn top_k_top_p_and_min_p_cut_the_tail() {
        // Probabilities about 0.64, 0.24, 0.09, 0.03.
        let l = [3.0, 2.0, 1.0, 0.0];
        let base = untruncated();
        let k1 = SamplerConfig { top_k: 1, ..base.clone() };
        assert_eq!(sample(&l, &k1, &[], 0.99), 0);
        let p = SamplerConfig { top_p: 0.8, ..base.clone() };
        // Keeps tokens 0 and 1 (0.64 + 0.24 >= 0.8); a draw of 0.99 lands on token 1.
        assert_eq!(sample(&l, &p, &[], 0.99), 1);
        let m = SamplerConfig { min_p: 0.2, ..base };
        // 0.24 >= 0.2 * 0.64 stays, 0.09 does not.
        assert_eq!(sample(&l, &m, &[], 0.99), 1);
    }

    #[test]
    fn presence_and_frequency_follow_openais_formula() {
        let mut l = [1.0, 1.0, 1.0];
        // Token 0 twice, token 2 once: 1 - 2 * 0.5 - 0.25 and 1 - 0.5 - 0.25.
        apply_presence_frequency(&mut l, &[0, 2, 0, 7], 0.25, 0.5);
        assert_eq!(l, [-0.25, 1.0, 0.25]);
    }

    #[test]
    fn log_softmax_of_equal_logits_is_minus_ln_n() {
        let lp = log_softmax(&[3.0; 4]);
        assert!(lp.iter().all(|&v| (v + 4f32.ln()).abs() < 1e-6), "{lp:?}");
    }

    #[test]
    fn the_rng_is_deterministic_and_in_range() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        for _ in 0..1000 {
            let x = a.next_f32();
            assert_eq!(x, b.next_f32());
            assert!((0.0..1.0).contains(&x));
        }
    }
}
