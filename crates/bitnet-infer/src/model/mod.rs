//! Models: configuration, weights, and loading them from GGUF or Hugging Face files.

mod config;
mod gguf_load;
mod hf_load;
pub mod safetensors_dir;
mod weights;

pub use config::{Arch, Config, FfnAct, RopeStyle};
pub use gguf_load::{config_from_gguf, weights_from_gguf};
pub use weights::{Blob, LayerWeights, Linear, MatrixRef, Weights};

use crate::error::Result;
use crate::gguf::GgufFile;
use std::path::Path;

/// A loaded model: configuration, weights, and the GGUF header when it came from one.
#[derive(Debug, Clone)]
pub struct Model {
    pub config: Config,
    pub weights: Weights,
    pub gguf: Option<GgufFile>,
}

impl Model {
    /// Loads a GGUF file.
    pub fn load_gguf(path: &Path) -> Result<Self> {
        let file = GgufFile::open(path)?;
        let config = config_from_gguf(&file)?;
        let weights = weights_from_gguf(&file, &config)?;
        Ok(Self { config, weights, gguf: Some(file) })
    }

    /// Loads a Hugging Face model directory.
    pub fn load_hf(dir: &Path) -> Result<Self> {
        let (config, weights) = hf_load::load_hf_dir(dir)?;
        Ok(Self { config, weights, gguf: None })
    }
}
