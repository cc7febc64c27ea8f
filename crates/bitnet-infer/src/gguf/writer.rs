//! Writing GGUF files: metadata and tensor infos first, then each tensor's data in order, to a
//! temporary file that is renamed into place only when complete ([`crate::atomic`]).

use super::value::Value;
use super::DEFAULT_ALIGNMENT;
use crate::error::{InferError, Result};
use bitnet_core::format::GgmlType;
use std::io::Write;
use std::path::Path;

/// A tensor to be written: its name, ggml dimensions (innermost first), type and data size.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    pub dims: Vec<usize>,
    pub ty: GgmlType,
    pub size: usize,
}

impl TensorSpec {
    /// A tensor whose size follows from its type and dimensions.
    pub fn new(name: impl Into<String>, dims: &[usize], ty: GgmlType) -> Result<Self> {
        let name = name.into();
        let n = dims.iter().product();
        let size = ty.tensor_bytes(n).map_err(InferError::core(format!("tensor {name}")))?;
        Ok(Self { name, dims: dims.to_vec(), ty, size })
    }
}

/// A GGUF v3 file being assembled.
#[derive(Debug, Default)]
pub struct GgufWriter {
    metadata: Vec<(String, Value)>,
    tensors: Vec<TensorSpec>,
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.push(*x as u8),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(*x as u8),
        Value::String(s) => put_str(out, s),
        Value::Array(ty, items) => {
            out.extend_from_slice(&ty.id().to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for it in items {
                put_value(out, it);
            }
        }
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
    }
}

impl GgufWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a metadata key.
    pub fn set(&mut self, key: &str, value: Value) {
        match self.metadata.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.metadata.push((key.to_string(), value)),
        }
    }

    pub fn add_tensor(&mut self, spec: TensorSpec) {
        self.tensors.push(spec);
    }

    pub fn tensors(&self) -> &[TensorSpec] {
        self.tensors.as_slice()
    }

    /// The header bytes, padded to the alignment, and each tensor's offset in the data section.
    fn header(&self) -> (Vec<u8>, Vec<usize>) {
        let mut out = Vec::new();
        out.extend_from_slice(b"GGUF");
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (k, v) in &self.metadata {
            put_str(&mut out, k);
            out.extend_from_slice(&v.value_type().id().to_le_bytes());
            put_value(&mut out, v);
        }
        let mut offsets = Vec::with_capacity(self.tensors.len());
        let mut off = 0usize;
        for t in &self.tensors {
            put_str(&mut out, &t.name);
            out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for &d in &t.dims {
                out.extend_from_slice(&(d as u64).to_le_bytes());
            }
            out.extend_from_slice(&t.ty.id().to_le_bytes());
            out.extend_from_slice(&(off as u64).to_le_bytes());
            offsets.push(off);
            off = (off + t.size).div_ceil(DEFAULT_ALIGNMENT) * DEFAULT_ALIGNMENT;
        }
        out.resize(out.len().div_ceil(DEFAULT_ALIGNMENT) * DEFAULT_ALIGNMENT, 0);
        (out, offsets)
    }

    /// Writes the file: `data` is asked for each tensor's bytes in order and must return exactly
    /// `spec.size` of them. The file appears at `path` only once it is complete and synced.
    pub fn write<F>(&self, path: &Path, mut data: F) -> Result<()>
    where
        F: FnMut(usize, &TensorSpec) -> Result<Vec<u8>>,
    {
        crate::atomic::write_atomic(path, |w, tmp| {
            let io = |e| InferError::io(tmp, e);
            let (header, offsets) = self.header();
            w.write_all(&header).map_err(io)?;
            let mut pos = 0usize;
            for (i, t) in self.tensors.iter().enumerate() {
                let bytes = data(i, t)?;
                if bytes.len() != t.size {
                    return Err(InferError::TensorShape {
                        name: t.name.clone(),
                        expected: vec![t.size],
                        got: vec![bytes.len()],
                    });
                }
                w.write_all(&vec![0u8; offsets[i] - pos]).map_err(io)?;
                w.write_all(&bytes).map_err(io)?;
                pos = offsets[i] + bytes.len();
            }
            let end = pos.div_ceil(DEFAULT_ALIGNMENT) * DEFAULT_ALIGNMENT;
            w.write_all(&vec![0u8; end - pos]).map_err(io)
        })
    }
}
