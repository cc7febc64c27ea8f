//! llama.cpp's tokenizer test vectors (`ggml-vocab-*.gguf{,.inp,.out}` from llama.cpp's
//! `models/`): every string must give exactly llama.cpp's ids, without BOS. The same vectors check
//! the vocabulary `bitnet convert` writes: GGUF vocabulary -> tokenizer.json -> GGUF keys ->
//! tokenizer must tokenize as llama.cpp does and keep the token list.

mod common;
use bitnet_infer::convert::gguf_vocab;
use bitnet_infer::gguf::{parse_header, GgufFile, GgufHeader, GgufWriter};
use bitnet_infer::Tokenizer;

/// The vocabulary of `h` through tokenizer.json and back to GGUF keys, as a parsed header.
fn round_trip(h: &GgufHeader) -> GgufHeader {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("tokenizer.json");
    std::fs::write(&json, Tokenizer::from_gguf(h).unwrap().to_json().unwrap()).unwrap();
    let tk = Tokenizer::from_file(&json).unwrap();
    let n = h.get("tokenizer.ggml.tokens").unwrap().as_array().unwrap().len();
    let mut w = GgufWriter::new();
    for (k, v) in gguf_vocab(&tk, n).unwrap() {
        w.set(&k, v);
    }
    let out = dir.path().join("vocab.gguf");
    w.write(&out, |_, _| unreachable!("no tensors")).unwrap();
    parse_header(&std::fs::read(&out).unwrap()).unwrap()
}

fn same_key(a: &GgufHeader, b: &GgufHeader, key: &str) {
    assert_eq!(a.get(key), b.get(key), "{key} differs after the round trip");
}

fn check(name: &str) {
    check_header(name, false);
    check_header(name, true);
}

fn check_header(name: &str, via_convert: bool) {
    let dir = "tokenizers/";
    let gguf = common::data_file(&format!("{dir}ggml-vocab-{name}.gguf"));
    let mut h = GgufFile::open(&gguf).unwrap().header;
    if via_convert {
        let back = round_trip(&h);
        same_key(&h, &back, "tokenizer.ggml.tokens");
        same_key(&h, &back, "tokenizer.ggml.model");
        if name != "llama-spm" {
            same_key(&h, &back, "tokenizer.ggml.merges");
            same_key(&h, &back, "tokenizer.ggml.pre");
        }
        h = back;
    }
    let tok = Tokenizer::from_gguf(&h).unwrap();
    let inp =
        std::fs::read_to_string(common::data_file(&format!("{dir}ggml-vocab-{name}.gguf.inp")))
            .unwrap();
    let out =
        std::fs::read_to_string(common::data_file(&format!("{dir}ggml-vocab-{name}.gguf.out")))
            .unwrap();
    let texts: Vec<&str> = inp.split("\n__ggml_vocab_test__\n").collect();
    let expected: Vec<Vec<u32>> =
        out.lines().map(|l| l.split_whitespace().map(|t| t.parse().unwrap()).collect()).collect();
    assert_eq!(texts.len() - 1, expected.len(), "{name}: vector count");
    let mut failures = Vec::new();
    for (text, want) in texts.iter().zip(&expected) {
        let got = tok.encode(text, false).unwrap();
        if &got != want {
            failures.push(format!("{text:?}: got {got:?}, llama.cpp {want:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{name} (through convert: {via_convert}): {}/{} differ:\n{}",
        failures.len(),
        expected.len(),
        failures.join("\n")
    );
}

#[test]
fn llama_bpe_matches_llama_cpp() {
    check("llama-bpe");
}

#[test]
fn llama_spm_matches_llama_cpp() {
    check("llama-spm");
}

#[test]
fn gpt2_matches_llama_cpp() {
    check("gpt-2");
}
