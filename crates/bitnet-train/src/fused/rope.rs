//! Fused rotary embeddings (`rotate_half` convention, as [`crate::layers::Rope`]) on the
//! projection's own layout `[batch, seq, heads, head_dim]`, so no transpose is copied:
//!
//! ```text
//! y = x ⊙ cos + R(x) ⊙ sin,   R(x) = [−x₂, x₁]       dx = dy ⊙ cos − R(dy ⊙ sin)
//! ```
//!
//! (`R` is a rotation by a quarter turn, so `Rᵀ = −R`.)

use super::{f32_data, tensor, with_f32};
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use std::sync::Arc;

/// `cos` and `sin`, `[max_positions, head_dim]` (each frequency twice).
#[derive(Debug)]
pub struct RopeTables {
    pub cos: Vec<f32>,
    pub sin: Vec<f32>,
    pub head_dim: usize,
}

impl RopeTables {
    pub fn max_positions(&self) -> usize {
        self.cos.len() / self.head_dim.max(1)
    }
}

#[derive(Debug, Clone)]
pub struct RopeOp {
    pub tables: Arc<RopeTables>,
}

impl RopeOp {
    /// The forward (`inverse` false) or the gradient (`inverse` true) of the rotation, from `x`
    /// (or `dy`) into `out`.
    pub(crate) fn run(
        &self,
        x: &[f32],
        dims: (usize, usize, usize, usize),
        inverse: bool,
        out: &mut [f32],
    ) {
        let (_, t, heads, d) = dims;
        let half = d / 2;
        let tb = &self.tables;
        for (pos_block, (xo, xi)) in
            out.chunks_exact_mut(heads * d).zip(x.chunks_exact(heads * d)).enumerate()
        {
            let p = pos_block % t;
            let (cos, sin) = (&tb.cos[p * d..(p + 1) * d], &tb.sin[p * d..(p + 1) * d]);
            for (o, v) in xo.chunks_exact_mut(d).zip(xi.chunks_exact(d)) {
                if !inverse {
                    for i in 0..half {
                        o[i] = v[i] * cos[i] - v[i + half] * sin[i];
                        o[i + half] = v[i + half] * cos[i + half] + v[i] * sin[i + half];
                    }
                } else {
                    for i in 0..half {
                        o[i] = v[i] * cos[i] + v[i + half] * sin[i + half];
                        o[i + half] = v[i + half] * cos[i + half] - v[i] * sin[i];
                    }
                }
            }
        }
    }

    fn dims(&self, shape: &Shape) -> Result<(usize, usize, usize, usize)> {
        let (b, t, h, d) = shape.dims4()?;
        if d != self.tables.head_dim || d % 2 != 0 || t > self.tables.max_positions() {
            candle_core::bail!(
                "rope: input {:?} for tables of head_dim {} and {} positions",
                shape.dims(),
                self.tables.head_dim,
                self.tables.max_positions()
            );
        }
        Ok((b, t, h, d))
    }
}

impl CustomOp1 for RopeOp {
    fn name(&self) -> &'static str {
        "rope"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_data(s, l, "rope")?;
        let dims = self.dims(l.shape())?;
        let mut y = vec![0f32; x.len()];
        self.run(x, dims, false, &mut y);
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        let dims = self.dims(x.shape())?;
        let mut dx = vec![0f32; x.elem_count()];
        with_f32(dy, |g| self.run(g, dims, true, &mut dx))?;
        Ok(Some(tensor(dx, x.shape().clone())?))
    }
}
