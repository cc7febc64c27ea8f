//! The int8 activation block the kernels consume: the fields of ggml's `block_q8_K` (type id 15),
//! laid out for SIMD loads. It lives only in memory (ggml's 292-byte file layout puts `d` first),
//! so the codes come first and the block is padded to 320 bytes and aligned to 64: every 32- or
//! 64-byte load of `qs` is aligned and never splits a cache line.
//!
//! ```text
//! offset   0..256  qs[256]    int8 values
//! offset 256..288  bsums[16]  i16 sum of each group of 16 values (kernels subtract
//!                             sum(a) * 1 when they multiply unsigned codes w + 1)
//! offset 288..292  d          f32 scale: x = q * d
//! offset 292..320  padding
//! ```
//!
//! Two quantizers fill it: ggml's per-block [`quantize_row_q8k`] and BitNet's per-token
//! [`quantize_row_q8k_per_token`], which gives every block of a token the same scale.

use super::{check_len, check_multiple, QK_K};
use crate::quant::act_i8_scale;
use crate::Result;

/// One block of 256 int8 activations.
#[repr(C, align(64))]
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ8K {
    pub qs: [i8; QK_K],
    pub bsums: [i16; QK_K / 16],
    pub d: f32,
    _pad: [u8; 28],
}

const _: () = assert!(std::mem::size_of::<BlockQ8K>() == 320);

impl BlockQ8K {
    /// A block of codes `qs` with scale `d`; the group sums are computed here.
    pub fn with_codes(d: f32, qs: [i8; QK_K]) -> Self {
        let mut bsums = [0i16; QK_K / 16];
        for (s, g) in bsums.iter_mut().zip(qs.chunks_exact(16)) {
            *s = g.iter().map(|&v| v as i16).sum();
        }
        Self { qs, bsums, d, _pad: [0; 28] }
    }

    /// The sum of all 256 values.
    #[inline]
    pub fn sum(&self) -> i32 {
        self.bsums.iter().map(|&s| s as i32).sum()
    }
}

/// ggml's `quantize_row_q8K_ref`: per block, the value of largest magnitude maps to -127
/// (`iscale = -127 / max`, round half to even, `min(127, q)`), `d = 1 / iscale`.
pub fn quantize_row_q8k(x: &[f32]) -> Result<Vec<BlockQ8K>> {
    let mut out = Vec::new();
    quantize_row_q8k_into(x, &mut out)?;
    Ok(out)
}

/// [`quantize_row_q8k`] into `out` (cleared first), reusing its allocation.
pub fn quantize_row_q8k_into(x: &[f32], out: &mut Vec<BlockQ8K>) -> Result<()> {
    check_multiple("quantize_row_q8k", x.len(), QK_K)?;
    out.clear();
    out.extend(x.chunks_exact(QK_K).map(|xb| {
        let (mut amax, mut max) = (0.0f32, 0.0f32);
        for &v in xb {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            return BlockQ8K::with_codes(0.0, [0; QK_K]);
        }
        let iscale = -127.0 / max;
        let mut qs = [0i8; QK_K];
        for (q, &v) in qs.iter_mut().zip(xb) {
            *q = ((iscale * v).round_ties_even() as i32).min(127) as i8;
        }
        BlockQ8K::with_codes(1.0 / iscale, qs)
    }));
    Ok(())
}

/// BitNet b1.58 per-token absmax int8 over a whole token (row) `x`:
/// `s = 127 / max(max|x|, 1e-5)`, `q = clamp(round(x * s), -128, 127)`; every block gets `d = 1/s`.
pub fn quantize_row_q8k_per_token(x: &[f32]) -> Result<Vec<BlockQ8K>> {
    check_multiple("quantize_row_q8k_per_token", x.len(), QK_K)?;
    let mut out = vec![BlockQ8K::with_codes(0.0, [0; QK_K]); x.len() / QK_K];
    quantize_row_q8k_per_token_into(x, &mut out)?;
    Ok(out)
}

/// [`quantize_row_q8k_per_token`] into `out` (`x.len() / 256` blocks), allocating nothing.
pub fn quantize_row_q8k_per_token_into(x: &[f32], out: &mut [BlockQ8K]) -> Result<()> {
    check_multiple("quantize_row_q8k_per_token", x.len(), QK_K)?;
    check_len("quantize_row_q8k_per_token output (blocks)", x.len() / QK_K, out.len())?;
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is present (checked just now).
        unsafe { per_token_avx2(x, out) };
        return Ok(());
    }
    per_token_body(x, out);
    Ok(())
}

/// The per-token quantizer compiled for 256-bit registers: the same operations, so the same
/// bytes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn per_token_avx2(x: &[f32], out: &mut [BlockQ8K]) {
    per_token_body(x, out)
}

#[inline(always)]
fn per_token_body(x: &[f32], out: &mut [BlockQ8K]) {
    let s = act_i8_scale(x);
    for (b, xb) in out.iter_mut().zip(x.chunks_exact(QK_K)) {
        for (q, &v) in b.qs.iter_mut().zip(xb) {
            *q = round_away_i8(v * s);
        }
        for (sum, g) in b.bsums.iter_mut().zip(b.qs.chunks_exact(16)) {
            *sum = g.iter().map(|&v| v as i16).sum();
        }
        b.d = 1.0 / s;
    }
}

/// `round_half_away(y).clamp(-128, 127) as i8` (NaN gives 0, as `as` casts do).
#[inline(always)]
pub(crate) fn round_away_i8(y: f32) -> i8 {
    round_clamp_i8(y, -128.0, 127.0)
}

/// `round_half_away(y).clamp(lo, hi) as i8` for bounds within -128..=127 (NaN gives 0), by
/// truncation and the exact remainder: no libm call and no saturating cast, so a loop of it
/// vectorizes (the int8 and int4 activation quantizers of training use it).
#[inline(always)]
pub fn round_clamp_i8(y: f32, lo: f32, hi: f32) -> i8 {
    let y = if y.is_nan() { 0.0 } else { y.clamp(lo.max(-128.0), hi.min(127.0)) };
    // SAFETY: `y` is finite and within -128..=127, so the truncation fits an i32 (the checked
    // `as` cast would handle NaN and overflow element by element, which keeps it scalar).
    let t: i32 = unsafe { y.to_int_unchecked() };
    let f = y - t as f32;
    (t + (f >= 0.5) as i32 - (f <= -0.5) as i32) as i8
}

/// `x = q * d` for every block.
pub fn dequantize_row_q8k(blocks: &[BlockQ8K]) -> Vec<f32> {
    blocks.iter().flat_map(|b| b.qs.iter().map(move |&q| q as f32 * b.d)).collect()
}

#[cfg(test)]
mod tests {
    use super::{round_away_i8, round_clamp_i8};
    use crate::quant::round_half_away;

    #[test]
    fn int4_rounding_equals_round_half_away_then_clamp() {
        let ys: Vec<f32> = (-20_000..20_000).map(|i| i as f32 / 1000.0).collect();
        for y in ys.into_iter().chain([7.5, -8.5, 0.5, -0.5, f32::NAN, f32::INFINITY, -1e20]) {
            let want = if y.is_nan() { 0 } else { round_half_away(y).clamp(-8.0, 7.0) as i8 };
            assert_eq!(round_clamp_i8(y, -8.0, 7.0), want, "{y}");
        }
    }

    #[test]
    fn fast_rounding_equals_round_half_away_then_clamp() {
        let mut ys: Vec<f32> = (-140_000..140_000).map(|i| i as f32 / 1000.0).collect();
        ys.extend([
            0.5,
            -0.5,
            1.5,
            -1.5,
            126.5,
            -127.5,
            127.49998,
            -128.5,
            0.49999997,
            -0.49999997,
        ]);
        ys.extend([f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1e20, -1e20, f32::MIN_POSITIVE]);
        for y in ys {
            let want = round_half_away(y).clamp(-128.0, 127.0) as i8;
            assert_eq!(round_away_i8(y), want, "{y}");
        }
    }
}
