//! `BitLinear`: `y = Q_a(x) · Q_w(W)^T`, no bias, with an optional Hadamard transform of the input
//! before activation quantization (H-BitLinear, BitNet v2).

use super::quant::QuantMode;
use crate::fused::bitlinear::{fits, ActBits, BitLinearOp, PackedWeights, QuantizedInput};
use crate::fused::OpPath;
use bitnet_core::quant::{hadamard_block_len, hadamard_transform};
use candle_core::{Result, Tensor};
use std::sync::{Arc, RwLock};

/// A linear layer whose forward pass sees quantized weights and activations (per
/// [`QuantMode`]) while the optimizer updates latent full-precision weights.
#[derive(Debug, Clone)]
pub struct BitLinear {
    /// Latent weights, `[out_features, in_features]` (the PyTorch / Hugging Face layout).
    weight: Tensor,
    mode: QuantMode,
    /// The orthonormal block Hadamard matrix `[block, block]` for H-BitLinear.
    hadamard: Option<Tensor>,
    /// `(Q(W) - W).detach()` for the current weights, set by [`Self::cache_weight_quant`]: the
    /// weights change once per optimizer step, not per forward pass, so the trainer quantizes
    /// them once per step instead of once per micro-batch and worker.
    quant_delta: Arc<RwLock<Option<Tensor>>>,
    /// The fused path's counterpart of `quant_delta`: the step's codes in the kernel layout.
    packed: Arc<RwLock<Option<Arc<PackedWeights>>>>,
    path: OpPath,
}

impl BitLinear {
    pub fn new(weight: Tensor, mode: QuantMode, hadamard: bool) -> Result<Self> {
        let hadamard = if hadamard && mode != QuantMode::None {
            Some(hadamard_matrix(weight.dim(1)?, weight.device())?)
        } else {
            None
        };
        Ok(Self {
            weight,
            mode,
            hadamard,
            quant_delta: Arc::new(RwLock::new(None)),
            packed: Arc::new(RwLock::new(None)),
            path: OpPath::default(),
        })
    }

    /// Chooses the fused op or the composed reference (see [`OpPath`]).
    pub fn set_path(&mut self, path: OpPath) {
        self.path = path;
        self.clear_weight_quant();
    }

    /// The activation quantizer when this layer runs the fused op: a quantized mode, on the CPU,
    /// with whole 256-value activation blocks; otherwise it runs the composed layer.
    fn fused_act(&self) -> Option<ActBits> {
        let in_features = self.weight.dim(1).ok()?;
        let ok = self.path.fused_on(self.weight.device()) && fits(in_features);
        ActBits::of(self.mode).filter(|_| ok)
    }

    /// Quantizes the current weights once; later forward passes reuse the result until the next
    /// call or [`Self::clear_weight_quant`]. Call it again whenever the weights change.
    pub fn cache_weight_quant(&self) -> Result<()> {
        if self.fused_act().is_some() {
            let packed = PackedWeights::new(&self.weight, self.mode)?;
            *self.packed.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(packed));
            return Ok(());
        }
        let delta = match self.mode {
            QuantMode::None => None,
            mode => Some((mode.fake_quant_weight(&self.weight.detach())? - self.weight.detach())?),
        };
        *self.quant_delta.write().unwrap_or_else(|e| e.into_inner()) = delta;
        Ok(())
    }

    pub fn clear_weight_quant(&self) {
        *self.quant_delta.write().unwrap_or_else(|e| e.into_inner()) = None;
        *self.packed.write().unwrap_or_else(|e| e.into_inner()) = None;
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// `x`: `[..., in_features]` → `[..., out_features]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if let Some(act) = self.fused_act() {
            return self.forward_fused(x, act);
        }
        let x = match &self.hadamard {
            Some(h) => block_hadamard(x, h)?,
            None => x.clone(),
        };
        let xq = self.mode.fake_quant_act(&x)?;
        let cached = self.quant_delta.read().unwrap_or_else(|e| e.into_inner()).clone();
        let wq = match cached {
            // The same value as the straight-through estimator `W + (Q(W) - W).detach()`.
            Some(delta) => (&self.weight + delta)?,
            None => self.mode.fake_quant_weight(&self.weight)?,
        };
        matmul_t(&xq, &wq)
    }

    fn forward_fused(&self, x: &Tensor, act: ActBits) -> Result<Tensor> {
        let cached = self.packed.read().unwrap_or_else(|e| e.into_inner()).clone();
        let weights = match cached {
            Some(p) => p,
            None => Arc::new(PackedWeights::new(&self.weight, self.mode)?),
        };
        let x = x.contiguous()?;
        let input = QuantizedInput::of(&x, act, self.hadamard.is_some())?;
        x.apply_op2(&self.weight, BitLinearOp { weights, input })
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

/// `x · w^T` for `x: [..., in]` and `w: [out, in]`, as one 2-D matrix product over all leading
/// dimensions (a broadcast batched product would materialize one weight gradient per batch row).
pub fn matmul_t(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let dims = x.dims();
    let (inp, out) = (dims[dims.len() - 1], w.dim(0)?);
    let rows = x.elem_count() / inp.max(1);
    let mut out_dims = dims.to_vec();
    *out_dims.last_mut().expect("at least one dimension") = out;
    x.reshape((rows, inp))?.matmul(&w.t()?)?.reshape(out_dims)
}
