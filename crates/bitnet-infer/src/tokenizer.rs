//! Tokenizers: a Hugging Face `tokenizer.json`, or the vocabulary inside a GGUF file
//! (`tokenizer.ggml.*`), rebuilt as an equivalent `tokenizers` pipeline:
//!
//! - `gpt2` models (byte-level BPE with merges): llama.cpp's pre-tokenizer regexes for the file's
//!   `tokenizer.ggml.pre` (`llama-bpe`, `gpt-2`, `smollm`, `default`, ...), applied in sequence
//!   as isolating splits, then the byte-level mapping; LLaMA-3 style vocabularies ignore merges
//!   for words that are whole tokens, as llama.cpp does.
//! - `llama` models (SentencePiece with scores, byte fallback): the merges are derived from the
//!   scores (a piece merges from any two pieces it splits into, ranked by its score), a space
//!   prefix is added when `tokenizer.ggml.add_space_prefix` says so, and spaces become `▁`.

use crate::error::{InferError, Result};
use crate::gguf::{GgufHeader, Value};
use serde_json::{json, Value as Json};
use std::collections::HashMap;
use std::path::Path;

/// llama.cpp token types.
pub(crate) const TOKEN_NORMAL: i64 = 1;
pub(crate) const TOKEN_CONTROL: i64 = 3;
pub(crate) const TOKEN_USER_DEFINED: i64 = 4;

pub(crate) const LLAMA3_REGEX: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
pub(crate) const GPT2_REGEX: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";

/// The pre-tokenizer regexes (applied in order) and whether merges are ignored for whole-token
/// words, for a `tokenizer.ggml.pre` name, following llama.cpp.
pub(crate) fn bpe_pre(pre: &str) -> Result<(Vec<&'static str>, bool)> {
    Ok(match pre {
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "pixtral" => (vec![LLAMA3_REGEX], true),
        "dbrx" | "smaug-bpe" => (vec![LLAMA3_REGEX], false),
        "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gpt2" | "mpt" | "olmo" | "jais" => {
            (vec![GPT2_REGEX], false)
        }
        "starcoder" | "refact" | "command-r" | "smollm" | "codeshell" | "exaone" | "minerva-7b" => {
            (vec![r"\p{N}", GPT2_REGEX], false)
        }
        "default" => {
            (vec![r"[\p{P}\$\+<=>\^~\|]+", GPT2_REGEX, r"\p{N}+", "[0-9][0-9][0-9]"], false)
        }
        other => {
            return Err(InferError::Tokenizer(format!(
                "GGUF pre-tokenizer {other:?} is not supported (llama-bpe, gpt-2, smollm, \
                 starcoder, default, ... are)"
            )))
        }
    })
}

/// A tokenizer plus the special ids the engine needs.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    /// Whether prompts start with BOS.
    pub add_bos: bool,
    /// Ids that end generation: EOS plus end-of-turn tokens such as `<|eot_id|>`, `<|im_end|>`.
    pub stop_ids: Vec<u32>,
    vocab_size: usize,
}

fn tok_err(e: impl std::fmt::Display) -> InferError {
    InferError::Tokenizer(e.to_string())
}

const END_OF_TURN: [&str; 4] = ["<|eot_id|>", "<|im_end|>", "<|end_of_text|>", "</s>"];

impl Tokenizer {
    fn finish(
        inner: tokenizers::Tokenizer,
        bos: Option<u32>,
        eos: Option<u32>,
        add_bos: bool,
    ) -> Self {
        let mut stop_ids: Vec<u32> = eos.into_iter().collect();
        for s in END_OF_TURN {
            if let Some(id) = inner.token_to_id(s) {
                if !stop_ids.contains(&id) {
                    stop_ids.push(id);
                }
            }
        }
        let vocab_size = inner.get_vocab_size(true);
        Self { inner, bos, eos, add_bos, stop_ids, vocab_size }
    }

    /// Loads a `tokenizer.json`; BOS/EOS come from a `tokenizer_config.json` beside it when
    /// there is one, else from the usual token names.
    pub fn from_file(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| InferError::io(path, e))?;
        let inner = tokenizers::Tokenizer::from_bytes(&bytes)
            .map_err(|e| InferError::Tokenizer(format!("{}: {e}", path.display())))?;
        let config: Option<Json> = path
            .parent()
            .map(|d| d.join("tokenizer_config.json"))
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|s| serde_json::from_str(&s).ok());
        let named = |key: &str, fallback: &[&str]| {
            let from_cfg = config.as_ref().and_then(|c| match &c[key] {
                Json::String(s) => Some(s.clone()),
                Json::Object(o) => o.get("content").and_then(|v| v.as_str()).map(String::from),
                _ => None,
            });
            from_cfg
                .and_then(|s| inner.token_to_id(&s))
                .or_else(|| fallback.iter().find_map(|s| inner.token_to_id(s)))
        };
        let bos = named("bos_token", &["<|begin_of_text|>", "<s>"]);
        let eos = named("eos_token", &["<|end_of_text|>", "</s>", "<|endoftext|>"]);
        // `add_bos_token` when the config says; else whether the post-processor puts BOS in
        // front (encode() applies no post-processor, so BOS is added explicitly); else whether
        // the vocabulary has a BOS at all.
        let template_bos = || match inner.get_post_processor() {
            Some(_) => {
                let enc = inner.encode("a", true).ok();
                bos.is_some() && enc.and_then(|e| e.get_ids().first().copied()) == bos
            }
            None => bos.is_some(),
        };
        let add_bos =
            config.as_ref().and_then(|c| c["add_bos_token"].as_bool()).unwrap_or_else(template_bos);
        Ok(Self::finish(inner, bos, eos, add_bos))
    }

    /// Rebuilds the tokenizer a GGUF file carries.
    pub fn from_gguf(h: &GgufHeader) -> Result<Self> {
        let model = h.get_str("tokenizer.ggml.model")?;
        let tokens = string_array(h, "tokenizer.ggml.tokens")?;
        let types =
            array(h, "tokenizer.ggml.token_type", "integers", |v| v.as_f64().map(|f| f as i64))?
                .unwrap_or_else(|| vec![TOKEN_NORMAL; tokens.len()]);
        if types.len() != tokens.len() {
            return Err(tok_err(format!(
                "{} token types for {} tokens",
                types.len(),
                tokens.len()
            )));
        }
        let id = |k: &str| h.get(k).and_then(|v| v.as_u64()).map(|v| v as u32);
        let (bos, eos) = (id("tokenizer.ggml.bos_token_id"), id("tokenizer.ggml.eos_token_id"));
        let flag = |k: &str| h.get(k).and_then(|v| v.as_bool());
        let mut vocab = serde_json::Map::with_capacity(tokens.len());
        for (i, t) in tokens.iter().enumerate() {
            vocab.entry(t.clone()).or_insert(json!(i));
        }
        let added: Vec<Json> = tokens
            .iter()
            .zip(&types)
            .enumerate()
            .filter(|(_, (_, &ty))| ty == TOKEN_CONTROL || ty == TOKEN_USER_DEFINED)
            .map(|(i, (t, &ty))| {
                json!({"id": i, "content": t, "single_word": false, "lstrip": false,
                       "rstrip": false, "normalized": false, "special": ty == TOKEN_CONTROL})
            })
            .collect();
        let (spec, add_bos_default) = match model {
            "gpt2" => {
                let merges = string_array(h, "tokenizer.ggml.merges")?;
                let pre = h.get("tokenizer.ggml.pre").and_then(|v| v.as_str()).unwrap_or("default");
                let (regexes, ignore_merges) = bpe_pre(pre)?;
                let mut pts: Vec<Json> = regexes
                    .iter()
                    .map(|r| {
                        json!({"type": "Split", "pattern": {"Regex": r},
                                    "behavior": "Isolated", "invert": false})
                    })
                    .collect();
                pts.push(json!({"type": "ByteLevel", "add_prefix_space": false,
                                "trim_offsets": false, "use_regex": false}));
                let spec = json!({
                    "version": "1.0", "truncation": null, "padding": null,
                    "added_tokens": added, "normalizer": null,
                    "pre_tokenizer": {"type": "Sequence", "pretokenizers": pts},
                    "post_processor": null,
                    "decoder": {"type": "ByteLevel", "add_prefix_space": false,
                                "trim_offsets": false, "use_regex": false},
                    "model": {"type": "BPE", "dropout": null, "unk_token": null,
                              "continuing_subword_prefix": null, "end_of_word_suffix": null,
                              "fuse_unk": false, "byte_fallback": false,
                              "ignore_merges": ignore_merges, "vocab": vocab, "merges": merges}
                });
                (spec, false)
            }
            "llama" => {
                let scores =
                    array(h, "tokenizer.ggml.scores", "numbers", |v| v.as_f64().map(|f| f as f32))?
                        .unwrap_or_else(|| vec![0.0; tokens.len()]);
                if scores.len() != tokens.len() {
                    return Err(tok_err(format!(
                        "{} scores for {} tokens",
                        scores.len(),
                        tokens.len()
                    )));
                }
                let merges = spm_merges(&tokens, &types, &scores);
                let unk = id("tokenizer.ggml.unknown_token_id")
                    .and_then(|i| tokens.get(i as usize).cloned())
                    .unwrap_or_else(|| "<unk>".into());
                let mut norms = vec![];
                if flag("tokenizer.ggml.add_space_prefix").unwrap_or(true) {
                    norms.push(json!({"type": "Prepend", "prepend": "\u{2581}"}));
                }
                norms.push(json!({"type": "Replace", "pattern": {"String": " "},
                                  "content": "\u{2581}"}));
                let spec = json!({
                    "version": "1.0", "truncation": null, "padding": null,
                    "added_tokens": added,
                    "normalizer": {"type": "Sequence", "normalizers": norms},
                    "pre_tokenizer": null, "post_processor": null,
                    "decoder": {"type": "Sequence", "decoders": [
                        {"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "},
                        {"type": "ByteFallback"}, {"type": "Fuse"},
                        {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
                    "model": {"type": "BPE", "dropout": null, "unk_token": unk,
                              "continuing_subword_prefix": null, "end_of_word_suffix": null,
                              "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
                              "vocab": vocab, "merges": merges}
                });
                (spec, true)
            }
            other => {
                return Err(tok_err(format!(
                    "GGUF tokenizer model {other:?} is not supported (gpt2 and llama are)"
                )))
            }
        };
        let bytes = serde_json::to_vec(&spec).map_err(tok_err)?;
        let inner = tokenizers::Tokenizer::from_bytes(&bytes).map_err(tok_err)?;
        let add_bos = flag("tokenizer.ggml.add_bos_token").unwrap_or(add_bos_default);
        Ok(Self::finish(inner, bos, eos, add_bos))
    }

    /// Token ids of `text` (special-token text such as `<|im_start|>` becomes its id), with BOS
    /// in front when `bos` is set and the model has one.
    pub fn encode(&self, text: &str, bos: bool) -> Result<Vec<u32>> {
        let enc = self.inner.encode_fast(text, false).map_err(tok_err)?;
        let mut ids = Vec::with_capacity(enc.len() + 1);
        if bos {
            ids.extend(self.bos);
        }
        ids.extend_from_slice(enc.get_ids());
        Ok(ids)
    }

    /// The text of `ids` (special tokens included, as llama.cpp prints them).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        if let Some(&id) = ids.iter().find(|&&i| i as usize >= self.vocab_size()) {
            return Err(InferError::TokenOutOfRange { id, vocab: self.vocab_size() });
        }
        self.inner.decode(ids, false).map_err(tok_err)
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }
}

/// The elements of an array key converted by `conv`; `None` when the key is absent.
fn array<T>(
    h: &GgufHeader,
    key: &str,
    what: &str,
    conv: impl Fn(&Value) -> Option<T>,
) -> Result<Option<Vec<T>>> {
    let Some(v) = h.get(key) else { return Ok(None) };
    let bad =
        || InferError::BadKey { key: key.into(), msg: format!("expected an array of {what}") };
    let arr = v.as_array().ok_or_else(bad)?;
    arr.iter().map(&conv).collect::<Option<Vec<T>>>().map(Some).ok_or_else(bad)
}

fn string_array(h: &GgufHeader, key: &str) -> Result<Vec<String>> {
    array(h, key, "strings", |v| v.as_str().map(String::from))?
        .ok_or_else(|| InferError::MissingKey { key: key.into() })
}

/// SentencePiece merges recovered from scores: every normal piece merges from each pair of
/// pieces it splits into (at character boundaries), ranked by the piece's score.
fn spm_merges(tokens: &[String], types: &[i64], scores: &[f32]) -> Vec<Json> {
    let index: HashMap<&str, usize> = tokens
        .iter()
        .enumerate()
        .filter(|(i, _)| types[*i] == TOKEN_NORMAL || types[*i] == TOKEN_USER_DEFINED)
        .map(|(i, t)| (t.as_str(), i))
        .collect();
    let mut merges: Vec<(f32, usize, usize, Json)> = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        if types[i] != TOKEN_NORMAL || t.chars().count() < 2 {
            continue;
        }
        for (cut, _) in t.char_indices().skip(1) {
            let (l, r) = t.split_at(cut);
            if let (Some(&li), Some(&ri)) = (index.get(l), index.get(r)) {
                merges.push((scores[i], li, ri, json!([l, r])));
            }
        }
    }
    merges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    merges.into_iter().map(|m| m.3).collect()
}

impl Tokenizer {
    /// The `tokenizer.json` text of this tokenizer (for a GGUF vocabulary, the rebuilt pipeline).
    pub fn to_json(&self) -> Result<String> {
        self.inner.to_string(true).map_err(tok_err)
    }

    /// The text of token `id` as the vocabulary spells it.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }
}
