//! bitnet.cpp `I2_S` (its ggml type id 36, which collides with upstream ggml's ids): 2 bits per
//! weight, one f32 scale for the whole tensor. This is the x86 layout (`QK_I2_S = 128`).
//!
//! Byte layout of a tensor of `n` weights (`n` a multiple of 128):
//!
//! ```text
//! offset 0..n/4           codes, 128-weight blocks of 32 bytes; in block b byte k holds weights
//!                         128b + k, +32, +64, +96 at bit shifts 6, 4, 2, 0;
//!                         code 0, 1, 2 = weight -1, 0, +1
//! offset n/4..n/4+4       f32 scale: w = (code - 1) * scale
//! offset n/4+4..n/4+32    zero padding (bitnet.cpp reserves 32 bytes after the codes)
//! ```
//!
//! bitnet.cpp's quantizer run on several threads can leave a tensor larger than `n/4 + 32`
//! bytes; readers take the extent from the file and look for the scale right after the codes.

use super::check_multiple;
use crate::{CoreError, Result};

/// Weights per `I2_S` block.
pub const QK_I2_S: usize = 128;
/// Bytes after the codes: the f32 scale and its padding.
pub const I2S_TRAILER_BYTES: usize = 32;

/// Bytes of an `I2_S` tensor of `n` weights: `n / 4 + 32`.
pub const fn i2s_tensor_bytes(n: usize) -> usize {
    n / 4 + I2S_TRAILER_BYTES
}

/// The 2-bit code of weight `i` of a code buffer.
#[inline]
pub fn i2s_code(codes: &[u8], i: usize) -> u8 {
    let (b, r) = (i / QK_I2_S, i % QK_I2_S);
    (codes[b * 32 + r % 32] >> (6 - 2 * (r / 32))) & 3
}

/// bitnet.cpp's `quantize_i2_s` for already-ternary weights: `scale = max|x|` over the tensor,
/// code 1 where `|x| < 1e-6`, otherwise 2 for positive and 0 for negative `x`.
pub fn quantize_i2_s(x: &[f32]) -> Result<Vec<u8>> {
    check_multiple("quantize_i2_s", x.len(), QK_I2_S)?;
    let scale = x.iter().fold(0.0f64, |m, &v| m.max((v as f64).abs())) as f32;
    let codes: Vec<u8> = x
        .iter()
        .map(|&v| {
            if (v as f64).abs() < 1e-6 {
                1
            } else if v > 0.0 {
                2
            } else {
                0
            }
        })
        .collect();
    Ok(pack_i2_s(&codes, scale))
}

/// Packs 2-bit codes (0, 1, 2; length a multiple of 128) and a scale into an `I2_S` tensor.
pub fn pack_i2_s(codes: &[u8], scale: f32) -> Vec<u8> {
    debug_assert_eq!(codes.len() % QK_I2_S, 0);
    let mut out = vec![0u8; i2s_tensor_bytes(codes.len())];
    for (b, block) in codes.chunks_exact(QK_I2_S).enumerate() {
        for (j, &c) in block.iter().enumerate() {
            out[b * 32 + j % 32] |= (c & 3) << (6 - 2 * (j / 32));
        }
    }
    let n4 = codes.len() / 4;
    out[n4..n4 + 4].copy_from_slice(&scale.to_le_bytes());
    out
}

/// A borrowed `I2_S` tensor: its codes and its scale.
#[derive(Debug, Clone, Copy)]
pub struct I2sTensor<'a> {
    /// `n / 4` bytes of codes.
    pub codes: &'a [u8],
    pub scale: f32,
}

impl<'a> I2sTensor<'a> {
    /// Reads a tensor of `n` weights from `bytes` (at least `n / 4 + 4` bytes).
    pub fn parse(bytes: &'a [u8], n: usize) -> Result<Self> {
        check_multiple("I2_S tensor", n, QK_I2_S)?;
        let need = n / 4 + 4;
        if bytes.len() < need {
            return Err(CoreError::BufferTooSmall { what: "I2_S tensor", need, got: bytes.len() });
        }
        let scale = f32::from_le_bytes(bytes[n / 4..need].try_into().expect("4 bytes"));
        Ok(Self { codes: &bytes[..n / 4], scale })
    }

    /// `w = (code - 1) * scale`; a code of 3 is an error.
    pub fn dequantize(&self) -> Result<Vec<f32>> {
        (0..self.codes.len() * 4)
            .map(|i| match i2s_code(self.codes, i) {
                3 => Err(CoreError::InvalidCode { what: "I2_S", index: i }),
                c => Ok((c as i32 - 1) as f32 * self.scale),
            })
            .collect()
    }
}
