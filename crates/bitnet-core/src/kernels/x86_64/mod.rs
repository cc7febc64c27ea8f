//! x86-64 SIMD kernels. Each submodule has the same function names as [`super::scalar`] and a
//! `table()` that wraps them in safe function pointers; `Kernels::new` calls it only after
//! checking that the CPU has the features.

pub mod attn_f16;
pub mod avx2;
pub mod avx512;
pub mod quant_avx2;
pub mod tile_avx2;
pub mod tile_avx512;
pub use avx512::vnni as avx512vnni;
