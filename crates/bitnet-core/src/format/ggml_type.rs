//! ggml tensor type ids and their block geometry, for the types bitnet-rs reads and writes.

use crate::{CoreError, Result};

/// A ggml tensor type. Ids follow upstream ggml, except `I2S` (36), which is bitnet.cpp's and
/// collides with an upstream id; GGUF readers choose it by context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q8_0,
    Q6K,
    Q8K,
    BF16,
    TQ1_0,
    TQ2_0,
    I2S,
}

impl GgmlType {
    /// The type for a ggml type id.
    pub fn from_id(id: u32) -> Result<Self> {
        Ok(match id {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            8 => Self::Q8_0,
            14 => Self::Q6K,
            15 => Self::Q8K,
            30 => Self::BF16,
            34 => Self::TQ1_0,
            35 => Self::TQ2_0,
            36 => Self::I2S,
            _ => return Err(CoreError::UnknownTypeId { id }),
        })
    }

    /// The ggml type id.
    pub fn id(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q4_0 => 2,
            Self::Q4_1 => 3,
            Self::Q8_0 => 8,
            Self::Q6K => 14,
            Self::Q8K => 15,
            Self::BF16 => 30,
            Self::TQ1_0 => 34,
            Self::TQ2_0 => 35,
            Self::I2S => 36,
        }
    }

    /// (weights per block, bytes per block). `I2_S` is 4 weights per byte plus a per-tensor
    /// trailer, see [`GgmlType::tensor_bytes`].
    pub fn block_geometry(self) -> (usize, usize) {
        match self {
            Self::F32 => (1, 4),
            Self::F16 | Self::BF16 => (1, 2),
            Self::Q4_0 => (32, 18),
            Self::Q4_1 => (32, 20),
            Self::Q8_0 => (32, 34),
            Self::Q6K => (256, 210),
            Self::Q8K => (256, 292),
            Self::TQ1_0 => (256, 54),
            Self::TQ2_0 => (256, 66),
            Self::I2S => (4, 1),
        }
    }

    /// Bytes of a tensor of `n` elements, or an error when `n` does not fill whole blocks.
    pub fn tensor_bytes(self, n: usize) -> Result<usize> {
        let (block, bytes) = self.block_geometry();
        let multiple = if self == Self::I2S { super::i2s::QK_I2_S } else { block };
        super::check_multiple("tensor length", n, multiple)?;
        let body = (n / block).checked_mul(bytes).ok_or(CoreError::ShapeMismatch {
            name: "tensor_bytes",
            expected: usize::MAX,
            got: n,
        })?;
        Ok(if self == Self::I2S { body + super::i2s::I2S_TRAILER_BYTES } else { body })
    }
}
