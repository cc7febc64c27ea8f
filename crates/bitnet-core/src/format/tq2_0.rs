//! ggml `TQ2_0` (type id 35): 256 ternary weights in 66 bytes, 2.0625 bits per weight.
//!
//! Byte layout of one block (`block_tq2_0` in llama.cpp's `ggml-common.h`):
//!
//! ```text
//! offset  0..64  qs[64]  2-bit codes, code = w + 1 in {0, 1, 2}
//!                        for half h in {0, 1} (bytes 32h..32h+32) byte 32h + j holds weights
//!                        128h + j, +32, +64, +96 in bit pairs 0-1, 2-3, 4-5, 6-7
//! offset 64..66  d       f16 scale: w = (code - 1) * d
//! ```

use super::{amax, check_multiple, ternary_code, QK_K};
use crate::Result;
use half::f16;

/// One `TQ2_0` block.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockTQ2_0 {
    pub qs: [u8; QK_K / 4],
    pub d: f16,
}

const _: () = assert!(std::mem::size_of::<BlockTQ2_0>() == 66);

impl BlockTQ2_0 {
    /// The 2-bit code (0, 1 or 2) of weight `i` (0..256).
    #[inline]
    pub fn code(&self, i: usize) -> u8 {
        let (h, rest) = (i / 128, i % 128);
        let (l, j) = (rest / 32, rest % 32);
        (self.qs[32 * h + j] >> (2 * l)) & 3
    }
}

/// llama.cpp's `quantize_row_tq2_0_ref`: per block `d = max|x|`, code `lround(x / d) + 1`.
pub fn quantize_row_tq2_0(x: &[f32]) -> Result<Vec<BlockTQ2_0>> {
    check_multiple("quantize_row_tq2_0", x.len(), QK_K)?;
    Ok(x.chunks_exact(QK_K)
        .map(|xb| {
            let d = amax(xb);
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            let mut qs = [0u8; QK_K / 4];
            for (h, half) in xb.chunks_exact(128).enumerate() {
                for j in 0..32 {
                    qs[32 * h + j] =
                        (0..4).fold(0, |q, l| q | ternary_code(half[j + 32 * l], id) << (2 * l));
                }
            }
            BlockTQ2_0 { qs, d: f16::from_f32(d) }
        })
        .collect())
}

/// llama.cpp's `dequantize_row_tq2_0`: `w = (code - 1) * d`.
pub fn dequantize_row_tq2_0(blocks: &[BlockTQ2_0]) -> Vec<f32> {
    let mut out = Vec::with_capacity(blocks.len() * QK_K);
    for b in blocks {
        let d = b.d.to_f32();
        out.extend((0..QK_K).map(|i| (b.code(i) as i32 - 1) as f32 * d));
    }
    out
}
