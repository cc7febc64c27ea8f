//! Writing a `.safetensors` file: an 8-byte header length, the JSON header (padded with spaces
//! to 8 bytes), then each tensor's bytes in order. Tensors are produced one at a time, so a
//! large model is never held in memory twice.

use crate::error::{InferError, Result};
use serde_json::{json, Map, Value as Json};
use std::io::Write;
use std::path::Path;

/// A tensor to be written: name, safetensors dtype (`F32`, `BF16`, `U8`, ...), shape, bytes.
#[derive(Debug, Clone)]
pub struct StTensor {
    pub name: String,
    pub dtype: &'static str,
    pub shape: Vec<usize>,
    pub size: usize,
}

fn header(tensors: &[StTensor]) -> Result<Vec<u8>> {
    let mut m = Map::new();
    m.insert("__metadata__".into(), json!({"format": "pt"}));
    let mut off = 0usize;
    for t in tensors {
        m.insert(
            t.name.clone(),
            json!({"dtype": t.dtype, "shape": t.shape, "data_offsets": [off, off + t.size]}),
        );
        off += t.size;
    }
    let mut h = serde_json::to_vec(&Json::Object(m))
        .map_err(|e| InferError::BadSafetensors(e.to_string()))?;
    h.resize(h.len().div_ceil(8) * 8, b' ');
    Ok(h)
}

/// Writes `tensors` to `path` (atomically); `data(i)` must return exactly `tensors[i].size` bytes.
pub fn write_safetensors<F>(path: &Path, tensors: &[StTensor], mut data: F) -> Result<()>
where
    F: FnMut(usize) -> Result<Vec<u8>>,
{
    let h = header(tensors)?;
    crate::atomic::write_atomic(path, |w, tmp| {
        let io = |e| InferError::io(tmp, e);
        w.write_all(&(h.len() as u64).to_le_bytes()).map_err(io)?;
        w.write_all(&h).map_err(io)?;
        for (i, t) in tensors.iter().enumerate() {
            let bytes = data(i)?;
            if bytes.len() != t.size {
                return Err(InferError::TensorShape {
                    name: t.name.clone(),
                    expected: vec![t.size],
                    got: vec![bytes.len()],
                });
            }
            w.write_all(&bytes).map_err(io)?;
        }
        Ok(())
    })
}
