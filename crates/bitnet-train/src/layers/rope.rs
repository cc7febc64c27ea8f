//! Rotary position embeddings in Hugging Face's `rotate_half` convention: dimension `i` of a head
//! pairs with dimension `i + head_dim/2`, and `inv_freq[i] = theta^(-2i/head_dim)`.

use crate::fused::rope::{RopeOp, RopeTables};
use candle_core::{Device, Result, Tensor, D};
use std::sync::Arc;

/// Precomputed `cos` and `sin` tables, `[max_positions, head_dim]` (frequencies repeated twice).
#[derive(Debug, Clone)]
pub struct Rope {
    cos: Tensor,
    sin: Tensor,
    tables: Arc<RopeTables>,
}

impl Rope {
    pub fn new(head_dim: usize, max_positions: usize, theta: f64, device: &Device) -> Result<Self> {
        // As transformers computes it: inv_freq in f32, position times it in f32.
        let inv: Vec<f32> = (0..head_dim / 2)
            .map(|i| (1.0 / theta.powf((2 * i) as f64 / head_dim as f64)) as f32)
            .collect();
        let mut cos = Vec::with_capacity(max_positions * head_dim);
        let mut sin = Vec::with_capacity(max_positions * head_dim);
        for p in 0..max_positions {
            let (s, c): (Vec<f32>, Vec<f32>) =
                inv.iter().map(|&f| (p as f32 * f).sin_cos()).unzip();
            for _ in 0..2 {
                cos.extend_from_slice(&c);
                sin.extend_from_slice(&s);
            }
        }
        let shape = (max_positions, head_dim);
        Ok(Self {
            cos: Tensor::from_slice(&cos, shape, device)?,
            sin: Tensor::from_slice(&sin, shape, device)?,
            tables: Arc::new(RopeTables { cos, sin, head_dim }),
        })
    }

    /// `x`: `[batch, heads, seq, head_dim]`, positions `0..seq`.
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let seq = x.dim(2)?;
        let cos = self.cos.narrow(0, 0, seq)?.to_dtype(x.dtype())?;
        let sin = self.sin.narrow(0, 0, seq)?.to_dtype(x.dtype())?;
        x.broadcast_mul(&cos)? + rotate_half(x)?.broadcast_mul(&sin)?
    }

    /// The fused rotation of `x`: `[batch, seq, heads, head_dim]` (the projection's layout),
    /// positions `0..seq` (CPU only).
    pub fn apply_fused(&self, x: &Tensor) -> Result<Tensor> {
        x.contiguous()?.apply_op1(self.fused_op())
    }

    /// The fused rotation as an op (the fused attention applies it to queries and keys).
    pub fn fused_op(&self) -> RopeOp {
        RopeOp { tables: self.tables.clone() }
    }

    pub fn max_positions(&self) -> usize {
        self.cos.dim(0).unwrap_or(0)
    }
}

/// `cat(-x[..., half:], x[..., :half])`.
pub fn rotate_half(x: &Tensor) -> Result<Tensor> {
    let d = x.dim(D::Minus1)?;
    let x1 = x.narrow(D::Minus1, 0, d / 2)?;
    let x2 = x.narrow(D::Minus1, d / 2, d - d / 2)?;
    Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)
}
