//! Model weights: memory-mapped where the file's layout is the one the kernels read, owned where
//! the loader had to convert (Hugging Face latent or packed weights).

use crate::error::{InferError, Result};
use bitnet_core::format::GgmlType;
use bitnet_core::kernels::{QuantMatrix, TernaryMatrix};
use std::sync::Arc;

/// Bytes of a tensor: a range of a mapped file, or an owned 8-byte-aligned buffer.
#[derive(Debug, Clone)]
pub enum Blob {
    Mapped { map: Arc<memmap2::Mmap>, offset: usize, len: usize },
    Owned { words: Vec<u64>, len: usize },
}

impl Blob {
    /// Copies `bytes` into an aligned buffer.
    pub fn owned(bytes: &[u8]) -> Self {
        let mut words = vec![0u64; bytes.len().div_ceil(8)];
        bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
        Blob::Owned { words, len: bytes.len() }
    }

    /// An owned blob of f32 values.
    pub fn from_f32(v: &[f32]) -> Self {
        Self::owned(bytemuck::cast_slice(v))
    }

    pub fn bytes(&self) -> &[u8] {
        match self {
            Blob::Mapped { map, offset, len } => &map[*offset..*offset + *len],
            Blob::Owned { words, len } => &bytemuck::cast_slice(words)[..*len],
        }
    }
}

/// A linear layer `y = W x` with W of shape (rows = out, cols = in).
#[derive(Debug, Clone)]
pub struct Linear {
    pub name: String,
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    pub blob: Blob,
    /// A per-tensor output multiplier (llama.cpp's optional `*.scale` tensors); 1 otherwise.
    pub out_scale: f32,
}

/// The matrix of a linear layer as the kernels see it.
#[derive(Debug, Clone, Copy)]
pub enum MatrixRef<'a> {
    /// Ternary weights, multiplied with per-token int8 activations.
    Ternary(TernaryMatrix<'a>),
    /// llama.cpp weight types, multiplied with the activation type llama.cpp pairs them with.
    Quant(QuantMatrix<'a>),
}

impl Linear {
    /// Checks that the bytes hold a (rows, cols) matrix of `ty`.
    pub fn new(name: &str, ty: GgmlType, rows: usize, cols: usize, blob: Blob) -> Result<Self> {
        let l = Self { name: name.to_string(), ty, rows, cols, blob, out_scale: 1.0 };
        l.matrix()?;
        Ok(l)
    }

    pub fn is_ternary(&self) -> bool {
        matches!(self.ty, GgmlType::TQ1_0 | GgmlType::TQ2_0 | GgmlType::I2S)
    }

    pub fn matrix(&self) -> Result<MatrixRef<'_>> {
        let b = self.blob.bytes();
        let (r, c) = (self.rows, self.cols);
        let ctx = || format!("tensor {}", self.name);
        Ok(match self.ty {
            GgmlType::TQ2_0 => MatrixRef::Ternary(
                TernaryMatrix::from_tq2_0_bytes(b, r, c).map_err(InferError::core_with(ctx))?,
            ),
            GgmlType::TQ1_0 => MatrixRef::Ternary(
                TernaryMatrix::from_tq1_0_bytes(b, r, c).map_err(InferError::core_with(ctx))?,
            ),
            GgmlType::I2S => MatrixRef::Ternary(
                TernaryMatrix::from_i2s_bytes(b, r, c).map_err(InferError::core_with(ctx))?,
            ),
            GgmlType::Q8K => {
                return Err(InferError::UnsupportedTensorType {
                    name: self.name.clone(),
                    ty: "Q8_K".into(),
                })
            }
            ty => MatrixRef::Quant(
                QuantMatrix::from_bytes(ty, b, r, c).map_err(InferError::core_with(ctx))?,
            ),
        })
    }

    /// Bytes one pass over the weights reads.
    pub fn weight_bytes(&self) -> usize {
        self.blob.bytes().len()
    }
}

/// One transformer block.
#[derive(Debug, Clone)]
pub struct LayerWeights {
    pub attn_norm: Vec<f32>,
    pub wq: Linear,
    pub wk: Linear,
    pub wv: Linear,
    pub wo: Linear,
    pub attn_sub_norm: Option<Vec<f32>>,
    pub ffn_norm: Vec<f32>,
    pub w_gate: Linear,
    pub w_up: Linear,
    pub w_down: Linear,
    pub ffn_sub_norm: Option<Vec<f32>>,
}

/// All weights of a model.
#[derive(Debug, Clone)]
pub struct Weights {
    /// (vocab, hidden): rows are looked up, never multiplied unless tied to the head.
    pub embed: Linear,
    pub layers: Vec<LayerWeights>,
    pub final_norm: Vec<f32>,
    /// (vocab, hidden); `None` when tied to the embedding.
    pub head: Option<Linear>,
}

impl Weights {
    pub fn head(&self) -> &Linear {
        self.head.as_ref().unwrap_or(&self.embed)
    }

    fn parts(&self) -> (Vec<&Linear>, Vec<&[f32]>) {
        let mut lin: Vec<&Linear> = vec![&self.embed];
        let mut norms: Vec<&[f32]> = vec![&self.final_norm];
        lin.extend(&self.head);
        for l in &self.layers {
            lin.extend([&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down]);
            norms.extend([l.attn_norm.as_slice(), l.ffn_norm.as_slice()]);
            norms.extend(l.attn_sub_norm.as_deref());
            norms.extend(l.ffn_sub_norm.as_deref());
        }
        (lin, norms)
    }

    /// The number of parameters (a tied head counted once).
    pub fn n_params(&self) -> usize {
        let (lin, norms) = self.parts();
        lin.iter().map(|l| l.rows * l.cols).sum::<usize>()
            + norms.iter().map(|n| n.len()).sum::<usize>()
    }

    /// Bytes of all tensors as loaded (llama-bench's `model_size`).
    pub fn size_bytes(&self) -> usize {
        let (lin, norms) = self.parts();
        lin.iter().map(|l| l.weight_bytes()).sum::<usize>()
            + norms.iter().map(|n| n.len() * 4).sum::<usize>()
    }
}
