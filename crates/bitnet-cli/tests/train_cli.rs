//! `bitnet train`, `bitnet data prepare` and `bitnet tokenizer train` end to end, and the bad
//! input they must refuse with a clear error (exit status 1, never a panic's 101).

use std::path::Path;
use std::process::{Command, Output};

fn bitnet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bitnet"))
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .expect("run bitnet")
}

fn fails_with(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

const MICRO: &str = r#"{"model_type": "bitnet", "architectures": ["BitNetForCausalLM"],
  "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1,
  "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 4096,
  "max_position_embeddings": 64, "hidden_act": "relu2", "tie_word_embeddings": true}"#;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn missing_data_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let missing = dir.path().join("nope.txt");
    fails_with(&bitnet(&["train", "--data", s(&missing), "--out", s(&out)]), "no such file");
    assert!(!out.exists(), "no output before the input is checked");
}

#[test]
fn empty_corpus_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    let out = dir.path().join("run");
    fails_with(
        &bitnet(&["train", "--data", s(&empty), "--out", s(&out), "--steps", "2"]),
        "corpus is empty",
    );
}

#[test]
fn config_with_wrong_keys_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.json");
    std::fs::write(&cfg, MICRO.replace("hidden_size", "hidden_dim")).unwrap();
    let out = bitnet(&["train", "--config", s(&cfg), "--out", s(&dir.path().join("run"))]);
    fails_with(&out, "unknown field `hidden_dim`");
}

#[test]
fn preset_that_does_not_fit_in_memory_is_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let o = bitnet(&[
        "train",
        "--preset",
        "3b",
        "--batch-size",
        "64",
        "--seq-len",
        "2048",
        "--out",
        s(&out),
    ]);
    fails_with(&o, "GiB of memory is available");
    assert!(!out.exists());
    fails_with(&bitnet(&["train", "--preset", "5b"]), "unknown preset");
}

#[test]
fn prepare_then_train_then_resume() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("text.txt");
    let corpus: String = bitnet_train::bundled::SHAKESPEARE.chars().take(60_000).collect();
    std::fs::write(&text, corpus).unwrap();
    let tok = dir.path().join("tok.json");
    let o = bitnet(&["tokenizer", "train", s(&text), "--vocab-size", "400", "--out", s(&tok)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let prepared = dir.path().join("prepared");
    let o = bitnet(&["data", "prepare", s(&text), "--tokenizer", s(&tok), "--out", s(&prepared)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(prepared.join("train-000.bin").is_file() && prepared.join("meta.json").is_file());

    let cfg = dir.path().join("config.json");
    std::fs::write(&cfg, MICRO.replace("4096", "400")).unwrap();
    let run = dir.path().join("run");
    let common =
        ["--data", s(&prepared), "--steps", "4", "--batch-size", "2", "--seq-len", "32", "--quiet"];
    let mut args = vec!["train", "--config", s(&cfg), "--out", s(&run), "--stop-after", "2"];
    args.extend(common);
    args.extend(["--sample-tokens", "0"]);
    let o = bitnet(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut args = vec!["train", "--resume", s(&run), "--sample-tokens", "8"];
    args.extend(common);
    let o = bitnet(&args);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("steps 2..4"), "{stdout}");
    assert!(stdout.contains("--- sample"), "{stdout}");
    let cfg_out: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg_out["vocab_size"], 400);
    assert!(run.join("tokenizer.json").is_file() && run.join("loss.png").is_file());
}
