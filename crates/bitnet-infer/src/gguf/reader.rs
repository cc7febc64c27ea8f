//! Parsing a GGUF header from untrusted bytes, and the memory-mapped file.

use super::value::{Value, ValueType};
use super::{DEFAULT_ALIGNMENT, MAX_DIMS};
use crate::error::{InferError, Result};
use bitnet_core::format::GgmlType;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// Longest metadata key accepted.
const MAX_KEY_LEN: usize = 1 << 16;
/// Arrays of arrays nest at most this deep.
const MAX_ARRAY_DEPTH: usize = 2;

/// One tensor of a GGUF file.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// ggml order: `dims[0]` is the innermost (contiguous) dimension.
    pub dims: Vec<usize>,
    pub ty: GgmlType,
    /// Absolute byte offset of the data in the file.
    pub offset: usize,
    /// Bytes of data (for `I2_S`, the extent up to the next tensor or the end of the file).
    pub size: usize,
}

impl TensorInfo {
    pub fn n_elements(&self) -> usize {
        self.dims.iter().product()
    }
}

/// The parsed header of a GGUF file.
#[derive(Debug, Clone)]
pub struct GgufHeader {
    pub version: u32,
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<TensorInfo>,
    pub alignment: usize,
    /// Absolute offset where tensor data starts.
    pub data_offset: usize,
    meta_index: HashMap<String, usize>,
    tensor_index: HashMap<String, usize>,
}

impl GgufHeader {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.meta_index.get(key).map(|&i| &self.metadata[i].1)
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// A required integer key.
    pub fn get_usize(&self, key: &str) -> Result<usize> {
        let v = self.get(key).ok_or_else(|| InferError::MissingKey { key: key.into() })?;
        v.as_u64().and_then(|v| usize::try_from(v).ok()).ok_or_else(|| InferError::BadKey {
            key: key.into(),
            msg: format!("expected a non-negative integer, found {v:?}"),
        })
    }

    /// An optional number.
    pub fn get_f64(&self, key: &str) -> Result<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| InferError::BadKey {
                key: key.into(),
                msg: format!("expected a number, found {v:?}"),
            }),
        }
    }

    /// A required string.
    pub fn get_str(&self, key: &str) -> Result<&str> {
        let v = self.get(key).ok_or_else(|| InferError::MissingKey { key: key.into() })?;
        v.as_str()
            .ok_or_else(|| InferError::BadKey { key: key.into(), msg: "expected a string".into() })
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.b.len()).ok_or_else(|| {
            InferError::Truncated {
                what: what.into(),
                offset: self.pos,
                need: n,
                len: self.b.len(),
            }
        })?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn remaining(&self) -> usize {
        self.b.len() - self.pos
    }
    fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &str) -> Result<u16> {
        Ok(u16::from_le_bytes(self.take(2, what)?.try_into().expect("2 bytes")))
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8, what)?.try_into().expect("8 bytes")))
    }
    /// A count that must fit in what remains, each item taking at least `min_item` bytes.
    fn count(&mut self, what: &str, min_item: usize) -> Result<usize> {
        let n = self.u64(what)?;
        let fits = usize::try_from(n)
            .ok()
            .filter(|&n| n.checked_mul(min_item.max(1)).is_some_and(|b| b <= self.remaining()));
        fits.ok_or_else(|| {
            InferError::BadGguf(format!(
                "{what} {n} cannot fit in the {} bytes that remain",
                self.remaining()
            ))
        })
    }
    fn string(&mut self, what: &str) -> Result<String> {
        let n = self.count(what, 1)?;
        let bytes = self.take(n, what)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| InferError::BadGguf(format!("{what} is not valid UTF-8")))
    }

    fn value(&mut self, ty: ValueType, key: &str, depth: usize) -> Result<Value> {
        Ok(match ty {
            ValueType::U8 => Value::U8(self.u8(key)?),
            ValueType::I8 => Value::I8(self.u8(key)? as i8),
            ValueType::U16 => Value::U16(self.u16(key)?),
            ValueType::I16 => Value::I16(self.u16(key)? as i16),
            ValueType::U32 => Value::U32(self.u32(key)?),
            ValueType::I32 => Value::I32(self.u32(key)? as i32),
            ValueType::F32 => Value::F32(f32::from_bits(self.u32(key)?)),
            ValueType::Bool => match self.u8(key)? {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(InferError::BadGguf(format!("{key}: bool byte {b}"))),
            },
            ValueType::String => Value::String(self.string(key)?),
            ValueType::U64 => Value::U64(self.u64(key)?),
            ValueType::I64 => Value::I64(self.u64(key)? as i64),
            ValueType::F64 => Value::F64(f64::from_bits(self.u64(key)?)),
            ValueType::Array => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(InferError::BadGguf(format!("{key}: arrays nested too deep")));
                }
                let id = self.u32(key)?;
                let ety = ValueType::from_id(id).ok_or_else(|| {
                    InferError::BadGguf(format!("{key}: unknown array element type {id}"))
                })?;
                let n = self.count(key, ety.min_size())?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(ety, key, depth + 1)?);
                }
                Value::Array(ety, items)
            }
        })
    }
}

/// Parses and validates the header of a GGUF file held in `bytes` (the whole file).
pub fn parse_header(bytes: &[u8]) -> Result<GgufHeader> {
    let mut c = Cursor { b: bytes, pos: 0 };
    let magic: [u8; 4] = c.take(4, "magic")?.try_into().expect("4 bytes");
    if &magic != b"GGUF" {
        return Err(InferError::BadMagic { magic });
    }
    let version = c.u32("version")?;
    if !(2..=3).contains(&version) {
        return Err(InferError::UnsupportedVersion { version });
    }
    // A tensor info takes at least 8 (name) + 4 + 4 + 8 bytes; a key-value 8 + 4 + 1.
    let n_tensors = c.count("tensor count", 24)?;
    let n_kv = c.count("metadata count", 13)?;

    let mut metadata = Vec::with_capacity(n_kv);
    let mut meta_index = HashMap::with_capacity(n_kv);
    for _ in 0..n_kv {
        let key = c.string("metadata key")?;
        if key.len() > MAX_KEY_LEN {
            return Err(InferError::BadGguf(format!("metadata key of {} bytes", key.len())));
        }
        let id = c.u32(&key)?;
        let ty = ValueType::from_id(id)
            .ok_or_else(|| InferError::BadGguf(format!("{key}: unknown value type {id}")))?;
        let value = c.value(ty, &key, 0)?;
        if meta_index.insert(key.clone(), metadata.len()).is_some() {
            return Err(InferError::BadGguf(format!("duplicate metadata key {key}")));
        }
        metadata.push((key, value));
    }

    let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some((_, v)) => match v.as_u64() {
            Some(a) if a > 0 && a <= 1 << 16 && a.is_power_of_two() => a as usize,
            _ => return Err(InferError::BadGguf(format!("general.alignment {v:?}"))),
        },
    };

    let mut raw = Vec::with_capacity(n_tensors);
    for _ in 0..n_tensors {
        let name = c.string("tensor name")?;
        let n_dims = c.u32(&name)? as usize;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(InferError::BadGguf(format!("tensor {name}: {n_dims} dimensions")));
        }
        let mut dims = Vec::with_capacity(n_dims);
        for _ in 0..n_dims {
            let d = usize::try_from(c.u64(&name)?)
                .map_err(|_| InferError::BadGguf(format!("tensor {name}: dimension too large")))?;
            dims.push(d);
        }
        let id = c.u32(&name)?;
        let ty = GgmlType::from_id(id).map_err(|_| InferError::UnsupportedTensorType {
            name: name.clone(),
            ty: format!("ggml type id {id}"),
        })?;
        let offset = c.u64(&name)?;
        raw.push((name, dims, ty, offset));
    }

    // A vocabulary-only file (no tensors) may end right after its header, unpadded.
    let data_offset = (c.pos.div_ceil(alignment) * alignment).min(if raw.is_empty() {
        bytes.len()
    } else {
        usize::MAX
    });
    if data_offset > bytes.len() {
        return Err(InferError::Truncated {
            what: "tensor data".into(),
            offset: c.pos,
            need: data_offset - c.pos,
            len: bytes.len(),
        });
    }
    let data_len = bytes.len() - data_offset;

    // Data extents, for I2_S: up to the next tensor's offset or the end of the data.
    let mut starts: Vec<u64> = raw.iter().map(|t| t.3).collect();
    starts.sort_unstable();

    let mut tensors = Vec::with_capacity(raw.len());
    let mut tensor_index = HashMap::with_capacity(raw.len());
    for (name, dims, ty, offset) in raw {
        let bad = |msg: String| InferError::BadGguf(format!("tensor {name}: {msg}"));
        let n = dims
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| bad(format!("dimensions {dims:?} overflow")))?;
        if offset % alignment as u64 != 0 {
            return Err(bad(format!("offset {offset} is not aligned to {alignment}")));
        }
        let rel = usize::try_from(offset)
            .ok()
            .filter(|&o| o <= data_len)
            .ok_or_else(|| bad(format!("offset {offset} is past the end of the data")))?;
        let size = if ty == GgmlType::I2S {
            let next = starts.get(starts.partition_point(|&s| s <= offset)).map(|&s| s as usize);
            let extent = next.unwrap_or(data_len).min(data_len) - rel;
            ty.tensor_bytes(n).map_err(|e| bad(e.to_string()))?;
            let need = n / 4 + 4;
            if extent < need {
                return Err(bad(format!("I2_S data of {extent} bytes, need {need}")));
            }
            extent
        } else {
            if dims[0] % ty.block_geometry().0 != 0 {
                return Err(bad(format!(
                    "row of {} values is not a whole number of {:?} blocks",
                    dims[0], ty
                )));
            }
            ty.tensor_bytes(n).map_err(|e| bad(e.to_string()))?
        };
        if rel.checked_add(size).is_none_or(|e| e > data_len) {
            return Err(InferError::Truncated {
                what: format!("tensor {name}"),
                offset: data_offset + rel,
                need: size,
                len: bytes.len(),
            });
        }
        if tensor_index.insert(name.clone(), tensors.len()).is_some() {
            return Err(bad("duplicate tensor name".into()));
        }
        tensors.push(TensorInfo { name, dims, ty, offset: data_offset + rel, size });
    }

    Ok(GgufHeader { version, metadata, tensors, alignment, data_offset, meta_index, tensor_index })
}

/// A memory-mapped GGUF file and its header.
#[derive(Debug, Clone)]
pub struct GgufFile {
    pub header: GgufHeader,
    map: Arc<memmap2::Mmap>,
}

impl GgufFile {
    /// Maps and parses `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| InferError::io(path, e))?;
        // SAFETY: the map is read-only; like every mmap reader we rely on the file not being
        // truncated while it is mapped (a concurrent truncation would fault, not corrupt memory
        // we own).
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| InferError::io(path, e))?;
        let header = parse_header(&map)?;
        Ok(Self { header, map: Arc::new(map) })
    }

    /// Parses a GGUF image held in memory (copied into an anonymous map, so tensors stay
    /// aligned as in a file).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let map = crate::model::safetensors_dir::anon_map(bytes)?;
        let header = parse_header(&map)?;
        Ok(Self { header, map })
    }

    /// The whole mapped file.
    pub fn map(&self) -> &Arc<memmap2::Mmap> {
        &self.map
    }

    /// The data of a tensor (checked against the file when the header was parsed).
    pub fn data(&self, t: &TensorInfo) -> &[u8] {
        &self.map[t.offset..t.offset + t.size]
    }
}
