//! GEMV throughput (bytes of packed weights per second) on the bitnet-b1.58-2B-4T projection
//! shapes, per format, kernel path and thread count, beside a streaming read of the same number
//! of bytes and an f32 GEMV of the same shape, in the same run: `cargo bench -p bitnet-core`.
//! Also decode's `TQ1_0` whole-row sums (`tq1_0_rows`) beside the per-block dot products of the
//! same rows, on a cache-resident tile.

use bitnet_core::format::q8k::quantize_row_q8k_per_token;
use bitnet_core::kernels::baseline::{gemv_f32, stream_read};
use bitnet_core::kernels::{Isa, Kernels, Matmul, OwnedTernary, TernaryFormat};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::time::Duration;

const SHAPES: [(usize, usize); 4] = [(2560, 2560), (640, 2560), (6912, 2560), (2560, 6912)];

fn gemv(c: &mut Criterion) {
    let isas: Vec<Isa> = Isa::ALL.into_iter().filter(|i| i.is_available()).collect();
    for (rows, cols) in SHAPES {
        let mut g = c.benchmark_group(format!("gemv_{rows}x{cols}"));
        g.sample_size(10).warm_up_time(Duration::from_millis(300));
        g.measurement_time(Duration::from_secs(1));
        let x: Vec<f32> = (0..cols).map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 250.0).collect();
        let xq = quantize_row_q8k_per_token(&x).unwrap();
        let wf: Vec<f32> = (0..rows * cols).map(|i| ((i * 31 % 17) as f32 - 8.0) * 0.01).collect();
        let mut y = vec![0f32; rows];
        for threads in [1, 2] {
            let base = Matmul::new(Kernels::scalar(), threads).unwrap();
            g.throughput(Throughput::Bytes((rows * cols * 4) as u64));
            g.bench_function(BenchmarkId::new("f32", format!("t{threads}")), |b| {
                b.iter(|| gemv_f32(base.pool(), &wf, cols, &x, &mut y).unwrap())
            });
            for format in TernaryFormat::ALL {
                let w = OwnedTernary::random(format, rows, cols, 42).unwrap();
                let m = w.matrix().unwrap();
                let bytes = m.weight_bytes();
                g.throughput(Throughput::Bytes(bytes as u64));
                let buf = vec![1u64; bytes / 8];
                let id = BenchmarkId::new(format!("read_{}", format.name()), format!("t{threads}"));
                g.bench_function(id, |b| {
                    b.iter(|| black_box(stream_read(base.pool(), &buf).unwrap()))
                });
                for &isa in &isas {
                    if isa == Isa::Scalar && rows * cols > 2560 * 2560 {
                        continue; // the reference is for correctness; one shape shows its speed
                    }
                    let mm = Matmul::new(Kernels::new(isa).unwrap(), threads).unwrap();
                    let id = BenchmarkId::new(
                        format!("{}_{}", format.name(), isa.name()),
                        format!("t{threads}"),
                    );
                    g.bench_function(id, |b| b.iter(|| mm.gemv(&m, &xq, &mut y).unwrap()));
                }
            }
        }
        g.finish();
    }
}

fn tq1_0_rows(c: &mut Criterion) {
    use bitnet_core::format::{tq1_0::quantize_row_tq1_0, QK_K};
    let (rows, nb) = (64, 10);
    let mut g = c.benchmark_group(format!("tq1_0_rows_{rows}x{}", nb * QK_K));
    g.sample_size(20).throughput(Throughput::Elements((rows * nb * QK_K) as u64));
    let w: Vec<f32> = (0..rows * nb * QK_K).map(|i| (i * 7919 % 3) as f32 - 1.0).collect();
    let w = quantize_row_tq1_0(&w).unwrap();
    let x: Vec<f32> = (0..nb * QK_K).map(|i| (i * 31 % 255) as f32 - 127.0).collect();
    let xq = quantize_row_q8k_per_token(&x).unwrap();
    let mut out = vec![0i32; rows];
    for isa in Isa::ALL.into_iter().filter(|i| i.is_available()) {
        let k = Kernels::new(isa).unwrap();
        g.bench_function(BenchmarkId::new("rows", isa.name()), |b| {
            b.iter(|| (k.tq1_0_rows)(black_box(&w), rows, &xq, &mut out))
        });
        g.bench_function(BenchmarkId::new("block_dots", isa.name()), |b| {
            b.iter(|| {
                w.chunks_exact(nb).map(|r| (k.vec_dot_tq1_0_q8k)(black_box(r), &xq)).sum::<f32>()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, gemv, tq1_0_rows);
criterion_main!(benches);
