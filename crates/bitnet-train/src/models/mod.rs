//! Model definitions with Hugging Face configuration keys and tensor names.

pub mod config;
pub mod params;
pub mod presets;
pub mod transformer;

pub use config::{ModelConfig, QuantizationConfig};
pub use params::ParamStore;
pub use presets::Preset;
pub use transformer::CausalLm;
