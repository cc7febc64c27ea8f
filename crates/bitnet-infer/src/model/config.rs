//! The engine's model configuration: the architecture and its hyper-parameters, whichever file
//! they came from.

use crate::error::{InferError, Result};

/// The forward-pass variants the engine runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// LLaMA: SiLU-gated FFN, no sub-norms (SmolLM2, TinyLlama, ...).
    Llama,
    /// llama.cpp's `bitnet` (1bitLLM's BitNet b1.58 reproduction): sub-norms, SiLU-gated FFN.
    BitNet,
    /// BitNet b1.58 2B4T (`BitNetForCausalLM`, bitnet.cpp's `bitnet-b1.58`): sub-norms, ReLU².
    BitNetB158,
}

impl Arch {
    /// The GGUF `general.architecture` name.
    pub fn gguf_name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::BitNet => "bitnet",
            Arch::BitNetB158 => "bitnet-b1.58",
        }
    }

    pub fn from_gguf_name(name: &str) -> Result<Self> {
        match name {
            "llama" => Ok(Arch::Llama),
            "bitnet" => Ok(Arch::BitNet),
            "bitnet-b1.58" => Ok(Arch::BitNetB158),
            other => Err(InferError::UnknownArch(other.into())),
        }
    }

    pub fn has_sub_norms(self) -> bool {
        self != Arch::Llama
    }

    pub fn ffn_act(self) -> FfnAct {
        match self {
            Arch::BitNetB158 => FfnAct::Relu2,
            _ => FfnAct::Silu,
        }
    }
}

/// The FFN gate activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FfnAct {
    Silu,
    /// `relu(x)^2`.
    Relu2,
}

/// How RoPE pairs the dimensions of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// Dimensions (2i, 2i+1) rotate together: ggml's "normal" mode, used by GGUF `llama` files
    /// (whose converter permutes the Q/K rows of Hugging Face weights to match).
    Interleaved,
    /// Dimensions (i, i + d/2) rotate together: Hugging Face `rotate_half`, ggml's NeoX mode.
    Half,
}

/// Everything the forward pass needs to know about a model's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub arch: Arch,
    pub vocab_size: usize,
    pub hidden: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub ffn_dim: usize,
    /// The context the model was trained for.
    pub max_ctx: usize,
    pub rope_theta: f32,
    pub rope_style: RopeStyle,
    pub norm_eps: f32,
    /// The FFN gate activation (from the architecture or `hidden_act`).
    pub ffn_act: FfnAct,
    /// Whether blocks carry `attn_sub_norm` and `ffn_sub_norm`.
    pub sub_norms: bool,
}

impl Config {
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }

    /// Checks the relations between the numbers.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(InferError::BadConfig(m));
        if self.vocab_size == 0 || self.hidden == 0 || self.n_layers == 0 || self.ffn_dim == 0 {
            return bad(format!("zero size in {self:?}"));
        }
        if self.n_heads == 0
            || self.n_kv_heads == 0
            || !self.n_heads.is_multiple_of(self.n_kv_heads)
        {
            return bad(format!(
                "{} attention heads cannot share {} key/value heads",
                self.n_heads, self.n_kv_heads
            ));
        }
        if self.head_dim == 0 || !self.head_dim.is_multiple_of(2) {
            return bad(format!("head size {} must be even", self.head_dim));
        }
        let eps_ok = self.norm_eps > 0.0 && self.norm_eps < 1.0;
        let theta_ok = self.rope_theta.is_finite() && self.rope_theta > 0.0;
        if !eps_ok || !theta_ok {
            return bad(format!("norm eps {} / rope theta {}", self.norm_eps, self.rope_theta));
        }
        Ok(())
    }
}
