//! The answers of the completion routes, shaped as OpenAI's: a whole response collected from a
//! request's events, or a server-sent-events stream of chunks ending in `data: [DONE]`.

use crate::error::ApiError;
use crate::scheduler::{Event, FinishReason, TokenLogprob, Usage};
use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use bitnet_infer::Tokenizer;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// How long a stream stays silent before a `:` keep-alive comment (a long prompt is running).
pub const KEEP_ALIVE: Duration = Duration::from_secs(2);

/// Which route a reply answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Chat,
    Completion,
}

/// What every object of one reply shares.
#[derive(Debug, Clone)]
pub struct ReplyMeta {
    pub route: Route,
    pub id: String,
    pub created: u64,
    pub model: String,
    /// Log-probabilities were asked for.
    pub logprobs: bool,
    /// A streamed reply ends with a usage chunk.
    pub include_usage: bool,
    pub tok: Arc<Tokenizer>,
}

/// A fresh id with OpenAI's prefix (`chatcmpl-`, `cmpl-`).
pub fn new_id(route: Route) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let t = unix_time_nanos();
    let prefix = match route {
        Route::Chat => "chatcmpl",
        Route::Completion => "cmpl",
    };
    format!("{prefix}-{:016x}{n:08x}", t as u64 ^ (t >> 64) as u64)
}

fn unix_time_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// Seconds since the Unix epoch.
pub fn unix_time() -> u64 {
    (unix_time_nanos() / 1_000_000_000) as u64
}

pub fn usage_json(u: &Usage) -> Value {
    json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
        "prompt_tokens_details": { "cached_tokens": u.cached_tokens },
    })
}

impl ReplyMeta {
    fn piece(&self, id: u32) -> String {
        self.tok.decode(&[id]).unwrap_or_default()
    }

    /// Chat's `logprobs.content` entries of `lps`.
    fn chat_logprobs(&self, lps: &[TokenLogprob]) -> Value {
        let entry = |id: u32, lp: f32| {
            let p = self.piece(id);
            json!({ "token": p, "logprob": lp, "bytes": p.as_bytes() })
        };
        let content: Vec<Value> = lps
            .iter()
            .map(|t| {
                let mut e = entry(t.token, t.logprob);
                e["top_logprobs"] = t.top.iter().map(|&(id, lp)| entry(id, lp)).collect();
                e
            })
            .collect();
        json!({ "content": content })
    }

    /// The legacy completions' `logprobs` object of `lps`, whose text starts at byte `offset`.
    fn completion_logprobs(&self, lps: &[TokenLogprob], mut offset: usize) -> Value {
        let mut tokens = Vec::new();
        let mut text_offset = Vec::new();
        for t in lps {
            let p = self.piece(t.token);
            text_offset.push(offset);
            offset += p.len();
            tokens.push(p);
        }
        let top: Vec<Value> = lps
            .iter()
            .map(|t| {
                let m: serde_json::Map<String, Value> =
                    t.top.iter().map(|&(id, lp)| (self.piece(id), json!(lp))).collect();
                Value::Object(m)
            })
            .collect();
        json!({
            "tokens": tokens,
            "token_logprobs": lps.iter().map(|t| t.logprob).collect::<Vec<_>>(),
            "top_logprobs": top,
            "text_offset": text_offset,
        })
    }

    fn logprobs_json(&self, lps: &[TokenLogprob], offset: usize) -> Value {
        match (self.logprobs, self.route) {
            (false, _) => Value::Null,
            (true, Route::Chat) => self.chat_logprobs(lps),
            (true, Route::Completion) => self.completion_logprobs(lps, offset),
        }
    }

    /// The non-streamed response.
    pub fn whole(
        &self,
        text: &str,
        lps: &[TokenLogprob],
        finish: FinishReason,
        u: &Usage,
    ) -> Value {
        let (object, choice) = match self.route {
            Route::Chat => (
                "chat.completion",
                json!({
                    "index": 0,
                    "message": { "role": "assistant", "content": text },
                    "logprobs": self.logprobs_json(lps, 0),
                    "finish_reason": finish.as_str(),
                }),
            ),
            Route::Completion => (
                "text_completion",
                json!({
                    "index": 0,
                    "text": text,
                    "logprobs": self.logprobs_json(lps, 0),
                    "finish_reason": finish.as_str(),
                }),
            ),
        };
        json!({
            "id": self.id,
            "object": object,
            "created": self.created,
            "model": self.model,
            "choices": [choice],
            "usage": usage_json(u),
        })
    }

    /// One streamed chunk: `text` (with the role, for chat's first), its log-probabilities and
    /// the finish reason of the last.
    fn chunk(
        &self,
        text: Option<&str>,
        first: bool,
        lps: &[TokenLogprob],
        offset: usize,
        finish: Option<FinishReason>,
    ) -> Value {
        let finish = finish.map(FinishReason::as_str);
        let (object, choice) = match self.route {
            Route::Chat => {
                let mut delta = serde_json::Map::new();
                if first {
                    delta.insert("role".into(), json!("assistant"));
                }
                if let Some(t) = text {
                    delta.insert("content".into(), json!(t));
                }
                (
                    "chat.completion.chunk",
                    json!({
                        "index": 0,
                        "delta": delta,
                        "logprobs": self.logprobs_json(lps, offset),
                        "finish_reason": finish,
                    }),
                )
            }
            Route::Completion => (
                "text_completion",
                json!({
                    "index": 0,
                    "text": text.unwrap_or(""),
                    "logprobs": self.logprobs_json(lps, offset),
                    "finish_reason": finish,
                }),
            ),
        };
        json!({
            "id": self.id,
            "object": object,
            "created": self.created,
            "model": self.model,
            "choices": [choice],
        })
    }

    fn usage_chunk(&self, u: &Usage) -> Value {
        let object = match self.route {
            Route::Chat => "chat.completion.chunk",
            Route::Completion => "text_completion",
        };
        json!({
            "id": self.id,
            "object": object,
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": usage_json(u),
        })
    }
}

/// Waits for a request's events and answers them as one response.
pub async fn collect(meta: ReplyMeta, mut rx: mpsc::UnboundedReceiver<Event>) -> Response {
    let mut text = String::new();
    let mut lps = Vec::new();
    loop {
        match rx.recv().await {
            Some(Event::Token { text: t, logprob }) => {
                text.push_str(&t);
                lps.extend(logprob);
            }
            Some(Event::Done { text: t, finish, usage }) => {
                text.push_str(&t);
                return axum::Json(meta.whole(&text, &lps, finish, &usage)).into_response();
            }
            Some(Event::Error(e)) => return e.into_response(),
            None => return engine_gone().into_response(),
        }
    }
}

fn engine_gone() -> ApiError {
    ApiError::Internal("the engine stopped before the request finished".into())
}

fn data(v: &Value) -> String {
    format!("data: {v}\n\n")
}

/// Where a stream is.
struct StreamState {
    meta: ReplyMeta,
    rx: mpsc::UnboundedReceiver<Event>,
    first: bool,
    /// Bytes of text sent so far (the completions' `text_offset`).
    offset: usize,
    done: bool,
}

impl StreamState {
    /// The next frame: chunks, a keep-alive comment, or the end (`None`).
    async fn next(&mut self) -> Option<String> {
        if self.done {
            return None;
        }
        if self.first && self.meta.route == Route::Chat {
            self.first = false;
            return Some(data(&self.meta.chunk(Some(""), true, &[], 0, None)));
        }
        loop {
            let event = match tokio::time::timeout(KEEP_ALIVE, self.rx.recv()).await {
                Err(_) => return Some(": keep-alive\n\n".into()),
                Ok(e) => e,
            };
            match event {
                Some(Event::Token { text, logprob }) => {
                    let lps: Vec<_> = logprob.into_iter().collect();
                    if text.is_empty() && lps.is_empty() {
                        continue;
                    }
                    let c = self.meta.chunk(Some(&text), self.first, &lps, self.offset, None);
                    self.first = false;
                    self.offset += text.len();
                    return Some(data(&c));
                }
                Some(Event::Done { text, finish, usage }) => {
                    self.done = true;
                    let mut out = String::new();
                    if !text.is_empty() {
                        out += &data(&self.meta.chunk(
                            Some(&text),
                            self.first,
                            &[],
                            self.offset,
                            None,
                        ));
                        self.first = false;
                    }
                    let end_text = match self.meta.route {
                        Route::Chat => None,
                        Route::Completion => Some(""),
                    };
                    out += &data(&self.meta.chunk(
                        end_text,
                        self.first,
                        &[],
                        self.offset,
                        Some(finish),
                    ));
                    if self.meta.include_usage {
                        out += &data(&self.meta.usage_chunk(&usage));
                    }
                    out += "data: [DONE]\n\n";
                    return Some(out);
                }
                Some(Event::Error(e)) => {
                    self.done = true;
                    return Some(data(&e.body()));
                }
                None => {
                    self.done = true;
                    return Some(data(&engine_gone().body()));
                }
            }
        }
    }
}

/// The streamed response. Dropping it (the client went away) drops `rx`, which frees the
/// request's slot at the engine's next step.
pub fn stream(meta: ReplyMeta, rx: mpsc::UnboundedReceiver<Event>) -> Response {
    let st = StreamState { meta, rx, first: true, offset: 0, done: false };
    let frames = futures_util::stream::unfold(st, |mut st| async move {
        let frame = st.next().await?;
        Some((Ok::<_, Infallible>(Bytes::from(frame)), st))
    });
    let mut r = Body::from_stream(frames).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}
