//! SmolLM2-135M-Instruct (GGUF, Q4_1 weights, Q8_0 embedding) against llama.cpp's own outputs.
//!
//! Both engines quantize activations to 8 bits before every Q4_1/Q8_0 matmul, and that rounding
//! noise moves this model's logits by up to about 0.5: llama.cpp's batched and token-by-token
//! paths differ from its own reference file by up to 0.51 on the same machine. So the mean top-10
//! difference must stay under 0.35, no single logit may differ by more than 1.0, and, feeding
//! llama.cpp's greedy tokens, each of its choices must be our argmax or within 0.1 of it, and our
//! argmax on at least 90% of the steps. (Today 70 of 72: the "Once upon a time" prompt has two
//! near-ties, gaps 0.026 and 0.098, where llama.cpp takes our runner-up.)

mod common;
use bitnet_infer::chat::{ChatSession, ChatTemplate, Message};
use bitnet_infer::generate::{generate, GenerateOptions};
use bitnet_infer::sampling::SamplerConfig;
use bitnet_infer::{Engine, Logits, Model, Tokenizer};
use common::*;

/// Logit gap under which two candidates are a tie for the 8-bit activation rounding.
const NEAR_TIE: f32 = 0.1;

#[test]
fn logits_and_greedy_tokens_match_llama_cpp() {
    let model = Model::load_gguf(&smollm2()).unwrap();
    let engine = Engine::new(model, 2).unwrap();
    let reference = read_json(&fixture("llamacpp_ref.json"));
    let (mut ties, mut steps) = (0usize, 0usize);
    for case in reference["cases"].as_array().unwrap() {
        let prompt = ids(&case["ids"]);
        let mut st = engine.new_state(256).unwrap();
        let vocab = engine.config().vocab_size;
        let logits = engine.forward(&mut st, &prompt, Logits::All).unwrap().to_vec();
        let (mut worst, mut total, mut count) = (0.0f32, 0.0f32, 0usize);
        for (pos, top) in case["top10_per_position"].as_array().unwrap().iter().enumerate() {
            let row = &logits[pos * vocab..(pos + 1) * vocab];
            for pair in top.as_array().unwrap() {
                let (id, want) = (pair[0].as_u64().unwrap() as usize, pair[1].as_f64().unwrap());
                let diff = (row[id] - want as f32).abs();
                worst = worst.max(diff);
                total += diff;
                count += 1;
            }
        }
        let mean = total / count as f32;
        eprintln!(
            "{:?}: top-10 logits differ by {mean:.3} on average, {worst:.3} at most",
            case["prompt"]
        );
        assert!(mean <= 0.35 && worst <= 1.0, "mean {mean}, max {worst}");
        // Greedy continuation, teacher-forced with llama.cpp's tokens: each of its choices must
        // be our argmax or within NEAR_TIE of it, and our argmax on 90% of the steps.
        let want = ids(&case["greedy_ids"]);
        let mut st = engine.new_state(256).unwrap();
        let mut logits = engine.forward(&mut st, &prompt, Logits::Last).unwrap().to_vec();
        for (i, &w) in want.iter().enumerate() {
            let ours = top_k(&logits, 1)[0];
            if ours != w as usize {
                let gap = logits[ours] - logits[w as usize];
                assert!(
                    gap <= NEAR_TIE,
                    "{:?} step {i}: we pick {ours}, llama.cpp {w}, gap {gap}",
                    case["prompt"]
                );
                eprintln!("{:?} step {i}: near-tie, gap {gap}", case["prompt"]);
                ties += 1;
            }
            logits = engine.forward(&mut st, &[w], Logits::Last).unwrap().to_vec();
        }
        steps += want.len();
    }
    assert!(ties * 10 <= steps, "{ties} of {steps} greedy steps differ (near-ties)");
    eprintln!("greedy: {} of {steps} steps are our argmax", steps - ties);
}

/// A second chat turn reuses the cached conversation and says exactly what a fresh run of the
/// whole rendered conversation says.
#[test]
fn chat_turns_reuse_the_cache_and_match_a_fresh_run() {
    let model = Model::load_gguf(&smollm2()).unwrap();
    let tok = Tokenizer::from_gguf(&model.gguf.as_ref().unwrap().header).unwrap();
    let engine = Engine::new(model, 2).unwrap();
    let opts = GenerateOptions {
        max_tokens: 24,
        sampler: SamplerConfig { temperature: 0.0, ..SamplerConfig::default() },
        stop_ids: tok.stop_ids.clone(),
        stop_strings: vec![],
        record_top: 0,
    };
    let mut chat = ChatSession::new(&engine, &tok, &ChatTemplate::ChatMl, 512, None).unwrap();
    let first = chat.turn("What is the capital of France?", &opts, |_| true).unwrap();
    assert!(first.text.contains("Paris"), "{:?}", first.text);
    let second = chat.turn("And of Germany?", &opts, |_| true).unwrap();
    assert!(chat.reused() > 20, "only {} tokens reused", chat.reused());

    let convo = [
        Message::new("user", "What is the capital of France?"),
        Message::new("assistant", &first.text),
        Message::new("user", "And of Germany?"),
    ];
    let prompt = tok.encode(&ChatTemplate::ChatMl.render(&convo), tok.add_bos).unwrap();
    let mut st = engine.new_state(512).unwrap();
    let fresh = generate(&engine, &mut st, Some(&tok), &prompt, &opts, |_| true).unwrap();
    assert_eq!(second.tokens, fresh.tokens);
    assert!(chat.turn("  ", &opts, |_| true).is_err());
    assert_eq!(chat.messages.len(), 4);
}
