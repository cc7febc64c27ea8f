//! Any bytes as a Hugging Face model: the first two bytes give the length of the config.json
//! text that follows, the rest is a safetensors image. Errors are fine; panics, hangs and huge
//! allocations are bugs.
#![no_main]

use bitnet_infer::{Engine, Logits, Model};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let n = (u16::from_le_bytes([data[0], data[1]]) as usize).min(data.len() - 2);
    let Ok(config) = std::str::from_utf8(&data[2..2 + n]) else { return };
    let Ok(model) = Model::from_hf_bytes(config, &data[2 + n..]) else { return };
    let Ok(engine) = Engine::new(model, 1) else { return };
    if let Ok(mut st) = engine.new_state(4) {
        let _ = engine.forward(&mut st, &[0, 1], Logits::All);
    }
});
