//! Prefill kernels, each beside its baseline in the same run: `cargo bench -p bitnet-core --bench
//! prefill`.
//!
//! - GEMM of 128 tokens through the integer tiles (TQ2_0, I2_S, TQ1_0 rewritten as TQ2_0) beside
//!   128 single-token GEMVs of the same matrix, in multiply-accumulates per second, on AVX2 and on
//!   the best path this CPU has (AVX-512 VNNI tiles where present);
//! - one hot tile call (64 rows of 1536 codes × 8 tokens) on every SIMD path;
//! - the TQ1_0 → TQ2_0 rewrite of a row tile, scalar reference beside SIMD;
//! - attention's key scores and weighted values over 128 positions, beside plain sequential dot
//!   products;
//! - the SiLU gate and softmax exponentials of `kernels::act` beside the same loops on libm's
//!   `expf`;
//! - on AVX2, the ceiling of the integer tiles' instruction mix: independent `vpmaddubsw` alone,
//!   and each followed by the `vpaddw` that accumulates it (32 multiply-accumulates per pair);
//!   with AVX-512 VNNI, independent 512-bit `vpdpbusd` (64 multiply-accumulates each).

use bitnet_core::format::q8k::quantize_row_q8k_per_token;
use bitnet_core::format::{tq1_0, tq2_0, BlockQ8K, QK_K};
use bitnet_core::kernels::attn::{key_cache_len, key_scores, key_scores_set, store_key};
use bitnet_core::kernels::attn::{weighted_values, weighted_values_set, KvElem, QuerySet};
use bitnet_core::kernels::{Isa, Kernels, Matmul, OwnedTernary, TernaryFormat};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::time::Duration;

const TOKENS: usize = 128;

fn gemm(c: &mut Criterion) {
    let (rows, cols) = (1536, 1536);
    let nb = cols / QK_K;
    let mut g = c.benchmark_group(format!("gemm_{rows}x{cols}x{TOKENS}"));
    g.sample_size(10).warm_up_time(Duration::from_millis(300));
    g.measurement_time(Duration::from_secs(2));
    g.throughput(Throughput::Elements((rows * cols * TOKENS) as u64));
    let x: Vec<BlockQ8K> = (0..TOKENS)
        .flat_map(|t| {
            let row: Vec<f32> =
                (0..cols).map(|i| ((i * 7 + t * 13) % 255) as f32 - 127.0).collect();
            quantize_row_q8k_per_token(&row).unwrap()
        })
        .collect();
    let mut y = vec![0f32; TOKENS * rows];
    let mut isas = vec![Isa::Avx2, Isa::best()];
    isas.retain(|i| i.is_available());
    isas.dedup();
    for (format, simd) in [TernaryFormat::Tq2_0, TernaryFormat::I2s, TernaryFormat::Tq1_0]
        .into_iter()
        .flat_map(|f| isas.iter().map(move |&i| (f, i)))
    {
        let w = OwnedTernary::random(format, rows, cols, 42).unwrap();
        let m = w.matrix().unwrap();
        for threads in [1, 2] {
            let mm = Matmul::new(Kernels::new(simd).unwrap(), threads).unwrap();
            let id = |what: &str| {
                BenchmarkId::new(format!("{}_{}_{what}", format.name(), simd.name()), threads)
            };
            g.bench_function(id("gemm"), |b| b.iter(|| mm.gemm(&m, &x, TOKENS, &mut y).unwrap()));
            g.bench_function(id("gemv_each"), |b| {
                b.iter(|| {
                    for (t, yt) in y.chunks_exact_mut(rows).enumerate() {
                        mm.gemv(&m, &x[t * nb..(t + 1) * nb], yt).unwrap();
                    }
                })
            });
        }
    }
    g.finish();
}

/// One call of each SIMD path's tile kernel on a tile that stays in cache: 64 rows of 1536 TQ2_0
/// codes against 8 tokens, the unit of a prefill GEMM.
fn tile_call(c: &mut Criterion) {
    use bitnet_core::kernels::tile::{CodeLayout, MAX_TILE_ROWS, MAX_TILE_TOKENS};
    let (rows, cols, n_tok) = (MAX_TILE_ROWS, 1536, MAX_TILE_TOKENS);
    let w = OwnedTernary::random(TernaryFormat::Tq2_0, rows, cols, 3).unwrap();
    let codes: &[u8] = match w.matrix().unwrap().view() {
        bitnet_core::kernels::TernaryView::Tq2_0(b) => bytemuck::cast_slice(b),
        _ => unreachable!("a TQ2_0 matrix"),
    };
    let x: Vec<BlockQ8K> = (0..n_tok)
        .flat_map(|t| {
            let row: Vec<f32> =
                (0..cols).map(|i| ((i * 5 + t * 11) % 255) as f32 - 127.0).collect();
            quantize_row_q8k_per_token(&row).unwrap()
        })
        .collect();
    let mut out = vec![0i32; rows * n_tok];
    let mut g = c.benchmark_group(format!("tile_{rows}x{cols}x{n_tok}"));
    g.sample_size(20).throughput(Throughput::Elements((rows * cols * n_tok) as u64));
    for isa in Isa::ALL[1..].iter().copied().filter(|i| i.is_available()) {
        let k = Kernels::new(isa).unwrap();
        g.bench_function(isa.name(), |b| {
            b.iter(|| {
                (k.codes_tile)(codes, CodeLayout::Tq2_0, rows, black_box(&x), n_tok, &mut out)
            })
        });
    }
    g.finish();
}

fn tq1_rewrite(c: &mut Criterion) {
    let nb = 16 * 6;
    let mut g = c.benchmark_group("tq1_0_to_tq2_0");
    g.sample_size(20).throughput(Throughput::Elements((nb * QK_K) as u64));
    let w: Vec<f32> = (0..nb * QK_K).map(|i| (i * 7919 % 3) as f32 - 1.0).collect();
    let src = tq1_0::quantize_row_tq1_0(&w).unwrap();
    let mut dst = tq2_0::quantize_row_tq2_0(&w).unwrap();
    for isa in Isa::ALL.into_iter().filter(|i| i.is_available()) {
        let k = Kernels::new(isa).unwrap();
        g.bench_function(isa.name(), |b| b.iter(|| (k.tq1_0_to_tq2_0)(black_box(&src), &mut dst)));
    }
    g.finish();
}

fn attention(c: &mut Criterion) {
    for d in [64, 96, 128] {
        attention_head(c, d, TOKENS);
    }
    // A long context, from a cache far larger than L2, in f16 as llama.cpp keeps it.
    attention_f16(c, 96, 2048);
    // A prefill tile deep in a context: 16 causal tokens of one head at 1024 positions.
    attention_set::<half::f16>(c, "f16", 96, 1024, 16);
    attention_set::<f32>(c, "f32", 96, 1024, 16);
}

/// Scores, softmax-free weights and value sums of `tokens` causal queries of one head, as a
/// set (each chunk read once for all) and one query at a time.
fn attention_set<E: KvElem>(c: &mut Criterion, ty: &str, d: usize, len0: usize, tokens: usize) {
    let mut g = c.benchmark_group(format!("attention_set_{ty}_d{d}_len{len0}_x{tokens}"));
    let set = QuerySet { heads: 1, tokens, len0 };
    let (m, row) = (set.count(), set.row());
    let terms: usize = (0..m).map(|j| set.positions(j) * d).sum();
    g.sample_size(20).throughput(Throughput::Elements(terms as u64));
    let q: Vec<f32> = (0..m * d).map(|i| (i % 7) as f32 * 0.1).collect();
    let mut kt = vec![E::default(); key_cache_len(d, row)];
    for p in 0..row {
        let k: Vec<f32> = (0..d).map(|i| ((p + i) % 11) as f32 * 0.1).collect();
        store_key(&mut kt, p, &k);
    }
    let v: Vec<E> = (0..row * d).map(|i| E::from_f32((i % 13) as f32 * 0.1)).collect();
    let mut sc = vec![0f32; m * row];
    let mut acc = vec![0f32; m * d];
    g.bench_function("key_scores_set", |b| {
        b.iter(|| key_scores_set(black_box(&q), set, &kt, &mut sc))
    });
    g.bench_function("key_scores_each", |b| {
        b.iter(|| {
            for j in 0..m {
                let s = &mut sc[j * row..j * row + set.positions(j)];
                key_scores(black_box(&q[j * d..(j + 1) * d]), &kt, s);
            }
        })
    });
    g.bench_function("weighted_values_set", |b| {
        b.iter(|| weighted_values_set(black_box(&sc), set, &v, d, &mut acc))
    });
    g.bench_function("weighted_values_each", |b| {
        b.iter(|| {
            for j in 0..m {
                let w = &sc[j * row..j * row + set.positions(j)];
                weighted_values(black_box(w), &v, d, &mut acc[j * d..(j + 1) * d]);
            }
        })
    });
    g.finish();
}

fn attention_head(c: &mut Criterion, d: usize, len: usize) {
    let mut g = c.benchmark_group(format!("attention_d{d}_len{len}"));
    g.sample_size(20).throughput(Throughput::Elements((d * len) as u64));
    let q: Vec<f32> = (0..d).map(|i| (i % 7) as f32 * 0.1).collect();
    let keys: Vec<Vec<f32>> =
        (0..len).map(|p| (0..d).map(|i| ((p + i) % 11) as f32 * 0.1).collect()).collect();
    let mut kt = vec![0f32; key_cache_len(d, len)];
    keys.iter().enumerate().for_each(|(p, k)| store_key(&mut kt, p, k));
    let flat: Vec<f32> = keys.concat();
    let mut sc = vec![0f32; len];
    g.bench_function("key_scores", |b| b.iter(|| key_scores(black_box(&q), &kt, &mut sc)));
    g.bench_function("key_scores_plain", |b| {
        b.iter(|| {
            for (s, k) in sc.iter_mut().zip(&keys) {
                *s = black_box(&q).iter().zip(k).map(|(a, b)| a * b).sum();
            }
        })
    });
    let mut acc = vec![0f32; d];
    g.bench_function("weighted_values", |b| {
        b.iter(|| weighted_values(black_box(&sc), &flat, d, &mut acc))
    });
    g.bench_function("weighted_values_plain", |b| {
        b.iter(|| {
            acc.iter_mut().for_each(|a| *a = 0.0);
            for (&w, v) in black_box(&sc).iter().zip(&keys) {
                acc.iter_mut().zip(v).for_each(|(a, &x)| *a += w * x);
            }
        })
    });
    g.finish();
}

fn attention_f16(c: &mut Criterion, d: usize, len: usize) {
    let mut g = c.benchmark_group(format!("attention_f16_d{d}_len{len}"));
    g.sample_size(20).throughput(Throughput::Elements((d * len) as u64));
    let q: Vec<f32> = (0..d).map(|i| (i % 7) as f32 * 0.1).collect();
    let mut kt = vec![half::f16::ZERO; key_cache_len(d, len)];
    for p in 0..len {
        let k: Vec<f32> = (0..d).map(|i| ((p + i) % 11) as f32 * 0.1).collect();
        store_key(&mut kt, p, &k);
    }
    let v: Vec<half::f16> =
        (0..len * d).map(|i| half::f16::from_f32((i % 13) as f32 * 0.1)).collect();
    let mut sc = vec![0f32; len];
    let mut acc = vec![0f32; d];
    g.bench_function("key_scores", |b| b.iter(|| key_scores(black_box(&q), &kt, &mut sc)));
    g.bench_function("weighted_values", |b| {
        b.iter(|| weighted_values(black_box(&sc), &v, d, &mut acc))
    });
    g.finish();
}

fn activations(c: &mut Criterion) {
    use bitnet_core::kernels::act::{exp_shifted, silu_mul};
    let n = 4096;
    let mut g = c.benchmark_group(format!("act_{n}"));
    g.sample_size(20).throughput(Throughput::Elements(n as u64));
    let x: Vec<f32> = (0..n).map(|i| (i % 97) as f32 * 0.1 - 4.8).collect();
    let u: Vec<f32> = (0..n).map(|i| 1.0 + (i % 5) as f32 * 0.25).collect();
    let mut g1 = x.clone();
    g.bench_function("silu_mul", |b| {
        b.iter(|| {
            g1.copy_from_slice(&x);
            silu_mul(black_box(&mut g1), &u)
        })
    });
    g.bench_function("silu_mul_libm", |b| {
        b.iter(|| {
            g1.copy_from_slice(&x);
            g1.iter_mut().zip(&u).for_each(|(g, u)| *g = *g / (1.0 + (-*g).exp()) * u);
            black_box(&g1);
        })
    });
    g.bench_function("exp_shifted", |b| {
        b.iter(|| {
            g1.copy_from_slice(&x);
            exp_shifted(black_box(&mut g1), 5.0)
        })
    });
    g.bench_function("exp_shifted_libm", |b| {
        b.iter(|| {
            g1.copy_from_slice(&x);
            g1.iter_mut().fold(0.0f32, |s, v| {
                *v = (*v - 5.0).exp();
                s + *v
            })
        })
    });
    g.finish();
}

/// Multiply-accumulates per second of `vpmaddubsw` (32 each) on registers only: seven independent
/// chains, so throughput, not latency, bounds them; `with_add` adds each product into an i16
/// accumulator as the tiles do.
#[cfg(target_arch = "x86_64")]
fn avx2_peak(c: &mut Criterion) {
    use std::arch::x86_64::*;
    if !Isa::Avx2.is_available() {
        return;
    }
    const STEPS: usize = 1 << 16;
    // Seven chains: their products and sums plus the multiplier fill 15 of the 16 registers.
    const CHAINS: usize = 7;
    #[target_feature(enable = "avx2")]
    fn run(with_add: bool) -> i16 {
        let b = _mm256_set1_epi8(black_box(1));
        let mut m = [_mm256_set1_epi16(black_box(3)); CHAINS];
        let mut acc = [_mm256_setzero_si256(); CHAINS];
        for _ in 0..STEPS {
            for (m, a) in m.iter_mut().zip(acc.iter_mut()) {
                *m = _mm256_maddubs_epi16(*m, b);
                if with_add {
                    *a = _mm256_add_epi16(*a, *m);
                }
            }
        }
        let s = m.iter().chain(&acc).fold(_mm256_setzero_si256(), |s, v| _mm256_add_epi16(s, *v));
        _mm256_extract_epi16::<0>(s) as i16
    }
    let mut g = c.benchmark_group("avx2_peak");
    g.sample_size(10).throughput(Throughput::Elements((STEPS * CHAINS * 32) as u64));
    // SAFETY: AVX2 is present (checked above).
    g.bench_function("maddubs", |b| b.iter(|| unsafe { run(false) }));
    // SAFETY: as above.
    g.bench_function("maddubs_add", |b| b.iter(|| unsafe { run(true) }));
    g.finish();
}

#[cfg(not(target_arch = "x86_64"))]
fn avx2_peak(_: &mut Criterion) {}

/// The ceiling of the VNNI tiles: independent 512-bit `vpdpbusd`, 64 multiply-accumulates each.
#[cfg(target_arch = "x86_64")]
fn vnni_peak(c: &mut Criterion) {
    use std::arch::x86_64::*;
    if !Isa::Avx512Vnni.is_available() {
        return;
    }
    const STEPS: usize = 1 << 16;
    // Ten chains: enough to cover the instruction's latency at one a cycle.
    const CHAINS: usize = 10;
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    fn run() -> i32 {
        let (c, x) = (_mm512_set1_epi8(black_box(1)), _mm512_set1_epi8(black_box(2)));
        let mut acc = [_mm512_setzero_si512(); CHAINS];
        for _ in 0..STEPS {
            for a in acc.iter_mut() {
                *a = _mm512_dpbusd_epi32(*a, c, x);
            }
        }
        acc.iter().fold(0, |s, v| s.wrapping_add(_mm512_reduce_add_epi32(*v)))
    }
    let mut g = c.benchmark_group("vnni_peak");
    g.sample_size(10).throughput(Throughput::Elements((STEPS * CHAINS * 64) as u64));
    // SAFETY: AVX-512 VNNI is present (checked above).
    g.bench_function("dpbusd", |b| b.iter(|| unsafe { run() }));
    g.finish();
}

#[cfg(not(target_arch = "x86_64"))]
fn vnni_peak(_: &mut Criterion) {}

criterion_group!(
    benches,
    gemm,
    tile_call,
    tq1_rewrite,
    attention,
    activations,
    avx2_peak,
    vnni_peak
);
criterion_main!(benches);
