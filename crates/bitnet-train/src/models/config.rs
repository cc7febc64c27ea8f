//! `config.json` in Hugging Face's schema: `model_type: "bitnet"` (`BitNetForCausalLM`, the
//! microsoft/bitnet-b1.58-2B-4T layout) or `"llama"` (`LlamaForCausalLM`).

use crate::error::{Result, TrainError};
use crate::layers::{Activation, QuantMode};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// `quantization_config` of a `BitNetForCausalLM` checkpoint. `quant_method`, `linear_class` and
/// `quantization_mode` are transformers' keys; `bitnet_quant` and `hadamard` record the training
/// variant (absent means b1.58 without Hadamard, the only one transformers implements).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuantizationConfig {
    pub quant_method: String,
    #[serde(default = "default_linear_class")]
    pub linear_class: String,
    #[serde(default = "default_quantization_mode")]
    pub quantization_mode: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bitnet_quant: Option<QuantMode>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hadamard: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_rms_norm: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rms_norm_eps: Option<f64>,
}

fn default_linear_class() -> String {
    "autobitlinear".into()
}
fn default_quantization_mode() -> String {
    "online".into()
}

/// The model hyper-parameters. Unknown keys are an error (a misspelt key must not be silently
/// ignored); the Hugging Face keys we do not use are accepted and kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    #[serde(default)]
    pub architectures: Vec<String>,
    pub model_type: String,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<usize>,
    pub vocab_size: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    #[serde(default = "default_theta")]
    pub rope_theta: f64,
    pub hidden_act: Activation,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default = "default_init")]
    pub initializer_range: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bos_token_id: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eos_token_id: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pad_token_id: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantization_config: Option<QuantizationConfig>,
    // Accepted Hugging Face keys that do not change the computation here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub torch_dtype: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transformers_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention_bias: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mlp_bias: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention_dropout: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_cache: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pretraining_tp: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_scaling: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_map: Option<serde_json::Value>,
}

fn default_eps() -> f64 {
    1e-5
}
fn default_theta() -> f64 {
    10000.0
}
fn default_init() -> f64 {
    0.02
}

impl ModelConfig {
    pub fn from_json(text: &str, origin: &str) -> Result<Self> {
        let cfg: ModelConfig = serde_json::from_str(text)
            .map_err(|e| TrainError::Config { path: origin.into(), msg: e.to_string() })?;
        cfg.validate().map_err(|msg| TrainError::Config { path: origin.into(), msg })?;
        Ok(cfg)
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        Self::from_json(&text, &path.display().to_string())
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("config serializes")
    }

    /// Shape checks that make the model buildable.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.model_type != "bitnet" && self.model_type != "llama" {
            return Err(format!(
                "model_type {:?}: expected \"bitnet\" or \"llama\"",
                self.model_type
            ));
        }
        let pos = [
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("vocab_size", self.vocab_size),
            ("max_position_embeddings", self.max_position_embeddings),
        ];
        if let Some((k, _)) = pos.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{k} must be positive"));
        }
        let (nh, nkv) = (self.num_attention_heads, self.kv_heads());
        if nkv == 0 || nh % nkv != 0 {
            return Err(format!(
                "num_attention_heads {nh} is not a multiple of num_key_value_heads {nkv}"
            ));
        }
        if self.head_dim.is_none() && !self.hidden_size.is_multiple_of(nh) {
            return Err(format!("hidden_size {} is not divisible by {nh} heads", self.hidden_size));
        }
        if !self.head_dim().is_multiple_of(2) {
            return Err(format!("head_dim {} must be even for RoPE", self.head_dim()));
        }
        Ok(())
    }

    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim.unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// BitNet layers have `attn_sub_norm` and `ffn_sub_norm`.
    pub fn has_sub_norms(&self) -> bool {
        self.model_type == "bitnet"
    }

    /// What the linear layers quantize: `quantization_config.bitnet_quant`, else b1.58 for
    /// `bitnet` models and none for `llama` models without a quantization config.
    pub fn quant(&self) -> QuantMode {
        match &self.quantization_config {
            Some(q) => q.bitnet_quant.unwrap_or(QuantMode::B158),
            None if self.model_type == "bitnet" => QuantMode::B158,
            None => QuantMode::None,
        }
    }

    pub fn hadamard(&self) -> bool {
        self.quantization_config.as_ref().is_some_and(|q| q.hadamard)
    }

    /// Sets the quantization variant, keeping the Hugging Face keys consistent.
    pub fn set_quant(&mut self, quant: QuantMode, hadamard: bool) {
        self.quantization_config = Some(QuantizationConfig {
            quant_method: if quant == QuantMode::None { "none" } else { "bitnet" }.into(),
            linear_class: default_linear_class(),
            quantization_mode: default_quantization_mode(),
            bitnet_quant: (quant != QuantMode::B158).then_some(quant),
            hadamard,
            use_rms_norm: None,
            rms_norm_eps: None,
        });
        if self.model_type == "llama" && quant == QuantMode::None && !hadamard {
            self.quantization_config = None;
        }
    }

    /// Parameter count (embedding and head included once if tied).
    pub fn num_params(&self) -> usize {
        let (h, i, hd) = (self.hidden_size, self.intermediate_size, self.head_dim());
        let q = self.num_attention_heads * hd;
        let kv = self.kv_heads() * hd;
        let attn = h * q + 2 * h * kv + q * h;
        let ffn = 3 * h * i;
        let sub = if self.has_sub_norms() { q + i } else { 0 };
        let layer = attn + ffn + 2 * h + sub;
        let embed = self.vocab_size * h * if self.tie_word_embeddings { 1 } else { 2 };
        self.num_hidden_layers * layer + embed + h
    }
}
