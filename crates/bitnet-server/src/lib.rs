//! `bitnet-server`: the OpenAI-compatible HTTP API of bitnet-rs (`bitnet serve`).
//!
//! The engine of `bitnet-infer` runs on its own thread ([`scheduler`]), batching every running
//! request into one forward per step; HTTP handlers ([`routes`]) only check requests, queue them
//! and relay their events, so they never touch model state.

pub mod api;
pub mod error;
pub mod metrics;
pub mod reply;
pub mod routes;
pub mod scheduler;
pub mod template;

use bitnet_infer::chat::PromptTemplate;
use bitnet_infer::{Engine, KvType, Tokenizer};
use metrics::Metrics;
use routes::{AppState, Ready};
use scheduler::{Scheduler, SchedulerConfig};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::mpsc;

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub host: String,
    pub port: u16,
    /// Requests generated at once (KV cache slots).
    pub parallel: usize,
    /// Total context over all slots, as llama-server's `-c` (each slot gets `ctx / parallel`);
    /// `None`: each slot gets the model's context, at most 4096.
    pub ctx: Option<usize>,
    /// Requests that may wait for a slot; more are answered 429.
    pub queue: usize,
    pub api_key: Option<String>,
    pub cors_origin: Option<String>,
    pub kv: KvType,
    /// Tokens one engine step runs at most (decode tokens plus prompt chunks).
    pub batch: usize,
    /// Largest request body, in bytes.
    pub body_limit: usize,
    /// How long requests in flight may run on after a stop signal before they are cancelled.
    pub grace: Duration,
    /// The name `/v1/models` and the responses report.
    pub model_id: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8080,
            parallel: 4,
            ctx: None,
            queue: 64,
            api_key: None,
            cors_origin: None,
            kv: KvType::F16,
            batch: 64,
            body_limit: 4 << 20,
            grace: Duration::from_secs(10),
            model_id: "bitnet".into(),
        }
    }
}

/// What the server serves.
#[derive(Debug)]
pub struct ServedModel {
    pub engine: Engine,
    pub tok: Tokenizer,
    pub template: Box<dyn PromptTemplate>,
}

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error("loading the model: {0}")]
    Load(String),
    #[error("the server failed: {0}")]
    Io(#[from] std::io::Error),
}

/// The state the router serves, before the model is loaded (`/health` answers 503).
pub fn new_state(cfg: &ServerConfig) -> Result<Arc<AppState>, ServeError> {
    let cors_origin = match &cfg.cors_origin {
        None => None,
        Some(o) => Some(o.parse().map_err(|_| {
            ServeError::Config(format!("--cors-origin {o:?} is not a valid header value"))
        })?),
    };
    if cfg.parallel == 0 || cfg.queue == 0 || cfg.batch == 0 {
        return Err(ServeError::Config(
            "--parallel, --queue and --batch must be at least 1".into(),
        ));
    }
    Ok(Arc::new(AppState {
        ready: OnceLock::new(),
        metrics: Arc::new(Metrics::default()),
        api_key: cfg.api_key.clone(),
        cors_origin,
        body_limit: cfg.body_limit,
    }))
}

/// The engine's thread and the flag that cancels what it runs.
#[derive(Debug)]
pub struct EngineHandle {
    pub thread: JoinHandle<()>,
    pub cancel: Arc<AtomicBool>,
}

/// Starts the engine thread for `model` and marks `state` ready.
pub fn start_engine(
    state: &Arc<AppState>,
    cfg: &ServerConfig,
    model: ServedModel,
) -> Result<EngineHandle, ServeError> {
    let max_ctx = model.engine.config().max_ctx.max(1);
    let slot_ctx = match cfg.ctx {
        Some(total) => (total / cfg.parallel).min(max_ctx),
        None => max_ctx.min(4096),
    };
    if slot_ctx < 2 {
        return Err(ServeError::Config(format!(
            "--ctx {} over {} slots leaves {slot_ctx} tokens each",
            cfg.ctx.unwrap_or(0),
            cfg.parallel
        )));
    }
    let tok = Arc::new(model.tok);
    let vocab = model.engine.config().vocab_size;
    let sched_cfg =
        SchedulerConfig { slots: cfg.parallel, slot_ctx, kv: cfg.kv, step_budget: cfg.batch };
    let cancel = Arc::new(AtomicBool::new(false));
    let sched =
        Scheduler::new(model.engine, tok.clone(), sched_cfg, state.metrics.clone(), cancel.clone())
            .map_err(|e| ServeError::Load(e.to_string()))?;
    let (tx, rx) = mpsc::channel(cfg.queue);
    let thread =
        std::thread::Builder::new().name("bitnet-engine".into()).spawn(move || sched.run(rx))?;
    let ready = Ready {
        tok,
        template: model.template,
        queue: Mutex::new(Some(tx)),
        queue_capacity: cfg.queue,
        slot_ctx,
        slots: cfg.parallel,
        vocab,
        model_id: cfg.model_id.clone(),
        created: reply::unix_time(),
    };
    if state.ready.set(ready).is_err() {
        return Err(ServeError::Config("the server already has a model".into()));
    }
    Ok(EngineHandle { thread, cancel })
}

/// Stops taking new requests: the queue closes, so the engine thread ends once it is idle.
pub fn close_queue(state: &AppState) {
    if let Some(r) = state.ready.get() {
        r.queue.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn stop_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// Serves until Ctrl-C or SIGTERM. It listens at once (`/health` answers 503 while `load` runs
/// on its own thread); on a stop signal it takes no new connections or requests, lets requests
/// in flight finish for `cfg.grace`, cancels what is left and returns once the engine is idle.
pub fn serve<F>(cfg: ServerConfig, load: F) -> Result<(), ServeError>
where
    F: FnOnce() -> Result<ServedModel, String> + Send + 'static,
{
    let state = new_state(&cfg)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("bitnet-http")
        .build()?;
    rt.block_on(async move {
        let addr = format!("{}:{}", cfg.host, cfg.port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(|source| ServeError::Bind { addr: addr.clone(), source })?;
        let local: SocketAddr = listener.local_addr()?;
        eprintln!("listening on http://{local} (the model is loading)");
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let app = routes::router(state.clone());
        let mut server = tokio::spawn(async move {
            let mut stop_rx = stop_rx;
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop_rx.wait_for(|&s| s).await;
                })
                .await
        });
        let loading = tokio::task::spawn_blocking(load);
        let model = tokio::select! {
            m = loading => m.map_err(|e| ServeError::Load(e.to_string()))?.map_err(ServeError::Load),
            _ = stop_signal() => {
                let _ = stop_tx.send(true);
                let _ = server.await;
                return Ok(());
            }
        };
        let model = match model {
            Ok(m) => m,
            Err(e) => {
                let _ = stop_tx.send(true);
                let _ = server.await;
                return Err(e);
            }
        };
        let engine = start_engine(&state, &cfg, model)?;
        eprintln!("ready: http://{local}/v1 ({} slots)", cfg.parallel);
        tokio::select! {
            r = &mut server => {
                // The listener failed.
                close_queue(&state);
                engine.cancel.store(true, Ordering::Relaxed);
                return r.map_err(|e| ServeError::Io(std::io::Error::other(e)))?.map_err(ServeError::Io);
            }
            _ = stop_signal() => {}
        }
        eprintln!(
            "stopping: no new requests; those in flight have {} s to finish",
            cfg.grace.as_secs()
        );
        let _ = stop_tx.send(true);
        close_queue(&state);
        let finished = tokio::time::timeout(cfg.grace, &mut server).await.is_ok();
        if !finished {
            eprintln!("cancelling the requests still in flight");
            engine.cancel.store(true, Ordering::Relaxed);
            let _ = server.await;
        }
        let _ = tokio::task::spawn_blocking(move || engine.thread.join()).await;
        eprintln!("stopped");
        Ok(())
    })
}
