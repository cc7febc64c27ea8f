//! Data bundled into the binary so that `bitnet train` with no arguments works anywhere: a part of
//! the Complete Works of Shakespeare (public domain; see `assets/README.md`) and a byte-level BPE
//! tokenizer trained on that text with `bitnet tokenizer train`.

/// Plain UTF-8 text.
pub const SHAKESPEARE: &str = include_str!("../assets/shakespeare.txt");

/// A `tokenizer.json` (4096 entries, `<|endoftext|>` = 0).
pub const TOKENIZER_JSON: &str = include_str!("../assets/tokenizer.json");
