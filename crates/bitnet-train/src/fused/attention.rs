//! Fused causal grouped-query attention on the projections' layout `[batch, seq, heads, dim]`:
//! no repeated key/value heads, no mask tensor and no `[seq, seq]` probability tensor kept for
//! the backward. The forward keeps one log-sum-exp per query; the backward recomputes each row
//! of probabilities from it (the FlashAttention recurrence, arXiv:2205.14135, row by row):
//!
//! ```text
//! s_ij = q_i · k_j / sqrt(d) (j ≤ i)    p_ij = exp(s_ij − lse_i)    y_i = Σ_j p_ij v_j
//! D_i = dy_i · y_i     dv_j += p_ij dy_i     ds_ij = p_ij (dy_i · v_j − D_i)
//! dq_i += ds_ij k_j / sqrt(d)     dk_j += ds_ij q_i / sqrt(d)
//! ```
//!
//! Query head `h` reads key/value head `h / (heads / kv_heads)`, as `repeat_kv` lays them out in
//! the composed twin ([`crate::layers::Attention`]).

use super::{axpy, dot, f32_data, tensor, CpuF32};
use bitnet_core::kernels::act::exp;
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct AttentionOp {
    /// `[batch, heads, seq]` log-sum-exp of each query's scores, written by the forward.
    lse: Mutex<Vec<f32>>,
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
    fn of(q: &Shape, k: &Shape, v: &Shape) -> Result<Self> {
        let (b, t, nh, d) = q.dims4()?;
        let (kb, kt, nkv, kd) = k.dims4()?;
        if (kb, kt, kd) != (b, t, d) || k.dims() != v.dims() || nkv == 0 || nh % nkv != 0 {
            candle_core::bail!(
                "attention: q {:?}, k {:?}, v {:?} do not fit together",
                q.dims(),
                k.dims(),
                v.dims()
            );
        }
        Ok(Self { b, t, nh, nkv, d })
    }

    /// Offset of `(batch, pos, head)` in a `[b, t, heads, d]` tensor.
    fn at(&self, heads: usize, b: usize, pos: usize, h: usize) -> usize {
        ((b * self.t + pos) * heads + h) * self.d
    }

    fn scale(&self) -> f32 {
        1.0 / (self.d as f32).sqrt()
    }
}

impl AttentionOp {
    pub fn new() -> Self {
        Self::default()
    }

    /// The scores `s_0..=s_i` of query `(b, i, h)` into `row`, scaled.
    fn scores(dm: Dims, q: &[f32], k: &[f32], b: usize, i: usize, h: usize, row: &mut [f32]) {
        let kh = h / (dm.nh / dm.nkv);
        let qi = &q[dm.at(dm.nh, b, i, h)..][..dm.d];
        for (j, s) in row.iter_mut().enumerate().take(i + 1) {
            *s = dot(qi, &k[dm.at(dm.nkv, b, j, kh)..][..dm.d]) * dm.scale();
        }
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
        let dm = Dims::of(l1.shape(), l2.shape(), l3.shape())?;
        let q = f32_data(s1, l1, "attention q")?;
        let k = f32_data(s2, l2, "attention k")?;
        let v = f32_data(s3, l3, "attention v")?;
        let mut y = vec![0f32; q.len()];
        let mut lse = vec![0f32; dm.b * dm.nh * dm.t];
        let mut row = vec![0f32; dm.t];
        let group = dm.nh / dm.nkv;
        for b in 0..dm.b {
            for h in 0..dm.nh {
                for i in 0..dm.t {
                    Self::scores(dm, q, k, b, i, h, &mut row);
                    let s = &mut row[..=i];
                    let m = s.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
                    let mut sum = 0f32;
                    for x in s.iter_mut() {
                        *x = exp(*x - m);
                        sum += *x;
                    }
                    lse[(b * dm.nh + h) * dm.t + i] = m + sum.ln();
                    let yi = &mut y[dm.at(dm.nh, b, i, h)..][..dm.d];
                    for (j, &p) in s.iter().enumerate() {
                        axpy(p / sum, &v[dm.at(dm.nkv, b, j, h / group)..][..dm.d], yi);
                    }
                }
            }
        }
        *self.lse.lock().unwrap_or_else(|e| e.into_inner()) = lse;
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dm = Dims::of(q.shape(), k.shape(), v.shape())?;
        let lse = self.lse.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if lse.len() != dm.b * dm.nh * dm.t {
            candle_core::bail!("attention backward before its forward");
        }
        let (q, k, v) = (q.contiguous()?, k.contiguous()?, v.contiguous()?);
        let (y, dy) = (y.contiguous()?, dy.contiguous()?);
        let shapes = (q.shape().clone(), k.shape().clone(), v.shape().clone());
        let mut dq = vec![0f32; q.elem_count()];
        let mut dk = vec![0f32; k.elem_count()];
        let mut dv = vec![0f32; v.elem_count()];
        let group = dm.nh / dm.nkv;
        let sc = dm.scale();
        let mut row = vec![0f32; dm.t];
        let views = [&q, &k, &v, &y, &dy].map(CpuF32::new);
        let [q, k, v, y, dy] = views;
        let (q, k, v, y, dy) = (q?, k?, v?, y?, dy?);
        let (q, k, v, y, dy) = (q.get(), k.get(), v.get(), y.get(), dy.get());
        for b in 0..dm.b {
            for h in 0..dm.nh {
                let kh = h / group;
                for i in 0..dm.t {
                    let qo = dm.at(dm.nh, b, i, h);
                    let dyi = &dy[qo..][..dm.d];
                    let di = dot(dyi, &y[qo..][..dm.d]);
                    let l = lse[(b * dm.nh + h) * dm.t + i];
                    Self::scores(dm, q, k, b, i, h, &mut row);
                    for (j, &s) in row.iter().enumerate().take(i + 1) {
                        let ko = dm.at(dm.nkv, b, j, kh);
                        let p = exp(s - l);
                        axpy(p, dyi, &mut dv[ko..][..dm.d]);
                        let ds = p * (dot(dyi, &v[ko..][..dm.d]) - di) * sc;
                        axpy(ds, &k[ko..][..dm.d], &mut dq[qo..][..dm.d]);
                        axpy(ds, &q[qo..][..dm.d], &mut dk[ko..][..dm.d]);
                    }
                }
            }
        }
        Ok((Some(tensor(dq, shapes.0)?), Some(tensor(dk, shapes.1)?), Some(tensor(dv, shapes.2)?)))
    }
}
