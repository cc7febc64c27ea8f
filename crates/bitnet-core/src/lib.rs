//! `bitnet-core`: the numerical foundation of bitnet-rs — quantizers ([`quant`]), byte-exact packed
//! ternary formats ([`format`]) and the scalar reference and SIMD kernels that multiply them with
//! int8 activations ([`kernels`]). It never depends on a tensor framework.
//!
//! Papers: BitNet (arXiv:2310.11453), BitNet b1.58 (arXiv:2402.17764), BitNet a4.8
//! (arXiv:2411.04965), BitNet v2 (arXiv:2504.18415).

pub mod error;
pub mod format;
pub mod kernels;
pub mod quant;

pub use error::{CoreError, Result};
