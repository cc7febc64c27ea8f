//! The decoder: gradients reach every parameter, the mask is causal, labels are shifted, and the
//! configuration and tensor names are Hugging Face's.

mod common;

use bitnet_train::layers::QuantMode;
use bitnet_train::models::{CausalLm, ModelConfig, Preset};
use candle_core::{Device, Tensor};
use common::micro_config;

fn ids(v: &[u32], b: usize) -> Tensor {
    Tensor::from_vec(v.to_vec(), (b, v.len() / b), &Device::Cpu).unwrap()
}

fn tokens(n: usize, seed: u32) -> Vec<u32> {
    (0..n as u32).map(|i| (i * 31 + seed * 7 + 3) % 97).collect()
}

#[test]
fn every_parameter_gets_a_nonzero_gradient() {
    let mut variants = vec![
        micro_config(QuantMode::B158, false),
        micro_config(QuantMode::B1, false),
        micro_config(QuantMode::B158A4, true),
        micro_config(QuantMode::None, false),
    ];
    let mut llama = micro_config(QuantMode::None, false);
    llama.model_type = "llama".into();
    llama.architectures = vec!["LlamaForCausalLM".into()];
    llama.hidden_act = serde_json::from_str("\"silu\"").unwrap();
    llama.tie_word_embeddings = false;
    variants.push(llama);
    for cfg in variants {
        let m = CausalLm::new(&cfg, 7, &Device::Cpu).unwrap();
        let x = ids(&tokens(2 * 16, 1), 2);
        let grads = m.loss(&x, &x).unwrap().backward().unwrap();
        for (name, var) in m.params.iter() {
            let g = grads.get(var.as_tensor()).unwrap_or_else(|| {
                panic!("{} {}: no gradient for {name}", cfg.model_type, cfg.quant())
            });
            let n = g.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(
                n > 0.0 && n.is_finite(),
                "{} {}: gradient of {name} is {n}",
                cfg.model_type,
                cfg.quant()
            );
        }
    }
}

#[test]
fn changing_a_later_token_leaves_earlier_logits_unchanged() {
    for quant in [QuantMode::B158, QuantMode::None] {
        let m = CausalLm::new(&micro_config(quant, false), 3, &Device::Cpu).unwrap();
        let a = tokens(20, 2);
        let t = 11;
        let mut b = a.clone();
        b[t + 1] = (b[t + 1] + 5) % 97;
        let la = m.forward(&ids(&a, 1)).unwrap();
        let lb = m.forward(&ids(&b, 1)).unwrap();
        let before = |l: &Tensor| -> Vec<f32> {
            l.narrow(1, 0, t + 1).unwrap().flatten_all().unwrap().to_vec1().unwrap()
        };
        assert_eq!(before(&la), before(&lb), "{quant}: positions <= t changed");
        let after = |l: &Tensor| -> Vec<f32> {
            l.narrow(1, t + 1, 1).unwrap().flatten_all().unwrap().to_vec1().unwrap()
        };
        assert_ne!(after(&la), after(&lb), "{quant}: position t+1 did not change");
    }
}

#[test]
fn loss_scores_each_position_against_the_next_label() {
    let m = CausalLm::new(&micro_config(QuantMode::B158, false), 5, &Device::Cpu).unwrap();
    let seq = tokens(2 * 12, 4);
    let x = ids(&seq, 2);
    let loss = m.loss(&x, &x).unwrap().to_scalar::<f32>().unwrap() as f64;
    let logits: Vec<Vec<Vec<f32>>> = m.forward(&x).unwrap().to_vec3().unwrap();
    let mut sum = 0.0;
    let mut n = 0;
    for (b, row) in logits.iter().enumerate() {
        for t in 0..11 {
            let l = &row[t];
            let max = l.iter().cloned().fold(f32::MIN, f32::max) as f64;
            let lse = l.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln() + max;
            sum += lse - l[seq[b * 12 + t + 1] as usize] as f64;
            n += 1;
        }
    }
    assert!((loss - sum / n as f64).abs() < 1e-4, "{loss} vs {}", sum / n as f64);
}

#[test]
fn checkpoint_names_and_config_are_hugging_face_bitnet() {
    let cfg = micro_config(QuantMode::B158, false);
    let m = CausalLm::new(&cfg, 1, &Device::Cpu).unwrap();
    let names: Vec<&String> = m.params.iter().map(|(k, _)| k).collect();
    for want in [
        "model.embed_tokens.weight",
        "model.norm.weight",
        "model.layers.1.input_layernorm.weight",
        "model.layers.1.post_attention_layernorm.weight",
        "model.layers.1.self_attn.q_proj.weight",
        "model.layers.1.self_attn.k_proj.weight",
        "model.layers.1.self_attn.v_proj.weight",
        "model.layers.1.self_attn.o_proj.weight",
        "model.layers.1.self_attn.attn_sub_norm.weight",
        "model.layers.1.mlp.gate_proj.weight",
        "model.layers.1.mlp.up_proj.weight",
        "model.layers.1.mlp.down_proj.weight",
        "model.layers.1.mlp.ffn_sub_norm.weight",
    ] {
        assert!(names.iter().any(|n| *n == want), "missing {want}");
    }
    assert_eq!(names.len(), 2 + 2 * 11, "tied embeddings: no lm_head.weight");
    let k = m.params.get("model.layers.0.self_attn.k_proj.weight").unwrap();
    assert_eq!(k.dims(), &[2 * 16, 64], "[out, in] with 2 kv heads of 16");
    assert_eq!(m.params.num_elements(), cfg.num_params());

    let json: serde_json::Value = serde_json::from_str(&cfg.to_json()).unwrap();
    assert_eq!(json["model_type"], "bitnet");
    assert_eq!(json["architectures"][0], "BitNetForCausalLM");
    assert_eq!(json["hidden_act"], "relu2");
    assert_eq!(json["quantization_config"]["quant_method"], "bitnet");
    assert_eq!(json["quantization_config"]["quantization_mode"], "online");
    assert_eq!(json["num_key_value_heads"], 2);
}

#[test]
fn the_published_2b4t_config_parses_and_matches_the_preset() {
    // config.json of microsoft/bitnet-b1.58-2B-4T (its keys and values).
    let text = r#"{
      "architectures": ["BitNetForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
      "auto_map": {"AutoConfig": "configuration_bitnet.BitNetConfig",
                   "AutoModelForCausalLM": "modeling_bitnet.BitNetForCausalLM"},
      "bos_token_id": 128000, "eos_token_id": 128001, "hidden_act": "relu2",
      "hidden_size": 2560, "initializer_range": 0.02, "intermediate_size": 6912,
      "max_position_embeddings": 4096, "model_type": "bitnet", "rms_norm_eps": 1e-05,
      "num_attention_heads": 20, "num_hidden_layers": 30, "num_key_value_heads": 5,
      "rope_theta": 500000.0, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
      "use_cache": true, "vocab_size": 128256,
      "quantization_config": {"quant_method": "bitnet", "linear_class": "autobitlinear",
                              "quantization_mode": "offline"}
    }"#;
    let c = ModelConfig::from_json(text, "2b4t").unwrap();
    let p = Preset::B2B4T.config();
    assert_eq!(
        (c.hidden_size, c.intermediate_size, c.num_hidden_layers, c.num_attention_heads),
        (p.hidden_size, p.intermediate_size, p.num_hidden_layers, p.num_attention_heads)
    );
    assert_eq!((c.kv_heads(), c.head_dim(), c.vocab_size), (5, 128, 128_256));
    assert_eq!(c.rope_theta, p.rope_theta);
    assert_eq!(c.quant(), QuantMode::B158);
    // 2.41B parameters with the tied 128256 x 2560 embedding.
    assert_eq!(c.num_params(), 2_412_820_480);
}

#[test]
fn presets_have_the_paper_shapes() {
    let shape = |p: Preset| {
        let c = p.config();
        (c.hidden_size, c.intermediate_size, c.num_attention_heads, c.num_hidden_layers)
    };
    assert_eq!(shape(Preset::M700), (1536, 4096, 24, 24));
    assert_eq!(shape(Preset::B1_3), (2048, 5460, 32, 24));
    assert_eq!(shape(Preset::B3), (3200, 8640, 32, 26));
    assert_eq!(Preset::M700.defaults().lr, (1.5e-3, 1e-3));
    assert_eq!(Preset::B1_3.defaults().lr, (1.2e-3, 8e-4));
    assert_eq!(Preset::B3.defaults().lr, (1.2e-3, 8e-4));
    let tiny = Preset::Tiny.config().num_params();
    assert!((1_000_000..10_000_000).contains(&tiny), "tiny has {tiny} parameters");
}

#[test]
fn config_with_a_misspelt_key_is_rejected() {
    let mut v: serde_json::Value = serde_json::from_str(&Preset::Tiny.config().to_json()).unwrap();
    v["hiden_size"] = 12.into();
    let err = ModelConfig::from_json(&v.to_string(), "cfg.json").unwrap_err().to_string();
    assert!(err.contains("hiden_size"), "{err}");
    let mut v: serde_json::Value = serde_json::from_str(&Preset::Tiny.config().to_json()).unwrap();
    v["num_key_value_heads"] = 3.into();
    let err = ModelConfig::from_json(&v.to_string(), "cfg.json").unwrap_err().to_string();
    assert!(err.contains("multiple"), "{err}");
}

#[test]
fn cached_weight_quantization_gives_the_same_forward_and_gradients() {
    let m = CausalLm::new(&micro_config(QuantMode::B158, false), 9, &Device::Cpu).unwrap();
    let x = ids(&tokens(2 * 16, 3), 2);
    let grads_of = |m: &CausalLm| {
        let loss = m.loss(&x, &x).unwrap();
        let g = loss.backward().unwrap();
        let w = m.params.get("model.layers.0.mlp.up_proj.weight").unwrap();
        let gw: Vec<f32> = g.get(w.as_tensor()).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        (loss.to_scalar::<f32>().unwrap(), gw)
    };
    let plain = grads_of(&m);
    m.cache_weight_quant().unwrap();
    assert_eq!(grads_of(&m), plain);
    m.clear_weight_quant();
    assert_eq!(grads_of(&m), plain);
}
