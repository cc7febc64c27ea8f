//! Tokenizer training, token shards and seeded batches.

use bitnet_train::data::shards::{shard_bytes, TokenShard};
use bitnet_train::data::{prepare, tokenizer, Batcher, PrepareOptions, TokenData};
use bitnet_train::trainer::checkpoint::write_atomic;

const TEXT: &str = "To be, or not to be, that is the question:\n\
Whether 'tis nobler in the mind to suffer\n\
The slings and arrows of outrageous fortune,\n\
Or to take arms against a sea of troubles\n";

#[test]
fn trained_bpe_tokenizer_round_trips_any_text() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("t.txt");
    std::fs::write(&f, TEXT.repeat(20)).unwrap();
    let tk = tokenizer::train_bpe(&[f], 300, 2).unwrap();
    assert_eq!(tk.get_vocab_size(true), 300);
    assert_eq!(tk.token_to_id(tokenizer::END_OF_TEXT), Some(0));
    for s in [TEXT, "naïve café — 東京 🙂", ""] {
        let ids = tokenizer::encode(&tk, s).unwrap();
        assert_eq!(tokenizer::decode(&tk, &ids).unwrap(), s);
    }
    // Merges were learned: the training text takes far fewer tokens than bytes.
    let n = tokenizer::encode(&tk, TEXT).unwrap().len();
    assert!(n * 3 < TEXT.len() * 2, "{n} tokens for {} bytes", TEXT.len());
}

#[test]
fn bundled_tokenizer_encodes_the_bundled_text() {
    let tk = tokenizer::from_bytes(bitnet_train::bundled::TOKENIZER_JSON.as_bytes()).unwrap();
    assert_eq!(tk.get_vocab_size(true), 4096);
    let sample = &bitnet_train::bundled::SHAKESPEARE[..5000];
    let ids = tokenizer::encode(&tk, sample).unwrap();
    assert_eq!(tokenizer::decode(&tk, &ids).unwrap(), sample);
    assert!(ids.len() * 3 < sample.len(), "{} tokens for {} bytes", ids.len(), sample.len());
}

#[test]
fn prepared_shards_hold_the_tokens_with_a_validation_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.txt"), dir.path().join("b.txt"));
    std::fs::write(&a, TEXT.repeat(10)).unwrap();
    std::fs::write(&b, TEXT.repeat(5)).unwrap();
    let tk = tokenizer::from_bytes(bitnet_train::bundled::TOKENIZER_JSON.as_bytes()).unwrap();
    let out = dir.path().join("prepared");
    let opts = PrepareOptions { val_fraction: 0.1, shard_tokens: 100 };
    let rep = prepare(&[dir.path().to_path_buf()], &tk, &out, &opts).unwrap();
    let ids_a = [tokenizer::encode(&tk, &TEXT.repeat(10)).unwrap(), vec![0]].concat();
    let ids_b = [tokenizer::encode(&tk, &TEXT.repeat(5)).unwrap(), vec![0]].concat();
    let split = |v: &Vec<u32>| v.len() - (v.len() as f64 * 0.1).round() as usize;
    let want_train = [&ids_a[..split(&ids_a)], &ids_b[..split(&ids_b)]].concat();
    let want_val = [&ids_a[split(&ids_a)..], &ids_b[split(&ids_b)..]].concat();
    assert_eq!(rep.train_tokens, want_train.len());
    assert_eq!(rep.train_shards.len(), want_train.len().div_ceil(100));

    let data = TokenData::open_prepared(&out).unwrap();
    let read_all = |shards: &[TokenShard]| -> Vec<u32> {
        shards
            .iter()
            .flat_map(|s| {
                let mut v = vec![0; s.len()];
                s.read(0, &mut v);
                v
            })
            .collect()
    };
    assert_eq!(read_all(&data.train), want_train);
    assert_eq!(read_all(&data.val), want_val);
    assert!(out.join("tokenizer.json").is_file());
}

#[test]
fn corrupt_shards_and_out_of_range_ids_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("s.bin");
    let mut bytes = shard_bytes(&[1, 2, 3, 4], 10);
    bytes.pop();
    std::fs::write(&p, &bytes).unwrap();
    assert!(TokenShard::open(&p).unwrap_err().to_string().contains("header says 4 tokens"));
    std::fs::write(&p, b"not a shard at all, just some text........").unwrap();
    assert!(TokenShard::open(&p).unwrap_err().to_string().contains("bad magic"));
    let err = TokenData::from_tokens(vec![1, 2, 30], vec![], 10).unwrap_err().to_string();
    assert!(err.contains("outside the vocabulary"), "{err}");
}

#[test]
fn batcher_is_seeded_and_resumes_where_it_stopped() {
    let data = TokenData::from_tokens((0..1000).collect(), vec![], 1000).unwrap();
    let mut a = Batcher::new(5);
    let first = a.next_batch(&data, 4, 16).unwrap();
    // Windows are contiguous runs of the corpus.
    for row in first.chunks(16) {
        assert!(row.windows(2).all(|w| w[1] == w[0] + 1));
    }
    let saved = a.state();
    let next_a = a.next_batch(&data, 4, 16).unwrap();
    let mut b = Batcher::restore(&saved).unwrap();
    assert_eq!(b.next_batch(&data, 4, 16).unwrap(), next_a);
    assert_eq!(Batcher::new(5).next_batch(&data, 4, 16).unwrap(), first);
    assert!(a.next_batch(&data, 1, 2000).is_err(), "window longer than the data");
}

#[test]
fn empty_corpus_is_an_error() {
    let tk = tokenizer::from_bytes(bitnet_train::bundled::TOKENIZER_JSON.as_bytes()).unwrap();
    let err = bitnet_train::data::shards::tokenize_split(
        &tk,
        &[("empty.txt".into(), String::new())],
        0.1,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("corpus is empty"), "{err}");
}

#[test]
fn atomic_write_leaves_the_old_file_when_it_fails() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f.json");
    write_atomic(&p, b"old").unwrap();
    write_atomic(&p, b"new").unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), b"new");
    let missing = dir.path().join("no-such-dir").join("f.json");
    assert!(write_atomic(&missing, b"x").is_err());
    let names: Vec<_> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 1, "{names:?}");
}
