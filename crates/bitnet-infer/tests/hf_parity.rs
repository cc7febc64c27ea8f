//! Small random BitNetForCausalLM checkpoints made by Hugging Face transformers
//! (tools/make_hf_fixtures.py): online latent weights, offline packed with the autobitlinear
//! scale convention, and offline packed with the bitlinear one. The engine must reproduce
//! transformers' greedy tokens exactly and its logits within 0.15.

mod common;
use bitnet_infer::{Engine, Logits, Model};

fn check(name: &str) {
    let dir = common::fixture(name);
    let want = common::read_json(&dir.join("expected.json"));
    let prompt: Vec<u32> =
        want["prompt"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
    let engine = Engine::new(Model::load_hf(&dir).unwrap(), 2).unwrap();
    let vocab = engine.config().vocab_size;
    let mut st = engine.new_state(64).unwrap();
    let logits = engine.forward(&mut st, &prompt, Logits::All).unwrap().to_vec();
    let mut worst = 0.0f32;
    for (pos, row) in want["logits"].as_array().unwrap().iter().enumerate() {
        for (i, v) in row.as_array().unwrap().iter().enumerate() {
            worst = worst.max((logits[pos * vocab + i] - v.as_f64().unwrap() as f32).abs());
        }
    }
    assert!(worst <= 0.15, "{name}: logits differ from transformers by up to {worst}");
    let greedy: Vec<u32> =
        want["greedy"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
    let mut st = engine.new_state(64).unwrap();
    let mut next =
        common::top_k(engine.forward(&mut st, &prompt, Logits::Last).unwrap(), 1)[0] as u32;
    let mut got = vec![next];
    while got.len() < greedy.len() {
        next = common::top_k(engine.forward(&mut st, &[next], Logits::Last).unwrap(), 1)[0] as u32;
        got.push(next);
    }
    assert_eq!(got, greedy, "{name}: greedy tokens");
    eprintln!("{name}: max logit difference {worst:.4}");
}

#[test]
fn online_latent_weights_match_transformers() {
    check("hf-online");
}

#[test]
fn offline_packed_autobitlinear_matches_transformers() {
    check("hf-offline");
}

#[test]
fn offline_packed_bitlinear_matches_transformers() {
    check("hf-bitlinear");
}
