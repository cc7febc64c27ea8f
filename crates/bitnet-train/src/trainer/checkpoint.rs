//! Checkpoints in Hugging Face layout, written atomically.
//!
//! A checkpoint directory holds `model.safetensors` (latent f32 weights under Hugging Face names,
//! `quantization_mode: online`), `config.json`, `tokenizer.json`, `optimizer.safetensors` (AdamW
//! moments) and `trainer_state.json` (step, schedule, generator position, data cursor). Every file
//! is first written in full to a temporary name in the same directory and synced; only when all
//! are written are they renamed into place, `trainer_state.json` last. The step is also stored in
//! the metadata of both safetensors files, and resuming checks that all three agree.

use crate::data::BatcherState;
use crate::error::{Result, TrainError};
use crate::trainer::schedule::Schedule;
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const MODEL_FILE: &str = "model.safetensors";
pub const CONFIG_FILE: &str = "config.json";
pub const TOKENIZER_FILE: &str = "tokenizer.json";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
pub const STATE_FILE: &str = "trainer_state.json";

/// Everything besides tensors that resuming needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Optimizer steps completed.
    pub step: u64,
    pub total_steps: u64,
    pub tokens_seen: u64,
    pub skipped_steps: u64,
    pub adam_t: u64,
    pub batcher: BatcherState,
    pub schedule: Schedule,
    pub batch_size: usize,
    pub seq_len: usize,
    pub grad_accum: usize,
    pub seed: u64,
    pub train_tokens: usize,
    pub elapsed_s: f64,
}

fn tmp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Writes `bytes` to `path` through a temporary file and a rename: readers see the old file or
/// the new one, never a part. On failure the temporary file is removed and `path` is untouched.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut staged = Staged::default();
    staged.stage(path, bytes)?;
    staged.commit()
}

/// Files written to temporary names, renamed into place together by [`Staged::commit`].
#[derive(Debug, Default)]
pub struct Staged {
    files: Vec<(PathBuf, PathBuf)>,
}

impl Staged {
    pub fn stage(&mut self, path: &Path, bytes: &[u8]) -> Result<()> {
        let tmp = tmp_path(path);
        if let Err(e) = write_synced(&tmp, bytes) {
            let _ = std::fs::remove_file(&tmp);
            return Err(TrainError::io(path, e));
        }
        self.files.push((tmp, path.to_path_buf()));
        Ok(())
    }

    pub fn commit(mut self) -> Result<()> {
        for (tmp, dst) in std::mem::take(&mut self.files) {
            std::fs::rename(&tmp, &dst).map_err(|e| TrainError::io(&dst, e))?;
        }
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        for (tmp, _) in &self.files {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

/// Serializes f32 tensors to safetensors bytes with `metadata`.
pub fn safetensors_bytes(
    tensors: &BTreeMap<String, Tensor>,
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>> {
    let mut owned = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let data: Vec<f32> = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        owned.push((name.clone(), t.dims().to_vec(), f32_le_bytes(&data)));
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = owned
        .iter()
        .map(|(n, shape, bytes)| {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                    .expect("shape and byte length agree by construction");
            (n.clone(), view)
        })
        .collect();
    safetensors::serialize(views, Some(metadata))
        .map_err(|e| TrainError::Invalid(format!("safetensors: {e}")))
}

fn f32_le_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Loads every tensor of a safetensors file (any float dtype, converted to f32) and its metadata.
pub fn load_safetensors(
    path: &Path,
    device: &Device,
) -> Result<(BTreeMap<String, Tensor>, HashMap<String, String>)> {
    let bytes = std::fs::read(path).map_err(|e| TrainError::io(path, e))?;
    let bad = |msg: String| TrainError::Checkpoint { path: path.into(), msg };
    let (_, meta) =
        safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        let t = candle_core::safetensors::Load::load(&view, device)
            .map_err(|e| bad(format!("tensor {name}: {e}")))?;
        out.insert(name, t.to_dtype(DType::F32)?);
    }
    Ok((out, meta.metadata().clone().unwrap_or_default()))
}

/// The `step` stored in a safetensors file's metadata.
pub fn metadata_step(meta: &HashMap<String, String>) -> Option<u64> {
    meta.get("step").and_then(|s| s.parse().ok())
}

pub fn read_state(dir: &Path) -> Result<TrainerState> {
    let path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
    serde_json::from_str(&text).map_err(|e| TrainError::Checkpoint { path, msg: e.to_string() })
}
