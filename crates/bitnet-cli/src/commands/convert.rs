//! `bitnet convert IN OUT --type tq2_0|tq1_0|i2_s|hf-packed`: a BitNet model (GGUF file, Hugging
//! Face directory or `bitnet train` checkpoint) to packed GGUF or to a Hugging Face directory.

use anyhow::{Context, Result};
use bitnet_infer::convert::{convert_with_head, Target, VocabSource};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The model: a .gguf file or a Hugging Face directory.
    pub input: PathBuf,
    /// Output: a .gguf file, or a directory for hf-packed.
    pub output: PathBuf,
    /// tq2_0, tq1_0 (llama.cpp), i2_s (bitnet.cpp) or hf-packed (BitNetForCausalLM, offline).
    #[arg(long = "type")]
    pub target: Target,
    /// tokenizer.json whose vocabulary to write (default: the model's own).
    #[arg(long, conflicts_with = "no_vocab")]
    pub tokenizer: Option<PathBuf>,
    /// Write no vocabulary.
    #[arg(long)]
    pub no_vocab: bool,
    /// Re-quantize the embedding and output head: q6_k, q8_0, f16, bf16 or f32 (GGUF output;
    /// default: copied in their own type). With it, a LLaMA GGUF converts too (only its
    /// embedding and head change).
    #[arg(long)]
    pub head_type: Option<String>,
}

pub fn run(a: Args) -> Result<()> {
    let vocab = match (&a.tokenizer, a.no_vocab) {
        (_, true) => VocabSource::Omit,
        (Some(p), _) => VocabSource::File(p),
        (None, false) => VocabSource::Model,
    };
    let head = a.head_type.as_deref().map(super::dense_type).transpose()?;
    let r = convert_with_head(&a.input, &a.output, a.target, vocab, head)
        .with_context(|| format!("converting {} to {}", a.input.display(), a.output.display()))?;
    println!(
        "wrote {}: {} tensors, {} ternary layers{}{}",
        a.output.display(),
        r.tensors,
        r.ternary_layers,
        if r.permuted_qk { ", Q/K rows permuted for the RoPE pairing" } else { "" },
        if r.vocab { ", vocabulary included" } else { ", no vocabulary" },
    );
    Ok(())
}
