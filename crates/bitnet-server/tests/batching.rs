//! Continuous batching through the HTTP API: a greedy request's tokens and log-probabilities are
//! the same whether it runs alone or while seven others run, join and leave.

mod common;

use axum::http::StatusCode;
use bitnet_server::ServerConfig;
use common::*;
use serde_json::{json, Value};
use std::time::Duration;

fn request_for(i: usize) -> Value {
    let prompts = [
        "Friends, Romans, countrymen",
        "O Romeo, Romeo",
        "All the world's a stage",
        "Now is the winter of our discontent",
        "If music be the food of love, play on",
        "The quality of mercy is not strained",
        "Double, double toil and trouble",
        "What light through yonder window breaks",
    ];
    json!({
        "prompt": prompts[i],
        "max_tokens": 10 + 3 * i,
        "temperature": 0,
        "logprobs": 2,
        "logit_bias": no_stop(),
    })
}

/// The generated text and its log-probabilities (tokens, values and alternatives).
fn output(r: &Value) -> (Value, Value) {
    (r["choices"][0]["text"].clone(), r["choices"][0]["logprobs"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn greedy_output_alone_equals_output_among_seven_others() {
    let s =
        std::sync::Arc::new(TestServer::start(ServerConfig { parallel: 8, batch: 24, ..config() }));
    let mut alone = Vec::new();
    for i in 0..8 {
        let (st, r) = s.post("/v1/completions", &request_for(i)).await;
        assert_eq!(st, StatusCode::OK, "{r}");
        alone.push(output(&r));
    }
    // All eight at once, started a few milliseconds apart so that they join at different
    // steps and their prompts are cut into chunks by the step budget.
    let mut handles = Vec::new();
    for i in 0..8 {
        let s = s.clone();
        handles.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(3 * i as u64)).await;
            s.post("/v1/completions", &request_for(i)).await
        }));
    }
    for (i, h) in handles.into_iter().enumerate() {
        let (st, r) = h.await.unwrap();
        assert_eq!(st, StatusCode::OK, "{r}");
        assert_eq!(output(&r), alone[i], "request {i}");
    }
    // Seven long streams running, then the first request again.
    let mut streams = Vec::new();
    for i in 1..8 {
        let s = s.clone();
        let mut body = request_for(i);
        body["max_tokens"] = json!(300);
        body["stream"] = json!(true);
        streams.push(tokio::spawn(async move { s.post_stream("/v1/completions", &body).await }));
    }
    assert!(s.wait_for(Duration::from_secs(10), |s| s.busy() == 7).await);
    let (_, r) = s.post("/v1/completions", &request_for(0)).await;
    assert_eq!(output(&r), alone[0], "alone against beside seven streams");
    for h in streams {
        let (st, text) = h.await.unwrap();
        assert_eq!(st, StatusCode::OK);
        assert_eq!(sse_data(&text).last().unwrap(), "[DONE]");
    }
}
