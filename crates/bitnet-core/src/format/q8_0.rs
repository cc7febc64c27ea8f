//! ggml `Q8_0` (type id 8) and `Q8_1` (id 9): 32 int8 values and an f16 scale. `Q8_0` stores
//! weights and llama.cpp's activations for `Q4_0`/`Q8_0` matmuls; `Q8_1` adds the scaled sum that
//! `Q4_1` matmuls need for the offset term.
//!
//! ```text
//! block_q8_0 (34 bytes): offset 0..2 d (f16), 2..34 qs[32] (i8);           x = q * d
//! block_q8_1 (36 bytes): offset 0..2 d (f16), 2..4 s (f16) = d * sum(qs), 4..36 qs[32]
//! ```

use super::check_multiple;
use crate::Result;
use half::f16;

/// Values per `Q8_0` / `Q8_1` / `Q4_0` / `Q4_1` block.
pub const QK8_0: usize = 32;

/// One `Q8_0` block.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ8_0 {
    pub d: f16,
    pub qs: [i8; QK8_0],
}
const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == 34);

/// One `Q8_1` block.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ8_1 {
    pub d: f16,
    pub s: f16,
    pub qs: [i8; QK8_0],
}
const _: () = assert!(std::mem::size_of::<BlockQ8_1>() == 36);

/// `(d, codes)` of ggml's reference: `d = max|x| / 127`, `q = round_half_away(x / d)`.
fn quantize_block(xb: &[f32]) -> (f32, [i8; QK8_0]) {
    let amax = super::amax(xb);
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut qs = [0i8; QK8_0];
    for (q, &v) in qs.iter_mut().zip(xb) {
        *q = (v * id).round() as i8;
    }
    (d, qs)
}

/// ggml's `quantize_row_q8_0_ref`.
pub fn quantize_row_q8_0(x: &[f32]) -> Result<Vec<BlockQ8_0>> {
    check_multiple("quantize_row_q8_0", x.len(), QK8_0)?;
    Ok(x.chunks_exact(QK8_0)
        .map(|xb| {
            let (d, qs) = quantize_block(xb);
            BlockQ8_0 { d: f16::from_f32(d), qs }
        })
        .collect())
}

/// ggml's `quantize_row_q8_1_ref`: as `Q8_0`, plus `s = d * sum(q)`.
pub fn quantize_row_q8_1(x: &[f32]) -> Result<Vec<BlockQ8_1>> {
    check_multiple("quantize_row_q8_1", x.len(), QK8_0)?;
    Ok(x.chunks_exact(QK8_0)
        .map(|xb| {
            let (d, qs) = quantize_block(xb);
            let sum: i32 = qs.iter().map(|&q| q as i32).sum();
            BlockQ8_1 { d: f16::from_f32(d), s: f16::from_f32(sum as f32 * d), qs }
        })
        .collect())
}

/// `x = q * d`.
pub fn dequantize_row_q8_0(blocks: &[BlockQ8_0]) -> Vec<f32> {
    blocks.iter().flat_map(|b| b.qs.iter().map(move |&q| q as f32 * b.d.to_f32())).collect()
}
