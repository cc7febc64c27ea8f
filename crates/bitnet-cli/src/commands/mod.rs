pub mod bench_kernels;
pub mod data;
pub mod generate;
pub mod model_args;
pub mod ppl;
pub mod random_model;
pub mod tokenizer;
pub mod train;
