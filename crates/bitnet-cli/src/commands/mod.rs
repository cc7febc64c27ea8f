pub mod bench_kernels;
pub mod data;
pub mod tokenizer;
pub mod train;
