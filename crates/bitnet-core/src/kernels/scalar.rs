//! The scalar reference kernels: the specification every SIMD kernel must equal exactly.
//!
//! Every dot product here has the same shape: for each 256-weight block `b`, the integer sum
//! `isum_b = sum_i (code_i - 1) * a_i` (codes in {0, 1, 2}, `a` the int8 activations), then the f32
//! accumulation `acc += (d_w_b * d_a_b) * isum_b` in block order. SIMD kernels compute the same
//! integers and perform the same f32 operations in the same order, so their results are
//! bit-identical to these. Plain loops, never optimised.

use crate::format::i2s::i2s_code;
use crate::format::{BlockQ8K, BlockTQ1_0, BlockTQ2_0, QK_K};

/// `sum_i (code(i) - 1) * a_i` over one block.
#[inline]
fn block_isum(code: impl Fn(usize) -> u8, a: &BlockQ8K) -> i32 {
    (0..QK_K).map(|i| (code(i) as i32 - 1) * a.qs[i] as i32).sum()
}

/// `TQ2_0` weights · int8 activations: `sum_b (d_b * d_a_b) * isum_b`.
pub fn vec_dot_tq2_0_q8k(w: &[BlockTQ2_0], a: &[BlockQ8K]) -> f32 {
    debug_assert_eq!(w.len(), a.len());
    let mut acc = 0.0f32;
    for (wb, ab) in w.iter().zip(a) {
        let isum = block_isum(|i| wb.code(i), ab);
        acc += (wb.d.to_f32() * ab.d) * isum as f32;
    }
    acc
}

/// `TQ1_0` weights · int8 activations: `sum_b (d_b * d_a_b) * isum_b`.
pub fn vec_dot_tq1_0_q8k(w: &[BlockTQ1_0], a: &[BlockQ8K]) -> f32 {
    debug_assert_eq!(w.len(), a.len());
    let mut acc = 0.0f32;
    for (wb, ab) in w.iter().zip(a) {
        let isum = block_isum(|i| wb.code(i), ab);
        acc += (wb.d.to_f32() * ab.d) * isum as f32;
    }
    acc
}

/// `I2_S` codes (one row, `64 * a.len()` bytes) · int8 activations: `sum_b d_a_b * isum_b`,
/// without the tensor scale (the caller multiplies once per row).
pub fn vec_dot_i2s_q8k(codes: &[u8], a: &[BlockQ8K]) -> f32 {
    debug_assert_eq!(codes.len(), a.len() * QK_K / 4);
    let mut acc = 0.0f32;
    for (b, ab) in a.iter().enumerate() {
        let isum = block_isum(|i| i2s_code(codes, b * QK_K + i), ab);
        acc += ab.d * isum as f32;
    }
    acc
}

/// Repacked 2-bit codes ([`super::repack`], `64 * a.len()` bytes, f32 scale per block) · int8
/// activations: `sum_b (scale_b * d_a_b) * isum_b`.
pub fn vec_dot_t2p_q8k(codes: &[u8], scales: &[f32], a: &[BlockQ8K]) -> f32 {
    debug_assert_eq!(codes.len(), a.len() * 64);
    debug_assert_eq!(scales.len(), a.len());
    let mut acc = 0.0f32;
    for (b, ab) in a.iter().enumerate() {
        let chunk = &codes[64 * b..64 * b + 64];
        let isum = block_isum(|i| super::repack::t2p_code(chunk, i), ab);
        acc += (scales[b] * ab.d) * isum as f32;
    }
    acc
}
