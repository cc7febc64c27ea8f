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
    let mut out = Vec::new();
    quantize_row_q8_0_into(x, &mut out)?;
    Ok(out)
}

/// [`quantize_row_q8_0`] into `out` (cleared first), reusing its allocation.
pub fn quantize_row_q8_0_into(x: &[f32], out: &mut Vec<BlockQ8_0>) -> Result<()> {
    check_multiple("quantize_row_q8_0", x.len(), QK8_0)?;
    out.clear();
    out.extend(x.chunks_exact(QK8_0).map(|xb| {
        let (d, qs) = quantize_block(xb);
        BlockQ8_0 { d: f16::from_f32(d), qs }
    }));
    Ok(())
}

/// ggml's `quantize_row_q8_1_ref`: as `Q8_0`, plus `s = d * sum(q)`.
pub fn quantize_row_q8_1(x: &[f32]) -> Result<Vec<BlockQ8_1>> {
    let mut out = Vec::new();
    quantize_row_q8_1_into(x, &mut out)?;
    Ok(out)
}

/// [`quantize_row_q8_1`] into `out` (cleared first), reusing its allocation.
pub fn quantize_row_q8_1_into(x: &[f32], out: &mut Vec<BlockQ8_1>) -> Result<()> {
    check_multiple("quantize_row_q8_1", x.len(), QK8_0)?;
    out.clear();
    out.extend(x.chunks_exact(QK8_0).map(|xb| {
        let (d, qs) = quantize_block(xb);
        let sum: i32 = qs.iter().map(|&q| q as i32).sum();
        BlockQ8_1 { d: f16::from_f32(d), s: f16::from_f32(sum as f32 * d), qs }
    }));
    Ok(())
}

/// `x = q * d`.
pub fn dequantize_row_q8_0(blocks: &[BlockQ8_0]) -> Vec<f32> {
    let mut out = vec![0.0; blocks.len() * QK8_0];
    dequantize_row_q8_0_into(blocks, &mut out);
    out
}

/// [`dequantize_row_q8_0`] into `out` (`blocks.len() * 32` values).
pub fn dequantize_row_q8_0_into(blocks: &[BlockQ8_0], out: &mut [f32]) {
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(QK8_0)) {
        let d = b.d.to_f32();
        o.iter_mut().zip(&b.qs).for_each(|(o, &q)| *o = q as f32 * d);
    }
}
