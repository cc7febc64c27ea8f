//! `bitnet random-model`: a GGUF file of a real architecture with uniformly random ternary
//! weights, for benchmarks.

use anyhow::{bail, Context, Result};
use bitnet_core::format::GgmlType;
use bitnet_infer::export::{preset, write_random_model_with};
use bitnet_infer::gguf::GgufFile;
use bitnet_infer::model::{Arch, RopeStyle};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Model shape: 2b4t (bitnet-b1.58-2B-4T), 700m (1bitLLM large, llama.cpp `bitnet`), tiny.
    #[arg(long, default_value = "tiny")]
    pub shape: String,
    /// Ternary type of the linear layers: tq2_0, tq1_0 or i2_s.
    #[arg(long = "type", default_value = "tq2_0")]
    pub ty: String,
    /// Type of the embedding (tied output head): q6_k (as llama.cpp and bitnet.cpp ship ternary
    /// models), q8_0, f16, bf16 or f32.
    #[arg(long, default_value = "q6_k")]
    pub head_type: String,
    /// Write the shape under llama.cpp's `bitnet` architecture (SiLU FFN, half-split RoPE) so
    /// llama.cpp can run it too; the weights read per token are the same.
    #[arg(long)]
    pub llamacpp_arch: bool,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Copy the vocabulary (`tokenizer.*` keys) of this GGUF file, such as llama.cpp's
    /// `ggml-vocab-*.gguf`, into the model, whose vocabulary size becomes that one's: engines and
    /// servers that need a tokenizer can then run it.
    #[arg(long)]
    pub vocab: Option<PathBuf>,
    /// Output .gguf file.
    pub out: PathBuf,
}

pub fn run(a: Args) -> Result<()> {
    let ty = match a.ty.as_str() {
        "tq2_0" => GgmlType::TQ2_0,
        "tq1_0" => GgmlType::TQ1_0,
        "i2_s" => GgmlType::I2S,
        other => bail!("--type {other:?}: expected tq2_0, tq1_0 or i2_s"),
    };
    let head = super::dense_type(&a.head_type)?;
    let mut cfg = preset(&a.shape)?;
    if a.llamacpp_arch {
        cfg.arch = Arch::BitNet;
        cfg.ffn_act = Arch::BitNet.ffn_act();
        cfg.rope_style = RopeStyle::Half;
    }
    let mut extra = Vec::new();
    if let Some(v) = &a.vocab {
        let g = GgufFile::open(v).with_context(|| format!("reading {}", v.display()))?;
        extra =
            g.header.metadata.into_iter().filter(|(k, _)| k.starts_with("tokenizer.")).collect();
        let n = extra
            .iter()
            .find(|(k, _)| k == "tokenizer.ggml.tokens")
            .and_then(|(_, t)| t.as_array())
            .map(|t| t.len())
            .with_context(|| format!("{} has no tokenizer.ggml.tokens", v.display()))?;
        cfg.vocab_size = n;
    }
    write_random_model_with(&a.out, &cfg, ty, head, a.seed, &extra)
        .with_context(|| format!("writing {}", a.out.display()))?;
    let size = std::fs::metadata(&a.out)?.len();
    println!(
        "wrote {} ({} shape, {}, {} head, {:.1} MB)",
        a.out.display(),
        a.shape,
        a.ty,
        a.head_type,
        size as f64 / 1e6
    );
    Ok(())
}
