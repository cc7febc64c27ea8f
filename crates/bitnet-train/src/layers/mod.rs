//! Differentiable building blocks. Everything here is composed from candle primitives that have a
//! backward pass: candle's fused `rms_norm`, `rope` and `softmax_last_dim` have none, and gradients
//! silently stop at them, so they are never used in training code.

pub mod attention;
pub mod bitlinear;
pub mod ffn;
pub mod norm;
pub mod quant;
pub mod rope;

pub use attention::{causal_mask, Attention};
pub use bitlinear::BitLinear;
pub use ffn::{Activation, Ffn};
pub use norm::RmsNorm;
pub use quant::QuantMode;
pub use rope::Rope;

use candle_core::{Result, Tensor, D};

/// Softmax over the last dimension from differentiable primitives. The row maximum is subtracted
/// for stability and detached: softmax is invariant to it, so its gradient contribution is zero.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}
