//! Weight quantizers: absmean ternary (b1.58) and mean-centred sign (b1).

use super::round_half_away;
use crate::{CoreError, Result};

/// Lower bound of the absmean scale: `scale = max(mean|W|, WEIGHT_EPS)`.
pub const WEIGHT_EPS: f32 = 1e-5;

/// Whether one scale covers the whole tensor (the papers) or each output row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScaleGranularity {
    #[default]
    PerTensor,
    PerRow,
}

/// Ternary codes in {-1, 0, 1} with their scales: `W ≈ codes * scale`.
#[derive(Debug, Clone, PartialEq)]
pub struct TernaryWeights {
    /// (rows, cols), row-major.
    pub codes: Vec<i8>,
    /// One scale (per tensor) or `rows` scales (per row).
    pub scales: Vec<f32>,
    pub rows: usize,
    pub cols: usize,
}

impl TernaryWeights {
    /// The scale that multiplies row `r`.
    pub fn row_scale(&self, r: usize) -> f32 {
        if self.scales.len() == 1 {
            self.scales[0]
        } else {
            self.scales[r]
        }
    }

    /// `codes * scale` as f32, row-major.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.codes.len());
        for r in 0..self.rows {
            let s = self.row_scale(r);
            let row = &self.codes[r * self.cols..(r + 1) * self.cols];
            out.extend(row.iter().map(|&q| q as f32 * s));
        }
        out
    }
}

/// `mean|x|` accumulated in f64 and rounded once to f32 (0 for an empty slice).
pub fn absmean(x: &[f32]) -> f32 {
    if x.is_empty() {
        return 0.0;
    }
    (x.iter().map(|v| v.abs() as f64).sum::<f64>() / x.len() as f64) as f32
}

fn check_shape(name: &'static str, len: usize, rows: usize, cols: usize) -> Result<()> {
    if len != rows * cols {
        return Err(CoreError::ShapeMismatch { name, expected: rows * cols, got: len });
    }
    Ok(())
}

/// BitNet b1.58 absmean quantization of a (rows, cols) weight matrix:
///
/// `scale = max(mean|W|, 1e-5)`, `codes = clamp(round(W / scale), -1, 1)`, `W ≈ codes * scale`.
///
/// The mean runs over the whole tensor or, with [`ScaleGranularity::PerRow`], over each row.
pub fn quantize_ternary(
    w: &[f32],
    rows: usize,
    cols: usize,
    granularity: ScaleGranularity,
) -> Result<TernaryWeights> {
    check_shape("quantize_ternary", w.len(), rows, cols)?;
    let scales = match granularity {
        ScaleGranularity::PerTensor => vec![absmean(w).max(WEIGHT_EPS)],
        ScaleGranularity::PerRow => {
            w.chunks(cols.max(1)).take(rows).map(|row| absmean(row).max(WEIGHT_EPS)).collect()
        }
    };
    let mut codes = Vec::with_capacity(w.len());
    for r in 0..rows {
        let s = if scales.len() == 1 { scales[0] } else { scales[r] };
        for &v in &w[r * cols..(r + 1) * cols] {
            codes.push(round_half_away(v / s).clamp(-1.0, 1.0) as i8);
        }
    }
    Ok(TernaryWeights { codes, scales, rows, cols })
}

/// Binary codes in {-1, +1} with the scale `beta`: `W ≈ codes * beta`.
#[derive(Debug, Clone, PartialEq)]
pub struct BinaryWeights {
    pub codes: Vec<i8>,
    pub beta: f32,
}

/// BitNet b1 binarization: `codes = sign(W - mean(W))` with `sign(0) = -1` (the paper's
/// `Sign(x) = +1 if x > 0 else -1`), and `beta = mean|W|` (the l1 norm over `n*m`).
pub fn quantize_b1(w: &[f32]) -> BinaryWeights {
    if w.is_empty() {
        return BinaryWeights { codes: Vec::new(), beta: 0.0 };
    }
    let alpha = (w.iter().map(|&v| v as f64).sum::<f64>() / w.len() as f64) as f32;
    let codes = w.iter().map(|&v| if v - alpha > 0.0 { 1 } else { -1 }).collect();
    BinaryWeights { codes, beta: absmean(w) }
}
