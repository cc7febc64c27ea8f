//! GGUF files we write: they read back, run in all three ternary types, and every kind of damage
//! gives a clear error, never a panic.

use bitnet_core::format::GgmlType;
use bitnet_infer::export::{preset, write_random_model};
use bitnet_infer::gguf::{parse_header, GgufFile};
use bitnet_infer::{Engine, InferError, KvType, Logits, Model};
use std::path::Path;

fn random_tiny(dir: &Path, ty: GgmlType) -> std::path::PathBuf {
    random_tiny_head(dir, ty, GgmlType::F16)
}

fn random_tiny_head(dir: &Path, ty: GgmlType, head: GgmlType) -> std::path::PathBuf {
    let p = dir.join(format!("tiny-{ty:?}-{head:?}.gguf"));
    write_random_model(&p, &preset("tiny").unwrap(), ty, head, 42).unwrap();
    p
}

/// Logits of every position, with an f32 KV cache: these tests compare weight formats, and an
/// f16 cache would add its own rounding to the differences they bound.
fn logits(path: &Path, prompt: &[u32]) -> Vec<f32> {
    let engine = Engine::new(Model::load_gguf(path).unwrap(), 1).unwrap();
    let mut st = engine.new_state_with(16, KvType::F32).unwrap();
    engine.forward(&mut st, prompt, Logits::All).unwrap().to_vec()
}

fn max_abs(v: &[f32]) -> f32 {
    v.iter().fold(0.0f32, |m, x| m.max(x.abs()))
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max)
}

/// Quantized heads (and embeddings) stay close to the f16 one: the same argmax at every position
/// and logits within a few percent of the largest.
#[test]
fn quantized_heads_track_the_f16_head() {
    let dir = tempfile::tempdir().unwrap();
    let prompt = [5u32, 100, 7, 300, 42];
    let base = logits(&random_tiny(dir.path(), GgmlType::TQ2_0), &prompt);
    let max = max_abs(&base);
    let argmax = |v: &[f32]| -> Vec<usize> {
        v.chunks(512)
            .map(|r| (0..r.len()).max_by(|&a, &b| r[a].total_cmp(&r[b])).unwrap())
            .collect()
    };
    for (head, tol) in [(GgmlType::Q8_0, 0.01), (GgmlType::Q6K, 0.03)] {
        let path = random_tiny_head(dir.path(), GgmlType::TQ2_0, head);
        let f = GgufFile::open(&path).unwrap();
        assert_eq!(f.header.tensor("token_embd.weight").unwrap().ty, head);
        let got = logits(&path, &prompt);
        let worst = max_diff(&got, &base);
        assert!(worst <= tol * max, "{head:?} head: logits off by {worst} (max {max})");
        assert_eq!(argmax(&got), argmax(&base), "{head:?} head changes the greedy tokens");
    }
}

#[test]
fn random_models_read_back_and_agree_across_ternary_types() {
    let dir = tempfile::tempdir().unwrap();
    let prompt = [5u32, 100, 7, 300, 42];
    let mut outs = Vec::new();
    for ty in [GgmlType::TQ2_0, GgmlType::TQ1_0, GgmlType::I2S] {
        let path = random_tiny(dir.path(), ty);
        let f = GgufFile::open(&path).unwrap();
        assert_eq!(f.header.get_str("general.architecture").unwrap(), "bitnet-b1.58");
        assert_eq!(f.header.tensor("blk.1.ffn_down.weight").unwrap().ty, ty);
        assert_eq!(f.header.tensor("blk.1.ffn_down.weight").unwrap().dims, vec![512, 256]);
        outs.push(logits(&path, &prompt));
    }
    // The same ternary codes and the same f16 block scales: TQ2_0 and TQ1_0 agree up to the f32
    // order of the sums (TQ2_0 rows run as whole-row integer tiles, TQ1_0 block by block).
    let max = max_abs(&outs[0]);
    let worst = max_diff(&outs[1], &outs[0]);
    assert!(worst <= 1e-5 * max, "TQ2_0 and TQ1_0 disagree by {worst} (max |logit| {max})");
    // I2_S keeps the scale as f32, so it differs by the f16 rounding of the scale.
    let worst = max_diff(&outs[2], &outs[0]);
    assert!(worst <= 2e-3 * max, "I2_S and TQ2_0 disagree by {worst} (max |logit| {max})");
    assert!(outs[0].iter().all(|v| v.is_finite()));
}

#[test]
fn every_truncation_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(random_tiny(dir.path(), GgmlType::TQ2_0)).unwrap();
    let header_end = parse_header(&bytes).unwrap().data_offset;
    // Every cut inside the header, then a few inside the data.
    let cuts = (0..header_end).chain((header_end..bytes.len()).step_by(4099));
    for cut in cuts {
        assert!(parse_header(&bytes[..cut]).is_err(), "a file cut at {cut} parsed");
    }
}

#[test]
fn bad_magic_version_and_type_ids_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = random_tiny(dir.path(), GgmlType::TQ2_0);
    let good = std::fs::read(&path).unwrap();
    let mut b = good.clone();
    b[0] = b'X';
    assert!(matches!(parse_header(&b), Err(InferError::BadMagic { .. })));
    let mut b = good.clone();
    b[4] = 9;
    assert!(matches!(parse_header(&b), Err(InferError::UnsupportedVersion { version: 9 })));
    // The type id of the first linear tensor: find "blk.0.attn_q.weight" and step over its dims.
    let name = b"blk.0.attn_q.weight";
    let at = good.windows(name.len()).position(|w| w == name).unwrap() + name.len();
    let type_at = at + 4 + 2 * 8;
    assert_eq!(u32::from_le_bytes(good[type_at..type_at + 4].try_into().unwrap()), 35);
    let mut b = good.clone();
    b[type_at..type_at + 4].copy_from_slice(&77u32.to_le_bytes());
    let err = parse_header(&b).unwrap_err();
    assert!(matches!(err, InferError::UnsupportedTensorType { .. }), "{err}");
    assert!(err.to_string().contains("blk.0.attn_q.weight"), "{err}");
    // A huge string length must not allocate: the first key's length.
    let mut b = good;
    b[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(parse_header(&b).is_err());
}

#[test]
fn missing_tensor_and_bad_requests_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = random_tiny(dir.path(), GgmlType::TQ2_0);
    // Rename a tensor in place (same length): the loader must name the one it misses.
    let mut b = std::fs::read(&path).unwrap();
    let name = b"blk.1.ffn_up.weight";
    let at = b.windows(name.len()).position(|w| w == name).unwrap();
    b[at..at + name.len()].copy_from_slice(b"blk.1.ffn_UP.weight");
    let broken = dir.path().join("broken.gguf");
    std::fs::write(&broken, &b).unwrap();
    let err = Model::load_gguf(&broken).unwrap_err();
    assert!(
        matches!(&err, InferError::MissingTensor { name } if name == "blk.1.ffn_up.weight"),
        "{err}"
    );

    let engine = Engine::new(Model::load_gguf(&path).unwrap(), 1).unwrap();
    let mut st = engine.new_state(8).unwrap();
    assert!(matches!(engine.forward(&mut st, &[], Logits::Last), Err(InferError::EmptyPrompt)));
    assert!(matches!(
        engine.forward(&mut st, &[512], Logits::Last),
        Err(InferError::TokenOutOfRange { id: 512, vocab: 512 })
    ));
    assert!(matches!(
        engine.forward(&mut st, &[1; 9], Logits::Last),
        Err(InferError::ContextFull { tokens: 9, ctx: 8 })
    ));
    assert_eq!(st.pos(), 0, "failed calls leave the state untouched");
}

/// Logits do not depend on the thread count, bit for bit: rows are split across threads but each
/// is summed alike, and attention gives the same sums whether threads own whole kv heads (1 and
/// 2 threads here: 2 kv heads) or share interleaved jobs (3 threads). The prompt crosses a key
/// block of 32 positions, and decode steps follow it; f32 and f16 KV caches.
#[test]
fn logits_are_identical_on_any_number_of_threads() {
    let dir = tempfile::tempdir().unwrap();
    let path = random_tiny_head(dir.path(), GgmlType::TQ2_0, GgmlType::Q6K);
    let prompt: Vec<u32> = (0..37).map(|i| (i * 37 + 11) % 500).collect();
    let run = |threads: usize, kv: KvType| -> Vec<f32> {
        let engine = Engine::new(Model::load_gguf(&path).unwrap(), threads).unwrap();
        let mut st = engine.new_state_with(64, kv).unwrap();
        assert_eq!(st.kv_type(), kv);
        let mut all = engine.forward(&mut st, &prompt, Logits::All).unwrap().to_vec();
        for t in [3u32, 99, 7] {
            all.extend_from_slice(engine.forward(&mut st, &[t], Logits::Last).unwrap());
        }
        all
    };
    for kv in [KvType::F32, KvType::F16] {
        let one = run(1, kv);
        assert!(one.iter().all(|v| v.is_finite()));
        for threads in [2, 3] {
            assert!(run(threads, kv) == one, "{threads} threads change the logits ({kv:?} cache)");
        }
    }
}

/// `bench` at a depth fills the cache once and times each run from there, as llama-bench's `-d`.
#[test]
fn bench_measures_at_a_depth() {
    let dir = tempfile::tempdir().unwrap();
    let engine =
        Engine::new(Model::load_gguf(&random_tiny(dir.path(), GgmlType::TQ2_0)).unwrap(), 2)
            .unwrap();
    let rows = bitnet_infer::bench::bench(&engine, 8, 4, 40, 2, KvType::F16).unwrap();
    let names: Vec<String> = rows.iter().map(|r| r.test_name()).collect();
    assert_eq!(names, ["pp8 @ d40", "tg4 @ d40"]);
    assert!(rows.iter().all(|r| r.n_depth == 40 && r.samples_ns.len() == 2));
}
