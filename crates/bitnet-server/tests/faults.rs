//! Bad input and overload: every failure is an OpenAI-shaped error with the right status, and
//! the server keeps serving afterwards. Clients that go away free their slot.

mod common;

use axum::http::{Method, StatusCode};
use bitnet_server::ServerConfig;
use common::*;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn small_request() -> Value {
    json!({ "messages": [{ "role": "user", "content": "hi" }], "max_tokens": 3 })
}

/// A long request that only ends when its client goes (or after `max_tokens`).
fn long_request(stream: bool) -> Value {
    json!({ "prompt": "Once more unto the breach", "max_tokens": 400, "stream": stream, "logit_bias": no_stop() })
}

async fn still_serves(s: &TestServer) {
    let (st, r) = s.post("/v1/chat/completions", &small_request()).await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert!(r["choices"][0]["message"]["content"].is_string());
}

fn message(e: &Value) -> &str {
    e["error"]["message"].as_str().unwrap_or_else(|| panic!("not an error envelope: {e}"))
}

#[tokio::test]
async fn malformed_json_and_invalid_fields_are_400s_naming_the_problem() {
    let s = TestServer::start(config());
    let (st, _, b) =
        s.send(request(Method::POST, "/v1/chat/completions", "{\"messages\": [".into())).await;
    let e: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(message(&e).starts_with("malformed JSON"), "{e}");
    assert_eq!(e["error"]["type"], "invalid_request_error");
    let cases = [
        (json!({ "messages": "hi" }), "invalid request"),
        (json!({ "messages": [] }), "`messages` is empty"),
        (
            json!({ "messages": [{ "role": "user", "content": "x" }], "temperature": 9 }),
            "`temperature`",
        ),
        (
            json!({ "messages": [{ "role": "user", "content": "x" }], "max_tokens": 0 }),
            "`max_tokens`",
        ),
        (
            json!({ "messages": [{ "role": "user", "content": "x" }], "logit_bias": { "99999": 1 } }),
            "`logit_bias`",
        ),
        (json!({ "messages": [{ "role": "user", "content": "x" }], "n": 2 }), "`n`"),
        (
            json!({ "messages": [{ "role": "user", "content": "x" }], "top_logprobs": 2 }),
            "`top_logprobs`",
        ),
        (
            json!({ "messages": [{ "role": "user", "content": [{ "type": "image_url" }] }] }),
            "image_url",
        ),
    ];
    for (body, want) in cases {
        let (st, e) = s.post("/v1/chat/completions", &body).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
        assert!(message(&e).contains(want), "{body}: {e}");
    }
    let (st, e) = s.post("/v1/completions", &json!({ "prompt": [1, 2, 70000] })).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(message(&e).contains("70000"));
    let (st, e) = s.post("/v1/completions", &json!({ "prompt": "" })).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(message(&e).contains("empty"), "{e}");
    // Unknown fields are ignored.
    let mut extra = small_request();
    extra["frobnicate"] = json!({ "deep": [1, 2] });
    let (st, _) = s.post("/v1/chat/completions", &extra).await;
    assert_eq!(st, StatusCode::OK);
    still_serves(&s).await;
}

#[tokio::test]
async fn a_prompt_over_the_slot_context_is_a_400_before_any_event() {
    let s = TestServer::start(ServerConfig { parallel: 1, ctx: Some(64), ..config() });
    let long: String = "word ".repeat(200);
    for stream in [false, true] {
        let body = json!({ "prompt": long, "stream": stream });
        let (st, h, b) = s.send(request(Method::POST, "/v1/completions", body.to_string())).await;
        assert_eq!(st, StatusCode::BAD_REQUEST);
        assert_eq!(h["content-type"], "application/json");
        let e: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(e["error"]["code"], "context_length_exceeded");
        let (_, t) = s.post("/tokenize", &json!({ "content": long })).await;
        let n = t["tokens"].as_array().unwrap().len();
        assert!(message(&e).contains(&format!("{n} tokens")), "{e}");
        assert!(message(&e).contains("context of 64 tokens"), "{e}");
    }
    // A reply that reaches the end of the context stops there with `length`: the cache holds
    // 64 tokens, and the token sampled from the last position's logits is the 65th.
    let body = json!({ "prompt": "word ".repeat(20), "max_tokens": 500, "logit_bias": no_stop() });
    let (st, r) = s.post("/v1/completions", &body).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(r["choices"][0]["finish_reason"], "length");
    assert_eq!(r["usage"]["total_tokens"], 65);
    still_serves(&s).await;
}

#[tokio::test]
async fn a_missing_or_wrong_key_is_a_401_and_health_needs_none() {
    let s = TestServer::start(ServerConfig { api_key: Some("sekrit".into()), ..config() });
    let with_key = |key: &str| {
        let mut r = request(Method::POST, "/v1/chat/completions", small_request().to_string());
        r.headers_mut().insert("authorization", format!("Bearer {key}").parse().unwrap());
        r
    };
    for req in [
        request(Method::POST, "/v1/chat/completions", small_request().to_string()),
        with_key("sekrix"),
        with_key("sekrit2"),
        with_key(""),
    ] {
        let (st, _, b) = s.send(req).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED);
        let e: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(e["error"]["code"], "invalid_api_key");
    }
    let (st, _, _) = s.send(with_key("sekrit")).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s.get("/health").await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s.get("/metrics").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn unknown_routes_wrong_methods_and_big_bodies() {
    let s = TestServer::start(ServerConfig { body_limit: 1000, ..config() });
    let (st, b) = s.get("/v1/engines").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let e: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(message(&e), "no route for /v1/engines");
    let (st, b) = s.get("/v1/chat/completions").await;
    assert_eq!(st, StatusCode::METHOD_NOT_ALLOWED);
    assert!(message(&serde_json::from_slice(&b).unwrap()).contains("GET"));
    let big = json!({ "prompt": "x".repeat(2000) });
    let (st, e) = s.post("/v1/completions", &big).await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(message(&e).contains("1000 bytes"));
    still_serves(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_429_with_retry_after() {
    let s = TestServer::start(ServerConfig { parallel: 1, queue: 1, ..config() });
    // One request runs, one waits; the third finds the queue full.
    let running = tokio::spawn({
        let r = s.router.clone();
        async move { serve_one(r, long_request(true)).await }
    });
    assert!(s.wait_for(Duration::from_secs(5), |s| s.busy() == 1).await);
    let waiting = tokio::spawn({
        let r = s.router.clone();
        async move { serve_one(r, long_request(false)).await }
    });
    let queued = &s.state.metrics.queued;
    assert!(s.wait_for(Duration::from_secs(5), |_| queued.load(Ordering::Relaxed) == 1).await);
    let (st, h, b) =
        s.send(request(Method::POST, "/v1/completions", long_request(false).to_string())).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(h["retry-after"], "1");
    let e: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(e["error"]["type"], "rate_limit_error");
    // Dropping both clients frees the engine for the next request.
    running.abort();
    waiting.abort();
    assert!(
        s.wait_for(Duration::from_secs(5), |s| s.busy() == 0
            && queued.load(Ordering::Relaxed) == 0)
            .await
    );
    still_serves(&s).await;
    assert_eq!(s.state.metrics.requests_with(429), 1);
}

/// Runs one request through `router` to the end of its body.
async fn serve_one(router: axum::Router, body: Value) -> StatusCode {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let path =
        if body.get("prompt").is_some() { "/v1/completions" } else { "/v1/chat/completions" };
    let r = router.oneshot(request(Method::POST, path, body.to_string())).await.unwrap();
    let st = r.status();
    let _ = r.into_body().collect().await;
    st
}

/// Starts a real HTTP server on a loopback port.
async fn listen(s: &TestServer) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = s.router.clone();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// Sends `body` over a fresh connection; returns the connection after `wait_for` bytes of
/// the answer arrived (none: right after sending).
async fn open(
    addr: std::net::SocketAddr,
    path: &str,
    body: &Value,
    wait_for: Option<&str>,
) -> tokio::net::TcpStream {
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = body.to_string();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    c.write_all(head.as_bytes()).await.unwrap();
    c.write_all(body.as_bytes()).await.unwrap();
    if let Some(want) = wait_for {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&seen).contains(want) {
            let n = c.read(&mut buf).await.unwrap();
            assert!(n > 0, "the server closed the connection: {}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&buf[..n]);
        }
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_frees_its_slot_within_a_second() {
    let s = TestServer::start(ServerConfig { parallel: 1, ..config() });
    let addr = listen(&s).await;
    let cancelled = &s.state.metrics.cancelled;
    // Streaming: the client reads a few tokens, then goes.
    let c = open(addr, "/v1/completions", &long_request(true), Some("data: {")).await;
    assert_eq!(s.busy(), 1);
    drop(c);
    assert!(s.wait_for(Duration::from_secs(1), |s| s.busy() == 0).await, "slot still busy");
    assert_eq!(cancelled.load(Ordering::Relaxed), 1);
    // Not streaming: the client goes while its request runs.
    let c = open(addr, "/v1/completions", &long_request(false), None).await;
    assert!(s.wait_for(Duration::from_secs(5), |s| s.busy() == 1).await);
    drop(c);
    assert!(s.wait_for(Duration::from_secs(1), |s| s.busy() == 0).await, "slot still busy");
    assert_eq!(cancelled.load(Ordering::Relaxed), 2);
    // The next request is served, over HTTP too.
    let mut c = open(addr, "/v1/chat/completions", &small_request(), None).await;
    let mut answer = String::new();
    let mut buf = [0u8; 4096];
    while !answer.contains("\"usage\"") {
        let n = c.read(&mut buf).await.unwrap();
        assert!(n > 0);
        answer.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_queue_answers_503_and_the_engine_thread_ends() {
    let s = TestServer::start(config());
    still_serves(&s).await;
    bitnet_server::close_queue(&s.state);
    let (st, e) = s.post("/v1/chat/completions", &small_request()).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(message(&e), "the server is shutting down");
}
