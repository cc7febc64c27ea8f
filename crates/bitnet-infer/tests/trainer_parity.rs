//! Checkpoints written the way `bitnet train` writes them load in the engine and give the
//! training-side forward pass's logits (fake quantization in candle) and greedy tokens.

mod common;
use bitnet_infer::{Engine, KvType, Logits, Model};
use bitnet_train::layers::QuantMode;
use bitnet_train::models::{CausalLm, ModelConfig, Preset};
use bitnet_train::trainer::checkpoint::safetensors_bytes;
use candle_core::{Device, Tensor};

fn config(quant: QuantMode) -> ModelConfig {
    let mut c = Preset::Tiny.config();
    c.hidden_size = 256;
    c.intermediate_size = 256;
    c.num_hidden_layers = 2;
    c.num_attention_heads = 4;
    c.num_key_value_heads = Some(2);
    c.vocab_size = 97;
    c.max_position_embeddings = 64;
    c.set_quant(quant, false);
    c
}

fn check(cfg: ModelConfig, what: &str) {
    let m = CausalLm::new(&cfg, 7, &Device::Cpu).unwrap();
    // Larger weights than the 0.02 init, so the logits are far from uniform.
    for (name, var) in m.params.iter() {
        if !name.contains("norm") {
            var.set(&(var.as_tensor() * 8.0).unwrap()).unwrap();
        }
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), cfg.to_json()).unwrap();
    let bytes = safetensors_bytes(&m.params.tensors(), Default::default()).unwrap();
    std::fs::write(dir.path().join("model.safetensors"), bytes).unwrap();

    let prompt: Vec<u32> = vec![3, 14, 15, 92, 65, 35, 89, 79];
    let ids = Tensor::from_vec(prompt.clone(), (1, prompt.len()), &Device::Cpu).unwrap();
    let want: Vec<f32> = m.forward(&ids).unwrap().flatten_all().unwrap().to_vec1().unwrap();

    let engine = Engine::new(Model::load_hf(dir.path()).unwrap(), 2).unwrap();
    let mut st = engine.new_state_with(32, KvType::F32).unwrap();
    let got = engine.forward(&mut st, &prompt, Logits::All).unwrap().to_vec();
    let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(
        worst <= 1e-4 * scale.max(1.0),
        "{what}: logits differ by {worst} (max |logit| {scale})"
    );

    // Greedy: the training forward over the growing sequence against the engine's KV cache.
    let mut seq = prompt.clone();
    let mut st = engine.new_state_with(32, KvType::F32).unwrap();
    let mut next =
        common::top_k(engine.forward(&mut st, &prompt, Logits::Last).unwrap(), 1)[0] as u32;
    for _ in 0..8 {
        let ids = Tensor::from_vec(seq.clone(), (1, seq.len()), &Device::Cpu).unwrap();
        let l: Vec<f32> = m.forward(&ids).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let v = cfg.vocab_size;
        let train_next = common::top_k(&l[(seq.len() - 1) * v..], 1)[0] as u32;
        assert_eq!(next, train_next, "{what}: greedy token {}", seq.len());
        seq.push(next);
        next = common::top_k(engine.forward(&mut st, &[next], Logits::Last).unwrap(), 1)[0] as u32;
    }
    eprintln!("{what}: max logit difference {worst:.2e} (max |logit| {scale:.2})");
}

#[test]
fn b158_checkpoint_matches_the_training_forward() {
    check(config(QuantMode::B158), "b1.58");
}

#[test]
fn b1_checkpoint_matches_the_training_forward() {
    check(config(QuantMode::B1), "b1");
}

#[test]
fn full_precision_checkpoint_matches_the_training_forward() {
    check(config(QuantMode::None), "fp");
}

#[test]
fn llama_checkpoint_matches_the_training_forward() {
    let mut c = config(QuantMode::None);
    c.model_type = "llama".into();
    c.architectures = vec!["LlamaForCausalLM".into()];
    c.hidden_act = serde_json::from_str("\"silu\"").unwrap();
    c.tie_word_embeddings = false;
    check(c, "llama");
}
