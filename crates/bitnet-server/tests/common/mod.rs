//! A server over a small random-weight model the tests write: the tiny preset, the bundled
//! Shakespeare BPE tokenizer with ChatML's two special tokens added, and a ChatML Jinja template
//! in `tokenizer_config.json`.
#![allow(dead_code)]

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use bitnet_core::format::GgmlType;
use bitnet_infer::export::{preset, write_random_model};
use bitnet_infer::load::{open_model, open_tokenizer};
use bitnet_infer::Engine;
use bitnet_server::routes::{router, AppState};
use bitnet_server::{
    close_queue, new_state, start_engine, EngineHandle, ServedModel, ServerConfig,
};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower::ServiceExt;

/// ChatML as SmolLM2's tokenizer_config.json writes it.
pub const CHATML: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// `<|endoftext|>` (EOS) and `<|im_end|>`: the ids that end a generation.
pub const STOP_IDS: [u32; 2] = [0, 4097];

/// Writes the model, tokenizer and config into `dir`; returns the model's path.
pub fn write_model(dir: &Path) -> std::path::PathBuf {
    let bundled =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../bitnet-train/assets/tokenizer.json");
    let mut tok: Value = serde_json::from_slice(&std::fs::read(bundled).unwrap()).unwrap();
    let added = tok["added_tokens"].as_array_mut().unwrap();
    for (id, content) in [(4096, "<|im_start|>"), (4097, "<|im_end|>")] {
        added.push(json!({
            "id": id, "content": content, "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true
        }));
    }
    std::fs::write(dir.join("tokenizer.json"), tok.to_string()).unwrap();
    let cfg = json!({
        "bos_token": null, "eos_token": "<|endoftext|>", "add_bos_token": false,
        "chat_template": CHATML,
    });
    std::fs::write(dir.join("tokenizer_config.json"), cfg.to_string()).unwrap();
    let mut c = preset("tiny").unwrap();
    c.vocab_size = 4098;
    c.max_ctx = 1024;
    let path = dir.join("m.gguf");
    write_random_model(&path, &c, GgmlType::TQ2_0, GgmlType::Q8_0, 11).unwrap();
    path
}

pub fn load(path: &Path, threads: usize) -> ServedModel {
    let model = open_model(path).unwrap();
    let tok = open_tokenizer(path, &model, None).unwrap().unwrap();
    let engine = Engine::new(model, threads).unwrap();
    let template = bitnet_server::template::chat_template(&engine, &tok, path, None).unwrap();
    ServedModel { engine, tok, template }
}

/// A running server: the router (for in-process requests) and its engine thread.
pub struct TestServer {
    pub state: Arc<AppState>,
    pub router: Router,
    engine: Option<EngineHandle>,
    _dir: tempfile::TempDir,
}

pub fn config() -> ServerConfig {
    ServerConfig { parallel: 2, ctx: Some(2 * 512), queue: 8, ..ServerConfig::default() }
}

impl TestServer {
    pub fn start(cfg: ServerConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = write_model(dir.path());
        let state = new_state(&cfg).unwrap();
        let engine = Some(start_engine(&state, &cfg, load(&path, 1)).unwrap());
        let router = router(state.clone());
        Self { state, router, engine, _dir: dir }
    }

    /// A server whose model has not loaded.
    pub fn loading(cfg: ServerConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let state = new_state(&cfg).unwrap();
        let router = router(state.clone());
        Self { state, router, engine: None, _dir: dir }
    }

    pub async fn send(&self, req: Request<Body>) -> (StatusCode, HeaderMap, Vec<u8>) {
        let r = self.router.clone().oneshot(req).await.unwrap();
        let (parts, body) = r.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes().to_vec();
        (parts.status, parts.headers, bytes)
    }

    /// POSTs `body` as JSON; the status and the JSON answer.
    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let (s, _, b) = self.send(request(Method::POST, path, body.to_string())).await;
        (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Vec<u8>) {
        let (s, _, b) = self.send(request(Method::GET, path, String::new())).await;
        (s, b)
    }

    /// A streamed request's raw text.
    pub async fn post_stream(&self, path: &str, body: &Value) -> (StatusCode, String) {
        let (s, _, b) = self.send(request(Method::POST, path, body.to_string())).await;
        (s, String::from_utf8(b).unwrap())
    }

    pub fn busy(&self) -> u64 {
        self.state.metrics.slots_busy.load(Ordering::Relaxed)
    }

    /// Waits up to `limit` for `f` to hold.
    pub async fn wait_for(&self, limit: Duration, f: impl Fn(&Self) -> bool) -> bool {
        let t = Instant::now();
        while t.elapsed() < limit {
            if f(self) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        f(self)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        close_queue(&self.state);
        if let Some(e) = self.engine.take() {
            e.cancel.store(true, Ordering::Relaxed);
            let _ = e.thread.join();
        }
    }
}

pub fn request(method: Method, path: &str, body: String) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap()
}

/// The `data:` payloads of a server-sent-events body, `[DONE]` included; keep-alive comments
/// are skipped.
pub fn sse_data(text: &str) -> Vec<String> {
    assert!(text.ends_with("\n\n"), "every event ends with a blank line: {text:?}");
    text.split("\n\n")
        .filter(|e| !e.is_empty() && !e.starts_with(':'))
        .map(|e| {
            e.strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not a data event: {e:?}"))
                .to_string()
        })
        .collect()
}

/// A logit bias that keeps the stop tokens from being sampled (for requests that must run to
/// their `max_tokens`).
pub fn no_stop() -> Value {
    json!({ "0": -100, "4097": -100 })
}
