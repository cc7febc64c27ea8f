//! `bitnet bench`: prompt-processing and generation tokens/s as llama-bench reports them, for
//! each thread count, plus the process's peak memory. `--json` prints a list of objects with
//! llama-bench's field names.

use super::bench_kernels::cpu_model;
use super::model_args::default_threads;
use anyhow::{Context, Result};
use bitnet_core::kernels::{Isa, Kernels};
use bitnet_infer::bench::{bench, BenchResult};
use bitnet_infer::load::open_model;
use bitnet_infer::{Engine, KvType};
use serde_json::json;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A .gguf file or a Hugging Face model directory.
    #[arg(long, short = 'm')]
    pub model: PathBuf,
    /// Prompt tokens of the pp test (0 skips it).
    #[arg(long = "n-prompt", short = 'p', default_value_t = 128)]
    pub n_prompt: usize,
    /// Generated tokens of the tg test (0 skips it).
    #[arg(long = "n-gen", short = 'n', default_value_t = 64)]
    pub n_gen: usize,
    /// Tokens already in the cache when each test starts (llama-bench's -d): decode and prefill
    /// at that depth, attention reading the cache as it would deep into a conversation.
    #[arg(long = "n-depth", short = 'd', default_value_t = 0)]
    pub n_depth: usize,
    /// Thread counts, comma-separated.
    #[arg(long, short = 't', value_delimiter = ',', default_values_t = vec![default_threads()])]
    pub threads: Vec<usize>,
    /// Timed repetitions of each test (after one warm-up run).
    #[arg(long, short = 'r', default_value_t = 5)]
    pub repetitions: usize,
    /// Print a JSON list (llama-bench's fields) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Element type of the KV cache: f32 or f16 (llama.cpp's default).
    #[arg(long = "cache-type", default_value = "f32", value_parser = parse_kv_type)]
    pub cache_type: KvType,
    /// Kernel paths to run, comma-separated (scalar, avx2, avx512, avx512vnni), each measured
    /// in the same run; the fastest this CPU has when absent.
    #[arg(long, value_delimiter = ',')]
    pub isa: Vec<String>,
}

/// A KV cache element type by name, for `--cache-type`.
pub fn parse_kv_type(s: &str) -> std::result::Result<KvType, String> {
    KvType::from_name(s).ok_or_else(|| format!("unknown cache type {s:?}: use f32 or f16"))
}

/// The peak resident set of this process (`VmHWM`), where the OS reports it.
fn peak_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

pub fn run(a: Args) -> Result<()> {
    let model = open_model(&a.model).with_context(|| format!("loading {}", a.model.display()))?;
    let file = a.model.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    let (size, params) = (model.weights.size_bytes(), model.weights.n_params());
    let model_type =
        format!("{} {:?}", model.config.arch.gguf_name(), model.weights.layers[0].wq.ty);
    let isas: Vec<Isa> = if a.isa.is_empty() {
        vec![Isa::best()]
    } else {
        let parse = |s: &String| Isa::from_name(s).with_context(|| format!("kernel path {s}"));
        a.isa.iter().map(parse).collect::<Result<_>>()?
    };
    let mut rows: Vec<(Isa, BenchResult)> = Vec::new();
    for &isa in &isas {
        for &t in &a.threads {
            let engine = Engine::with_kernels(model.clone(), Kernels::new(isa)?, t)?;
            let res = bench(&engine, a.n_prompt, a.n_gen, a.n_depth, a.repetitions, a.cache_type)?;
            rows.extend(res.into_iter().map(|r| (isa, r)));
        }
    }
    let peak = peak_rss_bytes();
    if a.json {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let list: Vec<_> = rows
            .iter()
            .map(|(isa, r)| {
                json!({
                    "build_commit": env!("CARGO_PKG_VERSION"),
                    "cpu_info": cpu_model(),
                    "gpu_info": "",
                    "backends": "CPU",
                    "kernels": isa.name(),
                    "model_filename": file,
                    "model_type": model_type,
                    "model_size": size,
                    "model_n_params": params,
                    "n_batch": bitnet_infer::engine::MAX_BATCH,
                    "n_ubatch": bitnet_infer::engine::MAX_BATCH,
                    "n_threads": r.n_threads,
                    "type_k": a.cache_type.name(),
                    "type_v": a.cache_type.name(),
                    "n_gpu_layers": 0,
                    "use_mmap": true,
                    "n_prompt": r.n_prompt,
                    "n_gen": r.n_gen,
                    "n_depth": r.n_depth,
                    "test_time": now,
                    "avg_ns": r.avg_ns().round() as u64,
                    "stddev_ns": r.stddev_ns().round() as u64,
                    "avg_ts": r.avg_ts(),
                    "stddev_ts": r.stddev_ts(),
                    "samples_ns": r.samples_ns,
                    "samples_ts": r.samples_ts(),
                    "peak_rss_bytes": peak,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    println!("| model | size | params | backend | threads | test | t/s |");
    println!("| --- | ---: | ---: | --- | ---: | ---: | ---: |");
    for (isa, r) in &rows {
        println!(
            "| {model_type} | {:.2} MiB | {:.2} M | CPU {} | {} | {} | {:.2} ± {:.2} |",
            size as f64 / (1 << 20) as f64,
            params as f64 / 1e6,
            isa.name(),
            r.n_threads,
            r.test_name(),
            r.avg_ts(),
            r.stddev_ts()
        );
    }
    if let Some(p) = peak {
        println!("peak RSS: {:.1} MiB", p as f64 / (1 << 20) as f64);
    }
    Ok(())
}
