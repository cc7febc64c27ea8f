//! ggml `Q4_0` (type id 2) and `Q4_1` (id 3): 32 weights as 4-bit codes and f16 scales.
//!
//! ```text
//! block_q4_0 (18 bytes): offset 0..2 d (f16), 2..18 qs[16];          x = (q - 8) * d
//! block_q4_1 (20 bytes): offset 0..2 d (f16), 2..4 m (f16), 4..20 qs[16];  x = q * d + m
//! byte j of qs: low nibble = weight j, high nibble = weight j + 16
//! ```

use super::q8_0::QK8_0;
use half::f16;

/// One `Q4_0` block.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ4_0 {
    pub d: f16,
    pub qs: [u8; QK8_0 / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4_0>() == 18);

/// One `Q4_1` block.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ4_1 {
    pub d: f16,
    pub m: f16,
    pub qs: [u8; QK8_0 / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4_1>() == 20);

/// The 4-bit code of weight `i` (0..32) of a block's `qs`.
#[inline]
pub fn nibble(qs: &[u8; QK8_0 / 2], i: usize) -> u8 {
    if i < QK8_0 / 2 {
        qs[i] & 0x0f
    } else {
        qs[i - QK8_0 / 2] >> 4
    }
}

/// `x = (q - 8) * d`.
pub fn dequantize_row_q4_0(blocks: &[BlockQ4_0]) -> Vec<f32> {
    let mut out = vec![0.0; blocks.len() * QK8_0];
    dequantize_row_q4_0_into(blocks, &mut out);
    out
}

/// [`dequantize_row_q4_0`] into `out` (`blocks.len() * 32` values).
pub fn dequantize_row_q4_0_into(blocks: &[BlockQ4_0], out: &mut [f32]) {
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(QK8_0)) {
        let d = b.d.to_f32();
        o.iter_mut().enumerate().for_each(|(i, o)| *o = (nibble(&b.qs, i) as i32 - 8) as f32 * d);
    }
}

/// `x = q * d + m`.
pub fn dequantize_row_q4_1(blocks: &[BlockQ4_1]) -> Vec<f32> {
    let mut out = vec![0.0; blocks.len() * QK8_0];
    dequantize_row_q4_1_into(blocks, &mut out);
    out
}

/// [`dequantize_row_q4_1`] into `out` (`blocks.len() * 32` values).
pub fn dequantize_row_q4_1_into(blocks: &[BlockQ4_1], out: &mut [f32]) {
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(QK8_0)) {
        let (d, m) = (b.d.to_f32(), b.m.to_f32());
        o.iter_mut().enumerate().for_each(|(i, o)| *o = nibble(&b.qs, i) as f32 * d + m);
    }
}
