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
