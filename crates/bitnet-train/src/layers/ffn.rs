//! Gated feed-forward networks: `down(sub_norm(act(gate(x)) * up(x)))`, with ReLU² (BitNet
//! 2B4T), SiLU (SwiGLU, LLaMA) or GELU (GeGLU). The BitNet variant has `ffn_sub_norm`.

use super::{BitLinear, RmsNorm};
use candle_core::{Result, Tensor};
use serde::{Deserialize, Serialize};

/// The gate activation, with the Hugging Face `hidden_act` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    Relu2,
    Silu,
    Gelu,
}

impl Activation {
    pub fn apply(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Activation::Relu2 => x.relu()?.sqr(),
            Activation::Silu => x.silu(),
            Activation::Gelu => x.gelu_erf(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Ffn {
    pub gate_proj: BitLinear,
    pub up_proj: BitLinear,
    pub down_proj: BitLinear,
    pub sub_norm: Option<RmsNorm>,
    pub act: Activation,
}

impl Ffn {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = (self.act.apply(&self.gate_proj.forward(x)?)? * self.up_proj.forward(x)?)?;
        let h = match &self.sub_norm {
            Some(n) => n.forward(&h)?,
            None => h,
        };
        self.down_proj.forward(&h)
    }
}
