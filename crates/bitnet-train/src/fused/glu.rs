//! The fused GLU gate: `h = act(g) ⊙ u` and its backward, `dg = dh ⊙ u ⊙ act'(g)`,
//! `du = dh ⊙ act(g)`, with the activations of [`crate::layers::Activation`]:
//!
//! ```text
//! ReLU²: act = max(g, 0)²            act' = 2 max(g, 0)
//! SiLU:  act = g σ(g)                act' = σ(g) (1 + g (1 − σ(g)))
//! GELU:  act = g Φ(g), Φ(g) = (1 + erf(g / √2)) / 2      act' = Φ(g) + g φ(g)
//! ```

use super::{f32_data, tensor, CpuF32};
use crate::layers::Activation;
use candle_core::cpu::erf::erf_f32;
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};

#[derive(Debug, Clone, Copy)]
pub struct GluOp {
    pub act: Activation,
}

/// `1 / sqrt(2 π)`.
const INV_SQRT_2PI: f32 = 0.398_942_3;

impl GluOp {
    /// `act(g)` as candle computes it.
    fn act(self, g: f32) -> f32 {
        match self.act {
            Activation::Relu2 => {
                let r = g.max(0.0);
                r * r
            }
            Activation::Silu => g / (1.0 + (-g).exp()),
            Activation::Gelu => (erf_f32(g * std::f32::consts::FRAC_1_SQRT_2) + 1.0) * 0.5 * g,
        }
    }

    /// `(act(g), act'(g))`.
    fn act_grad(self, g: f32) -> (f32, f32) {
        match self.act {
            Activation::Relu2 => {
                let r = g.max(0.0);
                (r * r, 2.0 * r)
            }
            Activation::Silu => {
                let s = 1.0 / (1.0 + (-g).exp());
                (g * s, s * (1.0 + g * (1.0 - s)))
            }
            Activation::Gelu => {
                let phi_cdf = (erf_f32(g * std::f32::consts::FRAC_1_SQRT_2) + 1.0) * 0.5;
                let pdf = INV_SQRT_2PI * (-0.5 * g * g).exp();
                (g * phi_cdf, phi_cdf + g * pdf)
            }
        }
    }
}

impl CustomOp2 for GluOp {
    fn name(&self) -> &'static str {
        "glu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (g, u) = (f32_data(s1, l1, "glu gate")?, f32_data(s2, l2, "glu up")?);
        if l1.shape() != l2.shape() {
            candle_core::bail!("glu: gate {:?} and up {:?}", l1.dims(), l2.dims());
        }
        let h: Vec<f32> = g.iter().zip(u).map(|(&g, &u)| self.act(g) * u).collect();
        Ok((CpuStorage::F32(h), l1.shape().clone()))
    }

    fn bwd(
        &self,
        g: &Tensor,
        u: &Tensor,
        _h: &Tensor,
        dh: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (gc, uc, dhc) = (g.contiguous()?, u.contiguous()?, dh.contiguous()?);
        let (gv, uv, dv) = (CpuF32::new(&gc)?, CpuF32::new(&uc)?, CpuF32::new(&dhc)?);
        let n = g.elem_count();
        let (mut dg, mut du) = (vec![0f32; n], vec![0f32; n]);
        let (gs, us, ds) = (gv.get(), uv.get(), dv.get());
        for i in 0..n {
            let (a, da) = self.act_grad(gs[i]);
            dg[i] = ds[i] * us[i] * da;
            du[i] = ds[i] * a;
        }
        Ok((Some(tensor(dg, g.shape().clone())?), Some(tensor(du, u.shape().clone())?)))
    }
}
