pub mod bench_kernels;
