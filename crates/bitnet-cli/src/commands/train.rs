//! `bitnet train`: quantization-aware training. With no arguments it trains the `tiny` preset on
//! the bundled Shakespeare text with the bundled tokenizer for a few minutes, writes the
//! checkpoint and prints a sample.

use anyhow::{bail, Context, Result};
use bitnet_train::data::shards::{read_texts, text_files, tokenize_split};
use bitnet_train::data::{tokenizer, TokenData};
use bitnet_train::fused::OpPath;
use bitnet_train::layers::QuantMode;
use bitnet_train::models::{ModelConfig, Preset};
use bitnet_train::trainer::checkpoint::{read_state, CONFIG_FILE, TOKENIZER_FILE};
use bitnet_train::trainer::memory::check_fits;
use bitnet_train::trainer::sample::generate;
use bitnet_train::trainer::{train, Schedule, TrainOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokenizers::Tokenizer;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Size preset: tiny, 125m, 700m, 1.3b, 3b, 2b4t.
    #[arg(long, default_value = "tiny")]
    preset: String,
    /// A config.json (Hugging Face keys) instead of the preset's architecture.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Training text: a prepared shard directory (bitnet data prepare), a text file or a
    /// directory of .txt files. Default: the bundled Shakespeare text.
    #[arg(long)]
    data: Option<PathBuf>,
    /// tokenizer.json (default: the data directory's, else the bundled one).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Optimizer steps in all (default: 400 for tiny, 10000 otherwise; when resuming, the new
    /// total).
    #[arg(long)]
    steps: Option<u64>,
    /// Output (checkpoint) directory. Default: runs/PRESET-QUANT.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue from the checkpoint in DIR (training continues into DIR).
    #[arg(long, value_name = "DIR")]
    resume: Option<PathBuf>,
    /// What BitLinear quantizes: none, b1, b158, b158-a4.
    #[arg(long, default_value = "b158")]
    quant: QuantMode,
    /// H-BitLinear: Hadamard-transform the inputs of o_proj and down_proj (BitNet v2).
    #[arg(long)]
    hadamard: bool,
    /// Sequences per micro-batch (default: the preset's).
    #[arg(long)]
    batch_size: Option<usize>,
    /// Tokens per sequence (default: the preset's).
    #[arg(long)]
    seq_len: Option<usize>,
    /// Micro-batches per optimizer step.
    #[arg(long, default_value_t = 1)]
    grad_accum: usize,
    /// Stage-1 peak learning rate (default: the preset's).
    #[arg(long)]
    lr: Option<f64>,
    /// Stage-2 peak learning rate (default: the preset's).
    #[arg(long)]
    lr2: Option<f64>,
    /// two-stage (b1.58 recipe) or cosine.
    #[arg(long, default_value = "two-stage")]
    schedule: String,
    /// Warmup steps (default 375, or a tenth of the run if that is shorter).
    #[arg(long)]
    warmup: Option<u64>,
    /// Weight decay (stage 1 of the two-stage schedule; all of a cosine one).
    #[arg(long, default_value_t = 0.1)]
    weight_decay: f64,
    /// Global gradient-norm clip (0 disables).
    #[arg(long, default_value_t = 1.0)]
    clip: f64,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Worker threads, each training on its share of every micro-batch (default: all cores).
    #[arg(long, short = 't')]
    threads: Option<usize>,
    /// Checkpoint every N steps (0: at the end and on Ctrl-C only).
    #[arg(long, default_value_t = 100)]
    save_every: u64,
    /// Validation every N steps.
    #[arg(long, default_value_t = 50)]
    eval_every: u64,
    /// Validation windows (of --seq-len tokens).
    #[arg(long, default_value_t = 32)]
    eval_windows: usize,
    #[arg(long, default_value_t = 10)]
    log_every: u64,
    /// Checkpoint and stop after this many steps, as an interrupt would.
    #[arg(long)]
    stop_after: Option<u64>,
    /// fused (the CPU training ops, default) or composed (candle primitives only: the reference
    /// the fused ops are tested against, and what a GPU runs).
    #[arg(long, default_value = "fused")]
    ops: OpPath,
    /// Train on the first CUDA GPU (needs a build with --features cuda).
    #[arg(long)]
    cuda: bool,
    /// Tokens to sample at the end (0: none).
    #[arg(long, default_value_t = 200)]
    sample_tokens: usize,
    /// Prompt of the final sample.
    #[arg(long, default_value = "KING.\n")]
    prompt: String,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

fn load_tokenizer(args: &Args, data_dir: Option<&Path>) -> Result<(Tokenizer, String)> {
    let path = args
        .tokenizer
        .clone()
        .or_else(|| data_dir.map(|d| d.join(TOKENIZER_FILE)).filter(|p| p.is_file()));
    let json = match path {
        Some(p) => std::fs::read_to_string(&p).with_context(|| format!("{}", p.display()))?,
        None => bitnet_train::bundled::TOKENIZER_JSON.to_string(),
    };
    Ok((tokenizer::from_bytes(json.as_bytes())?, json))
}

fn load_data(args: &Args, tk: &Tokenizer) -> Result<TokenData> {
    let vocab = tk.get_vocab_size(true);
    let Some(path) = &args.data else {
        let texts =
            vec![("bundled Shakespeare".to_string(), bitnet_train::bundled::SHAKESPEARE.into())];
        let (train, val) = tokenize_split(tk, &texts, 0.05)?;
        return Ok(TokenData::from_tokens(train, val, vocab)?);
    };
    if path.is_dir() && path.join("meta.json").is_file() {
        return Ok(TokenData::open_prepared(path)?);
    }
    let files = text_files(path)?;
    let (train, val) = tokenize_split(tk, &read_texts(&files)?, 0.05)?;
    Ok(TokenData::from_tokens(train, val, vocab)?)
}

/// glibc's allocator for training. One arena for all threads: each worker's arena would
/// otherwise keep its own peak. Blocks below 8 MiB stay in the heap, which is never trimmed: the
/// `125m` shape allocates and frees gradients of 6 MiB every step, and mapping them afresh each
/// time (a 2 MiB threshold) cost it 15% in page faults of zeroed pages. The default `tiny` run
/// on 2 threads peaks at 410 MiB this way (398 MiB with a 2 MiB threshold and trimming above
/// 64 MiB, 431 MiB with a 32 MiB threshold).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory() {
    // SAFETY: mallopt only sets glibc allocator parameters; it is called before any worker
    // thread exists and passes valid parameter numbers with in-range values.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 8 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory() {}

pub fn run(args: Args) -> Result<()> {
    keep_freed_memory();
    let workers = match args.threads {
        Some(0) => bail!("--threads must be at least 1"),
        Some(t) => t,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    if !args.cuda && std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // Threads split each micro-batch (data parallel); candle's own per-operation threading
        // (sized by this variable, which a user may still set) is turned off: on the models a
        // CPU trains it costs more than it gains (docs/experiments.md).
        std::env::set_var("RAYON_NUM_THREADS", "1");
    }
    let preset: Preset = args.preset.parse().map_err(anyhow::Error::msg)?;
    let defaults = preset.defaults();
    if let Some(d) = &args.data {
        if !d.exists() {
            bail!("--data {}: no such file or directory", d.display());
        }
    }
    let data_dir = args.data.as_deref().filter(|d| d.join("meta.json").is_file());
    let resume_dir = args.resume.clone();
    let (tk, tk_json) = match &resume_dir {
        Some(dir) if args.tokenizer.is_none() && dir.join(TOKENIZER_FILE).is_file() => {
            let json = std::fs::read_to_string(dir.join(TOKENIZER_FILE))?;
            (tokenizer::from_bytes(json.as_bytes())?, json)
        }
        _ => load_tokenizer(&args, data_dir)?,
    };

    // The architecture: checkpoint's config when resuming, else --config, else the preset.
    let mut config = if let Some(dir) = &resume_dir {
        ModelConfig::load(&dir.join(CONFIG_FILE))?
    } else if let Some(path) = &args.config {
        ModelConfig::load(path)?
    } else {
        let mut c = preset.config();
        c.vocab_size = tk.get_vocab_size(true);
        c.eos_token_id = tokenizer::eos_id(&tk);
        c.bos_token_id = c.eos_token_id;
        c
    };
    if resume_dir.is_none() {
        config.set_quant(args.quant, args.hadamard);
    }
    let resumed = match &resume_dir {
        Some(dir) => Some(read_state(dir)?),
        None => None,
    };
    let batch_size =
        resumed.as_ref().map(|s| s.batch_size).or(args.batch_size).unwrap_or(defaults.batch_size);
    let seq_len = resumed
        .as_ref()
        .map(|s| s.seq_len)
        .or(args.seq_len)
        .unwrap_or(defaults.seq_len.min(config.max_position_embeddings));
    let grad_accum = resumed.as_ref().map(|s| s.grad_accum).unwrap_or(args.grad_accum);
    check_fits(&config, batch_size, seq_len)?;

    let steps = args
        .steps
        .or(resumed.as_ref().map(|s| s.total_steps))
        .unwrap_or(if preset == Preset::Tiny { 400 } else { 10_000 });
    let warmup = args.warmup.unwrap_or((steps / 10).min(375));
    let (lr1, lr2) = (args.lr.unwrap_or(defaults.lr.0), args.lr2.unwrap_or(defaults.lr.1));
    let mut schedule = match args.schedule.as_str() {
        "two-stage" => Schedule::two_stage(steps, warmup, lr1, lr2),
        "cosine" => Schedule::cosine(steps, warmup, lr1, lr1 * 0.1),
        s => bail!("unknown --schedule {s:?}; expected two-stage or cosine"),
    };
    schedule.wd = args.weight_decay;
    let out_dir = resume_dir.clone().or(args.out.clone()).unwrap_or_else(|| {
        PathBuf::from(format!("runs/{}-{}", preset.name(), config.quant().name()))
    });

    let data = load_data(&args, &tk)?;
    let device = bitnet_train::device(args.cuda)?;
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || {
            eprintln!("\ninterrupted: saving a checkpoint after this step");
            stop.store(true, Ordering::Relaxed);
        })
        .context("installing the Ctrl-C handler")?;
    }
    let model_name = match (&resume_dir, &args.config) {
        (Some(d), _) => format!("the checkpoint in {}", d.display()),
        (None, Some(c)) => c.display().to_string(),
        (None, None) => format!("preset {}", preset.name()),
    };
    println!(
        "training {} ({} parameters, {}, {} layers) on {} tokens ({} validation), {} steps of {} x {} x {} tokens, device {:?}",
        model_name,
        config.num_params(),
        config.quant(),
        config.num_hidden_layers,
        data.train_tokens(),
        data.val_tokens(),
        steps,
        batch_size,
        seq_len,
        grad_accum,
        device
    );
    let opts = TrainOptions {
        config,
        steps,
        batch_size,
        seq_len,
        grad_accum,
        schedule,
        seed: args.seed,
        out_dir: out_dir.clone(),
        save_every: args.save_every,
        eval_every: args.eval_every,
        eval_windows: args.eval_windows,
        log_every: args.log_every,
        clip: args.clip,
        max_bad_steps: 5,
        resume: resume_dir.is_some(),
        stop_after: args.stop_after,
        stop,
        progress: !args.quiet,
        workers: if args.cuda { 1 } else { workers },
        tokenizer_json: Some(tk_json),
        ops: args.ops,
    };
    let s = train(&opts, &data, &device)?;
    let fmt_val =
        |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.4} (ppl {:.2})", v.exp()));
    println!(
        "steps {}..{}{}: final train loss {:.4}, validation loss {} -> {}, {:.0} tokens/s, {} skipped",
        s.start_step,
        s.steps_done,
        if s.interrupted { " (stopped early)" } else { "" },
        s.losses.last().copied().unwrap_or(f64::NAN),
        fmt_val(s.first_val_loss),
        fmt_val(s.last_val_loss),
        s.tokens_per_s,
        s.skipped_steps
    );
    println!("checkpoint: {}", out_dir.display());
    if args.sample_tokens > 0 {
        let prompt = tokenizer::encode(&tk, &args.prompt)?;
        if prompt.is_empty() {
            bail!("--prompt is empty after tokenization");
        }
        let ids = generate(&s.model, &prompt, args.sample_tokens, 0.8, 40, args.seed)?;
        println!(
            "--- sample (temperature 0.8, top-k 40) ---\n{}{}",
            args.prompt,
            tokenizer::decode(&tk, &ids)?
        );
    }
    Ok(())
}
