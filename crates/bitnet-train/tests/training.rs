//! The trainer: schedule values, exact resume, a real run whose validation loss falls, divergence
//! handling and checkpoint contents.

mod common;

use bitnet_train::bundled;
use bitnet_train::data::shards::tokenize_split;
use bitnet_train::data::Batcher;
use bitnet_train::data::{tokenizer, TokenData};
use bitnet_train::fused::adamw::sum_squares;
use bitnet_train::fused::OpPath;
use bitnet_train::layers::QuantMode;
use bitnet_train::models::{CausalLm, ModelConfig, Preset};
use bitnet_train::trainer::checkpoint::{load_safetensors, read_state};
use bitnet_train::trainer::AdamW;
use bitnet_train::trainer::{metrics, train, Schedule, TrainOptions};
use bitnet_train::TrainError;
use candle_core::Device;
use candle_core::Tensor;
use common::micro_config;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

#[test]
fn two_stage_schedule_of_the_700m_preset() {
    let (p1, p2) = Preset::M700.defaults().lr;
    let s = Schedule::two_stage(10_000, 375, p1, p2);
    assert_eq!(s.lr(0), 1.5e-3 / 375.0);
    assert_eq!(s.lr(374), 1.5e-3, "end of warmup: the stage-1 peak");
    assert_eq!(s.lr(375), 1.5e-3);
    // Last stage-1 step: one step short of the stage-1 end value (1.25e-3).
    let slope = (1.5e-3 - 1.25e-3) / (5000.0 - 375.0);
    assert!((s.lr(4999) - (1.25e-3 + slope)).abs() < 1e-12);
    assert_eq!(s.lr(5000), 1e-3, "stage switch: drop to the stage-2 peak");
    assert!(s.lr(4999) > s.lr(5000));
    assert!((s.lr(9999) - 1e-3 / 5000.0).abs() < 1e-12, "decays to zero at the end");
    assert_eq!(s.weight_decay(4999), 0.1);
    assert_eq!(s.weight_decay(5000), 0.0);
    let c = Schedule::cosine(1000, 100, 1e-3, 1e-4);
    assert_eq!(c.lr(99), 1e-3);
    assert!((c.lr(550) - 5.5e-4).abs() < 1e-12);
    assert_eq!(c.weight_decay(900), 0.1);
}

fn shakespeare(vocab_cap: usize) -> TokenData {
    let tk = tokenizer::from_bytes(bundled::TOKENIZER_JSON.as_bytes()).unwrap();
    let text = &bundled::SHAKESPEARE[..200_000];
    let (train, val) = tokenize_split(&tk, &[("s".into(), text.into())], 0.1).unwrap();
    let cap = |v: Vec<u32>| v.into_iter().map(|t| t % vocab_cap as u32).collect::<Vec<_>>();
    TokenData::from_tokens(cap(train), cap(val), vocab_cap).unwrap()
}

fn options(cfg: ModelConfig, out: &Path, steps: u64) -> TrainOptions {
    TrainOptions {
        config: cfg,
        steps,
        batch_size: 4,
        seq_len: 32,
        grad_accum: 2,
        schedule: Schedule::two_stage(steps, 2, 3e-3, 2e-3),
        seed: 11,
        out_dir: out.to_path_buf(),
        save_every: 0,
        eval_every: 3,
        eval_windows: 4,
        log_every: 1,
        clip: 1.0,
        max_bad_steps: 3,
        resume: false,
        stop_after: None,
        stop: Arc::new(AtomicBool::new(false)),
        progress: false,
        workers: 1,
        ops: Default::default(),
        tokenizer_json: None,
    }
}

#[test]
fn interrupted_and_resumed_run_equals_an_uninterrupted_one() {
    let data = shakespeare(97);
    let cfg = micro_config(QuantMode::B158, false);
    let dev = Device::Cpu;
    let a_dir = tempfile::tempdir().unwrap();
    let full = train(&options(cfg.clone(), a_dir.path(), 8), &data, &dev).unwrap();
    assert_eq!(full.losses.len(), 8);

    let b_dir = tempfile::tempdir().unwrap();
    let mut o = options(cfg.clone(), b_dir.path(), 8);
    o.stop_after = Some(4);
    let first = train(&o, &data, &dev).unwrap();
    assert!(first.interrupted);
    assert_eq!(read_state(b_dir.path()).unwrap().step, 4);
    let mut o = options(cfg, b_dir.path(), 8);
    o.resume = true;
    let second = train(&o, &data, &dev).unwrap();
    assert_eq!(second.start_step, 4);

    let resumed: Vec<f64> = first.losses.iter().chain(&second.losses).copied().collect();
    assert_eq!(resumed, full.losses, "losses must be bit-identical");
    let (wa, _) = load_safetensors(&a_dir.path().join("model.safetensors"), &dev).unwrap();
    let (wb, _) = load_safetensors(&b_dir.path().join("model.safetensors"), &dev).unwrap();
    for (k, ta) in &wa {
        let (va, vb): (Vec<f32>, Vec<f32>) = (
            ta.flatten_all().unwrap().to_vec1().unwrap(),
            wb[k].flatten_all().unwrap().to_vec1().unwrap(),
        );
        assert_eq!(va, vb, "{k} differs after resume");
    }
    // The resumed log has each step once.
    let steps: Vec<u64> = metrics::read(&b_dir.path().join("metrics.jsonl"))
        .unwrap()
        .iter()
        .map(|r| r.step)
        .collect();
    assert_eq!(steps, (0..=8).collect::<Vec<_>>());
}

#[test]
fn tiny_run_validation_loss_falls_well_below_its_start() {
    let data = shakespeare(4096);
    let mut cfg = Preset::Tiny.config();
    cfg.num_hidden_layers = 2;
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(cfg, dir.path(), 40);
    o.batch_size = 8;
    o.seq_len = 64;
    o.grad_accum = 1;
    o.eval_every = 20;
    o.eval_windows = 16;
    o.schedule = Schedule::two_stage(40, 4, 3e-3, 2e-3);
    let s = train(&o, &data, &Device::Cpu).unwrap();
    let (start, end) = (s.first_val_loss.unwrap(), s.last_val_loss.unwrap());
    // ln(4096) = 8.3 at the start; a model that learned the unigram statistics alone is near 6.
    assert!(start > 8.0, "start {start}");
    eprintln!("validation loss {start} -> {end}");
    assert!(end < start - 1.5, "validation loss {start} -> {end}");

    let recs = metrics::read(&dir.path().join("metrics.jsonl")).unwrap();
    assert_eq!(recs.len(), 41);
    assert!(recs.iter().skip(1).all(|r| r.loss.is_some() && r.lr > 0.0 && r.tokens_per_s > 0.0));
    assert_eq!(recs.iter().filter(|r| r.val_loss.is_some()).count(), 3);
    let png = std::fs::read(dir.path().join("loss.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");

    for f in ["model.safetensors", "config.json", "optimizer.safetensors", "trainer_state.json"] {
        assert!(dir.path().join(f).is_file(), "{f} missing");
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    let cfg = ModelConfig::load(&dir.path().join("config.json")).unwrap();
    assert_eq!(cfg.model_type, "bitnet");
}

#[test]
fn repeated_non_finite_steps_stop_training_with_an_error() {
    let data = shakespeare(97);
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(micro_config(QuantMode::None, false), dir.path(), 20);
    o.schedule = Schedule::two_stage(20, 1, 1e38, 1e38);
    o.clip = 0.0;
    let err = train(&o, &data, &Device::Cpu).unwrap_err();
    assert!(matches!(err, TrainError::Diverged(_)), "{err}");
    let recs = metrics::read(&dir.path().join("metrics.jsonl")).unwrap();
    assert!(recs.iter().filter(|r| r.skipped && r.step > 0).count() >= 3, "{recs:?}");
}

#[test]
fn resume_rejects_an_inconsistent_checkpoint() {
    let data = shakespeare(97);
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(micro_config(QuantMode::B158, false), dir.path(), 4);
    o.stop_after = Some(2);
    train(&o, &data, &Device::Cpu).unwrap();
    // Make the state claim another step than the weights were written at.
    let p = dir.path().join("trainer_state.json");
    let text = std::fs::read_to_string(&p).unwrap().replace("\"step\": 2", "\"step\": 3");
    std::fs::write(&p, text).unwrap();
    let mut o = options(micro_config(QuantMode::B158, false), dir.path(), 4);
    o.resume = true;
    let err = train(&o, &data, &Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("inconsistent"), "{err}");
}

#[test]
fn data_parallel_workers_compute_the_same_step() {
    let data = shakespeare(97);
    let cfg = micro_config(QuantMode::B158, false);
    let mut losses = Vec::new();
    for workers in [1, 2, 3] {
        let dir = tempfile::tempdir().unwrap();
        let mut o = options(cfg.clone(), dir.path(), 3);
        o.workers = workers;
        o.eval_every = 0;
        losses.push(train(&o, &data, &Device::Cpu).unwrap().losses);
    }
    // The first step sees identical weights, so only float summation order differs.
    for l in &losses[1..] {
        assert!((l[0] - losses[0][0]).abs() < 1e-5, "{losses:?}");
        for (a, b) in l.iter().zip(&losses[0]) {
            assert!((a - b).abs() < 1e-3, "{losses:?}");
        }
    }
}

/// The `tiny` shape (width 256, so every BitLinear runs the fused integer op) on short sequences.
fn tiny_options(out: &Path, steps: u64, ops: OpPath) -> TrainOptions {
    let mut cfg = Preset::Tiny.config();
    cfg.vocab_size = 4096;
    let mut o = options(cfg, out, steps);
    o.batch_size = 4;
    o.grad_accum = 1;
    o.eval_every = 0;
    o.eval_windows = 16;
    o.log_every = 50;
    o.schedule = Schedule::two_stage(steps, 20, 3e-3, 2e-3);
    o.ops = ops;
    o
}

#[test]
fn fused_steps_give_the_composed_losses_along_one_trajectory() {
    // Ternary training is chaotic: a latent weight a rounding error away from a quantization
    // threshold moves a code, and Adam's first steps move every weight by about the learning
    // rate whatever its gradient's size, so two independent runs part after a few steps even
    // when only the order of f32 sums differs (composed against itself with 1 and 2 workers does
    // the same). Each step is therefore checked from the same weights: both paths' loss and
    // gradients on the step's batch, then the fused update.
    let data = shakespeare(4096);
    let mut cfg = Preset::Tiny.config();
    cfg.vocab_size = 4096;
    let mut model = CausalLm::new(&cfg, 5, &Device::Cpu).unwrap();
    let mut opt = AdamW::new(&model.params).unwrap();
    let mut batcher = Batcher::new(6);
    let (b, t) = (4, 32);
    let mut first = None;
    for step in 0..50 {
        let batch = batcher.next_batch(&data, b, t).unwrap();
        let ids = Tensor::from_vec(batch, (b, t), &Device::Cpu).unwrap();
        let mut run = |path| {
            model.set_path(path);
            model.cache_weight_quant().unwrap();
            let loss = model.loss(&ids, &ids).unwrap();
            let gs = loss.backward().unwrap();
            let grads: BTreeMap<String, Tensor> = model
                .params
                .iter()
                .map(|(n, v)| (n.clone(), gs.get(v.as_tensor()).unwrap().clone()))
                .collect();
            (loss.to_scalar::<f32>().unwrap() as f64, grads)
        };
        let (lc, gc) = run(OpPath::Composed);
        let (lf, gf) = run(OpPath::Fused);
        assert!((lf - lc).abs() <= 1e-3 * lc, "step {}: fused {lf}, composed {lc}", step + 1);
        let norm = |g: &BTreeMap<String, Tensor>| {
            g.values().map(|t| sum_squares(t).unwrap()).sum::<f64>().sqrt()
        };
        let (nf, nc) = (norm(&gf), norm(&gc));
        assert!((nf - nc).abs() <= 1e-3 * nc, "step {}: gradient norm {nf} against {nc}", step + 1);
        first.get_or_insert(lf);
        let clip = if nf > 1.0 { 1.0 / (nf + 1e-6) } else { 1.0 };
        opt.step(&model.params, &gf, 3e-3, 0.1, clip).unwrap();
        if step == 49 {
            assert!(lf < first.unwrap() - 1.0, "the loss falls: {first:?} -> {lf}");
        }
    }
}

#[test]
fn fused_training_reaches_the_composed_validation_loss() {
    let data = shakespeare(4096);
    let run = |ops| {
        let dir = tempfile::tempdir().unwrap();
        train(&tiny_options(dir.path(), 400, ops), &data, &Device::Cpu).unwrap()
    };
    let (fused, composed) = (run(OpPath::Fused), run(OpPath::Composed));
    let (vf, vc) = (fused.last_val_loss.unwrap(), composed.last_val_loss.unwrap());
    eprintln!("validation loss after 400 steps: fused {vf}, composed {vc}");
    assert!((vf - vc).abs() <= 0.01 * vc, "validation after 400 steps: fused {vf}, composed {vc}");
    assert!(vf < fused.first_val_loss.unwrap() - 2.0, "the fused run learns");
}

#[test]
fn fused_run_resumed_after_four_steps_equals_eight_steps_bit_for_bit() {
    let data = shakespeare(4096);
    let a_dir = tempfile::tempdir().unwrap();
    let full = train(&tiny_options(a_dir.path(), 8, OpPath::Fused), &data, &Device::Cpu).unwrap();
    let b_dir = tempfile::tempdir().unwrap();
    let mut o = tiny_options(b_dir.path(), 8, OpPath::Fused);
    o.stop_after = Some(4);
    let first = train(&o, &data, &Device::Cpu).unwrap();
    let mut o = tiny_options(b_dir.path(), 8, OpPath::Fused);
    o.resume = true;
    let second = train(&o, &data, &Device::Cpu).unwrap();
    let resumed: Vec<f64> = first.losses.iter().chain(&second.losses).copied().collect();
    assert_eq!(resumed, full.losses, "losses must be bit-identical");
    let (wa, _) = load_safetensors(&a_dir.path().join("model.safetensors"), &Device::Cpu).unwrap();
    let (wb, _) = load_safetensors(&b_dir.path().join("model.safetensors"), &Device::Cpu).unwrap();
    for (k, ta) in &wa {
        let va: Vec<f32> = ta.flatten_all().unwrap().to_vec1().unwrap();
        let vb: Vec<f32> = wb[k].flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(va, vb, "{k} differs after resume");
    }
}
