//! Fused next-token cross-entropy over `[batch, seq, vocab]` logits with Hugging Face's label
//! convention (position `i` predicts `labels[i + 1]`; the last position predicts nothing): one
//! pass per row for the log-sum-exp, and a backward that writes `(softmax − onehot) / N` straight
//! into the gradient, with no second `[tokens × vocab]` tensor. The composed twin is
//! [`crate::models::transformer::causal_lm_loss`].

use super::{f32_data, u32_data, CpuF32};
use bitnet_core::kernels::act::exp;
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct CausalCrossEntropyOp {
    /// Per predicting row `(b, i < t - 1)`: its log-sum-exp, written by the forward.
    lse: Mutex<Vec<f32>>,
}

impl CausalCrossEntropyOp {
    pub fn new() -> Self {
        Self::default()
    }
}

fn dims(logits: &Shape, labels: &Shape) -> Result<(usize, usize, usize)> {
    let (b, t, v) = logits.dims3()?;
    if labels.dims() != [b, t] || t < 2 {
        candle_core::bail!(
            "cross-entropy: logits {:?} and labels {:?} (need [b, t, vocab] and [b, t], t >= 2)",
            logits.dims(),
            labels.dims()
        );
    }
    Ok((b, t, v))
}

/// `log Σ exp(row)`, the maximum subtracted first; eight lanes so both passes vectorize.
fn lse_of(row: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let chunks = row.chunks_exact(8);
    let mut m = chunks.remainder().iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    for c in chunks {
        for (l, &x) in lanes.iter_mut().zip(c) {
            *l = l.max(x);
        }
    }
    m = lanes.iter().fold(m, |m, &l| m.max(l));
    let mut sums = [0f32; 8];
    let chunks = row.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().map(|&x| exp(x - m)).sum();
    for c in chunks {
        for (s, &x) in sums.iter_mut().zip(c) {
            *s += exp(x - m);
        }
    }
    m + (sums.iter().sum::<f32>() + tail).ln()
}

impl CustomOp2 for CausalCrossEntropyOp {
    fn name(&self) -> &'static str {
        "causal-cross-entropy"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, t, v) = dims(l1.shape(), l2.shape())?;
        let (x, labels) = (f32_data(s1, l1, "cross-entropy")?, u32_data(s2, l2, "labels")?);
        let mut lse = Vec::with_capacity(b * (t - 1));
        let mut total = 0f64;
        for bi in 0..b {
            for i in 0..t - 1 {
                let target = labels[bi * t + i + 1] as usize;
                if target >= v {
                    candle_core::bail!("cross-entropy: label {target} outside the vocabulary {v}");
                }
                let row = &x[(bi * t + i) * v..][..v];
                let l = lse_of(row);
                lse.push(l);
                total += (l - row[target]) as f64;
            }
        }
        *self.lse.lock().unwrap_or_else(|e| e.into_inner()) = lse;
        let mean = (total / (b * (t - 1)) as f64) as f32;
        Ok((CpuStorage::F32(vec![mean]), Shape::from(())))
    }

    fn bwd(
        &self,
        logits: &Tensor,
        labels: &Tensor,
        _loss: &Tensor,
        dloss: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (b, t, v) = dims(logits.shape(), labels.shape())?;
        let lse = self.lse.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if lse.len() != b * (t - 1) {
            candle_core::bail!("cross-entropy backward before its forward");
        }
        let g = dloss.to_dtype(candle_core::DType::F32)?.to_scalar::<f32>()? / (b * (t - 1)) as f32;
        let labels = labels.flatten_all()?.to_vec1::<u32>()?;
        let x = logits.contiguous()?;
        let xv = CpuF32::new(&x)?;
        let xs = xv.get();
        let mut d = vec![0f32; xs.len()];
        for bi in 0..b {
            for i in 0..t - 1 {
                let r = bi * t + i;
                let l = lse[bi * (t - 1) + i];
                let (dr, xr) = (&mut d[r * v..][..v], &xs[r * v..][..v]);
                for (o, &z) in dr.iter_mut().zip(xr) {
                    *o = g * exp(z - l);
                }
                dr[labels[r + 1] as usize] -= g;
            }
        }
        Ok((Some(super::tensor(d, logits.shape().clone())?), None))
    }
}
