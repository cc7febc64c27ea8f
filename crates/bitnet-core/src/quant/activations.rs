//! Per-token activation quantizers: absmax int8 (b1.58) and absmean int4 (a4.8 / v2).

use super::round_half_away;

/// Lower bound of the activation statistics (max|x| for int8, mean|x| for int4).
pub const ACT_EPS: f32 = 1e-5;

/// One token quantized to int8: `x ≈ codes / scale`.
#[derive(Debug, Clone, PartialEq)]
pub struct ActI8 {
    pub codes: Vec<i8>,
    /// `s = 127 / max(max|x|, 1e-5)`.
    pub scale: f32,
}

/// One token quantized to int4 (codes in [-8, 7], stored one per byte): `x ≈ codes / scale`.
#[derive(Debug, Clone, PartialEq)]
pub struct ActI4 {
    pub codes: Vec<i8>,
    /// `s = sqrt(7) / max(mean|x|, 1e-5)`.
    pub scale: f32,
}

/// `127 / max(max|x|, 1e-5)`: the per-token absmax int8 scale.
#[inline(always)]
pub fn act_i8_scale(x: &[f32]) -> f32 {
    127.0 / abs_max(x).max(ACT_EPS)
}

/// `max |x|` (0 for an empty slice; NaNs ignored, as `f32::max` ignores them). The maximum does
/// not depend on the order, so eight independent lanes run it without a chain of dependent
/// compares.
#[inline(always)]
pub fn abs_max(x: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let chunks = x.chunks_exact(8);
    let tail = chunks.remainder().iter().fold(0.0f32, |m, v| m.max(v.abs()));
    for c in chunks {
        for (l, v) in lanes.iter_mut().zip(c) {
            *l = l.max(v.abs());
        }
    }
    lanes.iter().fold(tail, |m, &l| m.max(l))
}

/// BitNet b1.58 per-token absmax int8: `s = 127 / max(max|x|, 1e-5)`,
/// `codes = clamp(round(x * s), -128, 127)`.
pub fn quantize_act_i8(x: &[f32]) -> ActI8 {
    let scale = act_i8_scale(x);
    let codes = x.iter().map(|&v| round_half_away(v * scale).clamp(-128.0, 127.0) as i8).collect();
    ActI8 { codes, scale }
}

/// BitNet a4.8 per-token absmean int4: `beta = max(mean|x|, 1e-5)`,
/// `codes = clamp(round(sqrt(7) * x / beta), -8, 7)`; the scale is `sqrt(7) / beta`.
pub fn quantize_act_i4(x: &[f32]) -> ActI4 {
    let beta = super::absmean(x).max(ACT_EPS);
    let scale = 7f32.sqrt() / beta;
    let codes = x.iter().map(|&v| round_half_away(v * scale).clamp(-8.0, 7.0) as i8).collect();
    ActI4 { codes, scale }
}
