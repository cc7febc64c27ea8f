//! Gated feed-forward networks: `down(sub_norm(act(gate(x)) * up(x)))`, with ReLU² (BitNet
//! 2B4T), SiLU (SwiGLU, LLaMA) or GELU (GeGLU). The BitNet variant has `ffn_sub_norm`.

use super::{BitLinear, RmsNorm};
use crate::fused::glu::GluOp;
use crate::fused::OpPath;
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
    pub path: OpPath,
}

impl Ffn {
    pub fn set_path(&mut self, path: OpPath) {
        self.path = path;
        for l in [&mut self.gate_proj, &mut self.up_proj, &mut self.down_proj] {
            l.set_path(path);
        }
        if let Some(n) = &mut self.sub_norm {
            n.set_path(path);
        }
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (g, u) = (self.gate_proj.forward(x)?, self.up_proj.forward(x)?);
        let h = if self.path.fused_on(x.device()) {
            g.contiguous()?.apply_op2(&u.contiguous()?, GluOp { act: self.act })?
        } else {
            (self.act.apply(&g)? * u)?
        };
        let h = match &self.sub_norm {
            Some(n) => n.forward(&h)?,
            None => h,
        };
        self.down_proj.forward(&h)
    }
}
