//! The request bodies of the OpenAI API as this server reads them, and their checks: a field of
//! the wrong type or out of range is a 400 naming it; fields this server does not know are
//! ignored, as OpenAI-compatible servers do.

use crate::error::ApiError;
use bitnet_infer::chat::Message;
use bitnet_infer::sampling::SamplerConfig;
use serde::Deserialize;
use std::collections::HashMap;

/// Most `top_logprobs` a request may ask for (OpenAI's limit).
pub const MAX_TOP_LOGPROBS: usize = 20;

/// A string or a list of strings (`stop`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// `stream_options`.
#[derive(Debug, Default, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

/// The fields both completion routes share.
#[derive(Debug, Default, Deserialize)]
pub struct Common {
    pub model: Option<String>,
    pub max_tokens: Option<i64>,
    pub max_completion_tokens: Option<i64>,
    /// llama-server's name for `max_tokens`.
    pub n_predict: Option<i64>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<i64>,
    pub min_p: Option<f32>,
    pub repeat_penalty: Option<f32>,
    pub repeat_last_n: Option<i64>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub seed: Option<u64>,
    pub stop: Option<OneOrMany>,
    pub logit_bias: Option<HashMap<String, f32>>,
    pub n: Option<i64>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    /// llama-server's: generate through end-of-sequence tokens (for benchmarks).
    #[serde(default)]
    pub ignore_eos: bool,
}

/// A chat message's content: a string, or a list of parts of which only text is supported.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Deserialize)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: Option<Content>,
}

/// `POST /v1/chat/completions`.
#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    pub messages: Vec<ChatMessage>,
    #[serde(default)]
    pub logprobs: bool,
    pub top_logprobs: Option<i64>,
    #[serde(flatten)]
    pub common: Common,
}

/// A completion prompt: text or token ids (a list of one of either is accepted too).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    Text(String),
    Tokens(Vec<u32>),
    Texts(Vec<String>),
    TokenLists(Vec<Vec<u32>>),
}

/// `POST /v1/completions`.
#[derive(Debug, Deserialize)]
pub struct CompletionRequest {
    pub prompt: Prompt,
    /// The legacy API's number of top log-probabilities per token.
    pub logprobs: Option<i64>,
    #[serde(flatten)]
    pub common: Common,
}

/// `POST /tokenize`.
#[derive(Debug, Deserialize)]
pub struct TokenizeRequest {
    pub content: String,
    #[serde(default)]
    pub add_special: bool,
    #[serde(default)]
    pub with_pieces: bool,
}

/// `POST /detokenize`.
#[derive(Debug, Deserialize)]
pub struct DetokenizeRequest {
    pub tokens: Vec<u32>,
}

/// Parses a JSON body into `T`; the error names what is wrong and where.
pub fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        let what = if e.is_syntax() || e.is_eof() { "malformed JSON" } else { "invalid request" };
        ApiError::BadRequest(format!("{what}: {e}"))
    })
}

/// What a request asks the engine for, checked.
#[derive(Debug, Clone)]
pub struct GenParams {
    /// At most this many tokens (`None`: until a stop or the context is full).
    pub max_tokens: Option<usize>,
    pub sampler: SamplerConfig,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    pub logit_bias: Vec<(u32, f32)>,
    pub stop_strings: Vec<String>,
    /// Log-probabilities of each chosen token plus this many alternatives, when asked.
    pub logprobs: Option<usize>,
    /// End-of-sequence tokens do not end the generation.
    pub ignore_eos: bool,
}

fn bad(msg: String) -> ApiError {
    ApiError::BadRequest(msg)
}

fn check_range(name: &str, v: Option<f32>, lo: f32, hi: f32) -> Result<Option<f32>, ApiError> {
    match v {
        Some(x) if !(x.is_finite() && (lo..=hi).contains(&x)) => {
            Err(bad(format!("`{name}` must be between {lo} and {hi}, got {x}")))
        }
        other => Ok(other),
    }
}

impl Common {
    /// The checked parameters; `vocab` bounds `logit_bias`, `logprobs` is the asked number of
    /// alternatives (when log-probabilities are wanted).
    pub fn params(&self, vocab: usize, logprobs: Option<usize>) -> Result<GenParams, ApiError> {
        if let Some(n) = self.n.filter(|&n| n != 1) {
            return Err(bad(format!("`n` = {n}: this server returns one choice per request")));
        }
        let max = self.max_completion_tokens.or(self.max_tokens).or(self.n_predict);
        let max_tokens = match max {
            None | Some(-1) => None,
            Some(m) if m >= 1 => Some(m as usize),
            Some(m) => return Err(bad(format!("`max_tokens` must be at least 1, got {m}"))),
        };
        let d = SamplerConfig::default();
        let temperature = check_range("temperature", self.temperature, 0.0, 2.0)?;
        let top_p = check_range("top_p", self.top_p, 0.0, 1.0)?;
        if top_p == Some(0.0) {
            return Err(bad("`top_p` must be above 0".into()));
        }
        let min_p = check_range("min_p", self.min_p, 0.0, 1.0)?;
        let repeat = check_range("repeat_penalty", self.repeat_penalty, 0.0, 10.0)?;
        if repeat == Some(0.0) {
            return Err(bad("`repeat_penalty` must be above 0".into()));
        }
        let presence = check_range("presence_penalty", self.presence_penalty, -2.0, 2.0)?;
        let frequency = check_range("frequency_penalty", self.frequency_penalty, -2.0, 2.0)?;
        let top_k = match self.top_k {
            None => d.top_k,
            Some(k) if k <= 0 => 0,
            Some(k) => k as usize,
        };
        let repeat_last_n = match self.repeat_last_n {
            None => d.repeat_last_n,
            Some(n) if n < 0 => usize::MAX,
            Some(n) => n as usize,
        };
        let seed = self.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|t| t.as_nanos() as u64)
                .unwrap_or(0)
        });
        let sampler = SamplerConfig {
            temperature: temperature.unwrap_or(d.temperature),
            top_k,
            top_p: top_p.unwrap_or(d.top_p),
            min_p: min_p.unwrap_or(d.min_p),
            repeat_penalty: repeat.unwrap_or(d.repeat_penalty),
            repeat_last_n,
            seed,
        };
        let mut logit_bias = Vec::new();
        for (k, &b) in self.logit_bias.iter().flatten() {
            let id: u32 =
                k.parse().ok().filter(|&i: &u32| (i as usize) < vocab).ok_or_else(|| {
                    bad(format!("`logit_bias` key {k:?} is not a token id below {vocab}"))
                })?;
            if !b.is_finite() || !(-100.0..=100.0).contains(&b) {
                return Err(bad(format!("`logit_bias` of token {id} must be in [-100, 100]")));
            }
            logit_bias.push((id, b));
        }
        logit_bias.sort_by_key(|&(id, _)| id);
        let stop_strings = match &self.stop {
            None => vec![],
            Some(OneOrMany::One(s)) => vec![s.clone()],
            Some(OneOrMany::Many(v)) => v.clone(),
        };
        let stop_strings: Vec<String> =
            stop_strings.into_iter().filter(|s| !s.is_empty()).collect();
        if stop_strings.len() > 16 {
            return Err(bad("`stop` takes at most 16 strings".into()));
        }
        if let Some(n) = logprobs.filter(|&n| n > MAX_TOP_LOGPROBS) {
            return Err(bad(format!("at most {MAX_TOP_LOGPROBS} top log-probabilities, got {n}")));
        }
        Ok(GenParams {
            max_tokens,
            sampler,
            presence_penalty: presence.unwrap_or(0.0),
            frequency_penalty: frequency.unwrap_or(0.0),
            logit_bias,
            stop_strings,
            logprobs,
            ignore_eos: self.ignore_eos,
        })
    }

    pub fn include_usage(&self) -> bool {
        self.stream_options.as_ref().is_some_and(|o| o.include_usage)
    }
}

impl ChatRequest {
    /// The conversation; a message must have text content.
    pub fn messages(&self) -> Result<Vec<Message>, ApiError> {
        if self.messages.is_empty() {
            return Err(bad("`messages` is empty".into()));
        }
        self.messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let content = match &m.content {
                    None => String::new(),
                    Some(Content::Text(s)) => s.clone(),
                    Some(Content::Parts(parts)) => {
                        let mut s = String::new();
                        for p in parts {
                            match (p.kind.as_str(), &p.text) {
                                ("text", Some(t)) => s.push_str(t),
                                (kind, _) => {
                                    return Err(bad(format!(
                                        "messages[{i}]: content parts of type {kind:?} are not \
                                         supported (text only)"
                                    )))
                                }
                            }
                        }
                        s
                    }
                };
                Ok(Message { role: m.role.clone(), content })
            })
            .collect()
    }

    /// How many alternatives to report per token, when log-probabilities are asked for.
    pub fn logprobs(&self) -> Result<Option<usize>, ApiError> {
        match (self.logprobs, self.top_logprobs) {
            (_, Some(n)) if n < 0 => Err(bad(format!("`top_logprobs` must be >= 0, got {n}"))),
            (false, Some(n)) if n > 0 => {
                Err(bad("`top_logprobs` needs `logprobs` set to true".into()))
            }
            (true, n) => Ok(Some(n.unwrap_or(0) as usize)),
            (false, _) => Ok(None),
        }
    }
}

impl CompletionRequest {
    pub fn logprobs(&self) -> Result<Option<usize>, ApiError> {
        match self.logprobs {
            None => Ok(None),
            Some(n) if n < 0 => Err(bad(format!("`logprobs` must be >= 0, got {n}"))),
            Some(n) => Ok(Some(n as usize)),
        }
    }
}
