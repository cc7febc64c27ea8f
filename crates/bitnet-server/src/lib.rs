//! `bitnet-server` will own the OpenAI-compatible HTTP API: the engine of `bitnet-infer` runs
//! behind a channel and HTTP handlers never touch model state. Nothing is implemented yet.
