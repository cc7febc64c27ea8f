//! Continuous batching: a sequence's logits in a batched forward equal, bit for bit, what it gets
//! when it runs alone — whatever the other sequences are, however its prompt is cut into chunks,
//! whenever it joins.

use bitnet_core::format::GgmlType;
use bitnet_infer::engine::{BatchScratch, SeqStep};
use bitnet_infer::export::{preset, write_random_model};
use bitnet_infer::sampling::argmax;
use bitnet_infer::{load::open_model, Engine, KvType, Logits};

fn engine(ty: GgmlType, head: GgmlType, threads: usize) -> (tempfile::TempDir, Engine) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    write_random_model(&path, &preset("tiny").unwrap(), ty, head, 5).unwrap();
    let e = Engine::new(open_model(&path).unwrap(), threads).unwrap();
    (dir, e)
}

fn prompt(i: usize, len: usize) -> Vec<u32> {
    (0..len).map(|j| ((i * 131 + j * 17 + 3) % 500) as u32).collect()
}

/// The logits after the prompt and after each of `n` greedy tokens, running alone.
fn alone(e: &Engine, kv: KvType, p: &[u32], n: usize) -> Vec<Vec<f32>> {
    let mut st = e.new_state_with(128, kv).unwrap();
    let mut out = vec![e.forward(&mut st, p, Logits::Last).unwrap().to_vec()];
    for _ in 0..n {
        let next = argmax(out.last().unwrap());
        out.push(e.forward(&mut st, &[next], Logits::Last).unwrap().to_vec());
    }
    out
}

/// Eight sequences joining at different steps, prompts fed in chunks of `chunk` tokens, one
/// decode token a step for each that is generating; every logit row compared bit for bit.
fn check(ty: GgmlType, head: GgmlType, kv: KvType, chunk: usize, threads: usize) {
    let (_dir, e) = engine(ty, head, threads);
    let n_gen = 6;
    let prompts: Vec<Vec<u32>> = (0..8).map(|i| prompt(i, 1 + i * 7)).collect();
    let want: Vec<Vec<Vec<f32>>> = prompts.iter().map(|p| alone(&e, kv, p, n_gen)).collect();
    let mut states: Vec<_> = (0..8).map(|_| e.new_state_with(128, kv).unwrap()).collect();
    // Per sequence: prompt tokens fed so far, tokens generated, logits seen.
    let mut fed = [0usize; 8];
    let mut next = [0u32; 8];
    let mut got: Vec<Vec<Vec<f32>>> = vec![Vec::new(); 8];
    let mut scratch = BatchScratch::default();
    let vocab = e.config().vocab_size;
    for step in 0..200 {
        let mut plan = Vec::new();
        for i in 0..8 {
            // Sequence i joins at step i / 2.
            if step < i / 2 || got[i].len() > n_gen {
                continue;
            }
            if fed[i] < prompts[i].len() {
                let end = (fed[i] + chunk).min(prompts[i].len());
                plan.push((i, fed[i]..end));
            } else {
                plan.push((i, 0..0));
            }
        }
        if plan.is_empty() {
            break;
        }
        let mut steps = Vec::new();
        let mut idx = Vec::new();
        for (i, state) in states.iter_mut().enumerate() {
            let Some((_, r)) = plan.iter().find(|(j, _)| *j == i) else { continue };
            let (tokens, logits) = if r.is_empty() {
                (std::slice::from_ref(&next[i]), true)
            } else {
                (&prompts[i][r.clone()], r.end == prompts[i].len())
            };
            steps.push(SeqStep { state, tokens, logits });
            if logits {
                idx.push(i);
            }
        }
        let logits = e.forward_many(&mut steps, &mut scratch).unwrap().to_vec();
        assert_eq!(logits.len(), idx.len() * vocab);
        for (i, r) in &plan {
            if !r.is_empty() {
                fed[*i] = r.end;
            }
        }
        for (&i, row) in idx.iter().zip(logits.chunks(vocab)) {
            next[i] = argmax(row);
            got[i].push(row.to_vec());
        }
    }
    for i in 0..8 {
        assert_eq!(got[i].len(), n_gen + 1, "sequence {i} rows");
        for (s, (g, w)) in got[i].iter().zip(&want[i]).enumerate() {
            let same = g.iter().zip(w).all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{ty:?} {kv:?} chunk {chunk}: sequence {i}, row {s} differs from alone");
        }
    }
}

#[test]
fn batched_logits_equal_alone_tq2_0() {
    check(GgmlType::TQ2_0, GgmlType::Q6K, KvType::F32, 5, 2);
    check(GgmlType::TQ2_0, GgmlType::Q6K, KvType::F32, 64, 3);
}

#[test]
fn batched_logits_equal_alone_tq1_0_i2_s_and_f16_cache() {
    check(GgmlType::TQ1_0, GgmlType::Q8_0, KvType::F16, 4, 2);
    check(GgmlType::I2S, GgmlType::F16, KvType::F32, 9, 1);
}

#[test]
fn a_bad_step_is_refused_before_any_state_moves() {
    let (_dir, e) = engine(GgmlType::TQ2_0, GgmlType::Q6K, 1);
    let mut a = e.new_state(8).unwrap();
    let mut b = e.new_state(8).unwrap();
    let mut scratch = BatchScratch::default();
    let too_long = [1u32; 9];
    let mut steps = [
        SeqStep { state: &mut a, tokens: &[1, 2], logits: true },
        SeqStep { state: &mut b, tokens: &too_long, logits: true },
    ];
    let err = e.forward_many(&mut steps, &mut scratch).unwrap_err().to_string();
    assert!(err.contains('9') && err.contains('8'), "{err}");
    let mut steps = [SeqStep { state: &mut a, tokens: &[9999], logits: true }];
    assert!(e.forward_many(&mut steps, &mut scratch).is_err());
    let mut steps = [SeqStep { state: &mut a, tokens: &[], logits: true }];
    assert!(e.forward_many(&mut steps, &mut scratch).is_err());
    assert_eq!((a.pos(), b.pos()), (0, 0));
    // Nothing wanted: no logits.
    let mut steps = [SeqStep { state: &mut a, tokens: &[1, 2], logits: false }];
    assert!(e.forward_many(&mut steps, &mut scratch).unwrap().is_empty());
    assert_eq!(a.pos(), 2);
}
