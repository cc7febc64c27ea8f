//! Borrowed ternary weight matrices (rows = output features, cols = input features) in any of the
//! packed formats, validated once so the kernels can trust their lengths.

use crate::format::i2s::I2sTensor;
use crate::format::{check_len, check_multiple, BlockTQ1_0, BlockTQ2_0, QK_K};
use crate::{CoreError, Result};

/// The packed weights of a matrix, row-major, in one format.
#[derive(Debug, Clone, Copy)]
pub enum TernaryView<'a> {
    /// (rows, cols / 256) blocks.
    Tq2_0(&'a [BlockTQ2_0]),
    /// (rows, cols / 256) blocks.
    Tq1_0(&'a [BlockTQ1_0]),
    /// (rows, cols / 4) bytes of codes and the tensor scale.
    I2s { codes: &'a [u8], scale: f32 },
    /// The repacked planar layout of [`super::repack`]: (rows, cols / 4) bytes,
    /// (rows, cols / 256) scales.
    T2p { codes: &'a [u8], scales: &'a [f32] },
}

/// A validated (rows, cols) ternary matrix.
#[derive(Debug, Clone, Copy)]
pub struct TernaryMatrix<'a> {
    view: TernaryView<'a>,
    rows: usize,
    cols: usize,
}

pub(crate) fn cast<'a, T: bytemuck::Pod>(what: &'static str, bytes: &'a [u8]) -> Result<&'a [T]> {
    bytemuck::try_cast_slice(bytes).map_err(|e| match e {
        bytemuck::PodCastError::TargetAlignmentGreaterAndInputNotAligned => {
            CoreError::Misaligned { what, align: std::mem::align_of::<T>() }
        }
        _ => CoreError::LengthNotMultiple {
            what,
            len: bytes.len(),
            multiple: std::mem::size_of::<T>(),
        },
    })
}

impl<'a> TernaryMatrix<'a> {
    /// Checks that `view` holds exactly a (rows, cols) matrix; `cols` must be a multiple of 256.
    pub fn new(view: TernaryView<'a>, rows: usize, cols: usize) -> Result<Self> {
        check_multiple("ternary matrix columns", cols, QK_K)?;
        let nb = rows * (cols / QK_K);
        match view {
            TernaryView::Tq2_0(b) => check_len("TQ2_0 blocks", nb, b.len())?,
            TernaryView::Tq1_0(b) => check_len("TQ1_0 blocks", nb, b.len())?,
            TernaryView::I2s { codes, .. } => check_len("I2_S code bytes", nb * 64, codes.len())?,
            TernaryView::T2p { codes, scales } => {
                check_len("T2P code bytes", nb * 64, codes.len())?;
                check_len("T2P scales", nb, scales.len())?;
            }
        }
        Ok(Self { view, rows, cols })
    }

    pub(crate) fn from_parts(view: TernaryView<'a>, rows: usize, cols: usize) -> Self {
        Self { view, rows, cols }
    }

    /// A `TQ2_0` matrix from raw tensor bytes (as stored in a GGUF file).
    pub fn from_tq2_0_bytes(bytes: &'a [u8], rows: usize, cols: usize) -> Result<Self> {
        Self::new(TernaryView::Tq2_0(cast("TQ2_0 tensor", bytes)?), rows, cols)
    }

    /// A `TQ1_0` matrix from raw tensor bytes.
    pub fn from_tq1_0_bytes(bytes: &'a [u8], rows: usize, cols: usize) -> Result<Self> {
        Self::new(TernaryView::Tq1_0(cast("TQ1_0 tensor", bytes)?), rows, cols)
    }

    /// An `I2_S` matrix from raw tensor bytes (codes, then the scale).
    pub fn from_i2s_bytes(bytes: &'a [u8], rows: usize, cols: usize) -> Result<Self> {
        let t = I2sTensor::parse(bytes, rows * cols)?;
        Self::new(TernaryView::I2s { codes: t.codes, scale: t.scale }, rows, cols)
    }

    pub fn view(&self) -> TernaryView<'a> {
        self.view
    }
    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// 256-weight blocks per row.
    pub fn blocks_per_row(&self) -> usize {
        self.cols / QK_K
    }
    /// Bytes of packed weights the kernels read (codes and scales).
    pub fn weight_bytes(&self) -> usize {
        match self.view {
            TernaryView::Tq2_0(b) => std::mem::size_of_val(b),
            TernaryView::Tq1_0(b) => std::mem::size_of_val(b),
            TernaryView::I2s { codes, .. } => codes.len() + 4,
            TernaryView::T2p { codes, scales } => codes.len() + std::mem::size_of_val(scales),
        }
    }
}
