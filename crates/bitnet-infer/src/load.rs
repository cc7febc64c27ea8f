//! Opening what a user points at: a `.gguf` file or a Hugging Face model directory, and the
//! tokenizer that goes with it.

use crate::error::{InferError, Result};
use crate::model::Model;
use crate::tokenizer::Tokenizer;
use std::path::Path;

/// Loads a GGUF file or a Hugging Face directory (`config.json` + safetensors).
pub fn open_model(path: &Path) -> Result<Model> {
    if path.is_dir() {
        Model::load_hf(path)
    } else if path.exists() {
        Model::load_gguf(path)
    } else {
        Err(InferError::io(path, std::io::Error::from(std::io::ErrorKind::NotFound)))
    }
}

/// The tokenizer: `explicit` when given, else `tokenizer.json` beside (or inside) the model,
/// else the vocabulary inside the GGUF file. `None` when there is none.
pub fn open_tokenizer(
    model_path: &Path,
    model: &Model,
    explicit: Option<&Path>,
) -> Result<Option<Tokenizer>> {
    if let Some(p) = explicit {
        return Tokenizer::from_file(p).map(Some);
    }
    let beside = if model_path.is_dir() {
        model_path.join("tokenizer.json")
    } else {
        model_path.with_file_name("tokenizer.json")
    };
    if let Some(g) = &model.gguf {
        if g.header.get("tokenizer.ggml.tokens").is_some() {
            return Tokenizer::from_gguf(&g.header).map(Some);
        }
    }
    if beside.exists() {
        return Tokenizer::from_file(&beside).map(Some);
    }
    Ok(None)
}
