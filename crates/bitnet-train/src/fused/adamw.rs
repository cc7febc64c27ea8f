//! The fused AdamW update: one pass over a parameter, its gradient and both moments, in place,
//! allocating nothing, with the clip scale folded in. Per element, as
//! [`crate::trainer::AdamW`]'s composed step (and `torch.optim.AdamW`) computes it:
//!
//! ```text
//! g ← g · clip     m ← β₁ m + (1 − β₁) g     v ← β₂ v + (1 − β₂) g²
//! p ← p · (1 − lr · wd)  (matrices only)      p ← p − lr · (m / bc₁) / (sqrt(v / bc₂) + ε)
//! ```

use super::f32_data;
use candle_core::{CpuStorage, InplaceOp2, Layout, Result};
use std::sync::Mutex;

/// The step's constants.
#[derive(Debug, Clone, Copy)]
pub struct AdamWHyper {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub lr: f32,
    /// `lr · wd` where weight decay applies, else 0.
    pub decay: f32,
    /// Bias corrections `1 − β₁ᵗ`, `1 − β₂ᵗ`.
    pub bc1: f32,
    pub bc2: f32,
    /// Gradient scale of global-norm clipping (1 when not clipped).
    pub clip: f32,
}

/// Applied as `param.inplace_op2(grad, op)`; the moments live in the optimizer.
#[derive(Debug)]
pub struct AdamWOp<'a> {
    pub hyper: AdamWHyper,
    pub m: Mutex<&'a mut [f32]>,
    pub v: Mutex<&'a mut [f32]>,
}

impl InplaceOp2 for AdamWOp<'_> {
    fn name(&self) -> &'static str {
        "adamw"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<()> {
        let g = f32_data(s2, l2, "adamw gradient")?;
        let (Some((a, b)), CpuStorage::F32(p)) = (l1.contiguous_offsets(), s1) else {
            candle_core::bail!("adamw: the parameter is not a contiguous f32 tensor")
        };
        let p = &mut p[a..b];
        let mut m = self.m.lock().unwrap_or_else(|e| e.into_inner());
        let mut v = self.v.lock().unwrap_or_else(|e| e.into_inner());
        if g.len() != p.len() || m.len() != p.len() || v.len() != p.len() {
            candle_core::bail!("adamw: parameter of {}, gradient of {}", p.len(), g.len());
        }
        let h = self.hyper;
        let keep = 1.0 - h.decay;
        for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            let g = g * h.clip;
            *m = *m * h.beta1 + g * (1.0 - h.beta1);
            *v = *v * h.beta2 + g * g * (1.0 - h.beta2);
            let update = (*m / h.bc1) / ((*v / h.bc2).sqrt() + h.eps);
            *p = *p * keep - update * h.lr;
        }
        Ok(())
    }
}

/// `Σ g²` over the f32 elements of `g`, in f64 (one pass; the global norm sums these).
pub fn sum_squares(g: &candle_core::Tensor) -> Result<f64> {
    super::with_f32(g, |v| {
        let mut lanes = [0f64; 4];
        let chunks = v.chunks_exact(4);
        let tail: f64 = chunks.remainder().iter().map(|&x| (x as f64) * (x as f64)).sum();
        for c in chunks {
            for (l, &x) in lanes.iter_mut().zip(c) {
                *l += (x as f64) * (x as f64);
            }
        }
        lanes.iter().sum::<f64>() + tail
    })
}
