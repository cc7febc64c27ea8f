//! Helpers shared by the integration tests.
#![allow(dead_code)]

use bitnet_train::layers::QuantMode;
use bitnet_train::models::{ModelConfig, Preset};

/// A small BitNet config (2 layers, width 64, GQA 4:2) for fast tests.
pub fn micro_config(quant: QuantMode, hadamard: bool) -> ModelConfig {
    let mut c = Preset::Tiny.config();
    c.hidden_size = 64;
    c.intermediate_size = 128;
    c.num_hidden_layers = 2;
    c.num_attention_heads = 4;
    c.num_key_value_heads = Some(2);
    c.vocab_size = 97;
    c.max_position_embeddings = 32;
    c.set_quant(quant, hadamard);
    c
}
