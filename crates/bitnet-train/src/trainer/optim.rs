//! AdamW (decoupled weight decay, as `torch.optim.AdamW`), with its state exposed for checkpoints.

use crate::error::{Result, TrainError};
use crate::models::ParamStore;
use candle_core::{Tensor, Var};
use std::collections::BTreeMap;

#[derive(Debug)]
pub struct AdamW {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Number of updates applied (bias correction uses it).
    pub t: u64,
    /// First and second moments by parameter name.
    pub m: BTreeMap<String, Var>,
    pub v: BTreeMap<String, Var>,
}

impl AdamW {
    /// Betas 0.9 / 0.95, eps 1e-8, zero moments for every parameter.
    pub fn new(params: &ParamStore) -> Result<Self> {
        let zeros = |v: &Var| -> Result<Var> { Ok(Var::from_tensor(&v.zeros_like()?)?) };
        let mut m = BTreeMap::new();
        let mut v = BTreeMap::new();
        for (name, p) in params.iter() {
            m.insert(name.clone(), zeros(p)?);
            v.insert(name.clone(), zeros(p)?);
        }
        Ok(Self { beta1: 0.9, beta2: 0.95, eps: 1e-8, t: 0, m, v })
    }

    /// One update with gradients `grads` (by name). Weight decay applies to parameters of rank
    /// two or more (matrices) only: `p -= lr * wd * p`, then the Adam step.
    pub fn step(
        &mut self,
        params: &ParamStore,
        grads: &BTreeMap<String, Tensor>,
        lr: f64,
        wd: f64,
    ) -> Result<()> {
        self.t += 1;
        let bc1 = 1.0 - self.beta1.powi(self.t as i32);
        let bc2 = 1.0 - self.beta2.powi(self.t as i32);
        for (name, p) in params.iter() {
            let Some(g) = grads.get(name) else { continue };
            let (m, v) = (&self.m[name], &self.v[name]);
            let m_new = ((m.as_tensor() * self.beta1)? + (g * (1.0 - self.beta1))?)?;
            let v_new = ((v.as_tensor() * self.beta2)? + (g.sqr()? * (1.0 - self.beta2))?)?;
            let denom = ((&v_new / bc2)?.sqrt()? + self.eps)?;
            let update = ((&m_new / bc1)? / denom)?;
            let mut new_p = p.as_tensor().clone();
            if wd > 0.0 && p.rank() >= 2 {
                new_p = (new_p * (1.0 - lr * wd))?;
            }
            let new_p = (new_p - (update * lr)?)?;
            m.set(&m_new)?;
            v.set(&v_new)?;
            p.set(&new_p)?;
        }
        Ok(())
    }

    /// Moments as named tensors (`m.NAME`, `v.NAME`) for a checkpoint.
    pub fn state_tensors(&self) -> BTreeMap<String, Tensor> {
        let mut out = BTreeMap::new();
        for (k, m) in &self.m {
            out.insert(format!("m.{k}"), m.as_tensor().clone());
        }
        for (k, v) in &self.v {
            out.insert(format!("v.{k}"), v.as_tensor().clone());
        }
        out
    }

    /// Restores moments saved by [`Self::state_tensors`].
    pub fn load_state(&mut self, t: u64, tensors: &BTreeMap<String, Tensor>) -> Result<()> {
        self.t = t;
        for (prefix, map) in [("m", &self.m), ("v", &self.v)] {
            for (k, var) in map {
                let key = format!("{prefix}.{k}");
                let src = tensors.get(&key).ok_or_else(|| TrainError::Checkpoint {
                    path: super::checkpoint::OPTIMIZER_FILE.into(),
                    msg: format!("missing tensor {key}"),
                })?;
                if src.dims() != var.dims() {
                    return Err(TrainError::Checkpoint {
                        path: super::checkpoint::OPTIMIZER_FILE.into(),
                        msg: format!(
                            "tensor {key} has shape {:?}, expected {:?}",
                            src.dims(),
                            var.dims()
                        ),
                    });
                }
                var.set(src)?;
            }
        }
        Ok(())
    }
}
