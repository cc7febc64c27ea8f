//! Owned ternary matrices in each packed format: what an exporter writes and what benchmarks
//! and tests multiply.

use super::matrix::{TernaryMatrix, TernaryView};
use super::repack::T2pMatrix;
use crate::format::{i2s, tq1_0, tq2_0, BlockTQ1_0, BlockTQ2_0};
use crate::quant::{quantize_ternary, ScaleGranularity};
use crate::Result;

/// A packed ternary weight format the kernels multiply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TernaryFormat {
    Tq2_0,
    Tq1_0,
    I2s,
    /// `TQ2_0` or `I2_S` repacked at load time ([`super::repack`]).
    T2p,
}

impl TernaryFormat {
    pub const ALL: [TernaryFormat; 4] =
        [TernaryFormat::Tq2_0, TernaryFormat::Tq1_0, TernaryFormat::I2s, TernaryFormat::T2p];

    pub fn name(self) -> &'static str {
        match self {
            TernaryFormat::Tq2_0 => "tq2_0",
            TernaryFormat::Tq1_0 => "tq1_0",
            TernaryFormat::I2s => "i2_s",
            TernaryFormat::T2p => "t2p",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }
}

#[derive(Debug, Clone)]
enum Storage {
    Tq2_0(Vec<BlockTQ2_0>),
    Tq1_0(Vec<BlockTQ1_0>),
    I2s(Vec<u8>),
    T2p(T2pMatrix),
}

/// A (rows, cols) ternary matrix that owns its packed bytes.
#[derive(Debug, Clone)]
pub struct OwnedTernary {
    storage: Storage,
    rows: usize,
    cols: usize,
}

impl OwnedTernary {
    /// b1.58-quantizes f32 weights (per-tensor absmean) and packs them in `format`.
    pub fn quantize(format: TernaryFormat, w: &[f32], rows: usize, cols: usize) -> Result<Self> {
        let t = quantize_ternary(w, rows, cols, ScaleGranularity::PerTensor)?;
        let deq = t.dequantize();
        crate::format::check_multiple("ternary matrix columns", cols, crate::format::QK_K)?;
        let storage = match format {
            TernaryFormat::Tq2_0 => Storage::Tq2_0(tq2_0::quantize_row_tq2_0(&deq)?),
            TernaryFormat::Tq1_0 => Storage::Tq1_0(tq1_0::quantize_row_tq1_0(&deq)?),
            TernaryFormat::I2s => Storage::I2s(i2s::quantize_i2_s(&deq)?),
            TernaryFormat::T2p => {
                let blocks = tq2_0::quantize_row_tq2_0(&deq)?;
                let m = TernaryMatrix::new(TernaryView::Tq2_0(&blocks), rows, cols)?;
                Storage::T2p(T2pMatrix::repack(&m).expect("TQ2_0 always repacks"))
            }
        };
        let out = Self { storage, rows, cols };
        out.matrix()?;
        Ok(out)
    }

    /// Uniformly random ternary weights times 0.02 (a deterministic xorshift from `seed`).
    pub fn random(format: TernaryFormat, rows: usize, cols: usize, seed: u64) -> Result<Self> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let w: Vec<f32> = (0..rows * cols)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 33) % 3) as f32 * 0.02 - 0.02
            })
            .collect();
        Self::quantize(format, &w, rows, cols)
    }

    /// The packed bytes as a file stores them (`None` for the in-memory T2P layout).
    pub fn file_bytes(&self) -> Option<&[u8]> {
        match &self.storage {
            Storage::Tq2_0(b) => Some(bytemuck::cast_slice(b)),
            Storage::Tq1_0(b) => Some(bytemuck::cast_slice(b)),
            Storage::I2s(b) => Some(b),
            Storage::T2p(_) => None,
        }
    }

    /// The borrowed matrix the kernels multiply.
    pub fn matrix(&self) -> Result<TernaryMatrix<'_>> {
        let (r, c) = (self.rows, self.cols);
        match &self.storage {
            Storage::Tq2_0(b) => TernaryMatrix::new(TernaryView::Tq2_0(b), r, c),
            Storage::Tq1_0(b) => TernaryMatrix::new(TernaryView::Tq1_0(b), r, c),
            Storage::I2s(b) => TernaryMatrix::from_i2s_bytes(b, r, c),
            Storage::T2p(m) => Ok(m.view()),
        }
    }
}
