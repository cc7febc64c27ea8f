//! ggml `TQ1_0` (type id 34): 256 ternary weights in 54 bytes, 1.6875 bits per weight.
//!
//! Byte layout of one block (`block_tq1_0` in llama.cpp's `ggml-common.h`):
//!
//! ```text
//! offset  0..32  qs[0..32]   5 trits per byte: byte m holds weights m + 32n, n = 0..5
//! offset 32..48  qs[32..48]  5 trits per byte: byte m holds weights 160 + m + 16n, n = 0..5
//! offset 48..52  qh[4]       4 trits per byte: byte j holds weights 240 + j + 4n, n = 0..4
//! offset 52..54  d           f16 scale: w = (trit - 1) * d
//! ```
//!
//! A byte stores its trits `t_0 .. t_4` (trit `t = w + 1`, `t_0` most significant) as the base-3
//! number `v = sum t_n 3^(4-n)` (`qh`: four trits and a trailing zero trit) scaled to
//! `ceil(v * 256 / 243)`. Trit `n` is then `((byte * 3^n mod 256) * 3) >> 8`: each multiply by 3
//! brings the next trit into the high byte.

use super::{amax, check_multiple, ternary_code, QK_K};
use crate::Result;
use half::f16;

/// One `TQ1_0` block.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockTQ1_0 {
    pub qs: [u8; 48],
    pub qh: [u8; 4],
    pub d: f16,
}

const _: () = assert!(std::mem::size_of::<BlockTQ1_0>() == 54);

/// Powers of three used to bring trit `n` to the top of a byte.
pub const POW3: [u8; 5] = [1, 3, 9, 27, 81];

/// Trit `n` (0..5, most significant first) of a packed byte, in {0, 1, 2}.
#[inline]
pub fn trit(byte: u8, n: usize) -> u8 {
    let q = byte.wrapping_mul(POW3[n]);
    ((q as u16 * 3) >> 8) as u8
}

/// `ceil(v * 256 / 243)`: the scaling that makes [`trit`] work.
#[inline]
fn scale_trits(v: u8) -> u8 {
    (v as u16 * 256).div_ceil(243) as u8
}

impl BlockTQ1_0 {
    /// The trit (0, 1 or 2) of weight `i` (0..256).
    #[inline]
    pub fn code(&self, i: usize) -> u8 {
        match i {
            0..=159 => trit(self.qs[i % 32], i / 32),
            160..=239 => trit(self.qs[32 + (i - 160) % 16], (i - 160) / 16),
            _ => trit(self.qh[(i - 240) % 4], (i - 240) / 4),
        }
    }
}

/// llama.cpp's `quantize_row_tq1_0_ref`: per block `d = max|x|`, trit `lround(x / d) + 1`.
pub fn quantize_row_tq1_0(x: &[f32]) -> Result<Vec<BlockTQ1_0>> {
    check_multiple("quantize_row_tq1_0", x.len(), QK_K)?;
    Ok(x.chunks_exact(QK_K)
        .map(|xb| {
            let d = amax(xb);
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            let t = |i: usize| ternary_code(xb[i], id);
            let pack = |idx: &dyn Fn(usize) -> usize, n: usize| {
                scale_trits((0..n).fold(0u8, |q, k| q * 3 + t(idx(k))))
            };
            let mut qs = [0u8; 48];
            for (m, q) in qs[..32].iter_mut().enumerate() {
                *q = pack(&|n| m + 32 * n, 5);
            }
            for (m, q) in qs[32..].iter_mut().enumerate() {
                *q = pack(&|n| 160 + m + 16 * n, 5);
            }
            let mut qh = [0u8; 4];
            for (j, q) in qh.iter_mut().enumerate() {
                // Four trits, then a zero trit so the first one is the most significant.
                let v = (0..4).fold(0u8, |q, n| q * 3 + t(240 + j + 4 * n)) * 3;
                *q = scale_trits(v);
            }
            BlockTQ1_0 { qs, qh, d: f16::from_f32(d) }
        })
        .collect())
}

/// llama.cpp's `dequantize_row_tq1_0`: `w = (trit - 1) * d`.
pub fn dequantize_row_tq1_0(blocks: &[BlockTQ1_0]) -> Vec<f32> {
    let mut out = Vec::with_capacity(blocks.len() * QK_K);
    for b in blocks {
        let d = b.d.to_f32();
        out.extend((0..QK_K).map(|i| (b.code(i) as i32 - 1) as f32 * d));
    }
    out
}
