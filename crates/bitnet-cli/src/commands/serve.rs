//! `bitnet serve`: the OpenAI-compatible HTTP server (`bitnet-server` does the work).

use super::model_args::ModelArgs;
use anyhow::{Context, Result};
use bitnet_infer::chat::{ChatTemplate, PromptTemplate};
use bitnet_server::{ServedModel, ServerConfig};
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Address to listen on (127.0.0.1: this machine only).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Requests generated at once, each with its own KV cache slot.
    #[arg(long, short = 'p', default_value_t = 4)]
    pub parallel: usize,
    /// Total context over all slots, as llama-server's -c (each slot gets ctx / parallel;
    /// default: the model's context, at most 4096, for every slot).
    #[arg(long, short = 'c')]
    pub ctx: Option<usize>,
    /// Requests that may wait for a free slot; more are answered 429.
    #[arg(long, default_value_t = 64)]
    pub queue: usize,
    /// Require `Authorization: Bearer KEY` on every route but /health.
    #[arg(long, env = "BITNET_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Allow browser requests from this origin (e.g. http://localhost:3000, or *).
    #[arg(long)]
    pub cors_origin: Option<String>,
    /// Chat template: jinja (the model's own), chatml or bitnet (default: the model's own,
    /// else the built-in one its vocabulary suggests).
    #[arg(long)]
    pub template: Option<String>,
    /// KV cache element type: f16 or f32.
    #[arg(long = "cache-type", default_value = "f16", value_parser = super::bench::parse_kv_type)]
    pub cache_type: bitnet_infer::KvType,
    /// Most tokens one engine step runs (decode tokens plus prompt chunks).
    #[arg(long, short = 'b', default_value_t = 64)]
    pub batch: usize,
    /// Seconds requests in flight may run on after Ctrl-C / SIGTERM before they are cancelled.
    #[arg(long, default_value_t = 10)]
    pub grace: u64,
}

pub fn run(a: Args) -> Result<()> {
    let model_id = a
        .model
        .model
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "bitnet".into());
    let cfg = ServerConfig {
        host: a.host,
        port: a.port,
        parallel: a.parallel,
        ctx: a.ctx,
        queue: a.queue,
        api_key: a.api_key,
        cors_origin: a.cors_origin,
        kv: a.cache_type,
        batch: a.batch,
        grace: Duration::from_secs(a.grace),
        model_id,
        ..ServerConfig::default()
    };
    let (model, template) = (a.model, a.template);
    bitnet_server::serve(cfg, move || {
        let load = || -> Result<ServedModel> {
            let (engine, tok) = model.load_with_tokenizer()?;
            let found = bitnet_server::template::chat_template(
                &engine,
                &tok,
                &model.model,
                template.as_deref(),
            );
            let template: Box<dyn PromptTemplate> = match found {
                Ok(t) => t,
                // As llama-server does, a model without a template chats in ChatML.
                Err(e) if template.is_none() => {
                    eprintln!("warning: {e}; chat requests use ChatML");
                    Box::new(ChatTemplate::ChatMl)
                }
                Err(e) => return Err(e.into()),
            };
            Ok(ServedModel { engine, tok, template })
        };
        load().map_err(|e| format!("{e:#}"))
    })
    .context("bitnet serve")
}
