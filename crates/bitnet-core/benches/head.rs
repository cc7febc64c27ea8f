//! Output-head GEMV (one token × the vocabulary) per weight type and kernel path, in GB/s of
//! weight bytes, beside a streaming read of the same bytes in the same run:
//! `cargo bench -p bitnet-core --bench head`. The shape is the 700M model's head (32002 × 1536).

use bitnet_core::format::{encode_dense, GgmlType};
use bitnet_core::kernels::baseline::stream_read;
use bitnet_core::kernels::{Isa, Kernels, Matmul, QuantActs, QuantMatrix};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::time::Duration;

const ROWS: usize = 32_002;
const COLS: usize = 1536;

fn head(c: &mut Criterion) {
    let mut g = c.benchmark_group(format!("head_{ROWS}x{COLS}"));
    g.sample_size(10).warm_up_time(Duration::from_millis(300));
    g.measurement_time(Duration::from_secs(2));
    let w: Vec<f32> =
        (0..ROWS * COLS).map(|i| ((i * 7919 % 2001) as f32 - 1000.0) / 1000.0).collect();
    let x: Vec<f32> = (0..COLS).map(|i| ((i * 31 % 17) as f32 - 8.0) * 0.1).collect();
    let mut y = vec![0f32; ROWS];
    for ty in [GgmlType::F16, GgmlType::Q8_0, GgmlType::Q6K] {
        let bytes = encode_dense(ty, &w, COLS).unwrap();
        let m = QuantMatrix::from_bytes(ty, &bytes, ROWS, COLS).unwrap();
        let mut acts = QuantActs::default();
        acts.quantize(m.act_kind(), &x, COLS).unwrap();
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        for threads in [1, 2] {
            let base = Matmul::new(Kernels::scalar(), threads).unwrap();
            let buf = vec![1u64; bytes.len() / 8];
            let id = BenchmarkId::new(format!("read_{ty:?}"), format!("t{threads}"));
            g.bench_function(id, |b| b.iter(|| black_box(stream_read(base.pool(), &buf).unwrap())));
            for isa in Isa::ALL.into_iter().filter(|i| i.is_available()) {
                let mm = Matmul::new(Kernels::new(isa).unwrap(), threads).unwrap();
                let id = BenchmarkId::new(format!("{ty:?}_{}", isa.name()), format!("t{threads}"));
                g.bench_function(id, |b| b.iter(|| mm.gemm_quant(&m, &acts, &mut y).unwrap()));
            }
        }
    }
    g.finish();
}

criterion_group!(benches, head);
criterion_main!(benches);
