//! Fused RMSNorm: `y = x · r · w` with `r = 1 / sqrt(mean(x²) + eps)` per row, and its backward
//! in one pass per row (the composed twin is [`crate::layers::RmsNorm`]):
//!
//! ```text
//! x̂ = x · r      g = dy ⊙ w      dx = r · (g − x̂ · mean(g ⊙ x̂))      dw = Σ_rows dy ⊙ x̂
//! ```

use super::{f32_data, rows_cols, tensor, with_f32};
use bitnet_core::kernels::quant::dot_f32;
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};

#[derive(Debug, Clone, Copy)]
pub struct RmsNormOp {
    pub eps: f32,
}

impl RmsNormOp {
    fn inv_rms(&self, x: &[f32]) -> f32 {
        let ms = dot_f32(x, x) / x.len() as f32;
        1.0 / (ms + self.eps).sqrt()
    }
}

impl CustomOp2 for RmsNormOp {
    fn name(&self) -> &'static str {
        "rms-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, w) = (f32_data(s1, l1, "rms-norm")?, f32_data(s2, l2, "rms-norm weight")?);
        let (_, h) = rows_cols(l1.shape());
        if w.len() != h {
            candle_core::bail!("rms-norm: weight of {} for rows of {h}", w.len());
        }
        let mut y = vec![0f32; x.len()];
        for (yr, xr) in y.chunks_exact_mut(h).zip(x.chunks_exact(h)) {
            let r = self.inv_rms(xr);
            for ((o, &v), &g) in yr.iter_mut().zip(xr).zip(w) {
                *o = v * r * g;
            }
        }
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (_, h) = rows_cols(x.shape());
        let wv = w.to_vec1::<f32>()?;
        let mut dx = vec![0f32; x.elem_count()];
        let mut dw = vec![0f32; h];
        let mut xhat = vec![0f32; h];
        with_f32(x, |xs| {
            with_f32(dy, |dys| {
                for ((dxr, xr), dyr) in
                    dx.chunks_exact_mut(h).zip(xs.chunks_exact(h)).zip(dys.chunks_exact(h))
                {
                    let r = self.inv_rms(xr);
                    let mut m = 0f32;
                    for i in 0..h {
                        xhat[i] = xr[i] * r;
                        m += dyr[i] * wv[i] * xhat[i];
                        dw[i] += dyr[i] * xhat[i];
                    }
                    m /= h as f32;
                    for i in 0..h {
                        dxr[i] = r * (dyr[i] * wv[i] - xhat[i] * m);
                    }
                }
            })
        })??;
        Ok((Some(tensor(dx, x.shape().clone())?), Some(tensor(dw, h)?)))
    }
}
