//! RMSNorm from differentiable primitives: `x / sqrt(mean(x^2) + eps) * weight`.

use crate::fused::norm::RmsNormOp;
use crate::fused::OpPath;
use candle_core::{Result, Tensor, D};

#[derive(Debug, Clone)]
pub struct RmsNorm {
    weight: Tensor,
    eps: f64,
    path: OpPath,
}

impl RmsNorm {
    pub fn new(weight: Tensor, eps: f64) -> Self {
        Self { weight, eps, path: OpPath::default() }
    }

    pub fn set_path(&mut self, path: OpPath) {
        self.path = path;
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if self.path.fused_on(x.device()) {
            let op = RmsNormOp { eps: self.eps as f32 };
            return x.contiguous()?.apply_op2(&self.weight, op);
        }
        let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
        let inv = (ms + self.eps)?.sqrt()?.recip()?;
        x.broadcast_mul(&inv)?.broadcast_mul(&self.weight)
    }
}
