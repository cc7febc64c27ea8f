//! The training loop: gradient accumulation, global-norm clipping, NaN/inf skipping, periodic
//! validation, checkpoints (every N steps, at the end and when asked to stop) and exact resume.

use super::checkpoint::{self, Staged, TrainerState};
use super::metrics::{MetricRecord, MetricsLog};
use super::optim::AdamW;
use super::schedule::Schedule;
use crate::data::{Batcher, TokenData};
use crate::error::{Result, TrainError};
use crate::fused::OpPath;
use crate::models::{CausalLm, ModelConfig};
use bitnet_core::kernels::ThreadPool;
use candle_core::{Device, Tensor};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub config: ModelConfig,
    /// Total optimizer steps of the run.
    pub steps: u64,
    pub batch_size: usize,
    pub seq_len: usize,
    pub grad_accum: usize,
    pub schedule: Schedule,
    pub seed: u64,
    pub out_dir: PathBuf,
    /// Checkpoint every this many steps (0: only at the end and on stop).
    pub save_every: u64,
    /// Validation every this many steps (0: only at the start and the end).
    pub eval_every: u64,
    /// At most this many validation windows of `seq_len` tokens.
    pub eval_windows: usize,
    pub log_every: u64,
    /// Global gradient-norm clip (0 disables).
    pub clip: f64,
    /// Consecutive non-finite steps tolerated before training stops with an error.
    pub max_bad_steps: u32,
    /// Continue from the checkpoint in `out_dir`.
    pub resume: bool,
    /// Checkpoint and return once this many steps are done (as if interrupted).
    pub stop_after: Option<u64>,
    /// Set (e.g. by Ctrl-C) to checkpoint and return after the current step.
    pub stop: Arc<AtomicBool>,
    pub progress: bool,
    /// Data-parallel workers: each micro-batch is split by rows over this many threads, each
    /// running forward and backward on its rows (results depend on this count only through
    /// float summation order; a resumed run must use the same count to be bit-identical).
    pub workers: usize,
    /// `tokenizer.json` text copied into each checkpoint.
    pub tokenizer_json: Option<String>,
    /// The fused CPU ops (the default) or the composed reference ([`OpPath`]).
    pub ops: OpPath,
}

#[derive(Debug)]
pub struct TrainSummary {
    pub model: CausalLm,
    pub start_step: u64,
    pub steps_done: u64,
    /// Training loss of every step run in this call.
    pub losses: Vec<f64>,
    pub first_val_loss: Option<f64>,
    pub last_val_loss: Option<f64>,
    /// Tokens per second of training steps in this call (evaluation and checkpoints excluded).
    pub tokens_per_s: f64,
    pub skipped_steps: u64,
    pub interrupted: bool,
}

/// Mean loss over the fixed validation windows.
pub fn validation_loss(
    model: &CausalLm,
    data: &TokenData,
    seq_len: usize,
    batch: usize,
    max_windows: usize,
) -> Result<Option<f64>> {
    let windows = data.val_windows(seq_len, max_windows);
    if windows.is_empty() {
        return Ok(None);
    }
    let mut total = 0.0;
    for chunk in windows.chunks(batch.max(1)) {
        let flat: Vec<u32> = chunk.concat();
        let ids = Tensor::from_vec(flat, (chunk.len(), seq_len), model.device())?;
        let loss = model.loss(&ids, &ids)?.detach().to_scalar::<f32>()? as f64;
        total += loss * chunk.len() as f64;
    }
    Ok(Some(total / windows.len() as f64))
}

/// Trains per `opts` on `data`, writing checkpoints, `metrics.jsonl` and `loss.png` to `out_dir`.
pub fn train(opts: &TrainOptions, data: &TokenData, device: &Device) -> Result<TrainSummary> {
    let (b, t, accum) = (opts.batch_size, opts.seq_len, opts.grad_accum.max(1));
    if b == 0 || t < 2 {
        return Err(TrainError::Invalid("batch size must be >= 1 and sequence length >= 2".into()));
    }
    if t > opts.config.max_position_embeddings {
        return Err(TrainError::Invalid(format!(
            "sequence length {t} exceeds max_position_embeddings {}",
            opts.config.max_position_embeddings
        )));
    }
    if data.vocab_size > opts.config.vocab_size {
        return Err(TrainError::Invalid(format!(
            "the data's vocabulary ({}) is larger than the model's vocab_size ({})",
            data.vocab_size, opts.config.vocab_size
        )));
    }
    data.check_seq_len(t)?;
    std::fs::create_dir_all(&opts.out_dir).map_err(|e| TrainError::io(&opts.out_dir, e))?;

    let mut model = CausalLm::new(&opts.config, opts.seed, device)?;
    model.set_path(opts.ops);
    let mut opt = AdamW::with_path(&model.params, opts.ops)?;
    let mut batcher = Batcher::new(opts.seed.wrapping_add(1));
    let mut schedule = opts.schedule.clone();
    let (mut step, mut tokens_seen, mut skipped, mut elapsed) = (0u64, 0u64, 0u64, 0.0f64);
    if opts.resume {
        let st = resume_into(opts, &model, &mut opt)?;
        if (st.batch_size, st.seq_len, st.grad_accum) != (b, t, accum) {
            return Err(TrainError::Invalid(format!(
                "the checkpoint was trained with batch {} x seq {} x accum {}; resume with the same",
                st.batch_size, st.seq_len, st.grad_accum
            )));
        }
        if st.train_tokens != data.train_tokens() {
            return Err(TrainError::Invalid(format!(
                "the checkpoint was trained on {} tokens, this data has {}: resume on the same data",
                st.train_tokens,
                data.train_tokens()
            )));
        }
        batcher = Batcher::restore(&st.batcher)?;
        schedule = st.schedule.clone();
        schedule.total_steps = opts.steps;
        (step, tokens_seen, skipped, elapsed) =
            (st.step, st.tokens_seen, st.skipped_steps, st.elapsed_s);
    }
    if step >= opts.steps {
        return Err(TrainError::Invalid(format!(
            "the checkpoint is at step {step}; ask for more than {} steps",
            opts.steps
        )));
    }
    let start_step = step;
    let workers = opts.workers.clamp(1, b);
    let pool = ThreadPool::new(workers).map_err(|e| TrainError::Invalid(e.to_string()))?;
    model.cache_weight_quant_on(&pool)?;
    let mut log =
        MetricsLog::open(&opts.out_dir.join("metrics.jsonl"), opts.resume.then_some(step))?;

    let eval = |m: &CausalLm| validation_loss(m, data, t, b, opts.eval_windows);
    let first_val = eval(&model)?;
    if !opts.resume {
        if let Some(v) = first_val {
            log.append(&MetricRecord {
                step: 0,
                loss: None,
                lr: 0.0,
                tokens_per_s: 0.0,
                tokens: 0,
                grad_norm: None,
                val_loss: Some(v),
                val_ppl: Some(v.exp()),
                skipped: true,
            })?;
        }
    }

    let bar = if opts.progress { ProgressBar::new(opts.steps) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} {msg} [{elapsed_precise}<{eta_precise}]",
        )
        .expect("valid template"),
    );
    bar.set_position(step);

    let (mut losses, mut bad_run, mut last_val, mut interrupted) =
        (Vec::new(), 0u32, first_val, false);
    let mut window_tokens = 0u64;
    let mut window_secs = 0.0f64;
    let mut last_tps = 0.0;
    // Seconds spent in training steps (not evaluation or checkpoints) during this call.
    let mut run_secs = 0.0f64;
    while step < opts.steps {
        let step_start = Instant::now();
        let lr = schedule.lr(step);
        let wd = schedule.weight_decay(step);
        let mut grads: BTreeMap<String, Tensor> = BTreeMap::new();
        let mut loss_sum = 0.0f64;
        for _ in 0..accum {
            let batch = batcher.next_batch(data, b, t)?;
            let (loss, gs) = micro_step(&pool, &model, &batch, b, t, workers, accum)?;
            loss_sum += loss;
            add_grads(&mut grads, gs)?;
        }
        let loss = loss_sum / accum as f64;
        let norm = grad_norm(&pool, &grads)?;
        let finite = loss.is_finite() && norm.is_finite();
        if finite {
            bad_run = 0;
            let clip =
                if opts.clip > 0.0 && norm > opts.clip { opts.clip / (norm + 1e-6) } else { 1.0 };
            opt.step_on(&pool, &model.params, &grads, lr, wd, clip)?;
            model.cache_weight_quant_on(&pool)?;
        } else {
            skipped += 1;
            bad_run += 1;
            bar.println(format!(
                "step {}: non-finite loss {loss} or gradient norm {norm}; update skipped",
                step + 1
            ));
        }
        step += 1;
        let step_tokens = (b * t * accum) as u64;
        tokens_seen += step_tokens;
        window_tokens += step_tokens;
        let step_secs = step_start.elapsed().as_secs_f64();
        elapsed += step_secs;
        run_secs += step_secs;
        window_secs += step_secs;
        losses.push(loss);

        let stop_now = opts.stop.load(Ordering::Relaxed) || opts.stop_after == Some(step);
        let last = step == opts.steps;
        let do_eval = last || stop_now || (opts.eval_every > 0 && step % opts.eval_every == 0);
        if do_eval || last || !finite || step % opts.log_every.max(1) == 0 || stop_now {
            last_tps = window_tokens as f64 / window_secs.max(1e-9);
            let val = if do_eval { eval(&model)? } else { None };
            if val.is_some() {
                last_val = val;
            }
            log.append(&MetricRecord {
                step,
                loss: Some(loss),
                lr,
                tokens_per_s: last_tps,
                tokens: tokens_seen,
                grad_norm: Some(norm),
                val_loss: val,
                val_ppl: val.map(f64::exp),
                skipped: !finite,
            })?;
            window_tokens = 0;
            window_secs = 0.0;
        }
        if bad_run >= opts.max_bad_steps.max(1) {
            return Err(TrainError::Diverged(format!(
                "{bad_run} consecutive steps with non-finite loss or gradients (last at step \
                 {step}); the last checkpoint is untouched"
            )));
        }
        bar.set_position(step);
        bar.set_message(format!("loss {loss:.3} | {last_tps:.0} tok/s"));
        let save = last || stop_now || (opts.save_every > 0 && step % opts.save_every == 0);
        if save {
            let state = TrainerState {
                step,
                total_steps: opts.steps,
                tokens_seen,
                skipped_steps: skipped,
                adam_t: opt.t,
                batcher: batcher.state(),
                schedule: schedule.clone(),
                batch_size: b,
                seq_len: t,
                grad_accum: accum,
                seed: opts.seed,
                train_tokens: data.train_tokens(),
                elapsed_s: elapsed,
            };
            save_checkpoint(opts, &model, &opt, &state)?;
        }
        if stop_now && !last {
            interrupted = true;
            break;
        }
    }
    bar.finish_and_clear();
    let records = super::metrics::read(&opts.out_dir.join("metrics.jsonl"))?;
    super::plot::write_loss_png(&records, &opts.out_dir.join("loss.png"))?;
    let total_tokens = (step - start_step) * (b * t * accum) as u64;
    Ok(TrainSummary {
        model,
        start_step,
        steps_done: step,
        losses,
        first_val_loss: first_val,
        last_val_loss: last_val,
        tokens_per_s: total_tokens as f64 / run_secs.max(1e-9),
        skipped_steps: skipped,
        interrupted,
    })
}

/// One worker's mean loss and gradients.
type WorkerPart = (f64, BTreeMap<String, Tensor>);

/// Forward and backward of one micro-batch (`b` rows of `t` tokens), split over `workers`
/// threads of `pool` (which lives as long as the training run). Returns the mean loss and the
/// gradients of `loss / accum` by parameter name, summed over the workers in a fixed order.
fn micro_step(
    pool: &ThreadPool,
    model: &CausalLm,
    batch: &[u32],
    b: usize,
    t: usize,
    workers: usize,
    accum: usize,
) -> Result<(f64, BTreeMap<String, Tensor>)> {
    let device = model.device();
    let run = |rows: std::ops::Range<usize>| -> Result<(f64, BTreeMap<String, Tensor>)> {
        let n = rows.len();
        let ids = Tensor::from_slice(&batch[rows.start * t..rows.end * t], (n, t), device)?;
        let loss = model.loss(&ids, &ids)?;
        let value = loss.to_scalar::<f32>()? as f64;
        let gs = (loss * (n as f64 / (b * accum) as f64))?.backward()?;
        let mut out = BTreeMap::new();
        for (name, var) in model.params.iter() {
            if let Some(g) = gs.get(var.as_tensor()) {
                out.insert(name.clone(), g.clone());
            }
        }
        Ok((value * n as f64 / b as f64, out))
    };
    let parts: Vec<Result<WorkerPart>> = if workers == 1 {
        vec![run(0..b)]
    } else {
        let slots: Vec<Mutex<Option<Result<WorkerPart>>>> =
            (0..workers).map(|_| Mutex::new(None)).collect();
        pool.run(&|w| {
            if w < workers {
                let part = run(w * b / workers..(w + 1) * b / workers);
                *slots[w].lock().unwrap_or_else(|e| e.into_inner()) = Some(part);
            }
        })
        .map_err(|e| TrainError::Invalid(format!("a training worker failed: {e}")))?;
        slots
            .into_iter()
            .map(|s| {
                s.into_inner().unwrap_or_else(|e| e.into_inner()).unwrap_or_else(|| {
                    Err(TrainError::Invalid("a training worker did not run".into()))
                })
            })
            .collect()
    };
    let parts = parts.into_iter().collect::<Result<Vec<WorkerPart>>>()?;
    let loss = parts.iter().map(|p| p.0).sum();
    Ok((loss, sum_worker_grads(pool, parts)?))
}

/// The workers' gradients summed parameter by parameter, in worker order (as [`add_grads`]
/// would), the parameters shared out among the threads of `pool`.
fn sum_worker_grads(
    pool: &ThreadPool,
    mut parts: Vec<WorkerPart>,
) -> Result<BTreeMap<String, Tensor>> {
    if parts.len() <= 1 {
        return Ok(parts.pop().map(|p| p.1).unwrap_or_default());
    }
    let mut names: Vec<String> = parts.iter().flat_map(|p| p.1.keys().cloned()).collect();
    names.sort();
    names.dedup();
    let sums: Vec<(String, Mutex<Option<Tensor>>)> =
        names.into_iter().map(|n| (n, Mutex::new(None))).collect();
    let size = |n: &str| parts.iter().find_map(|p| p.1.get(n)).map_or(0, |g| g.elem_count());
    super::par::par_each(
        pool,
        &sums,
        |(n, _)| size(n),
        |(name, out)| {
            let mut acc: Option<Tensor> = None;
            for g in parts.iter().filter_map(|p| p.1.get(name)) {
                acc = Some(match acc {
                    Some(a) => (a + g)?,
                    None => g.clone(),
                });
            }
            *out.lock().unwrap_or_else(|e| e.into_inner()) = acc;
            Ok(())
        },
    )?;
    Ok(sums
        .into_iter()
        .filter_map(|(n, s)| s.into_inner().unwrap_or_else(|e| e.into_inner()).map(|t| (n, t)))
        .collect())
}

/// The global gradient norm `sqrt(Σ g²)`: one pass over each gradient on the CPU, summed in f64.
/// Each gradient's sum is computed on one thread of `pool`, and the sums are added in name order,
/// so the norm does not depend on the thread count.
fn grad_norm(pool: &ThreadPool, grads: &BTreeMap<String, Tensor>) -> Result<f64> {
    let items: Vec<(&Tensor, Mutex<f64>)> = grads.values().map(|g| (g, Mutex::new(0.0))).collect();
    super::par::par_each(
        pool,
        &items,
        |(g, _)| g.elem_count(),
        |(g, out)| {
            let sq = if g.device().is_cpu() {
                crate::fused::adamw::sum_squares(g)?
            } else {
                g.sqr()?.sum_all()?.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?
            };
            *out.lock().unwrap_or_else(|e| e.into_inner()) = sq;
            Ok(())
        },
    )?;
    let sq: f64 = items.iter().map(|(_, s)| *s.lock().unwrap_or_else(|e| e.into_inner())).sum();
    Ok(sq.sqrt())
}

/// `acc += more`, parameter by parameter (a name missing from `acc` starts at `more`'s value).
fn add_grads(acc: &mut BTreeMap<String, Tensor>, more: BTreeMap<String, Tensor>) -> Result<()> {
    for (name, g) in more {
        let sum = match acc.remove(&name) {
            Some(prev) => (prev + g)?,
            None => g,
        };
        acc.insert(name, sum);
    }
    Ok(())
}

fn save_checkpoint(
    opts: &TrainOptions,
    model: &CausalLm,
    opt: &AdamW,
    st: &TrainerState,
) -> Result<()> {
    let dir = &opts.out_dir;
    let meta = HashMap::from([
        ("format".to_string(), "pt".to_string()),
        ("step".to_string(), st.step.to_string()),
    ]);
    let mut staged = Staged::default();
    let model_bytes = checkpoint::safetensors_bytes(&model.params.tensors(), meta.clone())?;
    staged.stage(&dir.join(checkpoint::MODEL_FILE), &model_bytes)?;
    drop(model_bytes);
    staged.stage(&dir.join(checkpoint::CONFIG_FILE), model.config.to_json().as_bytes())?;
    if let Some(tk) = &opts.tokenizer_json {
        staged.stage(&dir.join(checkpoint::TOKENIZER_FILE), tk.as_bytes())?;
    }
    let opt_bytes = checkpoint::safetensors_bytes(&opt.state_tensors(&model.params)?, meta)?;
    staged.stage(&dir.join(checkpoint::OPTIMIZER_FILE), &opt_bytes)?;
    drop(opt_bytes);
    let state = serde_json::to_string_pretty(st).expect("state serializes");
    staged.stage(&dir.join(checkpoint::STATE_FILE), state.as_bytes())?;
    staged.commit()
}

/// Loads weights, optimizer moments and the trainer state from `opts.out_dir`.
fn resume_into(opts: &TrainOptions, model: &CausalLm, opt: &mut AdamW) -> Result<TrainerState> {
    let dir = &opts.out_dir;
    let st = checkpoint::read_state(dir)?;
    let (weights, wmeta) =
        checkpoint::load_safetensors(&dir.join(checkpoint::MODEL_FILE), model.device())?;
    let (moments, ometa) =
        checkpoint::load_safetensors(&dir.join(checkpoint::OPTIMIZER_FILE), model.device())?;
    for (file, meta) in [(checkpoint::MODEL_FILE, &wmeta), (checkpoint::OPTIMIZER_FILE, &ometa)] {
        if checkpoint::metadata_step(meta) != Some(st.step) {
            return Err(TrainError::Checkpoint {
                path: dir.join(file),
                msg: format!(
                    "written at step {:?} but trainer_state.json is at step {}: the checkpoint is \
                     inconsistent",
                    checkpoint::metadata_step(meta),
                    st.step
                ),
            });
        }
    }
    model.params.load(&weights, &dir.join(checkpoint::MODEL_FILE).display().to_string())?;
    opt.load_state(st.adam_t, &model.params, &moments)?;
    Ok(st)
}
