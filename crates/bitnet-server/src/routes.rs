//! The HTTP side: the router, its handlers and middleware (API key, CORS, status counts). The
//! handlers check and tokenize a request, hand a [`Job`] to the engine's queue and answer from
//! the job's events; they never touch the engine.

use crate::api::{
    self, ChatRequest, CompletionRequest, DetokenizeRequest, Prompt, TokenizeRequest,
};
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::reply::{self, new_id, unix_time, ReplyMeta, Route};
use crate::scheduler::{Event, Job, STOPPING};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bitnet_infer::chat::{encode_chat_prompt, PromptTemplate};
use bitnet_infer::Tokenizer;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;
use tokio::sync::mpsc;

/// What the handlers need once the model is loaded.
#[derive(Debug)]
pub struct Ready {
    pub tok: Arc<Tokenizer>,
    pub template: Box<dyn PromptTemplate>,
    /// The engine's queue; taken away when the server stops accepting work.
    pub queue: Mutex<Option<mpsc::Sender<Job>>>,
    pub queue_capacity: usize,
    /// Tokens of context each request can use.
    pub slot_ctx: usize,
    pub slots: usize,
    pub vocab: usize,
    pub model_id: String,
    pub created: u64,
}

/// The state every handler shares.
#[derive(Debug)]
pub struct AppState {
    /// Set once the model has loaded; until then the model routes answer 503.
    pub ready: OnceLock<Ready>,
    pub metrics: Arc<Metrics>,
    pub api_key: Option<String>,
    pub cors_origin: Option<HeaderValue>,
    pub body_limit: usize,
}

const LOADING: &str = "the model is loading";

impl AppState {
    fn ready(&self) -> Result<&Ready, ApiError> {
        self.ready.get().ok_or(ApiError::Unavailable(LOADING))
    }
}

impl Ready {
    /// Checks `prompt` against the slot context and queues it; the receiver gets its events.
    fn submit(
        &self,
        prompt: Vec<u32>,
        params: api::GenParams,
        metrics: &Metrics,
    ) -> Result<mpsc::UnboundedReceiver<Event>, ApiError> {
        if prompt.is_empty() {
            return Err(ApiError::BadRequest("the prompt is empty".into()));
        }
        if prompt.len() > self.slot_ctx {
            return Err(ApiError::ContextOverflow { tokens: prompt.len(), ctx: self.slot_ctx });
        }
        let (events, rx) = mpsc::unbounded_channel();
        let job = Job { prompt, params, events, queued: Instant::now() };
        let guard = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let queue = guard.as_ref().ok_or(ApiError::Unavailable(STOPPING))?;
        metrics.queued.fetch_add(1, Ordering::Relaxed);
        queue.try_send(job).map_err(|e| {
            metrics.queued.fetch_sub(1, Ordering::Relaxed);
            match e {
                mpsc::error::TrySendError::Full(_) => ApiError::Busy(self.queue_capacity),
                mpsc::error::TrySendError::Closed(_) => ApiError::Unavailable(STOPPING),
            }
        })?;
        Ok(rx)
    }

    fn meta(&self, route: Route, logprobs: bool, include_usage: bool) -> ReplyMeta {
        ReplyMeta {
            route,
            id: new_id(route),
            created: unix_time(),
            model: self.model_id.clone(),
            logprobs,
            include_usage,
            tok: self.tok.clone(),
        }
    }
}

/// The body, or why it could not be read (too large: 413).
fn body_bytes(body: Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes, ApiError> {
    body.map_err(|r| match r.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge(limit),
        _ => ApiError::BadRequest(format!("the request body could not be read: {r}")),
    })
}

type Shared = State<Arc<AppState>>;

async fn chat(State(s): Shared, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let r = s.ready()?;
    let req: ChatRequest = api::parse(&body_bytes(body, s.body_limit)?)?;
    let messages = req.messages()?;
    let logprobs = req.logprobs()?;
    let params = req.common.params(r.vocab, logprobs)?;
    let text = r.template.render_prompt(&messages)?;
    let prompt = encode_chat_prompt(&r.tok, &text)?;
    let rx = r.submit(prompt, params, &s.metrics)?;
    let meta = r.meta(Route::Chat, logprobs.is_some(), req.common.include_usage());
    Ok(respond(meta, rx, req.common.stream).await)
}

/// llama-server's `/apply-template`: the prompt text a chat request becomes.
async fn apply_template(
    State(s): Shared,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let r = s.ready()?;
    let req: ChatRequest = api::parse(&body_bytes(body, s.body_limit)?)?;
    let text = r.template.render_prompt(&req.messages()?)?;
    Ok(Json(json!({ "prompt": text })).into_response())
}

async fn completions(
    State(s): Shared,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let r = s.ready()?;
    let req: CompletionRequest = api::parse(&body_bytes(body, s.body_limit)?)?;
    let logprobs = req.logprobs()?;
    let params = req.common.params(r.vocab, logprobs)?;
    let one = || ApiError::BadRequest("`prompt`: one prompt per request".into());
    let prompt = match req.prompt {
        Prompt::Text(t) => r.tok.encode(&t, r.tok.add_bos)?,
        Prompt::Texts(v) => match <[String; 1]>::try_from(v) {
            Ok([t]) => r.tok.encode(&t, r.tok.add_bos)?,
            Err(_) => return Err(one()),
        },
        Prompt::Tokens(ids) => ids,
        Prompt::TokenLists(v) => match <[Vec<u32>; 1]>::try_from(v) {
            Ok([ids]) => ids,
            Err(_) => return Err(one()),
        },
    };
    if let Some(&bad) = prompt.iter().find(|&&t| t as usize >= r.vocab) {
        return Err(ApiError::BadRequest(format!(
            "`prompt`: token id {bad} is not below the vocabulary size {}",
            r.vocab
        )));
    }
    let rx = r.submit(prompt, params, &s.metrics)?;
    let meta = r.meta(Route::Completion, logprobs.is_some(), req.common.include_usage());
    Ok(respond(meta, rx, req.common.stream).await)
}

async fn respond(meta: ReplyMeta, rx: mpsc::UnboundedReceiver<Event>, stream: bool) -> Response {
    if stream {
        reply::stream(meta, rx)
    } else {
        reply::collect(meta, rx).await
    }
}

async fn models(State(s): Shared) -> Result<Response, ApiError> {
    let r = s.ready()?;
    Ok(Json(json!({
        "object": "list",
        "data": [{
            "id": r.model_id,
            "object": "model",
            "created": r.created,
            "owned_by": "bitnet-rs",
            "meta": { "n_ctx_slot": r.slot_ctx, "n_slots": r.slots, "n_vocab": r.vocab },
        }],
    }))
    .into_response())
}

async fn health(State(s): Shared) -> Result<Response, ApiError> {
    s.ready()?;
    Ok(Json(json!({ "status": "ok" })).into_response())
}

async fn metrics(State(s): Shared) -> Response {
    let ct = HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8");
    ([(header::CONTENT_TYPE, ct)], s.metrics.render()).into_response()
}

async fn tokenize(
    State(s): Shared,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let r = s.ready()?;
    let req: TokenizeRequest = api::parse(&body_bytes(body, s.body_limit)?)?;
    let ids = r.tok.encode(&req.content, req.add_special && r.tok.add_bos)?;
    let tokens: Vec<serde_json::Value> = if req.with_pieces {
        ids.iter()
            .map(|&id| json!({ "id": id, "piece": r.tok.decode(&[id]).unwrap_or_default() }))
            .collect()
    } else {
        ids.iter().map(|&id| json!(id)).collect()
    };
    Ok(Json(json!({ "tokens": tokens })).into_response())
}

async fn detokenize(
    State(s): Shared,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let r = s.ready()?;
    let req: DetokenizeRequest = api::parse(&body_bytes(body, s.body_limit)?)?;
    if let Some(&bad) = req.tokens.iter().find(|&&t| t as usize >= r.vocab) {
        return Err(ApiError::BadRequest(format!(
            "`tokens`: token id {bad} is not below the vocabulary size {}",
            r.vocab
        )));
    }
    let content = r.tok.decode(&req.tokens)?;
    Ok(Json(json!({ "content": content })).into_response())
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(uri.path().to_string())
}

async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::MethodNotAllowed(method.to_string())
}

/// Equal in time whatever the bytes: no early exit on the first difference.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() != b.len()) as u8;
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

/// Routes a load balancer or monitor reads without the key.
const PUBLIC: [&str; 1] = ["/health"];

async fn auth(State(s): Shared, req: Request, next: Next) -> Response {
    let Some(key) = &s.api_key else { return next.run(req).await };
    if PUBLIC.contains(&req.uri().path()) || req.method() == Method::OPTIONS {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("");
    if constant_time_eq(given.as_bytes(), key.as_bytes()) {
        next.run(req).await
    } else {
        ApiError::Unauthorized.into_response()
    }
}

async fn cors(State(s): Shared, req: Request, next: Next) -> Response {
    let Some(origin) = s.cors_origin.clone() else { return next.run(req).await };
    let mut r = if req.method() == Method::OPTIONS {
        let mut r = StatusCode::NO_CONTENT.into_response();
        let h = r.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, OPTIONS"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type"),
        );
        h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
        r
    } else {
        next.run(req).await
    };
    r.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    r.headers_mut().insert(header::VARY, HeaderValue::from_static("origin"));
    r
}

async fn count_status(State(s): Shared, req: Request, next: Next) -> Response {
    let r = next.run(req).await;
    s.metrics.record_status(r.status().as_u16());
    r
}

/// The router over `state`.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/completions", post(completions))
        .route("/v1/models", get(models))
        .route("/models", get(models))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/apply-template", post(apply_template))
        .route("/tokenize", post(tokenize))
        .route("/detokenize", post(detokenize))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.body_limit))
        .layer(middleware::from_fn_with_state(state.clone(), auth))
        .layer(middleware::from_fn_with_state(state.clone(), cors))
        .layer(middleware::from_fn_with_state(state.clone(), count_status))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn keys_compare_by_every_byte_and_the_length() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }
}
