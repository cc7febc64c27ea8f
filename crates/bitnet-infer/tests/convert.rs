//! `bitnet convert`: every target reproduces the source model. The per-tensor formats (I2_S,
//! Hugging Face packed) keep the scale exactly, so their logits equal the source's; the ggml
//! blocks store an f16 scale, so TQ2_0/TQ1_0 stay within transformers' tolerance with the same
//! greedy tokens. Q/K permutations must undo each other across a GGUF round trip.

mod common;
use bitnet_core::format::GgmlType;
use bitnet_infer::convert::{convert, Target, VocabSource};
use bitnet_infer::gguf::GgufFile;
use bitnet_infer::InferError;
use std::path::Path;

const TARGETS: [(&str, Target); 4] = [
    ("tq2_0.gguf", Target::Gguf(GgmlType::TQ2_0)),
    ("tq1_0.gguf", Target::Gguf(GgmlType::TQ1_0)),
    ("i2_s.gguf", Target::Gguf(GgmlType::I2S)),
    ("hf", Target::HfPacked),
];

fn conv(input: &Path, output: &Path, t: Target) {
    convert(input, output, t, VocabSource::Model).unwrap();
}

/// Ternary tensors of a GGUF file, by name.
fn tensor_bytes(path: &Path) -> Vec<(String, Vec<u8>)> {
    let f = GgufFile::open(path).unwrap();
    f.header.tensors.iter().map(|t| (t.name.clone(), f.data(t).to_vec())).collect()
}

#[test]
fn every_target_reproduces_the_hf_model() {
    let src = common::fixture("hf-online");
    let (prompt, want, greedy) = common::hf_expected("hf-online");
    let (base, _) = common::run_model(&src, &prompt, 1);
    let dir = tempfile::tempdir().unwrap();
    for (name, t) in TARGETS {
        let out = dir.path().join(name);
        conv(&src, &out, t);
        let (logits, got) = common::run_model(&out, &prompt, greedy.len());
        let exact = matches!(t, Target::HfPacked | Target::Gguf(GgmlType::I2S));
        let d = common::max_diff(&logits, &base);
        if exact {
            assert!(d <= 1e-5, "{name}: logits differ from the source's by {d}");
        }
        let vs_ref = common::max_diff(&logits, &want);
        assert!(vs_ref <= 0.15, "{name}: {vs_ref} from transformers' logits");
        assert_eq!(got, greedy, "{name}: greedy tokens");
    }
}

#[test]
fn round_trips_keep_codes_scales_and_rope_pairing() {
    let src = common::fixture("hf-offline");
    let (prompt, _, greedy) = common::hf_expected("hf-offline");
    let (base, _) = common::run_model(&src, &prompt, 1);
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    // HF -> I2_S (Q/K permuted to adjacent pairs) -> HF (permuted back): exact.
    conv(&src, &p("a.gguf"), Target::Gguf(GgmlType::I2S));
    conv(&p("a.gguf"), &p("back"), Target::HfPacked);
    let (logits, got) = common::run_model(&p("back"), &prompt, greedy.len());
    assert_eq!(common::max_diff(&logits, &base), 0.0);
    assert_eq!(got, greedy);
    // TQ2_0 -> TQ1_0 -> TQ2_0 reproduces every byte: codes and f16 scales survive.
    conv(&src, &p("b.gguf"), Target::Gguf(GgmlType::TQ2_0));
    conv(&p("b.gguf"), &p("c.gguf"), Target::Gguf(GgmlType::TQ1_0));
    conv(&p("c.gguf"), &p("d.gguf"), Target::Gguf(GgmlType::TQ2_0));
    assert_eq!(tensor_bytes(&p("b.gguf")), tensor_bytes(&p("d.gguf")));
}

#[test]
fn silu_models_become_llama_cpp_bitnet_without_permutation() {
    // The same weights with a SiLU gate are llama.cpp's `bitnet` architecture, whose RoPE pairs
    // halves as Hugging Face does.
    let dir = tempfile::tempdir().unwrap();
    let hf = dir.path().join("silu");
    std::fs::create_dir(&hf).unwrap();
    let src = common::fixture("hf-offline");
    std::fs::copy(src.join("model.safetensors"), hf.join("model.safetensors")).unwrap();
    let cfg = std::fs::read_to_string(src.join("config.json")).unwrap();
    std::fs::write(hf.join("config.json"), cfg.replace("\"relu2\"", "\"silu\"")).unwrap();
    let out = dir.path().join("silu.gguf");
    let r = convert(&hf, &out, Target::Gguf(GgmlType::I2S), VocabSource::Model).unwrap();
    assert!(!r.permuted_qk);
    let f = GgufFile::open(&out).unwrap();
    assert_eq!(f.header.get_str("general.architecture").unwrap(), "bitnet");
    let (prompt, _, _) = common::hf_expected("hf-offline");
    let (a, ga) = common::run_model(&hf, &prompt, 8);
    let (b, gb) = common::run_model(&out, &prompt, 8);
    assert_eq!(common::max_diff(&a, &b), 0.0);
    assert_eq!(ga, gb);
}

#[test]
fn vocabulary_travels_both_ways() {
    // A trainer-style directory: the fixture's weights with the bundled 4096-token tokenizer
    // would not fit, so the tokenizer is checked against a 256-row embedding first (an error)
    // and then through a GGUF file that carries a vocabulary of its own.
    let dir = tempfile::tempdir().unwrap();
    let src = common::fixture("hf-offline");
    let tok = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bitnet-train/assets/tokenizer.json");
    let err = convert(
        &src,
        &dir.path().join("x.gguf"),
        Target::Gguf(GgmlType::TQ2_0),
        VocabSource::File(&tok),
    )
    .unwrap_err();
    assert!(err.to_string().contains("4096 tokens"), "{err}");
    assert!(!dir.path().join("x.gguf").exists());
    assert!(!dir.path().join("x.gguf.tmp").exists());

    // SmolLM2's GGUF vocabulary (49152 tokens) becomes tokenizer.json and comes back the same.
    let smol = common::smollm2();
    let h = GgufFile::open(&smol).unwrap().header;
    let tk = bitnet_infer::Tokenizer::from_gguf(&h).unwrap();
    let json = dir.path().join("tokenizer.json");
    std::fs::write(&json, tk.to_json().unwrap()).unwrap();
    let back = bitnet_infer::Tokenizer::from_file(&json).unwrap();
    let keys = bitnet_infer::convert::gguf_vocab(&back, 49152).unwrap();
    let get = |k: &str| keys.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(get("tokenizer.ggml.tokens").as_ref(), h.get("tokenizer.ggml.tokens"));
    assert_eq!(get("tokenizer.ggml.merges").as_ref(), h.get("tokenizer.ggml.merges"));
    assert_eq!(get("tokenizer.ggml.pre").unwrap().as_str(), Some("smollm"));
    let text = "Hello world, 12345 tokens!";
    assert_eq!(back.encode(text, false).unwrap(), tk.encode(text, false).unwrap());
}

#[test]
fn models_without_ternary_layers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("smol.gguf");
    let err = convert(&common::smollm2(), &out, Target::Gguf(GgmlType::TQ2_0), VocabSource::Model)
        .unwrap_err();
    assert!(matches!(err, InferError::BadConfig(_)), "{err}");
    assert!(!out.exists());
}

/// A LLaMA GGUF converts when only its embedding/head changes: to F16 the logits stay close to the
/// Q8_0 original's (the head then takes f32 activations instead of Q8_0 ones); Q6_K is refused
/// for SmolLM2's 576-wide rows (not whole 256-value blocks), and nothing is written.
#[test]
fn head_type_requantizes_a_llama_gguf() {
    use bitnet_infer::convert::convert_with_head;
    let dir = tempfile::tempdir().unwrap();
    let t = Target::Gguf(GgmlType::TQ2_0);
    let bad = dir.path().join("q6k.gguf");
    let err =
        convert_with_head(&common::smollm2(), &bad, t, VocabSource::Model, Some(GgmlType::Q6K))
            .unwrap_err();
    assert!(err.to_string().contains("not a multiple of 256"), "{err}");
    assert!(!bad.exists());
    let out = dir.path().join("f16.gguf");
    convert_with_head(&common::smollm2(), &out, t, VocabSource::Model, Some(GgmlType::F16))
        .unwrap();
    let f = bitnet_infer::gguf::GgufFile::open(&out).unwrap();
    assert_eq!(f.header.tensor("token_embd.weight").unwrap().ty, GgmlType::F16);
    assert_eq!(f.header.tensor("blk.0.attn_q.weight").unwrap().ty, GgmlType::Q4_1);
    let prompt = [1u32, 504, 3458, 282, 4849, 314];
    let (a, _) = common::run_model(&common::smollm2(), &prompt, 1);
    let (b, _) = common::run_model(&out, &prompt, 1);
    let n = (a.len() * a[0].len()) as f32;
    let mean = a.iter().zip(&b).flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p - q).abs()));
    let mean = mean.sum::<f32>() / n;
    assert!(mean < 0.5, "mean logit difference {mean}");
    assert!(common::max_diff(&a, &b) < 2.0, "max logit difference {}", common::max_diff(&a, &b));
    let same = a.iter().zip(&b).filter(|(x, y)| common::top_k(x, 1) == common::top_k(y, 1)).count();
    assert!(same + 1 >= prompt.len(), "argmax agrees at {same} of {} positions", prompt.len());
}
