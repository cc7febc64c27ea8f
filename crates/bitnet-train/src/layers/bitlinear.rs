//! `BitLinear`: `y = Q_a(x) · Q_w(W)^T`, no bias, with an optional Hadamard transform of the input
//! before activation quantization (H-BitLinear, BitNet v2).

use super::quant::QuantMode;
use bitnet_core::quant::{hadamard_block_len, hadamard_transform};
use candle_core::{Result, Tensor};

/// A linear layer whose forward pass sees quantized weights and activations (per
/// [`QuantMode`]) while the optimizer updates latent full-precision weights.
#[derive(Debug, Clone)]
pub struct BitLinear {
    /// Latent weights, `[out_features, in_features]` (the PyTorch / Hugging Face layout).
    weight: Tensor,
    mode: QuantMode,
    /// The orthonormal block Hadamard matrix `[block, block]` for H-BitLinear.
    hadamard: Option<Tensor>,
}

impl BitLinear {
    pub fn new(weight: Tensor, mode: QuantMode, hadamard: bool) -> Result<Self> {
        let hadamard = if hadamard && mode != QuantMode::None {
            Some(hadamard_matrix(weight.dim(1)?, weight.device())?)
        } else {
            None
        };
        Ok(Self { weight, mode, hadamard })
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// `x`: `[..., in_features]` → `[..., out_features]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = match &self.hadamard {
            Some(h) => block_hadamard(x, h)?,
            None => x.clone(),
        };
        let xq = self.mode.fake_quant_act(&x)?;
        let wq = self.mode.fake_quant_weight(&self.weight)?;
        xq.broadcast_matmul(&wq.t()?)
    }
}

/// The orthonormal Hadamard matrix of the block length [`hadamard_transform`] uses for vectors of
/// length `n`, built by applying that transform to the rows of the identity (the matrix is
/// symmetric, so `x · H` equals the transform of `x`).
pub fn hadamard_matrix(n: usize, device: &candle_core::Device) -> Result<Tensor> {
    let b = hadamard_block_len(n);
    let mut m = vec![0f32; b * b];
    for (r, row) in m.chunks_exact_mut(b).enumerate() {
        row[r] = 1.0;
        hadamard_transform(row);
    }
    Tensor::from_vec(m, (b, b), device)
}

/// Applies the block-diagonal transform over the last dimension: reshape to blocks, multiply by
/// the block matrix, reshape back. Differentiable (a plain matmul).
pub fn block_hadamard(x: &Tensor, h: &Tensor) -> Result<Tensor> {
    let b = h.dim(0)?;
    let dims = x.dims().to_vec();
    let n = *dims.last().expect("BitLinear input has at least one dimension");
    let mut blocked = dims.clone();
    *blocked.last_mut().expect("non-empty") = n / b;
    blocked.push(b);
    x.reshape(blocked)?.broadcast_matmul(h)?.reshape(dims)
}
