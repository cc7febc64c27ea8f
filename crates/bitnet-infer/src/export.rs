//! Writing models as GGUF: the architecture metadata of a [`Config`], and random ternary models
//! of real shapes for benchmarks.

use crate::error::{InferError, Result};
use crate::gguf::{GgufWriter, TensorSpec, Value};
use crate::model::{Arch, Config, RopeStyle};
use bitnet_core::format::{encode_dense, GgmlType};
use bitnet_core::kernels::{OwnedTernary, TernaryFormat};
use std::path::Path;

/// Model shapes `random-model` knows.
pub fn preset(name: &str) -> Result<Config> {
    let base = |arch: Arch| Config {
        arch,
        vocab_size: 0,
        hidden: 0,
        n_layers: 0,
        n_heads: 0,
        n_kv_heads: 0,
        head_dim: 0,
        ffn_dim: 0,
        max_ctx: 4096,
        rope_theta: 10_000.0,
        rope_style: if arch == Arch::BitNet { RopeStyle::Half } else { RopeStyle::Interleaved },
        norm_eps: 1e-5,
        ffn_act: arch.ffn_act(),
        sub_norms: arch.has_sub_norms(),
    };
    let c = match name {
        // microsoft/bitnet-b1.58-2B-4T.
        "2b4t" => Config {
            vocab_size: 128_256,
            hidden: 2560,
            n_layers: 30,
            n_heads: 20,
            n_kv_heads: 5,
            head_dim: 128,
            ffn_dim: 6912,
            rope_theta: 500_000.0,
            ..base(Arch::BitNetB158)
        },
        // 1bitLLM/bitnet_b1_58-large (llama.cpp's `bitnet` architecture).
        "700m" => Config {
            vocab_size: 32_002,
            hidden: 1536,
            n_layers: 24,
            n_heads: 16,
            n_kv_heads: 16,
            head_dim: 96,
            ffn_dim: 4096,
            max_ctx: 2048,
            ..base(Arch::BitNet)
        },
        "tiny" => Config {
            vocab_size: 512,
            hidden: 256,
            n_layers: 2,
            n_heads: 4,
            n_kv_heads: 2,
            head_dim: 64,
            ffn_dim: 512,
            max_ctx: 256,
            ..base(Arch::BitNetB158)
        },
        other => {
            return Err(InferError::BadConfig(format!(
                "unknown shape {other:?} (2b4t, 700m, tiny)"
            )))
        }
    };
    Ok(c)
}

/// The `{arch}.*` keys llama.cpp and bitnet.cpp read.
pub fn set_arch_metadata(w: &mut GgufWriter, c: &Config, name: &str) -> Result<()> {
    let expected_act = c.arch.ffn_act();
    if c.ffn_act != expected_act || c.sub_norms != c.arch.has_sub_norms() {
        return Err(InferError::BadConfig(format!(
            "{:?} with {:?} and sub-norms {} has no GGUF architecture",
            c.arch, c.ffn_act, c.sub_norms
        )));
    }
    let expected_rope =
        if c.arch == Arch::BitNet { RopeStyle::Half } else { RopeStyle::Interleaved };
    if c.rope_style != expected_rope {
        return Err(InferError::BadConfig(format!(
            "{} expects {expected_rope:?} RoPE pairing; permute Q/K first",
            c.arch.gguf_name()
        )));
    }
    let a = c.arch.gguf_name();
    let u32v = |v: usize| Value::U32(v as u32);
    w.set("general.architecture", Value::String(a.into()));
    w.set("general.name", Value::String(name.into()));
    w.set(&format!("{a}.context_length"), u32v(c.max_ctx));
    w.set(&format!("{a}.embedding_length"), u32v(c.hidden));
    w.set(&format!("{a}.block_count"), u32v(c.n_layers));
    w.set(&format!("{a}.feed_forward_length"), u32v(c.ffn_dim));
    w.set(&format!("{a}.attention.head_count"), u32v(c.n_heads));
    w.set(&format!("{a}.attention.head_count_kv"), u32v(c.n_kv_heads));
    w.set(&format!("{a}.rope.dimension_count"), u32v(c.head_dim));
    w.set(&format!("{a}.rope.freq_base"), Value::F32(c.rope_theta));
    w.set(&format!("{a}.attention.layer_norm_rms_epsilon"), Value::F32(c.norm_eps));
    w.set(&format!("{a}.vocab_size"), u32v(c.vocab_size));
    if c.head_dim * c.n_heads != c.hidden {
        w.set(&format!("{a}.attention.key_length"), u32v(c.head_dim));
        w.set(&format!("{a}.attention.value_length"), u32v(c.head_dim));
    }
    Ok(())
}

fn ternary_format(ty: GgmlType) -> Result<TernaryFormat> {
    Ok(match ty {
        GgmlType::TQ2_0 => TernaryFormat::Tq2_0,
        GgmlType::TQ1_0 => TernaryFormat::Tq1_0,
        GgmlType::I2S => TernaryFormat::I2s,
        other => return Err(InferError::BadConfig(format!("{other:?} is not a ternary type"))),
    })
}

/// The tensors of a model of shape `c`: (GGUF name, rows, cols), linear layers flagged.
pub fn tensor_list(c: &Config) -> Vec<(String, usize, usize, bool)> {
    let (h, q, kv, f) = (c.hidden, c.q_dim(), c.kv_dim(), c.ffn_dim);
    let mut t = vec![("token_embd.weight".to_string(), c.vocab_size, h, false)];
    for i in 0..c.n_layers {
        let n = |s: &str| format!("blk.{i}.{s}.weight");
        t.push((n("attn_norm"), 1, h, false));
        t.push((n("attn_q"), q, h, true));
        t.push((n("attn_k"), kv, h, true));
        t.push((n("attn_v"), kv, h, true));
        t.push((n("attn_output"), h, q, true));
        if c.sub_norms {
            t.push((n("attn_sub_norm"), 1, q, false));
        }
        t.push((n("ffn_norm"), 1, h, false));
        t.push((n("ffn_gate"), f, h, true));
        t.push((n("ffn_up"), f, h, true));
        t.push((n("ffn_down"), h, f, true));
        if c.sub_norms {
            t.push((n("ffn_sub_norm"), 1, f, false));
        }
    }
    t.push(("output_norm.weight".to_string(), 1, h, false));
    t
}

/// Writes a model of shape `c` with uniformly random ternary weights of type `ty`, an embedding
/// (tied head) of uniform(-1, 1) values in `embed_ty` (F16, BF16, F32, Q8_0 or Q6_K) and unit norms.
pub fn write_random_model(
    path: &Path,
    c: &Config,
    ty: GgmlType,
    embed_ty: GgmlType,
    seed: u64,
) -> Result<()> {
    write_random_model_with(path, c, ty, embed_ty, seed, &[])
}

/// As [`write_random_model`], with `extra` metadata (a vocabulary's `tokenizer.*` keys, say).
pub fn write_random_model_with(
    path: &Path,
    c: &Config,
    ty: GgmlType,
    embed_ty: GgmlType,
    seed: u64,
    extra: &[(String, Value)],
) -> Result<()> {
    c.validate()?;
    let fmt = ternary_format(ty)?;
    let mut w = GgufWriter::new();
    set_arch_metadata(&mut w, c, "random ternary model")?;
    for (k, v) in extra {
        w.set(k, v.clone());
    }
    let list = tensor_list(c);
    for (name, rows, cols, linear) in &list {
        let (dims, tty) = match (*rows, *linear) {
            (1, false) => (vec![*cols], GgmlType::F32),
            (_, false) => (vec![*cols, *rows], embed_ty),
            (_, true) => (vec![*cols, *rows], ty),
        };
        w.add_tensor(TensorSpec::new(name.clone(), &dims, tty)?);
    }
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    };
    w.write(path, |i, spec| {
        let (_, rows, cols, linear) = &list[i];
        if *linear {
            let m = OwnedTernary::random(fmt, *rows, *cols, seed.wrapping_add(i as u64))
                .map_err(InferError::core(spec.name.clone()))?;
            let mut bytes = m.file_bytes().expect("file formats have bytes").to_vec();
            bytes.resize(spec.size, 0);
            Ok(bytes)
        } else if *rows == 1 {
            Ok((0..*cols).flat_map(|_| 1.0f32.to_le_bytes()).collect())
        } else {
            let mut out = Vec::with_capacity(spec.size);
            let mut chunk = vec![0f32; 256 * cols];
            for r0 in (0..*rows).step_by(256) {
                let n = 256.min(rows - r0) * cols;
                chunk[..n].iter_mut().for_each(|v| *v = next());
                out.extend(
                    encode_dense(embed_ty, &chunk[..n], *cols)
                        .map_err(InferError::core(&spec.name))?,
                );
            }
            Ok(out)
        }
    })
}
