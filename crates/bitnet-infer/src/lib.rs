//! `bitnet-infer` will own the packed inference engine: GGUF and safetensors model files
//! (memory-mapped), the weights/state split, one top-down forward pass over the
//! [`bitnet_core::kernels`], the KV cache, sampling, tokenizers and chat templates, perplexity and
//! benchmarks. It never depends on candle. Nothing is implemented yet.
