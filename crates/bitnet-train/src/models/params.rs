//! The trainable parameters, by Hugging Face tensor name, in a fixed (sorted) order.

use crate::error::{Result, TrainError};
use candle_core::{DType, Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// Named latent parameters. The order (sorted by name) is the order of optimizer state, gradient
/// norms and checkpoint tensors, so runs are reproducible.
#[derive(Debug, Default)]
pub struct ParamStore {
    vars: BTreeMap<String, Var>,
}

/// How a parameter starts.
#[derive(Debug, Clone, Copy)]
pub enum Init {
    /// `N(0, std^2)`.
    Normal(f64),
    /// All ones (norm weights).
    Ones,
}

impl ParamStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a parameter initialized from `rng`.
    pub fn add(
        &mut self,
        name: &str,
        shape: &[usize],
        init: Init,
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = match init {
            Init::Ones => vec![1.0; n],
            Init::Normal(std) => (0..n).map(|_| (normal(rng) * std) as f32).collect(),
        };
        let var = Var::from_tensor(&Tensor::from_vec(data, shape, device)?)?;
        let t = var.as_tensor().clone();
        if self.vars.insert(name.to_string(), var).is_some() {
            return Err(TrainError::Invalid(format!("parameter {name} defined twice")));
        }
        Ok(t)
    }

    pub fn get(&self, name: &str) -> Option<&Var> {
        self.vars.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Var)> {
        self.vars.iter()
    }

    pub fn len(&self) -> usize {
        self.vars.len()
    }

    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }

    pub fn num_elements(&self) -> usize {
        self.vars.values().map(|v| v.elem_count()).sum()
    }

    /// Overwrites every parameter from `tensors` (e.g. a checkpoint). Every parameter must be
    /// present with the same shape; extra tensors are an error too.
    pub fn load(&self, tensors: &BTreeMap<String, Tensor>, origin: &str) -> Result<()> {
        let err = |msg: String| TrainError::Checkpoint { path: origin.into(), msg };
        for (name, var) in &self.vars {
            let t = tensors.get(name).ok_or_else(|| err(format!("missing tensor {name}")))?;
            if t.dims() != var.dims() {
                return Err(err(format!(
                    "tensor {name} has shape {:?}, the model needs {:?}",
                    t.dims(),
                    var.dims()
                )));
            }
            var.set(&t.to_dtype(DType::F32)?.to_device(var.device())?)?;
        }
        if let Some(extra) = tensors.keys().find(|k| !self.vars.contains_key(*k)) {
            return Err(err(format!("unexpected tensor {extra}")));
        }
        Ok(())
    }

    /// The current values (shared storage; clone before mutating).
    pub fn tensors(&self) -> BTreeMap<String, Tensor> {
        self.vars.iter().map(|(k, v)| (k.clone(), v.as_tensor().clone())).collect()
    }
}

/// A standard normal draw (Box–Muller on two uniforms from the seeded generator).
pub fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = rng.gen::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.gen();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// The generator parameters are initialized from.
pub fn init_rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}
