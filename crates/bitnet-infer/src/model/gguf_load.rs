//! Building [`Config`] and [`Weights`] from a GGUF file (`llama`, `bitnet`, `bitnet-b1.58`).

use super::config::{Arch, Config, RopeStyle};
use super::weights::{Blob, LayerWeights, Linear, Weights};
use crate::error::{InferError, Result};
use crate::gguf::{GgufFile, TensorInfo};
use bitnet_core::kernels::QuantMatrix;

/// Reads the configuration from the metadata and the embedding's shape.
pub fn config_from_gguf(file: &GgufFile) -> Result<Config> {
    let h = &file.header;
    let arch = Arch::from_gguf_name(h.get_str("general.architecture")?)?;
    let a = arch.gguf_name();
    let key = |k: &str| format!("{a}.{k}");
    let embed = tensor(file, "token_embd.weight")?;
    if embed.dims.len() != 2 {
        return Err(shape_err(embed, &[0, 0]));
    }
    let hidden = h.get_usize(&key("embedding_length"))?;
    let n_heads = h.get_usize(&key("attention.head_count"))?;
    let n_kv_heads = match h.get(&key("attention.head_count_kv")) {
        Some(_) => h.get_usize(&key("attention.head_count_kv"))?,
        None => n_heads,
    };
    let head_dim = match h.get(&key("attention.key_length")) {
        Some(_) => h.get_usize(&key("attention.key_length"))?,
        None if n_heads > 0 => hidden / n_heads,
        None => 0,
    };
    let cfg = Config {
        arch,
        vocab_size: embed.dims[1],
        hidden,
        n_layers: h.get_usize(&key("block_count"))?,
        n_heads,
        n_kv_heads,
        head_dim,
        ffn_dim: h.get_usize(&key("feed_forward_length"))?,
        max_ctx: h.get_usize(&key("context_length"))?,
        rope_theta: h.get_f64(&key("rope.freq_base"))?.unwrap_or(10_000.0) as f32,
        rope_style: match arch {
            Arch::BitNet => RopeStyle::Half,
            Arch::Llama | Arch::BitNetB158 => RopeStyle::Interleaved,
        },
        norm_eps: h.get_f64(&key("attention.layer_norm_rms_epsilon"))?.unwrap_or(1e-5) as f32,
        ffn_act: arch.ffn_act(),
        sub_norms: arch.has_sub_norms(),
    };
    cfg.validate()?;
    if embed.dims[0] != cfg.hidden {
        return Err(shape_err(embed, &[cfg.hidden, cfg.vocab_size]));
    }
    Ok(cfg)
}

fn tensor<'a>(file: &'a GgufFile, name: &str) -> Result<&'a TensorInfo> {
    file.header.tensor(name).ok_or_else(|| InferError::MissingTensor { name: name.into() })
}

fn shape_err(t: &TensorInfo, expected: &[usize]) -> InferError {
    InferError::TensorShape {
        name: t.name.clone(),
        expected: expected.to_vec(),
        got: t.dims.clone(),
    }
}

/// A (rows, cols) matrix, stored in ggml order as dims [cols, rows].
fn linear(file: &GgufFile, name: &str, rows: usize, cols: usize) -> Result<Linear> {
    let t = tensor(file, name)?;
    if t.dims != [cols, rows] {
        return Err(shape_err(t, &[cols, rows]));
    }
    let blob = Blob::Mapped { map: file.map().clone(), offset: t.offset, len: t.size };
    let mut l = Linear::new(name, t.ty, rows, cols, blob)?;
    if let Some(name) = name.strip_suffix(".weight").map(|b| format!("{b}.scale")) {
        if file.header.tensor(&name).is_some() {
            l.out_scale = vector(file, &name, 1)?[0];
        }
    }
    Ok(l)
}

/// A vector of `n` values of any float or quantized type, as f32.
fn vector(file: &GgufFile, name: &str, n: usize) -> Result<Vec<f32>> {
    let t = tensor(file, name)?;
    if t.n_elements() != n || t.dims.iter().filter(|&&d| d != 1).count() > 1 {
        return Err(shape_err(t, &[n]));
    }
    let m = QuantMatrix::from_bytes(t.ty, file.data(t), 1, n)
        .map_err(InferError::core(format!("tensor {name}")))?;
    let mut out = vec![0.0; n];
    m.row_f32(0, &mut out).map_err(InferError::core(format!("tensor {name}")))?;
    if out.iter().any(|v| !v.is_finite()) {
        return Err(InferError::BadGguf(format!("tensor {name} holds non-finite values")));
    }
    Ok(out)
}

/// Maps every tensor the forward pass needs.
pub fn weights_from_gguf(file: &GgufFile, cfg: &Config) -> Result<Weights> {
    let (h, q, kv, f) = (cfg.hidden, cfg.q_dim(), cfg.kv_dim(), cfg.ffn_dim);
    let embed = {
        let t = tensor(file, "token_embd.weight")?;
        let blob = Blob::Mapped { map: file.map().clone(), offset: t.offset, len: t.size };
        let l = Linear::new("token_embd.weight", t.ty, cfg.vocab_size, h, blob)?;
        if l.is_ternary() {
            return Err(InferError::UnsupportedTensorType {
                name: l.name,
                ty: format!("{:?} (ternary embeddings)", t.ty),
            });
        }
        l
    };
    let mut layers = Vec::with_capacity(cfg.n_layers);
    for i in 0..cfg.n_layers {
        let n = |s: &str| format!("blk.{i}.{s}.weight");
        let sub = cfg.sub_norms;
        layers.push(LayerWeights {
            attn_norm: vector(file, &n("attn_norm"), h)?,
            wq: linear(file, &n("attn_q"), q, h)?,
            wk: linear(file, &n("attn_k"), kv, h)?,
            wv: linear(file, &n("attn_v"), kv, h)?,
            wo: linear(file, &n("attn_output"), h, q)?,
            attn_sub_norm: if sub { Some(vector(file, &n("attn_sub_norm"), q)?) } else { None },
            ffn_norm: vector(file, &n("ffn_norm"), h)?,
            w_gate: linear(file, &n("ffn_gate"), f, h)?,
            w_up: linear(file, &n("ffn_up"), f, h)?,
            w_down: linear(file, &n("ffn_down"), h, f)?,
            ffn_sub_norm: if sub { Some(vector(file, &n("ffn_sub_norm"), f)?) } else { None },
        });
    }
    let head = match file.header.tensor("output.weight") {
        Some(_) => Some(linear(file, "output.weight", cfg.vocab_size, h)?),
        None => None,
    };
    Ok(Weights { embed, layers, final_norm: vector(file, "output_norm.weight", h)?, head })
}
