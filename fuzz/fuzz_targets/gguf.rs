//! Any bytes as a GGUF file: header, model configuration, weights, vocabulary, and one forward
//! step when all of that loads. Errors are fine; panics, hangs and huge allocations are bugs.
#![no_main]

use bitnet_infer::{Engine, Logits, Model, Tokenizer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(model) = Model::from_gguf_bytes(data) else { return };
    if let Some(g) = &model.gguf {
        if let Ok(tok) = Tokenizer::from_gguf(&g.header) {
            let _ = tok.encode("Hello, world! 123", true);
        }
    }
    let Ok(engine) = Engine::new(model, 1) else { return };
    if let Ok(mut st) = engine.new_state(4) {
        let _ = engine.forward(&mut st, &[0, 1], Logits::All);
    }
});
