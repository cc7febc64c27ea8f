//! `bitnet convert`: a BitNet model from any file the engine loads (GGUF, a Hugging Face
//! directory, a `bitnet train` checkpoint) to GGUF in TQ2_0, TQ1_0 or I2_S, or to a Hugging Face
//! `BitNetForCausalLM` directory with offline-packed weights.
//!
//! Ternary layers are decoded to codes and scales ([`TernaryTensor`]) and re-encoded; nothing
//! is re-quantized from floats, so a conversion changes at most the precision of the scales (the
//! ggml ternary blocks keep an f16 scale). Q and K rows are permuted when the two ends pair RoPE
//! dimensions differently (`bitnet-b1.58` GGUF files pair adjacent dimensions, Hugging Face and
//! llama.cpp's `bitnet` pair halves). Embeddings, heads and norms are copied in their type.
//! The vocabulary travels too: GGUF keys are copied or built from `tokenizer.json`, and a
//! `tokenizer.json` is written from a GGUF vocabulary.

mod safetensors_out;
mod ternary;
mod vocab;

pub use safetensors_out::{write_safetensors, StTensor};
pub use ternary::{rope_permutation, TernaryTensor};
pub use vocab::gguf_vocab;

use crate::error::{InferError, Result};
use crate::export::set_arch_metadata;
use crate::gguf::{GgufWriter, TensorSpec, Value};
use crate::load::{open_model, open_tokenizer};
use crate::model::{Arch, Config, FfnAct, Linear, MatrixRef, Model, RopeStyle};
use crate::tokenizer::Tokenizer;
use bitnet_core::format::{encode_dense, GgmlType};
use serde_json::json;
use std::path::Path;

/// What `convert` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Gguf(GgmlType),
    /// A Hugging Face directory, `quantization_mode: offline`, `linear_class: autobitlinear`.
    HfPacked,
}

impl std::str::FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Ok(match s {
            "tq2_0" => Target::Gguf(GgmlType::TQ2_0),
            "tq1_0" => Target::Gguf(GgmlType::TQ1_0),
            "i2_s" => Target::Gguf(GgmlType::I2S),
            "hf-packed" => Target::HfPacked,
            other => return Err(format!("unknown type {other:?} (tq2_0, tq1_0, i2_s, hf-packed)")),
        })
    }
}

/// Where the vocabulary written with the model comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VocabSource<'a> {
    /// The input's own: a GGUF vocabulary, or `tokenizer.json` beside the model.
    Model,
    /// A `tokenizer.json` given by the user.
    File(&'a Path),
    /// No vocabulary.
    Omit,
}

/// What a conversion did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub tensors: usize,
    pub ternary_layers: usize,
    /// Whether Q and K rows were permuted for the target's RoPE pairing.
    pub permuted_qk: bool,
    /// Whether a vocabulary was written.
    pub vocab: bool,
}

impl Report {
    fn new(list: &[Entry<'_>], tensors: usize, permute: Option<bool>, vocab: bool) -> Self {
        let ternary_layers = list.iter().filter(|e| matches!(e.item, Item::Ternary(..))).count();
        Self { tensors, ternary_layers, permuted_qk: permute.is_some(), vocab }
    }
}

/// A tensor of the model and its names on both sides.
enum Item<'a> {
    Norm(&'a [f32]),
    /// An embedding or head, copied in its own type.
    Dense(&'a Linear),
    /// A ternary linear layer, with the row permutation to apply.
    Ternary(&'a Linear, Option<Vec<usize>>),
    /// A linear layer of another type, copied as it is.
    Linear(&'a Linear),
}

struct Entry<'a> {
    gguf: String,
    /// The Hugging Face name without its `.weight` suffix.
    hf: String,
    item: Item<'a>,
}

fn entries(m: &Model, permute: Option<bool>) -> Vec<Entry<'_>> {
    let c = &m.config;
    let w = &m.weights;
    let perm = |rows| permute.map(|to_adjacent| rope_permutation(rows, c.head_dim, to_adjacent));
    let e = |gguf: String, hf: String, item| Entry { gguf, hf, item };
    let mut out =
        vec![e("token_embd.weight".into(), "model.embed_tokens".into(), Item::Dense(&w.embed))];
    for (i, l) in w.layers.iter().enumerate() {
        let g = |s: &str| format!("blk.{i}.{s}.weight");
        let h = |s: &str| format!("model.layers.{i}.{s}");
        out.push(e(g("attn_norm"), h("input_layernorm"), Item::Norm(&l.attn_norm)));
        // Linear layers of a LLaMA model (only its head is converted) are copied as they are.
        let lin = |l, p: Option<Vec<usize>>| match Linear::is_ternary(l) {
            true => Item::Ternary(l, p),
            false => Item::Linear(l),
        };
        out.push(e(g("attn_q"), h("self_attn.q_proj"), lin(&l.wq, perm(l.wq.rows))));
        out.push(e(g("attn_k"), h("self_attn.k_proj"), lin(&l.wk, perm(l.wk.rows))));
        out.push(e(g("attn_v"), h("self_attn.v_proj"), lin(&l.wv, None)));
        out.push(e(g("attn_output"), h("self_attn.o_proj"), lin(&l.wo, None)));
        if let Some(n) = &l.attn_sub_norm {
            out.push(e(g("attn_sub_norm"), h("self_attn.attn_sub_norm"), Item::Norm(n)));
        }
        out.push(e(g("ffn_norm"), h("post_attention_layernorm"), Item::Norm(&l.ffn_norm)));
        out.push(e(g("ffn_gate"), h("mlp.gate_proj"), lin(&l.w_gate, None)));
        out.push(e(g("ffn_up"), h("mlp.up_proj"), lin(&l.w_up, None)));
        out.push(e(g("ffn_down"), h("mlp.down_proj"), lin(&l.w_down, None)));
        if let Some(n) = &l.ffn_sub_norm {
            out.push(e(g("ffn_sub_norm"), h("mlp.ffn_sub_norm"), Item::Norm(n)));
        }
    }
    out.push(e("output_norm.weight".into(), "model.norm".into(), Item::Norm(&w.final_norm)));
    if let Some(head) = &w.head {
        out.push(e("output.weight".into(), "lm_head".into(), Item::Dense(head)));
    }
    out
}

fn ternary(l: &Linear, perm: &Option<Vec<usize>>) -> Result<TernaryTensor> {
    let t = TernaryTensor::from_linear(l)?;
    Ok(match perm {
        Some(p) => t.permute_rows(p),
        None => t,
    })
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The RoPE pairing a GGUF architecture expects.
fn gguf_rope(arch: Arch) -> RopeStyle {
    if arch == Arch::BitNet {
        RopeStyle::Half
    } else {
        RopeStyle::Interleaved
    }
}

/// `Some(to_adjacent)` when the Q/K rows must be permuted to go from `from` to `to`.
fn permutation(from: RopeStyle, to: RopeStyle) -> Option<bool> {
    (from != to).then_some(to == RopeStyle::Interleaved)
}

fn check_bitnet(c: &Config, target: Target, head: Option<GgmlType>) -> Result<()> {
    let head_only = matches!(target, Target::Gguf(_)) && head.is_some();
    if c.arch == Arch::Llama && !head_only {
        return Err(InferError::BadConfig(
            "a LLaMA model has no ternary layers to pack; only BitNet models convert \
             (a LLaMA GGUF can only have its embedding and head re-quantized, with a head type)"
                .into(),
        ));
    }
    Ok(())
}

fn not_ternary(l: &Linear) -> InferError {
    InferError::BadConfig(format!(
        "{} ({:?}) is not ternary; hf-packed needs ternary layers",
        l.name, l.ty
    ))
}

/// The bytes of an embedding or head in `ty`: its own bytes when the type is unchanged, else its
/// rows decoded to f32 and re-quantized with ggml's reference quantizers.
fn dense_bytes(l: &Linear, ty: GgmlType) -> Result<Vec<u8>> {
    if ty == l.ty {
        return Ok(l.blob.bytes().to_vec());
    }
    let MatrixRef::Quant(q) = l.matrix()? else {
        return Err(InferError::BadConfig(format!("{} is ternary", l.name)));
    };
    let ctx = || l.name.clone();
    let rows_per = 256;
    let mut chunk = vec![0f32; rows_per * l.cols];
    let mut out = Vec::new();
    for r0 in (0..l.rows).step_by(rows_per) {
        let n = rows_per.min(l.rows - r0);
        for (i, row) in chunk.chunks_exact_mut(l.cols).take(n).enumerate() {
            q.row_f32(r0 + i, row).map_err(InferError::core_with(ctx))?;
        }
        out.extend(
            encode_dense(ty, &chunk[..n * l.cols], l.cols).map_err(InferError::core_with(ctx))?,
        );
    }
    Ok(out)
}

/// Converts the model at `input` (a `.gguf` file or a Hugging Face directory) and writes
/// `output` (a `.gguf` file, or a directory for [`Target::HfPacked`]).
pub fn convert(
    input: &Path,
    output: &Path,
    target: Target,
    vocab: VocabSource<'_>,
) -> Result<Report> {
    convert_with_head(input, output, target, vocab, None)
}

/// [`convert`], with the embedding and output head re-quantized to `head` (F32, F16, BF16, Q8_0
/// or Q6_K) in GGUF output; `None` copies them in their own type.
pub fn convert_with_head(
    input: &Path,
    output: &Path,
    target: Target,
    vocab: VocabSource<'_>,
    head: Option<GgmlType>,
) -> Result<Report> {
    let model = open_model(input)?;
    check_bitnet(&model.config, target, head)?;
    let tk = match vocab {
        VocabSource::Model => open_tokenizer(input, &model, None)?,
        VocabSource::File(p) => open_tokenizer(input, &model, Some(p))?,
        VocabSource::Omit => None,
    };
    let name = input
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    match target {
        Target::Gguf(ty) => to_gguf(&model, tk.as_ref(), vocab, (ty, head), output, &name),
        Target::HfPacked if head.is_some() => Err(InferError::BadConfig(
            "hf-packed keeps the embedding and head in a float type; a head type applies to GGUF"
                .into(),
        )),
        Target::HfPacked => to_hf(&model, tk.as_ref(), output),
    }
}

fn to_gguf(
    m: &Model,
    tk: Option<&Tokenizer>,
    vocab: VocabSource<'_>,
    (ty, head): (GgmlType, Option<GgmlType>),
    out: &Path,
    name: &str,
) -> Result<Report> {
    let mut c = m.config.clone();
    let to = gguf_rope(c.arch);
    let permute = permutation(c.rope_style, to);
    c.rope_style = to;
    let mut w = GgufWriter::new();
    set_arch_metadata(&mut w, &c, name)?;
    // A GGUF input's own vocabulary is copied key for key (chat template included) unless a
    // tokenizer was given or the vocabulary left out.
    let own: Vec<(String, Value)> = match (&m.gguf, vocab) {
        (Some(g), VocabSource::Model) => {
            g.header.metadata.iter().filter(|(k, _)| k.starts_with("tokenizer.")).cloned().collect()
        }
        _ => Vec::new(),
    };
    let vocab = match tk {
        _ if !own.is_empty() => own,
        Some(tk) => gguf_vocab(tk, c.vocab_size)?,
        None => Vec::new(),
    };
    for (k, v) in &vocab {
        w.set(k, v.clone());
    }
    let list = entries(m, permute);
    for e in &list {
        let spec = match &e.item {
            Item::Norm(v) => TensorSpec::new(e.gguf.clone(), &[v.len()], GgmlType::F32)?,
            Item::Dense(l) => {
                TensorSpec::new(e.gguf.clone(), &[l.cols, l.rows], head.unwrap_or(l.ty))?
            }
            Item::Linear(l) => TensorSpec::new(e.gguf.clone(), &[l.cols, l.rows], l.ty)?,
            Item::Ternary(l, _) => TensorSpec::new(e.gguf.clone(), &[l.cols, l.rows], ty)?,
        };
        w.add_tensor(spec);
    }
    w.write(out, |i, spec| match &list[i].item {
        Item::Norm(v) => Ok(f32_bytes(v)),
        Item::Dense(l) => dense_bytes(l, spec.ty),
        Item::Linear(l) => Ok(l.blob.bytes().to_vec()),
        Item::Ternary(l, perm) => ternary(l, perm)?.to_ggml(ty),
    })?;
    Ok(Report::new(&list, list.len(), permute, !vocab.is_empty()))
}

/// The safetensors dtype of an embedding or head, and its bytes (dequantized to f32 for the
/// llama.cpp block types).
fn dense_tensor(l: &Linear) -> Result<(&'static str, Vec<u8>)> {
    Ok(match l.ty {
        GgmlType::F32 => ("F32", l.blob.bytes().to_vec()),
        GgmlType::F16 => ("F16", l.blob.bytes().to_vec()),
        GgmlType::BF16 => ("BF16", l.blob.bytes().to_vec()),
        _ => {
            let MatrixRef::Quant(q) = l.matrix()? else {
                return Err(InferError::BadConfig(format!("{} is ternary", l.name)));
            };
            let mut row = vec![0f32; l.cols];
            let mut out = Vec::with_capacity(l.rows * l.cols * 4);
            for r in 0..l.rows {
                q.row_f32(r, &mut row).map_err(InferError::core(l.name.clone()))?;
                out.extend(f32_bytes(&row));
            }
            ("F32", out)
        }
    })
}

fn dense_dtype(l: &Linear) -> &'static str {
    match l.ty {
        GgmlType::F16 => "F16",
        GgmlType::BF16 => "BF16",
        _ => "F32",
    }
}

fn hf_config(c: &Config, tied: bool, tk: Option<&Tokenizer>, dtype: &str) -> serde_json::Value {
    let torch_dtype = match dtype {
        "BF16" => "bfloat16",
        "F16" => "float16",
        _ => "float32",
    };
    json!({
        "architectures": ["BitNetForCausalLM"],
        "model_type": "bitnet",
        "vocab_size": c.vocab_size,
        "hidden_size": c.hidden,
        "intermediate_size": c.ffn_dim,
        "num_hidden_layers": c.n_layers,
        "num_attention_heads": c.n_heads,
        "num_key_value_heads": c.n_kv_heads,
        "head_dim": c.head_dim,
        "max_position_embeddings": c.max_ctx,
        "rms_norm_eps": c.norm_eps,
        "rope_theta": c.rope_theta,
        "hidden_act": if c.ffn_act == FfnAct::Relu2 { "relu2" } else { "silu" },
        "tie_word_embeddings": tied,
        "bos_token_id": tk.and_then(|t| t.bos),
        "eos_token_id": tk.and_then(|t| t.eos),
        "torch_dtype": torch_dtype,
        "quantization_config": {
            "quant_method": "bitnet",
            "linear_class": "autobitlinear",
            "quantization_mode": "offline"
        }
    })
}

fn write_json(path: &Path, v: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(v).map_err(|e| InferError::BadConfig(e.to_string()))?;
    crate::atomic::write_bytes(path, text.as_bytes())
}

fn to_hf(m: &Model, tk: Option<&Tokenizer>, dir: &Path) -> Result<Report> {
    let c = &m.config;
    let permute = permutation(c.rope_style, RopeStyle::Half);
    std::fs::create_dir_all(dir).map_err(|e| InferError::io(dir, e))?;
    let list = entries(m, permute);
    // Each ternary layer becomes two tensors: packed codes and the scale.
    let mut specs = Vec::new();
    let mut source = Vec::new();
    for (i, e) in list.iter().enumerate() {
        let t =
            |name: String, dtype, shape: Vec<usize>, size| StTensor { name, dtype, shape, size };
        match &e.item {
            Item::Norm(v) => {
                specs.push(t(format!("{}.weight", e.hf), "F32", vec![v.len()], v.len() * 4))
            }
            Item::Dense(l) => {
                let dtype = dense_dtype(l);
                let size = l.rows * l.cols * if dtype == "F32" { 4 } else { 2 };
                specs.push(t(format!("{}.weight", e.hf), dtype, vec![l.rows, l.cols], size));
            }
            Item::Linear(l) => return Err(not_ternary(l)),
            Item::Ternary(l, _) => {
                if !l.rows.is_multiple_of(4) {
                    return Err(InferError::BadConfig(format!(
                        "{}: {} rows do not pack four to a byte",
                        l.name, l.rows
                    )));
                }
                let size = l.rows / 4 * l.cols;
                specs.push(t(format!("{}.weight", e.hf), "U8", vec![l.rows / 4, l.cols], size));
                source.push((i, false));
                specs.push(t(format!("{}.weight_scale", e.hf), "F32", vec![1], 4));
                source.push((i, true));
                continue;
            }
        }
        source.push((i, false));
    }
    let mut pending_scale = None;
    write_safetensors(&dir.join("model.safetensors"), &specs, |k| {
        let (i, is_scale) = source[k];
        if is_scale {
            let s: f32 = pending_scale.take().expect("the codes come before the scale");
            return Ok(s.to_le_bytes().to_vec());
        }
        match &list[i].item {
            Item::Norm(v) => Ok(f32_bytes(v)),
            Item::Dense(l) => Ok(dense_tensor(l)?.1),
            Item::Linear(l) => Err(not_ternary(l)),
            Item::Ternary(l, perm) => {
                let (packed, scale) = ternary(l, perm)?.to_hf()?;
                pending_scale = Some(scale);
                Ok(packed)
            }
        }
    })?;
    let cfg = hf_config(c, m.weights.head.is_none(), tk, dense_dtype(&m.weights.embed));
    write_json(&dir.join("config.json"), &cfg)?;
    if let Some(tk) = tk {
        crate::atomic::write_bytes(&dir.join("tokenizer.json"), tk.to_json()?.as_bytes())?;
        let name = |id: Option<u32>| id.and_then(|i| tk.id_to_token(i));
        let mut tc = json!({
            "bos_token": name(tk.bos),
            "eos_token": name(tk.eos),
            "add_bos_token": tk.add_bos,
        });
        let template = m.gguf.as_ref().and_then(|g| g.header.get("tokenizer.chat_template"));
        if let Some(t) = template.and_then(|v| v.as_str()) {
            tc["chat_template"] = json!(t);
        }
        write_json(&dir.join("tokenizer_config.json"), &tc)?;
    }
    Ok(Report::new(&list, specs.len(), permute, tk.is_some()))
}
