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
        Self::from_gguf_file(GgufFile::open(path)?)
    }

    fn from_gguf_file(file: GgufFile) -> Result<Self> {
        let config = config_from_gguf(&file)?;
        let weights = weights_from_gguf(&file, &config)?;
        Ok(Self { config, weights, gguf: Some(file) })
    }

    /// A GGUF model held in memory.
    pub fn from_gguf_bytes(bytes: &[u8]) -> Result<Self> {
        Self::from_gguf_file(GgufFile::from_bytes(bytes)?)
    }

    /// A Hugging Face model held in memory: the text of `config.json` and one safetensors image.
    pub fn from_hf_bytes(config_json: &str, safetensors: &[u8]) -> Result<Self> {
        let mut st = safetensors_dir::SafetensorsDir::default();
        st.add_bytes(safetensors)?;
        let (config, weights) = hf_load::load_hf_parts(config_json, &st)?;
        Ok(Self { config, weights, gguf: None })
    }

    /// Loads a Hugging Face model directory.
    pub fn load_hf(dir: &Path) -> Result<Self> {
        let (config, weights) = hf_load::load_hf_dir(dir)?;
        Ok(Self { config, weights, gguf: None })
    }
}
