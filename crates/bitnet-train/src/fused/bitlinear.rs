//! The fused BitLinear op: `y = Q_a(H x) · Q_w(W)^T` with straight-through gradients.
//!
//! Forward: each token's activations (after the optional block Hadamard transform of
//! H-BitLinear) are quantized to int8 (absmax) or int4 (absmean) codes in `bitnet-core`'s
//! [`BlockQ8K`] blocks, and multiplied by the step's ternary codes, packed once per optimizer step
//! as an `I2_S` matrix, through the engine's integer GEMM tiles: `y = s_w · isum / s_x` with
//! `isum` the exact integer dot product. Backward, straight through both quantizers as the
//! composed layer ([`crate::layers::BitLinear`]) does:
//!
//! ```text
//! dX̂ = dY · (s_w · T)        dX = H · dX̂ (H symmetric and orthonormal; dX = dX̂ without it)
//! dW = dY^T · X̃              X̃ = codes / s_x, the dequantized activations
//! ```
//!
//! both on candle's f32 matrix product (the `gemm` crate). The codes and scales are exactly
//! those of [`crate::layers::quant`], so the forward differs from the composed one only by the
//! rounding of f32 sums.

use super::tensor;
use crate::layers::QuantMode;
use bitnet_core::format::i2s::pack_i2_s;
use bitnet_core::format::q8k::round_clamp_i8;
use bitnet_core::format::{BlockQ8K, QK_K};
use bitnet_core::kernels::{Kernels, Matmul, TernaryMatrix};
use bitnet_core::quant::{
    absmean, act_i8_scale, hadamard_transform, quantize_b1, quantize_ternary, ScaleGranularity,
    ACT_EPS,
};
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, TensorId};
use std::cell::RefCell;
use std::sync::{Arc, OnceLock};

/// The integer kernels on the calling thread: the trainer's workers each run their own share of
/// a batch, so the op itself never fans out (a one-thread pool calls straight through).
fn matmul() -> &'static Matmul {
    static MATMUL: OnceLock<Matmul> = OnceLock::new();
    MATMUL.get_or_init(|| {
        Matmul::new(Kernels::detect(), 1).expect("a one-thread pool starts no thread")
    })
}

/// Whether the fused op takes a layer of `in_features` inputs (the integer tiles read whole
/// 256-value activation blocks).
pub fn fits(in_features: usize) -> bool {
    in_features > 0 && in_features.is_multiple_of(QK_K)
}

/// How activations are quantized per token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActBits {
    /// absmax int8: `s = 127 / max(max|x|, 1e-5)`, codes in -128..=127.
    Int8,
    /// absmean int4 (a4.8): `s = sqrt(7) / max(mean|x|, 1e-5)`, codes in -8..=7.
    Int4,
}

impl ActBits {
    pub fn of(mode: QuantMode) -> Option<Self> {
        match mode {
            QuantMode::None => None,
            QuantMode::B1 | QuantMode::B158 => Some(ActBits::Int8),
            QuantMode::B158A4 => Some(ActBits::Int4),
        }
    }

    /// The scale `s` of one token (`x ≈ codes / s`).
    fn scale(self, x: &[f32]) -> f32 {
        match self {
            ActBits::Int8 => act_i8_scale(x),
            ActBits::Int4 => 7f32.sqrt() / absmean(x).max(ACT_EPS),
        }
    }

    fn range(self) -> (f32, f32) {
        match self {
            ActBits::Int8 => (-128.0, 127.0),
            ActBits::Int4 => (-8.0, 7.0),
        }
    }
}

/// One step's quantized weights: the packed codes for the forward kernels and the dequantized
/// matrix `s_w · T` for the backward.
#[derive(Debug)]
pub struct PackedWeights {
    /// `I2_S` bytes: codes `t + 1` and the f32 scale `s_w`.
    i2s: Vec<u8>,
    rows: usize,
    cols: usize,
    /// `[rows, cols]`: `s_w · T`, the forward value of the weights.
    dequant: Tensor,
}

impl PackedWeights {
    /// Quantizes latent weights `w` (`[out, in]`, f32 on the CPU) as `mode` does.
    pub fn new(w: &Tensor, mode: QuantMode) -> Result<Self> {
        let (rows, cols) = w.dims2()?;
        let data = w.detach().flatten_all()?.to_vec1::<f32>()?;
        let (trits, scale): (Vec<i8>, f32) = match mode {
            QuantMode::None => candle_core::bail!("an unquantized layer has no packed weights"),
            QuantMode::B1 => {
                let b = quantize_b1(&data);
                (b.codes, b.beta)
            }
            QuantMode::B158 | QuantMode::B158A4 => {
                let t = quantize_ternary(&data, rows, cols, ScaleGranularity::PerTensor)
                    .map_err(candle_core::Error::wrap)?;
                (t.codes, t.scales[0])
            }
        };
        let codes: Vec<u8> = trits.iter().map(|&t| (t + 1) as u8).collect();
        let dequant: Vec<f32> = trits.iter().map(|&t| t as f32 * scale).collect();
        Ok(Self {
            i2s: pack_i2_s(&codes, scale),
            rows,
            cols,
            dequant: Tensor::from_vec(dequant, (rows, cols), w.device())?,
        })
    }

    /// `[out, in]`: the forward value of the weights.
    pub fn dequantized(&self) -> &Tensor {
        &self.dequant
    }
}

/// One input's quantized activations: its codes in the kernels' blocks, and the dequantized
/// `X̃` for the weight gradient, built on first use. Layers that read the same tensor (Q, K and V;
/// gate and up) share one, so each input is quantized once per forward and `X̃` once per backward.
#[derive(Debug)]
pub struct QuantizedInput {
    id: TensorId,
    act: ActBits,
    hadamard: bool,
    rows: usize,
    cols: usize,
    /// `rows × cols / 256` blocks, `d = 1 / s_x`.
    blocks: Vec<BlockQ8K>,
    /// `s_x` of each row.
    scales: Vec<f32>,
    dequant: OnceLock<Tensor>,
}

thread_local! {
    /// The last input quantized on this thread (each training worker runs its forward and
    /// backward on its own thread). Tensor ids are never reused, so a hit is the same tensor.
    static LAST_INPUT: RefCell<Option<Arc<QuantizedInput>>> = const { RefCell::new(None) };
}

impl QuantizedInput {
    /// The quantized `x` (`[..., cols]`, contiguous f32 on the CPU), from this thread's last
    /// input when it is the same tensor quantized the same way.
    /// A variable (a parameter the optimizer updates in place, or a test's input) is quantized
    /// afresh every time: its id stays while its values change.
    pub fn of(x: &Tensor, act: ActBits, hadamard: bool) -> Result<Arc<Self>> {
        if x.is_variable() {
            return Ok(Arc::new(Self::new(x, act, hadamard)?));
        }
        let hit = LAST_INPUT.with(|c| {
            c.borrow()
                .as_ref()
                .filter(|q| q.id == x.id() && q.act == act && q.hadamard == hadamard)
                .cloned()
        });
        if let Some(q) = hit {
            return Ok(q);
        }
        let q = Arc::new(Self::new(x, act, hadamard)?);
        LAST_INPUT.with(|c| *c.borrow_mut() = Some(q.clone()));
        Ok(q)
    }

    fn new(x: &Tensor, act: ActBits, hadamard: bool) -> Result<Self> {
        let cols = x.dims().last().copied().unwrap_or(0);
        if !fits(cols) {
            candle_core::bail!("bitlinear: input width {cols} is not a multiple of {QK_K}");
        }
        let rows = x.elem_count() / cols;
        let mut blocks = vec![BlockQ8K::with_codes(0.0, [0; QK_K]); rows * (cols / QK_K)];
        let mut scales = vec![0f32; rows];
        let (lo, hi) = act.range();
        super::with_f32(x, |xs| {
            let mut row = vec![0f32; cols];
            let mut codes = vec![0i8; cols];
            let rows_out = blocks.chunks_exact_mut(cols / QK_K).zip(scales.iter_mut());
            for (xr, (out, scale)) in xs.chunks_exact(cols).zip(rows_out) {
                let src: &[f32] = if hadamard {
                    row.copy_from_slice(xr);
                    hadamard_transform(&mut row);
                    &row
                } else {
                    xr
                };
                let s = act.scale(src);
                for (q, &v) in codes.iter_mut().zip(src) {
                    *q = round_clamp_i8(v * s, lo, hi);
                }
                let d = 1.0 / s;
                for (b, c) in out.iter_mut().zip(codes.chunks_exact(QK_K)) {
                    *b = BlockQ8K::with_codes(d, c.try_into().expect("256 codes"));
                }
                *scale = s;
            }
        })?;
        Ok(Self { id: x.id(), act, hadamard, rows, cols, blocks, scales, dequant: OnceLock::new() })
    }

    /// `X̃ = codes / s_x`, `[rows, cols]`: the activations the forward multiplied.
    fn dequantized(&self) -> Result<Tensor> {
        if let Some(t) = self.dequant.get() {
            return Ok(t.clone());
        }
        let per_row = self.cols / QK_K;
        let mut out = Vec::with_capacity(self.rows * self.cols);
        for (row, &s) in self.blocks.chunks_exact(per_row).zip(&self.scales) {
            for b in row {
                out.extend(b.qs.iter().map(|&q| q as f32 / s));
            }
        }
        let t = tensor(out, (self.rows, self.cols))?;
        Ok(self.dequant.get_or_init(|| t).clone())
    }
}

/// The forward of one call: the step's weights and the quantized input. Applied as
/// `x.apply_op2(latent_weight, op)`, so the weight gradient reaches the latent parameter.
#[derive(Debug, Clone)]
pub struct BitLinearOp {
    pub weights: Arc<PackedWeights>,
    pub input: Arc<QuantizedInput>,
}

impl CustomOp2 for BitLinearOp {
    fn name(&self) -> &'static str {
        "bitlinear"
    }

    fn cpu_fwd(
        &self,
        _s1: &CpuStorage,
        l1: &Layout,
        _s2: &CpuStorage,
        _l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (out, cols) = (self.weights.rows, self.weights.cols);
        let dims = l1.shape().dims();
        let rows = self.input.rows;
        if dims.last() != Some(&cols)
            || self.input.cols != cols
            || l1.shape().elem_count() != rows * cols
        {
            candle_core::bail!("bitlinear: input {dims:?} does not match weights [{out}, {cols}]");
        }
        let m = TernaryMatrix::from_i2s_bytes(&self.weights.i2s, out, cols)
            .map_err(candle_core::Error::wrap)?;
        let mut y = vec![0f32; rows * out];
        matmul().gemm(&m, &self.input.blocks, rows, &mut y).map_err(candle_core::Error::wrap)?;
        let mut shape = dims.to_vec();
        *shape.last_mut().expect("checked above") = out;
        Ok((CpuStorage::F32(y), Shape::from(shape)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        _w: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (out, cols) = (self.weights.rows, self.weights.cols);
        let dy2 = dy.reshape((dy.elem_count() / out, out))?;
        let mut dx = dy2.matmul(self.weights.dequantized())?;
        if self.input.hadamard {
            let mut d = dx.flatten_all()?.to_vec1::<f32>()?;
            d.chunks_exact_mut(cols).for_each(hadamard_transform);
            dx = tensor(d, dx.shape().clone())?;
        }
        let dw = dy2.t()?.matmul(&self.input.dequantized()?)?;
        Ok((Some(dx.reshape(x.shape())?), Some(dw)))
    }
}
