//! Byte-exact packed formats: the one place that knows byte layouts.
//!
//! - [`BlockTQ2_0`] and [`BlockTQ1_0`]: ggml's ternary blocks (llama.cpp `ggml-common.h`,
//!   type ids 35 and 34), identical byte for byte.
//! - [`i2s`]: bitnet.cpp's `I2_S` tensor layout (x86, 128-weight blocks, one f32 scale per tensor).
//! - [`hf_packed`]: the 2-bit packing of Hugging Face `BitNetForCausalLM` offline checkpoints.
//! - [`BlockQ8K`]: the int8 activation block the kernels consume (ggml's `block_q8_K`).
//! - [`BlockQ8_0`], [`BlockQ8_1`], [`BlockQ4_0`], [`BlockQ4_1`], [`BlockQ6K`]: the llama.cpp
//!   weight blocks of pretrained models (SmolLM2, embeddings and heads of ternary models).
//! - [`GgmlType`]: ggml type ids and their block geometry.
//!
//! Every block has a byte-layout comment and a compile-time size assertion; the reference quantize
//! and dequantize functions here are the specification of each format.

pub mod ggml_type;
pub mod hf_packed;
pub mod i2s;
pub mod q4;
pub mod q6_k;
pub mod q8_0;
pub mod q8k;
pub mod tq1_0;
pub mod tq2_0;

pub use ggml_type::GgmlType;
pub use q4::{BlockQ4_0, BlockQ4_1};
pub use q6_k::BlockQ6K;
pub use q8_0::{BlockQ8_0, BlockQ8_1};
pub use q8k::BlockQ8K;
pub use tq1_0::BlockTQ1_0;
pub use tq2_0::BlockTQ2_0;

/// Weights per super-block of the k-quant family (`QK_K` in ggml).
pub const QK_K: usize = 256;

pub(crate) fn check_multiple(what: &'static str, len: usize, multiple: usize) -> crate::Result<()> {
    if !len.is_multiple_of(multiple) {
        return Err(crate::CoreError::LengthNotMultiple { what, len, multiple });
    }
    Ok(())
}

pub(crate) fn check_len(name: &'static str, expected: usize, got: usize) -> crate::Result<()> {
    if expected != got {
        return Err(crate::CoreError::ShapeMismatch { name, expected, got });
    }
    Ok(())
}

/// `lroundf(x * id) + 1` clamped to the 2-bit code range {0, 1, 2} (-1, 0, +1).
#[inline]
pub(crate) fn ternary_code(x: f32, id: f32) -> u8 {
    (crate::quant::round_half_away(x * id).clamp(-1.0, 1.0) as i32 + 1) as u8
}

/// The absolute maximum of a slice (0 for an empty one).
#[inline]
pub(crate) fn amax(x: &[f32]) -> f32 {
    x.iter().fold(0.0f32, |m, v| m.max(v.abs()))
}

/// The bytes of `x` (rows of `cols` values) in a dense weight type an embedding or output head
/// can take: F32, F16, BF16, Q8_0 or Q6_K, with ggml's reference quantizers. A row must hold
/// whole blocks of the type (Q6_K: 256 values; Q8_0: 32).
pub fn encode_dense(ty: GgmlType, x: &[f32], cols: usize) -> crate::Result<Vec<u8>> {
    let block = match ty {
        GgmlType::Q8_0 => 32,
        GgmlType::Q6K => QK_K,
        _ => 1,
    };
    check_multiple("encode_dense row", cols, block)?;
    check_multiple("encode_dense values", x.len(), cols.max(1))?;
    Ok(match ty {
        GgmlType::F32 => bytemuck::cast_slice(x).to_vec(),
        GgmlType::F16 => x.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect(),
        GgmlType::BF16 => x.iter().flat_map(|&v| half::bf16::from_f32(v).to_le_bytes()).collect(),
        GgmlType::Q8_0 => bytemuck::cast_slice(&q8_0::quantize_row_q8_0(x)?).to_vec(),
        GgmlType::Q6K => bytemuck::cast_slice(&q6_k::quantize_row_q6_k(x)?).to_vec(),
        other => return Err(crate::CoreError::Unsupported(format!("writing {other:?} weights"))),
    })
}
