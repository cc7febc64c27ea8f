//! llama.cpp's tokenizer test vectors (`ggml-vocab-*.gguf{,.inp,.out}` from llama.cpp's
//! `models/`): every string must give exactly llama.cpp's ids, without BOS.

mod common;
use bitnet_infer::gguf::GgufFile;
use bitnet_infer::Tokenizer;

fn check(name: &str) {
    let dir = "tokenizers/";
    let gguf = common::data_file(&format!("{dir}ggml-vocab-{name}.gguf"));
    let tok = Tokenizer::from_gguf(&GgufFile::open(&gguf).unwrap().header).unwrap();
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
        "{name}: {}/{} differ:\n{}",
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
