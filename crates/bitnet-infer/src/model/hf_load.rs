//! Building [`Config`] and [`Weights`] from a Hugging Face `BitNetForCausalLM` (or
//! `LlamaForCausalLM`) directory, `bitnet train` checkpoints included.
//!
//! Linear layers come in three forms, told apart by `quantization_config` and the tensor dtype:
//! - online (`quantization_mode: online`, or our trainer's checkpoints): latent float weights,
//!   quantized here with the per-tensor absmean (b1.58) or sign (b1) quantizer;
//! - offline packed: `uint8 [out/4, in]` plus `weight_scale`. `linear_class: autobitlinear`
//!   (microsoft/bitnet-b1.58-2B-4T) stores `mean|W|` and multiplies by it; `bitlinear` stores
//!   `1/mean|W|` and divides by it;
//! - no quantization (plain LLaMA, or `bitnet_quant: none`): float weights used as they are.
//!
//! Quantized weights are kept as `I2_S` (2-bit codes and one f32 scale per tensor), so the scale
//! is exactly the checkpoint's.

use super::config::{Arch, Config, FfnAct, RopeStyle};
use super::safetensors_dir::{Dtype, SafetensorsDir, TensorRef};
use super::weights::{Blob, LayerWeights, Linear, Weights};
use crate::error::{InferError, Result};
use bitnet_core::format::{hf_packed, i2s, GgmlType};
use bitnet_core::quant::{quantize_b1, quantize_ternary, ScaleGranularity};
use serde_json::Value as Json;
use std::path::Path;

/// How the linear layers of a checkpoint are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinearForm {
    /// Float weights used as they are.
    Dense,
    /// Latent weights quantized at load: b1.58 (ternary) or b1 (sign).
    Online { binary: bool },
    /// Stored ternary weights and a `weight_scale`; `divide` for the `bitlinear` convention.
    Offline { divide: bool },
}

fn cfg_err(m: impl Into<String>) -> InferError {
    InferError::BadConfig(m.into())
}

fn get_usize(c: &Json, key: &str) -> Result<usize> {
    c[key]
        .as_u64()
        .map(|v| v as usize)
        .ok_or_else(|| cfg_err(format!("config.json: {key} is missing or not an integer")))
}

/// Parses `config.json`: the engine configuration and the linear-layer form.
fn parse_config(text: &str) -> Result<(Config, LinearForm, bool)> {
    let c: Json = serde_json::from_str(text).map_err(|e| cfg_err(format!("config.json: {e}")))?;
    let model_type = c["model_type"].as_str().unwrap_or("");
    let arch = match model_type {
        "bitnet" => Arch::BitNetB158,
        "llama" => Arch::Llama,
        other => return Err(InferError::UnknownArch(other.into())),
    };
    let ffn_act = match c["hidden_act"].as_str().unwrap_or(if arch == Arch::Llama {
        "silu"
    } else {
        "relu2"
    }) {
        "relu2" => FfnAct::Relu2,
        "silu" | "swish" => FfnAct::Silu,
        other => {
            return Err(cfg_err(format!("hidden_act {other:?} is not supported (relu2, silu)")))
        }
    };
    let arch = match (arch, ffn_act) {
        (Arch::BitNetB158, FfnAct::Silu) => Arch::BitNet,
        (a, _) => a,
    };
    let n_heads = get_usize(&c, "num_attention_heads")?;
    let hidden = get_usize(&c, "hidden_size")?;
    let theta = c["rope_theta"]
        .as_f64()
        .or_else(|| c["rope_parameters"]["rope_theta"].as_f64())
        .unwrap_or(if model_type == "bitnet" { 500_000.0 } else { 10_000.0 });
    if let Some(t) =
        c["rope_scaling"].as_object().and_then(|o| o.get("rope_type")).and_then(|v| v.as_str())
    {
        if t != "default" {
            return Err(cfg_err(format!("rope_scaling type {t:?} is not supported")));
        }
    }
    let config = Config {
        arch,
        vocab_size: get_usize(&c, "vocab_size")?,
        hidden,
        n_layers: get_usize(&c, "num_hidden_layers")?,
        n_heads,
        n_kv_heads: c["num_key_value_heads"].as_u64().map(|v| v as usize).unwrap_or(n_heads),
        head_dim: c["head_dim"]
            .as_u64()
            .map(|v| v as usize)
            .unwrap_or(hidden.checked_div(n_heads).unwrap_or(0)),
        ffn_dim: get_usize(&c, "intermediate_size")?,
        max_ctx: c["max_position_embeddings"].as_u64().map(|v| v as usize).unwrap_or(2048),
        rope_theta: theta as f32,
        rope_style: RopeStyle::Half,
        norm_eps: c["rms_norm_eps"].as_f64().unwrap_or(1e-5) as f32,
        ffn_act,
        sub_norms: model_type == "bitnet",
    };
    config.validate()?;
    let tied = c["tie_word_embeddings"].as_bool().unwrap_or(false);

    let q = &c["quantization_config"];
    let form = if q.is_null() {
        LinearForm::Dense
    } else {
        // Our trainer writes `quant_method: none` (with `bitnet_quant: none`) for fp models.
        if q["quant_method"].as_str() == Some("none") && q["bitnet_quant"].as_str() == Some("none")
        {
            return Ok((config, LinearForm::Dense, tied));
        }
        if q["quant_method"].as_str().is_some_and(|m| m != "bitnet") {
            return Err(cfg_err(format!("quant_method {:?} is not supported", q["quant_method"])));
        }
        if q["use_rms_norm"].as_bool() == Some(true) {
            return Err(cfg_err(
                "quantization_config.use_rms_norm (a norm inside each linear) is not supported",
            ));
        }
        if q["hadamard"].as_bool() == Some(true) {
            return Err(cfg_err(
                "H-BitLinear checkpoints (hadamard: true) are not supported by the engine",
            ));
        }
        let binary = match q["bitnet_quant"].as_str() {
            None | Some("b158") => false,
            Some("b1") => true,
            Some("none") => return Ok((config, LinearForm::Dense, tied)),
            Some(other) => {
                return Err(cfg_err(format!(
                    "bitnet_quant {other:?} is not supported by the engine (b158, b1, none)"
                )))
            }
        };
        let class = q["linear_class"].as_str().unwrap_or("bitlinear");
        match (q["quantization_mode"].as_str().unwrap_or("offline"), class) {
            ("online", _) => LinearForm::Online { binary },
            ("offline", "autobitlinear") => LinearForm::Offline { divide: false },
            ("offline", "bitlinear") => LinearForm::Offline { divide: true },
            (mode, class) => {
                return Err(cfg_err(format!(
                    "quantization_mode {mode:?} with linear_class {class:?} is not supported"
                )))
            }
        }
    };
    Ok((config, form, tied))
}

fn shape_err(t: &TensorRef, expected: &[usize]) -> InferError {
    InferError::TensorShape {
        name: t.name.clone(),
        expected: expected.to_vec(),
        got: t.shape.clone(),
    }
}

fn float_type(t: &TensorRef) -> Result<(GgmlType, usize)> {
    Ok(match t.dtype {
        Dtype::F32 => (GgmlType::F32, 4),
        Dtype::F16 => (GgmlType::F16, 2),
        Dtype::BF16 => (GgmlType::BF16, 2),
        Dtype::U8 => {
            return Err(InferError::UnsupportedTensorType {
                name: t.name.clone(),
                ty: "uint8".into(),
            })
        }
    })
}

/// A float (rows, cols) matrix, borrowed from the file when aligned.
fn dense(t: &TensorRef, rows: usize, cols: usize) -> Result<Linear> {
    if t.shape != [rows, cols] {
        return Err(shape_err(t, &[rows, cols]));
    }
    let (ty, align) = float_type(t)?;
    Linear::new(&t.name, ty, rows, cols, t.blob(align))
}

/// Ternary codes (-1, 0, 1) and a scale, as an `I2_S` matrix.
fn i2s_linear(name: &str, codes: &[i8], scale: f32, rows: usize, cols: usize) -> Result<Linear> {
    if !cols.is_multiple_of(256) {
        return Err(cfg_err(format!(
            "{name}: {cols} input features; the ternary kernels need a multiple of 256"
        )));
    }
    if !scale.is_finite() {
        return Err(cfg_err(format!("{name}: weight scale {scale}")));
    }
    let c: Vec<u8> = codes.iter().map(|&v| (v + 1) as u8).collect();
    Linear::new(name, GgmlType::I2S, rows, cols, Blob::owned(&i2s::pack_i2_s(&c, scale)))
}

fn scalar(t: &TensorRef) -> Result<f32> {
    let v = t.to_f32()?;
    if v.len() != 1 {
        return Err(shape_err(t, &[1]));
    }
    Ok(v[0])
}

fn linear(
    st: &SafetensorsDir,
    name: &str,
    rows: usize,
    cols: usize,
    form: LinearForm,
) -> Result<Linear> {
    let t = st.get(&format!("{name}.weight"))?;
    let wname = t.name.clone();
    match form {
        LinearForm::Dense => dense(t, rows, cols),
        LinearForm::Online { binary } => {
            if t.shape != [rows, cols] {
                return Err(shape_err(t, &[rows, cols]));
            }
            let w = t.to_f32()?;
            if w.iter().any(|v| !v.is_finite()) {
                return Err(cfg_err(format!("{wname} holds non-finite values")));
            }
            if binary {
                let b = quantize_b1(&w);
                i2s_linear(&wname, &b.codes, b.beta, rows, cols)
            } else {
                let q = quantize_ternary(&w, rows, cols, ScaleGranularity::PerTensor)
                    .map_err(InferError::core(wname.clone()))?;
                i2s_linear(&wname, &q.codes, q.scales[0], rows, cols)
            }
        }
        LinearForm::Offline { divide } => {
            let stored = scalar(st.get(&format!("{name}.weight_scale"))?)?;
            let scale = if divide { 1.0 / stored } else { stored };
            let codes = if t.dtype == Dtype::U8 {
                if t.shape != [rows / 4, cols] || !rows.is_multiple_of(4) {
                    return Err(shape_err(t, &[rows / 4, cols]));
                }
                hf_packed::unpack_hf(t.bytes(), rows, cols)
                    .map_err(InferError::core(wname.clone()))?
            } else {
                if t.shape != [rows, cols] {
                    return Err(shape_err(t, &[rows, cols]));
                }
                let w = t.to_f32()?;
                w.iter()
                    .enumerate()
                    .map(|(i, &v)| match v {
                        0.0 => Ok(0),
                        1.0 => Ok(1),
                        -1.0 => Ok(-1),
                        v => Err(cfg_err(format!(
                            "{wname}: offline weight {i} is {v}, not -1, 0 or 1"
                        ))),
                    })
                    .collect::<Result<Vec<i8>>>()?
            };
            i2s_linear(&wname, &codes, scale, rows, cols)
        }
    }
}

fn vector(st: &SafetensorsDir, name: &str, n: usize) -> Result<Vec<f32>> {
    let t = st.get(name)?;
    if t.shape != [n] {
        return Err(shape_err(t, &[n]));
    }
    let v = t.to_f32()?;
    if v.iter().any(|x| !x.is_finite()) {
        return Err(cfg_err(format!("{name} holds non-finite values")));
    }
    Ok(v)
}

/// Loads a Hugging Face directory.
pub fn load_hf_dir(dir: &Path) -> Result<(Config, Weights)> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| InferError::io(&path, e))?;
    load_hf_parts(&text, &SafetensorsDir::open(dir)?)
}

/// Builds a model from the text of `config.json` and its tensors.
pub fn load_hf_parts(config_json: &str, st: &SafetensorsDir) -> Result<(Config, Weights)> {
    let (cfg, form, tied) = parse_config(config_json)?;
    let (h, q, kv, f) = (cfg.hidden, cfg.q_dim(), cfg.kv_dim(), cfg.ffn_dim);
    let embed = dense(st.get("model.embed_tokens.weight")?, cfg.vocab_size, h)?;
    let mut layers = Vec::with_capacity(cfg.n_layers);
    for i in 0..cfg.n_layers {
        let p = format!("model.layers.{i}");
        let lin = |n: &str, r, c| linear(st, &format!("{p}.{n}"), r, c, form);
        let norm = |n: &str, len| vector(st, &format!("{p}.{n}.weight"), len);
        layers.push(LayerWeights {
            attn_norm: norm("input_layernorm", h)?,
            wq: lin("self_attn.q_proj", q, h)?,
            wk: lin("self_attn.k_proj", kv, h)?,
            wv: lin("self_attn.v_proj", kv, h)?,
            wo: lin("self_attn.o_proj", h, q)?,
            attn_sub_norm: if cfg.sub_norms {
                Some(norm("self_attn.attn_sub_norm", q)?)
            } else {
                None
            },
            ffn_norm: norm("post_attention_layernorm", h)?,
            w_gate: lin("mlp.gate_proj", f, h)?,
            w_up: lin("mlp.up_proj", f, h)?,
            w_down: lin("mlp.down_proj", h, f)?,
            ffn_sub_norm: if cfg.sub_norms { Some(norm("mlp.ffn_sub_norm", f)?) } else { None },
        });
    }
    let head = if !tied && st.contains("lm_head.weight") {
        Some(dense(st.get("lm_head.weight")?, cfg.vocab_size, h)?)
    } else if !tied {
        return Err(InferError::MissingTensor { name: "lm_head.weight".into() });
    } else {
        None
    };
    let final_norm = vector(st, "model.norm.weight", h)?;
    Ok((cfg, Weights { embed, layers, final_norm, head }))
}
