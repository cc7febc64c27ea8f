//! AdamW (decoupled weight decay, as `torch.optim.AdamW`), with its state exposed for checkpoints.
//!
//! On the CPU the moments live in host buffers and each parameter is updated by one fused
//! in-place pass ([`crate::fused::adamw`]); elsewhere (or with [`OpPath::Composed`]) the update is
//! composed from tensor operations, the reference the fused pass is tested against.

use crate::error::{Result, TrainError};
use crate::fused::adamw::{AdamWHyper, AdamWOp};
use crate::fused::OpPath;
use crate::models::ParamStore;
use crate::trainer::par::par_each;
use bitnet_core::kernels::ThreadPool;
use candle_core::{Tensor, Var};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// The two moments of one parameter.
#[derive(Debug)]
enum Moments {
    /// Host buffers the fused pass updates in place.
    Host { m: Vec<f32>, v: Vec<f32> },
    /// Device tensors of the composed update.
    Device { m: Var, v: Var },
}

#[derive(Debug)]
pub struct AdamW {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Number of updates applied (bias correction uses it).
    pub t: u64,
    /// First and second moments by parameter name.
    moments: BTreeMap<String, Moments>,
}

impl AdamW {
    /// Betas 0.9 / 0.95, eps 1e-8, zero moments for every parameter, updated by the fused pass
    /// on the CPU.
    pub fn new(params: &ParamStore) -> Result<Self> {
        Self::with_path(params, OpPath::Fused)
    }

    /// As [`Self::new`], choosing the fused pass or the composed update.
    pub fn with_path(params: &ParamStore, path: OpPath) -> Result<Self> {
        let mut moments = BTreeMap::new();
        for (name, p) in params.iter() {
            let m = if path.fused_on(p.device()) {
                Moments::Host { m: vec![0.0; p.elem_count()], v: vec![0.0; p.elem_count()] }
            } else {
                let zeros = || -> Result<Var> { Ok(Var::from_tensor(&p.zeros_like()?)?) };
                Moments::Device { m: zeros()?, v: zeros()? }
            };
            moments.insert(name.clone(), m);
        }
        Ok(Self { beta1: 0.9, beta2: 0.95, eps: 1e-8, t: 0, moments })
    }

    /// One update with gradients `grads` (by name), each multiplied by `clip` first (the scale of
    /// global-norm clipping; 1 leaves them). Weight decay applies to parameters of rank two or
    /// more (matrices) only: `p -= lr * wd * p`, then the Adam step.
    pub fn step(
        &mut self,
        params: &ParamStore,
        grads: &BTreeMap<String, Tensor>,
        lr: f64,
        wd: f64,
        clip: f64,
    ) -> Result<()> {
        let pool = ThreadPool::new(1).map_err(|e| TrainError::Invalid(e.to_string()))?;
        self.step_on(&pool, params, grads, lr, wd, clip)
    }

    /// [`Self::step`] with the parameters shared out among the threads of `pool` (each
    /// parameter's update is the same whichever thread runs it).
    pub fn step_on(
        &mut self,
        pool: &ThreadPool,
        params: &ParamStore,
        grads: &BTreeMap<String, Tensor>,
        lr: f64,
        wd: f64,
        clip: f64,
    ) -> Result<()> {
        self.t += 1;
        let bc1 = 1.0 - self.beta1.powi(self.t as i32);
        let bc2 = 1.0 - self.beta2.powi(self.t as i32);
        let (beta1, beta2, eps) = (self.beta1, self.beta2, self.eps);
        let mut work = Vec::new();
        for (name, mo) in self.moments.iter_mut() {
            if let (Some(p), Some(g)) = (params.get(name), grads.get(name)) {
                work.push((name, p, g, Mutex::new(mo)));
            }
        }
        par_each(
            pool,
            &work,
            |w| w.1.elem_count(),
            |(_, p, g, mo)| {
                let mut mo = mo.lock().unwrap_or_else(|e| e.into_inner());
                let decay = wd > 0.0 && p.rank() >= 2;
                let (beta1, beta2) = (beta1, beta2);
                match &mut **mo {
                    Moments::Host { m, v } => {
                        let hyper = AdamWHyper {
                            beta1: beta1 as f32,
                            beta2: beta2 as f32,
                            eps: eps as f32,
                            lr: lr as f32,
                            decay: if decay { (lr * wd) as f32 } else { 0.0 },
                            bc1: bc1 as f32,
                            bc2: bc2 as f32,
                            clip: clip as f32,
                        };
                        let op = AdamWOp { hyper, m: Mutex::new(m), v: Mutex::new(v) };
                        p.as_tensor().inplace_op2(&g.contiguous()?, &op)?;
                    }
                    Moments::Device { m, v } => {
                        let g = if clip != 1.0 { (*g * clip)? } else { (*g).clone() };
                        let m_new = ((m.as_tensor() * beta1)? + (&g * (1.0 - beta1))?)?;
                        let v_new = ((v.as_tensor() * beta2)? + (g.sqr()? * (1.0 - beta2))?)?;
                        let denom = ((&v_new / bc2)?.sqrt()? + eps)?;
                        let update = ((&m_new / bc1)? / denom)?;
                        let mut new_p = p.as_tensor().clone();
                        if decay {
                            new_p = (new_p * (1.0 - lr * wd))?;
                        }
                        let new_p = (new_p - (update * lr)?)?;
                        m.set(&m_new)?;
                        v.set(&v_new)?;
                        p.set(&new_p)?;
                    }
                }
                Ok(())
            },
        )
    }

    /// Moments as named tensors (`m.NAME`, `v.NAME`) for a checkpoint.
    pub fn state_tensors(&self, params: &ParamStore) -> Result<BTreeMap<String, Tensor>> {
        let mut out = BTreeMap::new();
        for (k, mo) in &self.moments {
            let (m, v) = match mo {
                Moments::Host { m, v } => {
                    let p = params.get(k).ok_or_else(|| {
                        TrainError::Invalid(format!("AdamW moments for unknown parameter {k}"))
                    })?;
                    (
                        Tensor::from_slice(m, p.shape(), p.device())?,
                        Tensor::from_slice(v, p.shape(), p.device())?,
                    )
                }
                Moments::Device { m, v } => (m.as_tensor().clone(), v.as_tensor().clone()),
            };
            out.insert(format!("m.{k}"), m);
            out.insert(format!("v.{k}"), v);
        }
        Ok(out)
    }

    /// Restores moments saved by [`Self::state_tensors`].
    pub fn load_state(
        &mut self,
        t: u64,
        params: &ParamStore,
        tensors: &BTreeMap<String, Tensor>,
    ) -> Result<()> {
        self.t = t;
        for (k, mo) in self.moments.iter_mut() {
            let want = params.get(k).map(|p| p.dims().to_vec()).unwrap_or_default();
            let fetch = |prefix: &str| -> Result<Tensor> {
                let key = format!("{prefix}.{k}");
                let bad = |msg: String| TrainError::Checkpoint {
                    path: super::checkpoint::OPTIMIZER_FILE.into(),
                    msg,
                };
                let src = tensors.get(&key).ok_or_else(|| bad(format!("missing tensor {key}")))?;
                if src.dims() != want.as_slice() {
                    return Err(bad(format!(
                        "tensor {key} has shape {:?}, expected {want:?}",
                        src.dims()
                    )));
                }
                Ok(src.clone())
            };
            let (sm, sv) = (fetch("m")?, fetch("v")?);
            match mo {
                Moments::Host { m, v } => {
                    m.copy_from_slice(&sm.flatten_all()?.to_vec1::<f32>()?);
                    v.copy_from_slice(&sv.flatten_all()?.to_vec1::<f32>()?);
                }
                Moments::Device { m, v } => {
                    m.set(&sm)?;
                    v.set(&sv)?;
                }
            }
        }
        Ok(())
    }
}
