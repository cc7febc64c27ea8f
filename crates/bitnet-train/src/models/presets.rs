//! Size presets. `700m`, `1.3b` and `3b` are the shapes of the BitNet b1.58 paper (Table 1 of
//! arXiv:2402.17764, with the learning rates of Microsoft's "Training Tips, Code and FAQ");
//! `2b4t` is microsoft/bitnet-b1.58-2B-4T's published `config.json`.

use super::config::{ModelConfig, QuantizationConfig};
use crate::layers::Activation;
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    Tiny,
    M125,
    M700,
    B1_3,
    B3,
    B2B4T,
}

/// Training defaults that come with a preset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PresetDefaults {
    /// Stage-1 and stage-2 peak learning rates of the two-stage schedule.
    pub lr: (f64, f64),
    pub seq_len: usize,
    pub batch_size: usize,
}

impl Preset {
    pub const ALL: [Preset; 6] =
        [Preset::Tiny, Preset::M125, Preset::M700, Preset::B1_3, Preset::B3, Preset::B2B4T];

    pub fn name(self) -> &'static str {
        match self {
            Preset::Tiny => "tiny",
            Preset::M125 => "125m",
            Preset::M700 => "700m",
            Preset::B1_3 => "1.3b",
            Preset::B3 => "3b",
            Preset::B2B4T => "2b4t",
        }
    }

    /// The architecture. `vocab_size` is the preset's default; training on a tokenizer replaces it
    /// with the tokenizer's size.
    pub fn config(self) -> ModelConfig {
        // (hidden, glu, heads, kv heads, layers, vocab, positions, theta)
        let (h, i, nh, nkv, l, v, pos, theta) = match self {
            Preset::Tiny => (256, 768, 4, 2, 4, 4096, 256, 10_000.0),
            Preset::M125 => (768, 2048, 12, 4, 12, 32_000, 2048, 10_000.0),
            Preset::M700 => (1536, 4096, 24, 24, 24, 32_000, 2048, 10_000.0),
            Preset::B1_3 => (2048, 5460, 32, 32, 24, 32_000, 2048, 10_000.0),
            Preset::B3 => (3200, 8640, 32, 32, 26, 32_000, 2048, 10_000.0),
            Preset::B2B4T => (2560, 6912, 20, 5, 30, 128_256, 4096, 500_000.0),
        };
        let is_2b4t = self == Preset::B2B4T;
        ModelConfig {
            architectures: vec!["BitNetForCausalLM".into()],
            model_type: "bitnet".into(),
            hidden_size: h,
            intermediate_size: i,
            num_hidden_layers: l,
            num_attention_heads: nh,
            num_key_value_heads: Some(nkv),
            head_dim: None,
            vocab_size: v,
            max_position_embeddings: pos,
            rms_norm_eps: 1e-5,
            rope_theta: theta,
            hidden_act: Activation::Relu2,
            tie_word_embeddings: true,
            initializer_range: 0.02,
            bos_token_id: is_2b4t.then_some(128_000),
            eos_token_id: is_2b4t.then_some(128_001),
            pad_token_id: None,
            quantization_config: Some(QuantizationConfig {
                quant_method: "bitnet".into(),
                linear_class: "autobitlinear".into(),
                quantization_mode: "online".into(),
                bitnet_quant: None,
                hadamard: false,
                use_rms_norm: None,
                rms_norm_eps: None,
            }),
            torch_dtype: Some("float32".into()),
            transformers_version: None,
            attention_bias: Some(false),
            mlp_bias: None,
            attention_dropout: None,
            use_cache: None,
            pretraining_tp: None,
            rope_scaling: None,
            auto_map: None,
        }
    }

    pub fn defaults(self) -> PresetDefaults {
        let (lr, seq_len, batch_size) = match self {
            Preset::Tiny => ((3e-3, 2e-3), 128, 8),
            Preset::M125 => ((1.8e-3, 1.2e-3), 512, 8),
            Preset::M700 => ((1.5e-3, 1e-3), 2048, 4),
            Preset::B1_3 | Preset::B3 => ((1.2e-3, 8e-4), 2048, 2),
            Preset::B2B4T => ((1.2e-3, 8e-4), 4096, 1),
        };
        PresetDefaults { lr, seq_len, batch_size }
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Preset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.to_ascii_lowercase();
        Preset::ALL.into_iter().find(|p| p.name() == s).ok_or_else(|| {
            let names: Vec<_> = Preset::ALL.iter().map(|p| p.name()).collect();
            format!("unknown preset {s:?}; expected one of {names:?}")
        })
    }
}
