//! Small random BitNetForCausalLM checkpoints made by Hugging Face transformers
//! (tools/make_hf_fixtures.py): online latent weights, offline packed with the autobitlinear
//! scale convention, and offline packed with the bitlinear one. The engine must reproduce
//! transformers' greedy tokens exactly and its logits within 0.15.

mod common;

fn check(name: &str) {
    let (prompt, want, greedy) = common::hf_expected(name);
    let (logits, got) = common::run_model(&common::fixture(name), &prompt, greedy.len());
    let worst = common::max_diff(&logits, &want);
    assert!(worst <= 0.15, "{name}: logits differ from transformers by up to {worst}");
    assert_eq!(got, greedy, "{name}: greedy tokens");
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
