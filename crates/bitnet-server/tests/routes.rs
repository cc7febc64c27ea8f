//! Every route over a small random-weight model: the response shapes of the OpenAI API,
//! streamed output equal to non-streamed, seeds, usage counts, prefix reuse, tokenization.

mod common;

use axum::http::{Method, StatusCode};
use bitnet_server::ServerConfig;
use common::*;
use serde_json::{json, Value};

fn chat_body(extra: Value) -> Value {
    let mut b = json!({
        "model": "anything",
        "messages": [{ "role": "user", "content": "Good morrow, cousin." }],
        "max_tokens": 12,
        "temperature": 0,
    });
    b.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    b
}

#[tokio::test]
async fn chat_completion_has_openais_shape_and_exact_usage() {
    let s = TestServer::start(config());
    let body = chat_body(json!({ "logprobs": true, "top_logprobs": 3, "logit_bias": no_stop() }));
    let (st, r) = s.post("/v1/chat/completions", &body).await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(r["object"], "chat.completion");
    assert!(r["id"].as_str().unwrap().starts_with("chatcmpl-"));
    let choice = &r["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["finish_reason"], "length");
    // Usage: the prompt is the rendered template's tokens; 12 tokens were generated, each
    // with its log-probability and 3 alternatives.
    let (_, rendered) = s.post("/apply-template", &body).await;
    let text = rendered["prompt"].as_str().unwrap();
    assert!(text.starts_with("<|im_start|>system\nYou are a helpful AI assistant named SmolLM"));
    assert!(
        text.ends_with("<|im_start|>user\nGood morrow, cousin.<|im_end|>\n<|im_start|>assistant\n")
    );
    let (_, toks) = s.post("/tokenize", &json!({ "content": text })).await;
    let n_prompt = toks["tokens"].as_array().unwrap().len();
    assert_eq!(r["usage"]["prompt_tokens"], n_prompt);
    assert_eq!(r["usage"]["completion_tokens"], 12);
    assert_eq!(r["usage"]["total_tokens"], n_prompt + 12);
    let lps = choice["logprobs"]["content"].as_array().unwrap();
    assert_eq!(lps.len(), 12);
    for lp in lps {
        let top = lp["top_logprobs"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        // Greedy: the chosen token is the most likely one, and log-probabilities are <= 0.
        assert_eq!(top[0]["logprob"], lp["logprob"]);
        assert!(lp["logprob"].as_f64().unwrap() <= 0.0);
    }
    // The reply's text is what its tokens decode to.
    let (_, detok) = s.post("/detokenize", &json!({ "tokens": tokens_of(&s, lps).await })).await;
    assert_eq!(detok["content"], choice["message"]["content"]);
}

/// The ids of logprob entries, found by tokenizing each piece (pieces of whole tokens).
async fn tokens_of(s: &TestServer, lps: &[Value]) -> Vec<u32> {
    let mut ids = Vec::new();
    for lp in lps {
        let (_, t) = s.post("/tokenize", &json!({ "content": lp["token"] })).await;
        ids.extend(t["tokens"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32));
    }
    ids
}

#[tokio::test]
async fn streamed_chat_equals_the_whole_reply_and_ends_with_done() {
    let s = TestServer::start(config());
    let (_, whole) = s.post("/v1/chat/completions", &chat_body(json!({ "max_tokens": 20 }))).await;
    let body = chat_body(json!({
        "max_tokens": 20, "stream": true, "stream_options": { "include_usage": true }
    }));
    let (st, text) = s.post_stream("/v1/chat/completions", &body).await;
    assert_eq!(st, StatusCode::OK);
    let events = sse_data(&text);
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> =
        events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    // The first delta carries the role; exactly one chunk has a finish reason; the last is
    // the usage chunk with no choices.
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    for k in ["prompt_tokens", "completion_tokens", "total_tokens"] {
        assert_eq!(usage["usage"][k], whole["usage"][k], "{k}");
    }
    let body_chunks = &chunks[..chunks.len() - 1];
    let finishes: Vec<&Value> = body_chunks
        .iter()
        .map(|c| &c["choices"][0]["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finishes, [&whole["choices"][0]["finish_reason"]]);
    assert!(body_chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk" && c["id"] == chunks[0]["id"]));
    let streamed: String =
        body_chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(streamed, whole["choices"][0]["message"]["content"].as_str().unwrap());
    // Without include_usage there is no usage chunk.
    let (_, text) =
        s.post_stream("/v1/chat/completions", &chat_body(json!({ "stream": true }))).await;
    let events = sse_data(&text);
    let last: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert!(!last["choices"][0]["finish_reason"].is_null());
}

#[tokio::test]
async fn completions_take_text_or_token_ids_and_stream_the_same() {
    let s = TestServer::start(config());
    let (_, toks) = s.post("/tokenize", &json!({ "content": "To be, or not to be" })).await;
    let ids: Vec<u64> =
        toks["tokens"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    let base =
        json!({ "max_tokens": 16, "temperature": 0, "logit_bias": no_stop(), "logprobs": 2 });
    let mut by_text = base.clone();
    by_text["prompt"] = json!("To be, or not to be");
    let mut by_ids = base.clone();
    by_ids["prompt"] = json!(ids);
    let (st, a) = s.post("/v1/completions", &by_text).await;
    assert_eq!(st, StatusCode::OK, "{a}");
    let (_, b) = s.post("/v1/completions", &by_ids).await;
    assert_eq!(a["object"], "text_completion");
    assert_eq!(a["choices"][0]["text"], b["choices"][0]["text"]);
    assert_eq!(a["usage"]["prompt_tokens"], ids.len());
    assert_eq!(a["usage"]["completion_tokens"], 16);
    let lp = &a["choices"][0]["logprobs"];
    assert_eq!(lp["tokens"].as_array().unwrap().len(), 16);
    assert_eq!(lp["top_logprobs"][0].as_object().unwrap().len(), 2);
    let pieces: String =
        lp["tokens"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    assert_eq!(pieces, a["choices"][0]["text"].as_str().unwrap());
    // Streamed.
    let mut streamed = by_text.clone();
    streamed["stream"] = json!(true);
    let (_, text) = s.post_stream("/v1/completions", &streamed).await;
    let events = sse_data(&text);
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> =
        events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    let joined: String = chunks.iter().map(|c| c["choices"][0]["text"].as_str().unwrap()).collect();
    assert_eq!(joined, a["choices"][0]["text"].as_str().unwrap());
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "length");
}

#[tokio::test]
async fn a_seed_fixes_the_sampled_text_and_stop_strings_cut_it() {
    let s = TestServer::start(config());
    let body = json!({
        "prompt": "Now is the winter", "max_tokens": 24, "temperature": 1.0, "top_k": 0,
        "seed": 1234, "logit_bias": no_stop(),
    });
    let (_, a) = s.post("/v1/completions", &body).await;
    let (_, b) = s.post("/v1/completions", &body).await;
    let text = a["choices"][0]["text"].as_str().unwrap().to_string();
    assert_eq!(text, b["choices"][0]["text"].as_str().unwrap());
    // A stop string taken from the middle of that text ends the same request before it.
    let chars: Vec<char> = text.chars().collect();
    let cut = chars.len() / 2;
    let stop: String = chars[cut..(cut + 2).min(chars.len())].iter().collect();
    let mut stopped = body.clone();
    stopped["stop"] = json!([stop.clone()]);
    let (_, c) = s.post("/v1/completions", &stopped).await;
    let want = &text[..text.find(&stop).unwrap()];
    assert_eq!(c["choices"][0]["text"], want);
    assert_eq!(c["choices"][0]["finish_reason"], "stop");
    // The same, streamed.
    stopped["stream"] = json!(true);
    let (_, raw) = s.post_stream("/v1/completions", &stopped).await;
    let events = sse_data(&raw);
    let joined: String = events[..events.len() - 1]
        .iter()
        .map(|e| {
            serde_json::from_str::<Value>(e).unwrap()["choices"][0]["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(joined, want);
}

#[tokio::test]
async fn a_repeated_conversation_reuses_the_slots_cache() {
    let s = TestServer::start(ServerConfig { parallel: 1, ..config() });
    let body = chat_body(json!({}));
    let (_, a) = s.post("/v1/chat/completions", &body).await;
    let (_, b) = s.post("/v1/chat/completions", &body).await;
    assert_eq!(a["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    let n = a["usage"]["prompt_tokens"].as_u64().unwrap();
    // Everything but the last prompt token, which runs again for the first logits.
    assert_eq!(b["usage"]["prompt_tokens_details"]["cached_tokens"], n - 1);
    assert_eq!(a["choices"], b["choices"]);
}

#[tokio::test]
async fn models_health_metrics_tokenize_detokenize() {
    let s = TestServer::start(config());
    let (st, m) = s.get("/v1/models").await;
    assert_eq!(st, StatusCode::OK);
    let m: Value = serde_json::from_slice(&m).unwrap();
    assert_eq!(m["object"], "list");
    assert_eq!(m["data"][0]["id"], "bitnet");
    assert_eq!(m["data"][0]["meta"]["n_ctx_slot"], 512);
    let (st, h) = s.get("/health").await;
    assert_eq!(
        (st, serde_json::from_slice::<Value>(&h).unwrap()),
        (StatusCode::OK, json!({"status": "ok"}))
    );
    let (_, t) =
        s.post("/tokenize", &json!({ "content": "hello world", "with_pieces": true })).await;
    let pieces = t["tokens"].as_array().unwrap();
    let joined: String = pieces.iter().map(|p| p["piece"].as_str().unwrap()).collect();
    assert_eq!(joined, "hello world");
    let ids: Vec<&Value> = pieces.iter().map(|p| &p["id"]).collect();
    let (_, d) = s.post("/detokenize", &json!({ "tokens": ids })).await;
    assert_eq!(d["content"], "hello world");
    let (st, e) = s.post("/detokenize", &json!({ "tokens": [5000] })).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(e["error"]["message"].as_str().unwrap().contains("5000"));
    // Metrics after one completion of 5 tokens.
    let body = json!({ "prompt": "a", "max_tokens": 5, "logit_bias": no_stop() });
    s.post("/v1/completions", &body).await;
    let (st, text) = s.get("/metrics").await;
    assert_eq!(st, StatusCode::OK);
    let text = String::from_utf8(text).unwrap();
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from\n{text}"))
    };
    assert_eq!(value("bitnet_generated_tokens_total"), 5.0);
    assert_eq!(value("bitnet_slots_total"), 2.0);
    assert_eq!(value("bitnet_slots_busy"), 0.0);
    assert_eq!(value("bitnet_queue_depth"), 0.0);
    assert_eq!(value("bitnet_time_to_first_token_seconds_count"), 1.0);
    assert_eq!(value("bitnet_inter_token_latency_seconds_count"), 4.0);
    assert!(value("bitnet_requests_total{status=\"200\"}") >= 4.0);
    assert!(value("bitnet_requests_total{status=\"400\"}") >= 1.0);
}

#[tokio::test]
async fn while_loading_health_and_the_model_routes_answer_503() {
    let s = TestServer::loading(config());
    for path in ["/health", "/v1/models"] {
        let (st, b) = s.get(path).await;
        assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
        let e: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(e["error"]["message"], "the model is loading");
    }
    let (st, _) = s.post("/v1/chat/completions", &chat_body(json!({}))).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
    let (st, _) = s.get("/metrics").await;
    assert_eq!(st, StatusCode::OK);
}

#[tokio::test]
async fn cors_preflight_and_headers() {
    let s = TestServer::start(ServerConfig {
        cors_origin: Some("http://localhost:3000".into()),
        ..config()
    });
    let (st, h, _) = s.send(request(Method::OPTIONS, "/v1/chat/completions", String::new())).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert_eq!(h["access-control-allow-origin"], "http://localhost:3000");
    assert!(h["access-control-allow-headers"].to_str().unwrap().contains("authorization"));
    let (_, h, _) = s.send(request(Method::GET, "/health", String::new())).await;
    assert_eq!(h["access-control-allow-origin"], "http://localhost:3000");
}

#[tokio::test]
async fn ignore_eos_generates_through_end_of_sequence_tokens() {
    let s = TestServer::start(config());
    // The random model's tied embedding makes it repeat its last token: after `<|im_end|>`
    // the reply stops at once without ignore_eos; with it, it runs to max_tokens and never
    // holds that token.
    let body = json!({ "prompt": [4097], "max_tokens": 9, "logprobs": 0, "temperature": 0 });
    let (_, r) = s.post("/v1/completions", &body).await;
    assert_eq!(r["choices"][0]["finish_reason"], "stop", "{r}");
    assert_eq!(r["usage"]["completion_tokens"], 0);
    let mut body = body;
    body["ignore_eos"] = json!(true);
    let (_, r) = s.post("/v1/completions", &body).await;
    assert_eq!(r["choices"][0]["finish_reason"], "length");
    assert_eq!(r["usage"]["completion_tokens"], 9);
    let pieces = r["choices"][0]["logprobs"]["tokens"].as_array().unwrap();
    assert!(pieces.iter().all(|p| p != "<|im_end|>" && p != "<|endoftext|>"), "{pieces:?}");
}
