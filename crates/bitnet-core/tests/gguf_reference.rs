//! Bytes that llama.cpp's own `gguf` package wrote: our TQ2_0 / TQ1_0 codecs must agree exactly.
//! The fixture and how it was made: `tests/fixtures/README.md`.

use bitnet_core::format::{tq1_0, tq2_0, BlockTQ1_0, BlockTQ2_0};
use half::f16;
use std::collections::HashMap;

const FIXTURE: &[u8] = include_bytes!("fixtures/ternary_ref.gguf");

/// A minimal GGUF v3 reader for this fixture: tensor name → (type id, element count, bytes).
fn tensors(buf: &[u8]) -> HashMap<String, (u32, usize, &[u8])> {
    let mut pos = 0usize;
    let mut take = |n: usize| {
        let s = &buf[pos..pos + n];
        pos += n;
        s
    };
    let u32_ = |b: &[u8]| u32::from_le_bytes(b.try_into().unwrap());
    let u64_ = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap()) as usize;
    assert_eq!(take(4), b"GGUF");
    assert_eq!(u32_(take(4)), 3);
    let n_tensors = u64_(take(8));
    let n_kv = u64_(take(8));
    for _ in 0..n_kv {
        let klen = u64_(take(8));
        take(klen);
        assert_eq!(u32_(take(4)), 8, "the fixture's metadata holds only strings");
        let vlen = u64_(take(8));
        take(vlen);
    }
    let mut infos = Vec::new();
    for _ in 0..n_tensors {
        let nlen = u64_(take(8));
        let name = String::from_utf8(take(nlen).to_vec()).unwrap();
        let n_dims = u32_(take(4)) as usize;
        let n: usize = (0..n_dims).map(|_| u64_(take(8))).product();
        let ty = u32_(take(4));
        let off = u64_(take(8));
        infos.push((name, ty, n, off));
    }
    let data = pos.next_multiple_of(32);
    let mut offs: Vec<usize> = infos.iter().map(|i| i.3).collect();
    offs.push(buf.len() - data);
    offs.sort();
    infos
        .into_iter()
        .map(|(name, ty, n, off)| {
            let end = *offs.iter().find(|&&o| o > off).unwrap();
            (name, (ty, n, &buf[data + off..data + end]))
        })
        .collect()
}

fn f32s(b: &[u8], n: usize) -> Vec<f32> {
    b[..4 * n].chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
}

fn f16s(b: &[u8], n: usize) -> Vec<f32> {
    b[..2 * n].chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()).collect()
}

#[test]
fn tq2_0_dequantize_matches_gguf_py() {
    let t = tensors(FIXTURE);
    let (ty, n, bytes) = t["tq2_0"];
    assert_eq!((ty, n), (35, 1024));
    // The fixture's bytes have no alignment: each block is read out unaligned.
    let blocks: Vec<BlockTQ2_0> =
        bytes[..4 * 66].chunks_exact(66).map(bytemuck::pod_read_unaligned).collect();
    let (_, _, exp) = t["tq2_0.expected"];
    let ours = tq2_0::dequantize_row_tq2_0(&blocks);
    assert_eq!(ours, f16s(exp, n));
    assert!(ours.iter().any(|&v| v != 0.0));
}

#[test]
fn tq1_0_dequantize_matches_gguf_py() {
    let t = tensors(FIXTURE);
    let (ty, n, bytes) = t["tq1_0"];
    assert_eq!((ty, n), (34, 1024));
    let blocks: Vec<BlockTQ1_0> =
        bytes[..4 * 54].chunks_exact(54).map(bytemuck::pod_read_unaligned).collect();
    let (_, _, exp) = t["tq1_0.expected"];
    let ours = tq1_0::dequantize_row_tq1_0(&blocks);
    assert_eq!(ours, f16s(exp, n));
    assert!(ours.iter().any(|&v| v != 0.0));
}

#[test]
fn tq2_0_and_tq1_0_quantizers_write_gguf_py_bytes() {
    let t = tensors(FIXTURE);
    let (ty, n, src) = t["source"];
    assert_eq!(ty, 0);
    let src = f32s(src, n);
    let q2 = tq2_0::quantize_row_tq2_0(&src).unwrap();
    assert_eq!(bytemuck::cast_slice::<BlockTQ2_0, u8>(&q2), &t["tq2_0"].2[..4 * 66]);
    let q1 = tq1_0::quantize_row_tq1_0(&src).unwrap();
    assert_eq!(bytemuck::cast_slice::<BlockTQ1_0, u8>(&q1), &t["tq1_0"].2[..4 * 54]);
}

/// Our Q6_K quantizer writes the bytes llama.cpp's `quantize_row_q6_K_ref` wrote for the same
/// floats (fixture `q6_k_ref.bin`, see the fixtures README), and our dequantization of them agrees
/// with the blocks' definition.
#[test]
fn q6_k_quantizer_equals_llama_cpp() {
    use bitnet_core::format::q6_k::{dequantize_row_q6_k, quantize_row_q6_k};
    use bitnet_core::format::BlockQ6K;
    let bytes = include_bytes!("fixtures/q6_k_ref.bin");
    let n = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
    let x: Vec<f32> = bytes[4..4 + 4 * n]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let want = &bytes[4 + 4 * n..];
    assert_eq!(want.len(), n / 256 * 210);
    let got = quantize_row_q6_k(&x).unwrap();
    for (b, (g, w)) in got.iter().zip(want.chunks_exact(210)).enumerate() {
        assert_eq!(bytemuck::bytes_of(g), w, "block {b}");
    }
    // Round trip: 6-bit codes keep the relative RMS error within about 4.5% on every block
    // (outlier blocks are the worst).
    let blocks: Vec<BlockQ6K> = want.chunks_exact(210).map(bytemuck::pod_read_unaligned).collect();
    let back = dequantize_row_q6_k(&blocks);
    for (b, (xs, ys)) in x.chunks(256).zip(back.chunks(256)).enumerate() {
        let err: f32 = xs.iter().zip(ys).map(|(a, b)| (a - b) * (a - b)).sum();
        let norm: f32 = xs.iter().map(|a| a * a).sum();
        assert!(err <= 2e-3 * norm, "block {b}: relative squared error {}", err / norm);
    }
}
