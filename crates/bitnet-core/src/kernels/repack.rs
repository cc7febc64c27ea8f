//! Load-time repacking of 2-bit ternary weights (`TQ2_0`, `I2_S`) into the planar layout the SIMD
//! kernels want ("T2P"). The file formats never change; this runs once when a model loads.
//!
//! ```text
//! codes  : per row, per 256-weight block, 64 bytes; byte j holds weights j, j+64, j+128, j+192
//!          in bit pairs 0-1, 2-3, 4-5, 6-7 (code = w + 1). One 64-byte load and a shift by 2l
//!          gives the codes of 64 consecutive weights, matching 64 consecutive activations.
//! scales : per row, per block, f32 (TQ2_0: the block's f16 d; I2_S: the tensor scale)
//! ```

use super::matrix::{TernaryMatrix, TernaryView};
use crate::format::i2s::i2s_code;
use crate::format::QK_K;

/// The code (0, 1, 2) of weight `i` (0..256) of one 64-byte T2P chunk.
#[inline]
pub fn t2p_code(chunk: &[u8], i: usize) -> u8 {
    (chunk[i % 64] >> (2 * (i / 64))) & 3
}

/// A ternary matrix repacked into the T2P layout, owned.
#[derive(Debug, Clone, PartialEq)]
pub struct T2pMatrix {
    /// (rows, cols / 4) bytes.
    pub codes: Vec<u8>,
    /// (rows, cols / 256) f32.
    pub scales: Vec<f32>,
    pub rows: usize,
    pub cols: usize,
}

impl T2pMatrix {
    /// A borrowed matrix the kernels multiply.
    pub fn view(&self) -> TernaryMatrix<'_> {
        TernaryMatrix::from_parts(
            TernaryView::T2p { codes: &self.codes, scales: &self.scales },
            self.rows,
            self.cols,
        )
    }

    /// Repacks a `TQ2_0` or `I2_S` matrix; `None` for formats that have no 2-bit planar form.
    pub fn repack(m: &TernaryMatrix<'_>) -> Option<Self> {
        let (rows, cols) = (m.rows(), m.cols());
        let nb = cols / QK_K;
        let mut codes = vec![0u8; rows * nb * 64];
        let mut scales = vec![0f32; rows * nb];
        let mut put = |r: usize, b: usize, i: usize, c: u8| {
            codes[(r * nb + b) * 64 + i % 64] |= c << (2 * (i / 64));
        };
        match m.view() {
            TernaryView::Tq2_0(blocks) => {
                for (k, blk) in blocks.iter().enumerate() {
                    let (r, b) = (k / nb, k % nb);
                    scales[k] = blk.d.to_f32();
                    (0..QK_K).for_each(|i| put(r, b, i, blk.code(i)));
                }
            }
            TernaryView::I2s { codes: src, scale } => {
                scales.fill(scale);
                for r in 0..rows {
                    for b in 0..nb {
                        let base = r * cols + b * QK_K;
                        (0..QK_K).for_each(|i| put(r, b, i, i2s_code(src, base + i)));
                    }
                }
            }
            TernaryView::Tq1_0(_) | TernaryView::T2p { .. } => return None,
        }
        Some(Self { codes, scales, rows, cols })
    }
}
