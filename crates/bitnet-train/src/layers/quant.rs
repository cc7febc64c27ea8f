//! Fake quantization with straight-through estimators.
//!
//! Each function returns `x + (q(x) - x).detach()`: the forward value is exactly the dequantized
//! `q(x)` that [`bitnet_core::quant`] defines, and the gradient with respect to `x` is the identity.
//! Scales are computed as `bitnet-core` computes them (weight means accumulated in f64, the int8
//! scale as `127 / max|x|`), so a trained model's fake-quantized forward is what the packed
//! inference engine computes.

use bitnet_core::quant::{ACT_EPS, WEIGHT_EPS};
use candle_core::{DType, Result, Tensor, D};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// What a `BitLinear` quantizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum QuantMode {
    /// Plain full-precision linear (the fp baseline).
    None,
    /// BitNet b1: weights `sign(W - mean W) * mean|W|`, per-token absmax int8 activations.
    B1,
    /// BitNet b1.58: absmean ternary weights, per-token absmax int8 activations.
    #[default]
    B158,
    /// BitNet b1.58 weights with per-token absmean int4 activations (BitNet a4.8).
    B158A4,
}

impl QuantMode {
    pub const NAMES: [&'static str; 4] = ["none", "b1", "b158", "b158-a4"];

    pub fn name(self) -> &'static str {
        match self {
            QuantMode::None => "none",
            QuantMode::B1 => "b1",
            QuantMode::B158 => "b158",
            QuantMode::B158A4 => "b158-a4",
        }
    }

    /// The forward value of the weights.
    pub fn fake_quant_weight(self, w: &Tensor) -> Result<Tensor> {
        match self {
            QuantMode::None => Ok(w.clone()),
            QuantMode::B1 => ste(w, &binary_weight(w)?),
            QuantMode::B158 | QuantMode::B158A4 => ste(w, &ternary_weight(w)?),
        }
    }

    /// The forward value of the activations (quantized per token, over the last dimension).
    pub fn fake_quant_act(self, x: &Tensor) -> Result<Tensor> {
        match self {
            QuantMode::None => Ok(x.clone()),
            QuantMode::B1 | QuantMode::B158 => ste(x, &act_int8(x)?),
            QuantMode::B158A4 => ste(x, &act_int4(x)?),
        }
    }
}

impl fmt::Display for QuantMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for QuantMode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "none" | "fp" => Ok(QuantMode::None),
            "b1" => Ok(QuantMode::B1),
            "b158" | "b1.58" => Ok(QuantMode::B158),
            "b158-a4" | "b1.58-a4" => Ok(QuantMode::B158A4),
            _ => Err(format!("unknown quantization {s:?}; expected one of {:?}", Self::NAMES)),
        }
    }
}

/// Straight-through estimator: forward `q`, backward identity with respect to `x`.
pub fn ste(x: &Tensor, q: &Tensor) -> Result<Tensor> {
    x + (q - x)?.detach()
}

/// `mean|x|` over the whole tensor, accumulated in f64 and rounded once to f32, as
/// [`bitnet_core::quant::absmean`]. Returned as a 0-d f32 tensor.
fn absmean_all(x: &Tensor) -> Result<Tensor> {
    x.detach().abs()?.to_dtype(DType::F64)?.mean_all()?.to_dtype(DType::F32)
}

/// Dequantized b1.58 weights: `s = max(mean|W|, 1e-5)`, `clamp(round(W / s), -1, 1) * s`.
pub fn ternary_weight(w: &Tensor) -> Result<Tensor> {
    let w = w.detach();
    let s = absmean_all(&w)?.maximum(WEIGHT_EPS as f64)?;
    w.broadcast_div(&s)?.round()?.clamp(-1f32, 1f32)?.broadcast_mul(&s)
}

/// Dequantized b1 weights: `(W - mean W > 0 ? 1 : -1) * mean|W|`.
pub fn binary_weight(w: &Tensor) -> Result<Tensor> {
    let w = w.detach();
    let alpha = w.to_dtype(DType::F64)?.mean_all()?.to_dtype(DType::F32)?;
    let beta = absmean_all(&w)?;
    let pos = w.broadcast_sub(&alpha)?.gt(0f32)?;
    let ones = w.ones_like()?;
    pos.where_cond(&ones, &ones.neg()?)?.broadcast_mul(&beta)
}

/// Dequantized per-token absmax int8: `s = 127 / max(max|x|, 1e-5)`,
/// `clamp(round(x * s), -128, 127) / s`.
pub fn act_int8(x: &Tensor) -> Result<Tensor> {
    let x = x.detach();
    let amax = x.abs()?.max_keepdim(D::Minus1)?.maximum(ACT_EPS as f64)?;
    let s = (amax.ones_like()? * 127.0)?.div(&amax)?;
    x.broadcast_mul(&s)?.round()?.clamp(-128f32, 127f32)?.broadcast_div(&s)
}

/// Dequantized per-token absmean int4 (BitNet a4.8): `beta = max(mean|x|, 1e-5)`,
/// `s = sqrt(7) / beta`, `clamp(round(x * s), -8, 7) / s`.
pub fn act_int4(x: &Tensor) -> Result<Tensor> {
    let x = x.detach();
    let beta = x
        .abs()?
        .to_dtype(DType::F64)?
        .mean_keepdim(D::Minus1)?
        .to_dtype(DType::F32)?
        .maximum(ACT_EPS as f64)?;
    let s = (beta.ones_like()? * 7f32.sqrt() as f64)?.div(&beta)?;
    x.broadcast_mul(&s)?.round()?.clamp(-8f32, 7f32)?.broadcast_div(&s)
}
