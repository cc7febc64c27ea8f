//! Perplexity of SmolLM2-135M-Instruct (Q4_1) on Austen's Persuasion by llama.cpp's method
//! (32 non-overlapping 512-token windows from the start, no BOS, positions 1..511 scored) must
//! be within 1% of llama.cpp's own figure for the same file (fixture made with
//! llama-cpp-python 0.3.36). This is the slowest test of the crate (about 4 minutes on two
//! cores), kept in its own binary so it runs alone.

mod common;
use bitnet_infer::ppl::perplexity;
use bitnet_infer::{Engine, Model, Tokenizer};

#[test]
fn persuasion_perplexity_is_within_one_percent_of_llama_cpp() {
    let want = common::read_json(&common::fixture("llamacpp_ppl_persuasion.json"));
    let model = Model::load_gguf(&common::smollm2()).unwrap();
    let tok = Tokenizer::from_gguf(&model.gguf.as_ref().unwrap().header).unwrap();
    let text = std::fs::read_to_string(common::data_file("austen/persuasion.txt")).unwrap();
    let mut tokens = tok.encode(&text, false).unwrap();
    assert_eq!(tokens.len() as u64, want["total_tokens_in_text"].as_u64().unwrap());
    let (windows, ctx) = (want["windows"].as_u64().unwrap() as usize, 512);
    tokens.truncate(windows * ctx);
    let engine = Engine::new(model, 2).unwrap();
    let r = perplexity(&engine, &tokens, ctx, |_, _, _| {}).unwrap();
    assert_eq!(r.scored_tokens as u64, want["scored_tokens"].as_u64().unwrap());
    let reference = want["ppl"].as_f64().unwrap();
    let rel = (r.ppl - reference).abs() / reference;
    assert!(rel < 0.01, "ppl {} vs llama.cpp {reference}: {:.3}% apart", r.ppl, rel * 100.0);
}
