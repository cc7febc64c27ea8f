//! A ternary matrix in the open: codes in {-1, 0, +1} and one scale per 256-weight block of
//! each row. Every packed format converts to it and from it, so a conversion is a decode, an
//! optional row permutation, and an encode.

use crate::error::{InferError, Result};
use crate::model::Linear;
use bitnet_core::format::{hf_packed, i2s, tq1_0, tq2_0, BlockTQ1_0, BlockTQ2_0, GgmlType, QK_K};

#[derive(Debug, Clone, PartialEq)]
pub struct TernaryTensor {
    pub name: String,
    pub rows: usize,
    pub cols: usize,
    /// Row-major codes, -1, 0 or +1.
    pub codes: Vec<i8>,
    /// One scale per 256 weights, row-major: `rows * cols / 256` of them.
    pub scales: Vec<f32>,
}

fn blocks<T: bytemuck::Pod>(bytes: &[u8], n: usize) -> Vec<T> {
    bytes.chunks_exact(std::mem::size_of::<T>()).take(n).map(bytemuck::pod_read_unaligned).collect()
}

impl TernaryTensor {
    /// Decodes a ternary linear layer; other types are an error naming the layer.
    pub fn from_linear(l: &Linear) -> Result<Self> {
        let (rows, cols) = (l.rows, l.cols);
        let n = rows * cols;
        let nb = n / QK_K;
        let bytes = l.blob.bytes();
        let (codes, scales): (Vec<i8>, Vec<f32>) = match l.ty {
            GgmlType::TQ2_0 => {
                let b: Vec<BlockTQ2_0> = blocks(bytes, nb);
                let codes = b.iter().flat_map(|b| (0..QK_K).map(|i| b.code(i) as i8 - 1)).collect();
                (codes, b.iter().map(|b| b.d.to_f32()).collect())
            }
            GgmlType::TQ1_0 => {
                let b: Vec<BlockTQ1_0> = blocks(bytes, nb);
                let codes = b.iter().flat_map(|b| (0..QK_K).map(|i| b.code(i) as i8 - 1)).collect();
                (codes, b.iter().map(|b| b.d.to_f32()).collect())
            }
            GgmlType::I2S => {
                let t = i2s::I2sTensor::parse(bytes, n)
                    .map_err(InferError::core(format!("tensor {}", l.name)))?;
                let codes = (0..n)
                    .map(|i| match i2s::i2s_code(t.codes, i) {
                        3 => Err(InferError::BadConfig(format!(
                            "tensor {}: invalid I2_S code at weight {i}",
                            l.name
                        ))),
                        c => Ok(c as i8 - 1),
                    })
                    .collect::<Result<Vec<i8>>>()?;
                (codes, vec![t.scale; nb])
            }
            other => {
                return Err(InferError::BadConfig(format!(
                    "{} is {other:?}, not ternary: only BitNet models with ternary linear layers \
                     convert to packed ternary formats",
                    l.name
                )))
            }
        };
        let mut t = Self { name: l.name.clone(), rows, cols, codes, scales };
        if l.out_scale != 1.0 {
            // llama.cpp's optional `*.scale` tensors fold into the weight scale.
            t.scales.iter_mut().for_each(|s| *s *= l.out_scale);
        }
        Ok(t)
    }

    /// The tensor with row `r` taken from row `perm[r]` of this one.
    pub fn permute_rows(&self, perm: &[usize]) -> Self {
        let (c, bpr) = (self.cols, self.cols / QK_K);
        let mut codes = Vec::with_capacity(self.codes.len());
        let mut scales = Vec::with_capacity(self.scales.len());
        for &src in perm {
            codes.extend_from_slice(&self.codes[src * c..(src + 1) * c]);
            scales.extend_from_slice(&self.scales[src * bpr..(src + 1) * bpr]);
        }
        Self { codes, scales, ..self.clone() }
    }

    /// The single scale of the tensor, for the per-tensor formats (I2_S, Hugging Face packed).
    /// Blocks without a non-zero weight carry no scale; the others must agree exactly.
    pub fn tensor_scale(&self) -> Result<f32> {
        let mut scale = None;
        for (b, &s) in self.scales.iter().enumerate() {
            if self.codes[b * QK_K..(b + 1) * QK_K].iter().all(|&c| c == 0) {
                continue;
            }
            match scale {
                None => scale = Some(s),
                Some(t) if t == s => {}
                Some(t) => {
                    return Err(InferError::BadConfig(format!(
                        "{}: block scales differ ({t} and {s}); a per-tensor format cannot hold \
                         them",
                        self.name
                    )))
                }
            }
        }
        Ok(scale.unwrap_or(0.0))
    }

    fn values(&self) -> Vec<f32> {
        self.codes.iter().enumerate().map(|(i, &c)| c as f32 * self.scales[i / QK_K]).collect()
    }

    /// The bytes of the tensor in a GGUF ternary type.
    pub fn to_ggml(&self, ty: GgmlType) -> Result<Vec<u8>> {
        let ctx = || format!("tensor {}", self.name);
        Ok(match ty {
            GgmlType::TQ2_0 => bytemuck::cast_slice(
                &tq2_0::quantize_row_tq2_0(&self.values()).map_err(InferError::core_with(ctx))?,
            )
            .to_vec(),
            GgmlType::TQ1_0 => bytemuck::cast_slice(
                &tq1_0::quantize_row_tq1_0(&self.values()).map_err(InferError::core_with(ctx))?,
            )
            .to_vec(),
            GgmlType::I2S => {
                let codes: Vec<u8> = self.codes.iter().map(|&c| (c + 1) as u8).collect();
                i2s::pack_i2_s(&codes, self.tensor_scale()?)
            }
            other => return Err(InferError::BadConfig(format!("{other:?} is not a ternary type"))),
        })
    }

    /// Hugging Face `BitNetForCausalLM` offline packing: `uint8 [rows/4, cols]` and the scale.
    pub fn to_hf(&self) -> Result<(Vec<u8>, f32)> {
        let packed = hf_packed::pack_hf(&self.codes, self.rows, self.cols)
            .map_err(InferError::core(format!("tensor {}", self.name)))?;
        Ok((packed, self.tensor_scale()?))
    }
}

/// The row permutation that turns the Q or K projection of `rows / head_dim` heads from
/// Hugging Face's half-split RoPE pairing (i, i + d/2) into ggml's adjacent pairing (2i, 2i+1),
/// as llama.cpp's converter permutes LLaMA weights; `to_adjacent = false` gives the inverse.
pub fn rope_permutation(rows: usize, head_dim: usize, to_adjacent: bool) -> Vec<usize> {
    let half = head_dim / 2;
    let mut perm = vec![0; rows];
    for h in 0..rows / head_dim {
        for i in 0..half {
            for j in 0..2 {
                let adjacent = h * head_dim + 2 * i + j;
                let split = h * head_dim + j * half + i;
                if to_adjacent {
                    perm[adjacent] = split;
                } else {
                    perm[split] = adjacent;
                }
            }
        }
    }
    perm
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rope_permutations_are_inverse_and_match_llamacpp() {
        // llama.cpp: w.reshape(n_head, 2, d/2, ...).swapaxes(1, 2): head 0 of d = 4 reads rows
        // 0, 2, 1, 3.
        let p = rope_permutation(8, 4, true);
        assert_eq!(p, vec![0, 2, 1, 3, 4, 6, 5, 7]);
        let q = rope_permutation(12, 6, true);
        assert_eq!(&q[..6], &[0, 3, 1, 4, 2, 5]);
        let back = rope_permutation(12, 6, false);
        assert!((0..12).all(|r| q[back[r]] == r));
    }
}
