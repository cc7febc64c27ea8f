//! The tensors of a Hugging Face model directory: `model.safetensors`, or the shards listed in
//! `model.safetensors.index.json`, memory-mapped; dtypes and shapes come from each file's header.

use super::weights::Blob;
use crate::error::{InferError, Result};
use half::{bf16, f16};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// Element types the loader reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F16,
    BF16,
    U8,
}

/// One tensor: where its bytes are and what they hold.
#[derive(Debug, Clone)]
pub struct TensorRef {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    map: Arc<memmap2::Mmap>,
    offset: usize,
    len: usize,
}

impl TensorRef {
    pub fn bytes(&self) -> &[u8] {
        &self.map[self.offset..self.offset + self.len]
    }

    /// The bytes as a blob that borrows the map (no copy) when aligned for `align`, else a copy.
    pub fn blob(&self, align: usize) -> Blob {
        if self.offset.is_multiple_of(align) {
            Blob::Mapped { map: self.map.clone(), offset: self.offset, len: self.len }
        } else {
            Blob::owned(self.bytes())
        }
    }

    /// Every value as f32 (float dtypes only).
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        let b = self.bytes();
        Ok(match self.dtype {
            Dtype::F32 => {
                b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
            }
            Dtype::F16 => b
                .chunks_exact(2)
                .map(|c| f16::from_le_bytes(c.try_into().unwrap()).to_f32())
                .collect(),
            Dtype::BF16 => b
                .chunks_exact(2)
                .map(|c| bf16::from_le_bytes(c.try_into().unwrap()).to_f32())
                .collect(),
            Dtype::U8 => {
                return Err(InferError::UnsupportedTensorType {
                    name: self.name.clone(),
                    ty: "uint8 where a float tensor was expected".into(),
                })
            }
        })
    }

    pub fn n_elements(&self) -> usize {
        self.shape.iter().product()
    }
}

/// All tensors of a directory, by name.
#[derive(Debug, Clone, Default)]
pub struct SafetensorsDir {
    tensors: HashMap<String, TensorRef>,
}

fn map_file(path: &Path) -> Result<Arc<memmap2::Mmap>> {
    let file = std::fs::File::open(path).map_err(|e| InferError::io(path, e))?;
    // SAFETY: read-only map; the file must not be truncated while mapped (as for any mmap reader).
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| InferError::io(path, e))?;
    Ok(Arc::new(map))
}

/// A read-only anonymous map holding a copy of `bytes` (page-aligned like a file map).
pub(crate) fn anon_map(bytes: &[u8]) -> Result<Arc<memmap2::Mmap>> {
    if bytes.is_empty() {
        return Err(InferError::Truncated { what: "file".into(), offset: 0, need: 8, len: 0 });
    }
    let io = |e| InferError::io(Path::new("<memory>"), e);
    let mut m = memmap2::MmapMut::map_anon(bytes.len()).map_err(io)?;
    m.copy_from_slice(bytes);
    Ok(Arc::new(m.make_read_only().map_err(io)?))
}

impl SafetensorsDir {
    /// Opens `model.safetensors` or the shards of `model.safetensors.index.json` in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        let index = dir.join("model.safetensors.index.json");
        let files: Vec<String> = if index.exists() {
            let text = std::fs::read_to_string(&index).map_err(|e| InferError::io(&index, e))?;
            let v: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| InferError::BadSafetensors(format!("{}: {e}", index.display())))?;
            let map = v["weight_map"].as_object().ok_or_else(|| {
                InferError::BadSafetensors(format!("{}: no weight_map", index.display()))
            })?;
            let mut files: Vec<String> =
                map.values().filter_map(|f| f.as_str().map(String::from)).collect();
            files.sort();
            files.dedup();
            if files.iter().any(|f| f.contains('/') || f.contains("..")) {
                return Err(InferError::BadSafetensors(
                    "shard names must be plain file names".into(),
                ));
            }
            files
        } else {
            vec!["model.safetensors".into()]
        };
        let mut out = Self::default();
        for f in files {
            out.add_file(&dir.join(f))?;
        }
        Ok(out)
    }

    /// Adds the tensors of one safetensors file.
    pub fn add_file(&mut self, path: &Path) -> Result<()> {
        self.add_map(map_file(path)?, &path.display().to_string())
    }

    /// Adds the tensors of a safetensors image held in memory.
    pub fn add_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        self.add_map(anon_map(bytes)?, "<memory>")
    }

    fn add_map(&mut self, map: Arc<memmap2::Mmap>, label: &str) -> Result<()> {
        let ctx =
            |e: safetensors::SafeTensorError| InferError::BadSafetensors(format!("{label}: {e}"));
        let (header_len, meta) = safetensors::SafeTensors::read_metadata(&map[..]).map_err(ctx)?;
        let base = 8 + header_len;
        for (name, info) in meta.tensors() {
            let dtype = match info.dtype {
                safetensors::Dtype::F32 => Dtype::F32,
                safetensors::Dtype::F16 => Dtype::F16,
                safetensors::Dtype::BF16 => Dtype::BF16,
                safetensors::Dtype::U8 | safetensors::Dtype::I8 => Dtype::U8,
                other => {
                    return Err(InferError::UnsupportedTensorType {
                        name,
                        ty: format!("safetensors dtype {other:?}"),
                    })
                }
            };
            let (start, end) = info.data_offsets;
            let offset = base + start;
            if end < start || base + end > map.len() {
                return Err(InferError::BadSafetensors(format!(
                    "{label}: tensor {name} lies outside the file"
                )));
            }
            let t = TensorRef {
                name: name.clone(),
                dtype,
                shape: info.shape.clone(),
                map: map.clone(),
                offset,
                len: end - start,
            };
            if self.tensors.insert(name.clone(), t).is_some() {
                return Err(InferError::BadSafetensors(format!("tensor {name} appears twice")));
            }
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Result<&TensorRef> {
        self.tensors.get(name).ok_or_else(|| InferError::MissingTensor { name: name.into() })
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }
}
