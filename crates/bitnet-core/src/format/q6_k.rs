//! ggml `Q6_K` (type id 14): 256 weights in 210 bytes, 6.5625 bits per weight; bitnet.cpp and
//! llama.cpp use it for embeddings and output heads.
//!
//! ```text
//! offset   0..128  ql[128]    low 4 bits of the 6-bit codes
//! offset 128..192  qh[64]     high 2 bits
//! offset 192..208  scales[16] i8 scale of each group of 16 weights
//! offset 208..210  d          f16 super-block scale: x = d * scales[g] * (code - 32)
//! ```
//!
//! For half `n` (128 weights) and `l` in 0..32, with `ql`, `qh`, `scales` advanced by 64, 32, 8
//! per half, weight `l + 32k` (k in 0..4) takes its low nibble from `ql[l + 32 (k & 1)]`
//! (high nibble when `k >= 2`), its high bits from `qh[l] >> 2k`, and scale `l / 16 + 2k`.

use super::QK_K;
use half::f16;

/// One `Q6_K` block.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ6K {
    pub ql: [u8; QK_K / 2],
    pub qh: [u8; QK_K / 4],
    pub scales: [i8; QK_K / 16],
    pub d: f16,
}
const _: () = assert!(std::mem::size_of::<BlockQ6K>() == 210);

impl BlockQ6K {
    /// The signed 6-bit code (`-32..32`) of every weight, in order.
    pub fn codes(&self) -> [i8; QK_K] {
        let mut out = [0i8; QK_K];
        for n in 0..2 {
            let (ql, qh) = (&self.ql[64 * n..64 * n + 64], &self.qh[32 * n..32 * n + 32]);
            for l in 0..32 {
                for k in 0..4 {
                    let lo = (ql[l + 32 * (k & 1)] >> (4 * (k >> 1))) & 0x0f;
                    let hi = (qh[l] >> (2 * k)) & 3;
                    out[128 * n + l + 32 * k] = ((lo | hi << 4) as i8) - 32;
                }
            }
        }
        out
    }

    /// The group scale of weight `i`.
    #[inline]
    pub fn scale_of(&self, i: usize) -> i8 {
        let (n, r) = (i / 128, i % 128);
        self.scales[8 * n + (r % 32) / 16 + 2 * (r / 32)]
    }
}

/// `x = d * scales[g] * code`.
pub fn dequantize_row_q6_k(blocks: &[BlockQ6K]) -> Vec<f32> {
    let mut out = Vec::with_capacity(blocks.len() * QK_K);
    for b in blocks {
        let d = b.d.to_f32();
        let codes = b.codes();
        out.extend((0..QK_K).map(|i| d * b.scale_of(i) as f32 * codes[i] as f32));
    }
    out
}
