//! Shared helpers of the engine's integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// A file under the repository's `data/` directory, which `scripts/fetch-data.sh` fills. The
/// tests that need it fail (never skip) when it is missing.
pub fn data_file(rel: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data").join(rel);
    assert!(p.exists(), "{} is missing: run scripts/fetch-data.sh first", p.display());
    p
}

/// A file under this crate's `tests/fixtures/`.
pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(rel)
}

pub fn read_json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("read json")).expect("parse json")
}

pub fn smollm2() -> PathBuf {
    data_file("models/SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// Indices of the `k` largest values, largest first.
pub fn top_k(logits: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..logits.len()).collect();
    idx.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    idx.truncate(k);
    idx
}

pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

/// transformers' reference of an `hf-*` fixture: (prompt, per-position logits, greedy tokens).
pub fn hf_expected(name: &str) -> (Vec<u32>, Vec<Vec<f32>>, Vec<u32>) {
    let want = read_json(&fixture(name).join("expected.json"));
    let logits = want["logits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect())
        .collect();
    (ids(&want["prompt"]), logits, ids(&want["greedy"]))
}

/// The engine's logits at every prompt position (vocab-wide rows) and `n_greedy` greedy tokens
/// after the prompt, for the model at `path` (GGUF file or Hugging Face directory).
pub fn run_model(
    path: &std::path::Path,
    prompt: &[u32],
    n_greedy: usize,
) -> (Vec<Vec<f32>>, Vec<u32>) {
    use bitnet_infer::{load::open_model, Engine, Logits};
    let engine = Engine::new(open_model(path).unwrap(), 2).unwrap();
    let vocab = engine.config().vocab_size;
    let mut st = engine.new_state(64).unwrap();
    let all = engine.forward(&mut st, prompt, Logits::All).unwrap();
    let logits: Vec<Vec<f32>> = all.chunks(vocab).map(|r| r.to_vec()).collect();
    let mut next = top_k(logits.last().unwrap(), 1)[0] as u32;
    let mut greedy = vec![next];
    while greedy.len() < n_greedy {
        next = top_k(engine.forward(&mut st, &[next], Logits::Last).unwrap(), 1)[0] as u32;
        greedy.push(next);
    }
    (logits, greedy)
}

/// The largest absolute difference between two sets of logit rows (over `b`'s columns).
pub fn max_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len(), "row count");
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p - q).abs()))
        .fold(0.0, f32::max)
}
