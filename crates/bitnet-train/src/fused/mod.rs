//! Fused CPU training ops: candle custom ops that compute a layer's forward and its backward in
//! one pass each over contiguous f32 buffers, instead of a chain of element-wise tensors.
//!
//! Every op here has a composed twin in [`crate::layers`] built from differentiable candle
//! primitives; that twin is the reference, and `tests/fused.rs` pins each op (values and every
//! gradient) to it. [`OpPath`] chooses between them; the fused ops run on the CPU only, and a
//! layer on another device, or of a shape an op does not take, uses the composed twin.
//!
//! - [`bitlinear`]: int8 (or int4) activations times packed ternary weights through
//!   `bitnet-core`'s integer GEMM tiles, straight-through backward on f32 GEMMs.
//! - [`attention`] (with RoPE), [`norm`], [`glu`], [`embedding`], [`cross_entropy`]: the rest of
//!   the decoder block and the loss; [`rope`] alone.
//! - [`adamw`]: the optimizer's in-place update and the gradient norm's sums.

pub mod adamw;
pub mod attention;
pub mod bitlinear;
pub mod cross_entropy;
pub mod embedding;
pub mod glu;
pub mod norm;
pub mod rope;

use candle_core::{CpuStorage, Device, Layout, Result, Shape, Storage, Tensor};
use serde::{Deserialize, Serialize};
use std::sync::RwLockReadGuard;

/// Which implementation of the layers a model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpPath {
    /// The fused custom ops of this module where the device and shape allow them.
    #[default]
    Fused,
    /// Candle primitives only (the reference; what non-CPU devices run).
    Composed,
}

impl OpPath {
    /// Whether the fused ops apply to tensors on `device`.
    pub fn fused_on(self, device: &Device) -> bool {
        self == OpPath::Fused && device.is_cpu()
    }
}

impl std::str::FromStr for OpPath {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "fused" => Ok(OpPath::Fused),
            "composed" => Ok(OpPath::Composed),
            _ => Err(format!("unknown op path {s:?}; expected fused or composed")),
        }
    }
}

/// The f32 elements of a contiguous CPU storage (the op's input as its layout describes it).
pub(crate) fn f32_data<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else {
        candle_core::bail!("{op}: expected f32 data, got another dtype")
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => candle_core::bail!("{op}: the input is not contiguous"),
    }
}

/// The u32 elements of a contiguous CPU storage.
pub(crate) fn u32_data<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<&'a [u32]> {
    let CpuStorage::U32(v) = s else {
        candle_core::bail!("{op}: expected u32 data, got another dtype")
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => candle_core::bail!("{op}: the input is not contiguous"),
    }
}

/// A read view of the f32 elements of a contiguous CPU tensor.
pub(crate) struct CpuF32<'a> {
    guard: RwLockReadGuard<'a, Storage>,
    range: (usize, usize),
}

impl<'a> CpuF32<'a> {
    /// `t` must be a contiguous f32 tensor on the CPU (call `.contiguous()` first).
    pub(crate) fn new(t: &'a Tensor) -> Result<Self> {
        let (guard, layout) = t.storage_and_layout();
        let range = match (&*guard, layout.contiguous_offsets()) {
            (Storage::Cpu(CpuStorage::F32(_)), Some(r)) => r,
            _ => candle_core::bail!("fused ops take contiguous f32 tensors on the CPU"),
        };
        Ok(Self { guard, range })
    }

    pub(crate) fn get(&self) -> &[f32] {
        match &*self.guard {
            Storage::Cpu(CpuStorage::F32(v)) => &v[self.range.0..self.range.1],
            _ => &[],
        }
    }
}

/// Calls `f` with the f32 elements of `t` (made contiguous first if it is not).
pub(crate) fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let t = t.contiguous()?;
    let view = CpuF32::new(&t)?;
    Ok(f(view.get()))
}

/// A new f32 tensor of `shape` on the CPU from `data`.
pub(crate) fn tensor(data: Vec<f32>, shape: impl Into<Shape>) -> Result<Tensor> {
    Tensor::from_vec(data, shape, &Device::Cpu)
}

/// `(rows, last)` of a tensor seen as a matrix over its last dimension.
pub(crate) fn rows_cols(shape: &Shape) -> (usize, usize) {
    let last = shape.dims().last().copied().unwrap_or(1);
    (shape.elem_count() / last.max(1), last)
}

/// `y += a * x`.
#[inline]
pub(crate) fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}
