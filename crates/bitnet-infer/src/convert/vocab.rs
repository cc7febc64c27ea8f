//! A `tokenizer.json` as the `tokenizer.ggml.*` keys llama.cpp reads:
//!
//! - byte-level BPE (GPT-2, LLaMA-3, SmolLM): model `gpt2`, the tokens and merges as they are,
//!   and the `tokenizer.ggml.pre` name whose llama.cpp regexes equal the pre-tokenizer's;
//! - BPE with byte fallback (LLaMA-2 / SentencePiece style): model `llama`, scores that rank each
//!   piece by the first merge that makes it, `<0xXX>` pieces as byte tokens.
//!
//! Anything else (WordPiece, Unigram, an unrecognised pre-tokenizer) is an error rather than a
//! vocabulary llama.cpp would tokenize differently.

use crate::error::{InferError, Result};
use crate::gguf::{Value, ValueType};
use crate::tokenizer::{
    bpe_pre, Tokenizer, GPT2_REGEX, LLAMA3_REGEX, TOKEN_CONTROL, TOKEN_NORMAL, TOKEN_USER_DEFINED,
};
use serde_json::Value as Json;
use std::collections::HashMap;

const TOKEN_UNKNOWN: i64 = 2;
const TOKEN_UNUSED: i64 = 5;
const TOKEN_BYTE: i64 = 6;

/// Hugging Face's spelling of the LLaMA-3 split regex.
const HF_LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The `tokenizer.ggml.pre` names we write, in the order they are tried.
const PRE_NAMES: [&str; 4] = ["llama-bpe", "gpt-2", "smollm", "default"];

fn err(m: impl Into<String>) -> InferError {
    InferError::Tokenizer(m.into())
}

/// The split regexes a byte-level pre-tokenizer applies, in order, in llama.cpp's spelling.
fn split_regexes(pt: &Json) -> Result<Vec<String>> {
    let parts: Vec<&Json> = match pt["type"].as_str() {
        Some("Sequence") => {
            pt["pretokenizers"].as_array().map(|a| a.iter().collect()).unwrap_or_default()
        }
        _ => vec![pt],
    };
    let mut out = Vec::new();
    for p in parts {
        match p["type"].as_str() {
            Some("Split") => {
                let r = p["pattern"]["Regex"]
                    .as_str()
                    .ok_or_else(|| err("a Split pre-tokenizer without a regex"))?;
                out.push(if r == HF_LLAMA3_REGEX { LLAMA3_REGEX.into() } else { r.to_string() });
            }
            Some("Digits") if p["individual_digits"].as_bool() == Some(true) => {
                out.push(r"\p{N}".into())
            }
            Some("ByteLevel") => {
                if p["use_regex"].as_bool().unwrap_or(true) {
                    out.push(GPT2_REGEX.into());
                }
            }
            other => {
                return Err(err(format!("pre-tokenizer {other:?} has no llama.cpp equivalent")))
            }
        }
    }
    Ok(out)
}

/// The llama.cpp pre-tokenizer name for a byte-level BPE tokenizer, and whether it ignores
/// merges for whole-token words (which must agree with the tokenizer's own setting).
fn pre_name(j: &Json) -> Result<&'static str> {
    let regexes = split_regexes(&j["pre_tokenizer"])?;
    let ignore = j["model"]["ignore_merges"].as_bool().unwrap_or(false);
    for name in PRE_NAMES {
        let (r, ig) = bpe_pre(name)?;
        if r == regexes && ig == ignore {
            return Ok(name);
        }
    }
    Err(err(format!(
        "the pre-tokenizer (regexes {regexes:?}, ignore_merges {ignore}) matches none of \
         llama.cpp's {PRE_NAMES:?}"
    )))
}

fn merge_strings(model: &Json) -> Result<Vec<String>> {
    let merges = model["merges"].as_array().ok_or_else(|| err("BPE model without merges"))?;
    merges
        .iter()
        .map(|m| match m {
            Json::String(s) => Ok(s.clone()),
            Json::Array(p) if p.len() == 2 => match (p[0].as_str(), p[1].as_str()) {
                (Some(a), Some(b)) => Ok(format!("{a} {b}")),
                _ => Err(err("a merge that is not two strings")),
            },
            _ => Err(err("a merge that is neither \"a b\" nor [a, b]")),
        })
        .collect()
}

fn strings(v: Vec<String>) -> Value {
    Value::Array(ValueType::String, v.into_iter().map(Value::String).collect())
}

/// The GGUF vocabulary keys for `tk`, with the token list padded to `n_vocab` (the embedding's
/// rows) as llama.cpp's converter pads it.
pub fn gguf_vocab(tk: &Tokenizer, n_vocab: usize) -> Result<Vec<(String, Value)>> {
    let j: Json = serde_json::from_str(&tk.to_json()?).map_err(|e| err(e.to_string()))?;
    let model = &j["model"];
    if model["type"].as_str() != Some("BPE") {
        return Err(err(format!(
            "tokenizer model {:?} cannot be written as a GGUF vocabulary (BPE can)",
            model["type"]
        )));
    }
    let vocab = model["vocab"].as_object().ok_or_else(|| err("BPE model without a vocab"))?;
    let mut tokens: Vec<Option<String>> = Vec::new();
    let mut types: Vec<i64> = Vec::new();
    let mut put = |id: u64, s: &str, ty: i64| {
        let id = id as usize;
        if tokens.len() <= id {
            tokens.resize(id + 1, None);
            types.resize(id + 1, TOKEN_UNUSED);
        }
        tokens[id] = Some(s.to_string());
        types[id] = ty;
    };
    for (s, id) in vocab {
        let id = id.as_u64().ok_or_else(|| err(format!("token {s:?} has no integer id")))?;
        put(id, s, TOKEN_NORMAL);
    }
    for a in j["added_tokens"].as_array().into_iter().flatten() {
        let (Some(id), Some(s)) = (a["id"].as_u64(), a["content"].as_str()) else {
            return Err(err("an added token without id or content"));
        };
        let special = a["special"].as_bool().unwrap_or(false);
        put(id, s, if special { TOKEN_CONTROL } else { TOKEN_USER_DEFINED });
    }
    if tokens.len() > n_vocab {
        return Err(err(format!(
            "the tokenizer has {} tokens, the model's embedding only {n_vocab}",
            tokens.len()
        )));
    }
    tokens.resize(n_vocab, None);
    types.resize(n_vocab, TOKEN_UNUSED);
    let tokens: Vec<String> = tokens
        .into_iter()
        .enumerate()
        .map(|(i, t)| t.unwrap_or_else(|| format!("[PAD{i}]")))
        .collect();

    let merges = merge_strings(model)?;
    let mut keys: Vec<(String, Value)> = Vec::new();
    let byte_fallback = model["byte_fallback"].as_bool().unwrap_or(false);
    if !byte_fallback {
        keys.push(("tokenizer.ggml.model".into(), Value::String("gpt2".into())));
        keys.push(("tokenizer.ggml.pre".into(), Value::String(pre_name(&j)?.into())));
        keys.push(("tokenizer.ggml.merges".into(), strings(merges)));
    } else {
        let index: HashMap<&str, usize> =
            tokens.iter().enumerate().map(|(i, t)| (t.as_str(), i)).collect();
        let mut scores = vec![0f32; n_vocab];
        let mut ranked = vec![false; n_vocab];
        for (rank, m) in merges.iter().enumerate() {
            if let Some(&id) = index.get(m.replacen(' ', "", 1).as_str()) {
                if !ranked[id] {
                    ranked[id] = true;
                    scores[id] = -(rank as f32);
                }
            }
        }
        for (i, t) in tokens.iter().enumerate() {
            let is_byte = t.len() == 6 && t.starts_with("<0x") && t.ends_with('>');
            if types[i] == TOKEN_NORMAL && is_byte {
                types[i] = TOKEN_BYTE;
            }
        }
        if let Some(&unk) = model["unk_token"].as_str().and_then(|u| index.get(u)) {
            types[unk] = TOKEN_UNKNOWN;
            keys.push(("tokenizer.ggml.unknown_token_id".into(), Value::U32(unk as u32)));
        }
        let prefix = j["normalizer"].to_string().contains("Prepend");
        keys.push(("tokenizer.ggml.model".into(), Value::String("llama".into())));
        keys.push((
            "tokenizer.ggml.scores".into(),
            Value::Array(ValueType::F32, scores.into_iter().map(Value::F32).collect()),
        ));
        keys.push(("tokenizer.ggml.add_space_prefix".into(), Value::Bool(prefix)));
    }
    keys.push(("tokenizer.ggml.tokens".into(), strings(tokens)));
    keys.push((
        "tokenizer.ggml.token_type".into(),
        Value::Array(ValueType::I32, types.into_iter().map(|t| Value::I32(t as i32)).collect()),
    ));
    if let Some(b) = tk.bos {
        keys.push(("tokenizer.ggml.bos_token_id".into(), Value::U32(b)));
    }
    if let Some(e) = tk.eos {
        keys.push(("tokenizer.ggml.eos_token_id".into(), Value::U32(e)));
    }
    keys.push(("tokenizer.ggml.add_bos_token".into(), Value::Bool(tk.add_bos)));
    Ok(keys)
}
