//! Ternary × int8 kernels: dot products, GEMV (one token) and GEMM (many tokens) for `TQ2_0`,
//! `TQ1_0`, `I2_S` and the repacked T2P layout.
//!
//! - [`scalar`] is the specification, always compiled.
//! - `x86_64::{avx2, avx512, avx512vnni}` carry the same function names; they are
//!   `#[target_feature] unsafe fn`s reached only through a [`Kernels`] table that is filled once
//!   after run-time feature detection. [`Kernels::new`] forces a path (tests use it);
//!   [`Kernels::detect`] picks the best one this CPU has.
//! - [`Matmul`] runs GEMV/GEMM over a [`ThreadPool`] that lives as long as the model.

pub mod act;
pub mod attn;
pub mod baseline;
pub mod matmul;
pub mod matrix;
pub mod owned;
pub mod pool;
pub mod quant;
pub mod repack;
pub mod scalar;
pub mod tile;
#[cfg(target_arch = "x86_64")]
pub mod x86_64;

pub use matmul::Matmul;
pub use matrix::{TernaryMatrix, TernaryView};
pub use owned::{OwnedTernary, TernaryFormat};
pub use pool::ThreadPool;
pub use quant::{ActKind, QuantActs, QuantMatrix, QuantView};
pub use repack::T2pMatrix;
pub use tile::{CodeLayout, CodesTile};

use crate::format::{BlockQ8K, BlockTQ1_0, BlockTQ2_0};
use crate::{CoreError, Result};

/// An instruction-set path of the kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Isa {
    /// The reference loops.
    Scalar,
    /// AVX2 + F16C (256-bit `vpmaddubsw`).
    Avx2,
    /// AVX-512 F + BW (512-bit `vpmaddubsw`).
    Avx512,
    /// AVX-512 with VNNI (`vpdpbusd`, unsigned codes × signed activations).
    Avx512Vnni,
}

impl Isa {
    /// Every path, slowest first.
    pub const ALL: [Isa; 4] = [Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Avx512Vnni];

    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
            Isa::Avx512Vnni => "avx512vnni",
        }
    }

    /// Parses a name as printed by [`Isa::name`].
    pub fn from_name(name: &str) -> Option<Isa> {
        Isa::ALL.into_iter().find(|i| i.name() == name)
    }

    /// Whether this CPU can run the path.
    pub fn is_available(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("f16c"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512vl")
                    && Isa::Avx2.is_available()
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => Isa::Avx512.is_available() && is_x86_feature_detected!("avx512vnni"),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The fastest path this CPU has.
    pub fn best() -> Isa {
        Isa::ALL.into_iter().rev().find(|i| i.is_available()).unwrap_or(Isa::Scalar)
    }
}

/// `TQ2_0` row · activations.
pub type VecDotTq2_0 = fn(&[BlockTQ2_0], &[BlockQ8K]) -> f32;
/// `TQ1_0` row · activations.
pub type VecDotTq1_0 = fn(&[BlockTQ1_0], &[BlockQ8K]) -> f32;
/// `I2_S` row codes · activations, without the tensor scale.
pub type VecDotI2s = fn(&[u8], &[BlockQ8K]) -> f32;
/// T2P row codes and block scales · activations.
pub type VecDotT2p = fn(&[u8], &[f32], &[BlockQ8K]) -> f32;

/// The kernel table of one instruction-set path.
#[derive(Debug, Clone, Copy)]
pub struct Kernels {
    pub isa: Isa,
    pub vec_dot_tq2_0_q8k: VecDotTq2_0,
    pub vec_dot_tq1_0_q8k: VecDotTq1_0,
    pub vec_dot_i2s_q8k: VecDotI2s,
    pub vec_dot_t2p_q8k: VecDotT2p,
    /// Whole-row integer tiles of 2-bit codes ([`tile`]).
    pub codes_tile: CodesTile,
    /// `TQ1_0` blocks rewritten as `TQ2_0` blocks (same codes, same scales), so prefill can run
    /// 1.6-bit rows through the 2-bit tiles.
    pub tq1_0_to_tq2_0: fn(&[BlockTQ1_0], &mut [BlockTQ2_0]),
    /// Whole-row sums of `TQ1_0` rows for one token ([`tile::Tq1Rows`]).
    pub tq1_0_rows: tile::Tq1Rows,
}

impl Kernels {
    /// The table of `isa`, or an error when this CPU lacks it.
    pub fn new(isa: Isa) -> Result<Self> {
        if !isa.is_available() {
            return Err(CoreError::IsaUnavailable { isa: isa.name() });
        }
        Ok(match isa {
            Isa::Scalar => Self::scalar(),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => x86_64::avx2::table(),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => x86_64::avx512::table(),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => x86_64::avx512vnni::table(),
            #[cfg(not(target_arch = "x86_64"))]
            _ => unreachable!("is_available is false off x86_64"),
        })
    }

    /// The table of the fastest path this CPU has.
    pub fn detect() -> Self {
        Self::new(Isa::best()).unwrap_or_else(|_| Self::scalar())
    }

    /// The reference table.
    pub fn scalar() -> Self {
        Kernels {
            isa: Isa::Scalar,
            vec_dot_tq2_0_q8k: scalar::vec_dot_tq2_0_q8k,
            vec_dot_tq1_0_q8k: scalar::vec_dot_tq1_0_q8k,
            vec_dot_i2s_q8k: scalar::vec_dot_i2s_q8k,
            vec_dot_t2p_q8k: scalar::vec_dot_t2p_q8k,
            codes_tile: tile::codes_tile,
            tq1_0_to_tq2_0: tile::tq1_0_to_tq2_0,
            tq1_0_rows: tile::tq1_0_rows,
        }
    }

    /// One row of `m` · one token's activation blocks.
    #[inline]
    pub fn dot_row(&self, m: &TernaryMatrix<'_>, row: usize, a: &[BlockQ8K]) -> f32 {
        let nb = m.blocks_per_row();
        let (lo, hi) = (row * nb, row * nb + nb);
        match m.view() {
            TernaryView::Tq2_0(b) => (self.vec_dot_tq2_0_q8k)(&b[lo..hi], a),
            TernaryView::Tq1_0(b) => (self.vec_dot_tq1_0_q8k)(&b[lo..hi], a),
            TernaryView::I2s { codes, scale } => {
                (self.vec_dot_i2s_q8k)(&codes[lo * 64..hi * 64], a) * scale
            }
            TernaryView::T2p { codes, scales } => {
                (self.vec_dot_t2p_q8k)(&codes[lo * 64..hi * 64], &scales[lo..hi], a)
            }
        }
    }
}
