//! Quantizers exactly as the BitNet papers define them: absmean ternary weights (b1.58,
//! arXiv:2402.17764), sign binary weights (b1, arXiv:2310.11453), per-token absmax int8
//! activations and absmean int4 activations (a4.8, arXiv:2411.04965), and the orthonormal
//! Walsh–Hadamard transform of BitNet v2 (arXiv:2504.18415).
//!
//! Every function here is the definition the trainer's fake-quantization and the engine's kernels
//! are tested against. All-zero input gives zero codes and a finite scale, never NaN.

mod activations;
mod hadamard;
mod weights;

pub use activations::{
    abs_max, act_i8_scale, quantize_act_i4, quantize_act_i8, ActI4, ActI8, ACT_EPS,
};
pub use hadamard::{hadamard_block_len, hadamard_transform};
pub use weights::{
    absmean, quantize_b1, quantize_ternary, BinaryWeights, ScaleGranularity, TernaryWeights,
    WEIGHT_EPS,
};

/// Round half away from zero, as C's `lroundf` in ggml's quantizers.
///
/// PyTorch's `torch.round` rounds half to even instead; the two differ only on exact `.5` ties,
/// which the absmean quantizer reaches with probability zero on real weights. We follow ggml.
#[inline]
pub(crate) fn round_half_away(x: f32) -> f32 {
    x.round()
}
