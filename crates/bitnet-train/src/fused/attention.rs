//! Fused causal grouped-query attention, with the rotary embedding of queries and keys, on the
//! projections' own outputs `[batch, seq, heads · dim]` (no reshape, transpose or rotation node
//! in the graph; each would cost the backward a zeroed gradient buffer and an add).
//!
//! The query heads of one key/value group are stacked as rows (`[b, kv_heads, group · seq,
//! dim]`), so every product is one batched matrix product of candle (the `gemm` crate) and no key
//! or value head is repeated; the scale, the causal mask and the softmax are one pass over each
//! row of scores, and the probabilities are kept for the backward (the composed twin also keeps
//! them, next to the scores, the mask and the repeated heads):
//!
//! ```text
//! S = Q Kᵀ / sqrt(d), masked j > i     P = softmax(S)     Y = P V
//! D_i = dy_i · y_i     dS = P ⊙ (dY Vᵀ − D) / sqrt(d)     dQ = dS K     dK = dSᵀ Q     dV = Pᵀ dY
//! ```
//!
//! Query head `h` reads key/value head `h / (heads / kv_heads)`, as `repeat_kv` lays them out in
//! the composed twin ([`crate::layers::Attention`]).

use super::rope::RopeOp;
use super::{f32_data, tensor, CpuF32};
use bitnet_core::kernels::act::exp;
use bitnet_core::kernels::quant::dot_f32;
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use std::sync::Mutex;

/// What the forward keeps for the backward.
#[derive(Debug)]
struct Saved {
    /// `[b, kv, group · t, d]`, `[b, kv, t, d]`, `[b, kv, t, d]`.
    q: Tensor,
    k: Tensor,
    v: Tensor,
    /// `[b, kv, group · t, t]`: the probabilities (0 above the diagonal).
    p: Tensor,
}

#[derive(Debug)]
pub struct AttentionOp {
    n_heads: usize,
    n_kv_heads: usize,
    /// Rotates queries and keys first ([`RopeOp`]; its backward rotates their gradients back).
    rope: Option<RopeOp>,
    saved: Mutex<Option<Saved>>,
}

#[derive(Debug, Clone, Copy)]
struct Dims {
    b: usize,
    t: usize,
    nh: usize,
    nkv: usize,
    d: usize,
}

impl Dims {
    /// `q`: `[b, t, nh · d]`; `k`, `v`: `[b, t, nkv · d]`.
    fn of(q: &Shape, k: &Shape, v: &Shape, nh: usize, nkv: usize) -> Result<Self> {
        let (b, t, qw) = q.dims3()?;
        let (kb, kt, kw) = k.dims3()?;
        let d = qw.checked_div(nh).unwrap_or(0);
        let fits =
            nh > 0 && nkv > 0 && nh.is_multiple_of(nkv) && d > 0 && qw == nh * d && kw == nkv * d;
        if !fits || (kb, kt) != (b, t) || k.dims() != v.dims() {
            candle_core::bail!(
                "attention: q {:?}, k {:?}, v {:?} do not fit together",
                q.dims(),
                k.dims(),
                v.dims()
            );
        }
        Ok(Self { b, t, nh, nkv, d })
    }

    fn group(&self) -> usize {
        self.nh / self.nkv
    }

    fn scale(&self) -> f32 {
        1.0 / (self.d as f32).sqrt()
    }

    /// `[b, t, nh, d]` → `[b, kv, group · t, d]` (row `g · t + i` is query head `kv · group + g`
    /// at position `i`).
    fn stack_queries(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, g, d) = (self.b, self.t, self.group(), self.d);
        x.reshape((b, t, self.nkv, g, d))?.permute((0, 2, 3, 1, 4))?.contiguous()?.reshape((
            b,
            self.nkv,
            g * t,
            d,
        ))
    }

    /// The inverse of [`Self::stack_queries`].
    fn unstack_queries(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, g, d) = (self.b, self.t, self.group(), self.d);
        x.reshape((b, self.nkv, g, t, d))?
            .permute((0, 3, 1, 2, 4))?
            .contiguous()?
            .reshape((b, t, self.nh, d))
    }

    /// `[b, t, kv, d]` ↔ `[b, kv, t, d]`.
    fn swap(x: &Tensor) -> Result<Tensor> {
        x.transpose(1, 2)?.contiguous()
    }
}

impl AttentionOp {
    /// `n_heads` query heads over `n_kv_heads` key/value heads; `rope` rotates queries and keys
    /// by position first.
    pub fn new(n_heads: usize, n_kv_heads: usize, rope: Option<RopeOp>) -> Self {
        Self { n_heads, n_kv_heads, rope, saved: Mutex::new(None) }
    }

    fn dims(&self, q: &Shape, k: &Shape, v: &Shape) -> Result<Dims> {
        Dims::of(q, k, v, self.n_heads, self.n_kv_heads)
    }

    /// `x` (`[b, t, heads · d]`) rotated by position when the op has a rotation, as a tensor of
    /// `[b, t, heads, d]`; `inverse` rotates back (the gradient).
    fn rotated(&self, x: &[f32], dm: Dims, heads: usize, inverse: bool) -> Result<Tensor> {
        let dims = (dm.b, dm.t, heads, dm.d);
        let data = match &self.rope {
            Some(r) => {
                let mut out = vec![0f32; x.len()];
                r.run(x, dims, inverse, &mut out);
                out
            }
            None => x.to_vec(),
        };
        tensor(data, dims)
    }
}

impl CustomOp3 for AttentionOp {
    fn name(&self) -> &'static str {
        "causal-attention"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dm = self.dims(l1.shape(), l2.shape(), l3.shape())?;
        if let Some(r) = &self.rope {
            if r.tables.head_dim != dm.d || dm.t > r.tables.max_positions() {
                candle_core::bail!("attention: rotary tables do not fit {:?}", l1.dims());
            }
        }
        let q = self.rotated(f32_data(s1, l1, "attention q")?, dm, dm.nh, false)?;
        let k = self.rotated(f32_data(s2, l2, "attention k")?, dm, dm.nkv, false)?;
        let v = tensor(f32_data(s3, l3, "attention v")?.to_vec(), (dm.b, dm.t, dm.nkv, dm.d))?;
        let (q, k, v) = (dm.stack_queries(&q)?, Dims::swap(&k)?, Dims::swap(&v)?);
        let scores = q.matmul(&k.t()?)?;
        let mut p = scores.flatten_all()?.to_vec1::<f32>()?;
        let (t, scale) = (dm.t, dm.scale());
        for (r, row) in p.chunks_exact_mut(t).enumerate() {
            let i = r % t;
            let (live, masked) = row.split_at_mut(i + 1);
            let mut m = f32::NEG_INFINITY;
            for s in live.iter_mut() {
                *s *= scale;
                m = m.max(*s);
            }
            let mut sum = 0f32;
            for s in live.iter_mut() {
                *s = exp(*s - m);
                sum += *s;
            }
            let inv = 1.0 / sum;
            live.iter_mut().for_each(|s| *s *= inv);
            masked.fill(0.0);
        }
        let p = tensor(p, scores.shape().clone())?;
        let y = dm.unstack_queries(&p.matmul(&v)?)?;
        let out = y.flatten_all()?.to_vec1::<f32>()?;
        *self.saved.lock().unwrap_or_else(|e| e.into_inner()) = Some(Saved { q, k, v, p });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dm = self.dims(q.shape(), k.shape(), v.shape())?;
        let guard = self.saved.lock().unwrap_or_else(|e| e.into_inner());
        let Some(s) = guard.as_ref() else {
            candle_core::bail!("attention backward before its forward")
        };
        let heads = (dm.b, dm.t, dm.nh, dm.d);
        let dys = dm.stack_queries(&dy.reshape(heads)?)?;
        // D_i = dy_i · y_i, one per stacked query row.
        let ys = dm.stack_queries(&y.reshape(heads)?)?;
        let (dyv, yv) = (CpuF32::new(&dys)?, CpuF32::new(&ys)?);
        let dd: Vec<f32> = dyv
            .get()
            .chunks_exact(dm.d)
            .zip(yv.get().chunks_exact(dm.d))
            .map(|(a, b)| dot_f32(a, b))
            .collect();
        let dp = dys.matmul(&s.v.t()?)?;
        let pv = CpuF32::new(&s.p)?;
        let dpv = CpuF32::new(&dp)?;
        let scale = dm.scale();
        let mut ds = Vec::with_capacity(dp.elem_count());
        let rows = pv.get().chunks_exact(dm.t).zip(dpv.get().chunks_exact(dm.t));
        for ((prow, dprow), &di) in rows.zip(&dd) {
            ds.extend(prow.iter().zip(dprow).map(|(&p, &g)| p * (g - di) * scale));
        }
        let ds = tensor(ds, dp.shape().clone())?;
        let dq = dm.unstack_queries(&ds.matmul(&s.k)?)?;
        let dk = Dims::swap(&ds.t()?.matmul(&s.q)?)?;
        let dv = Dims::swap(&s.p.t()?.matmul(&dys)?)?.reshape(v.shape())?;
        let dq = super::with_f32(&dq, |g| self.rotated(g, dm, dm.nh, true))??;
        let dk = super::with_f32(&dk, |g| self.rotated(g, dm, dm.nkv, true))??;
        Ok((Some(dq.reshape(q.shape())?), Some(dk.reshape(k.shape())?), Some(dv)))
    }
}
