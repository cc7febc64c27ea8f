//! Every SIMD path equals the scalar reference exactly (integer block sums and f32 results), on
//! random data at awkward lengths; GEMV/GEMM on the pool equal row-by-row reference dots.

use bitnet_core::format::i2s::{pack_i2_s, I2sTensor};
use bitnet_core::format::q8k::{quantize_row_q8k, quantize_row_q8k_per_token};
use bitnet_core::format::{tq1_0, tq2_0, BlockQ8K, QK_K};
use bitnet_core::kernels::{Isa, Kernels, Matmul, T2pMatrix, TernaryMatrix, TernaryView};
use rand::{rngs::StdRng, Rng, SeedableRng};

const AWKWARD_BLOCKS: [usize; 12] = [1, 2, 3, 7, 10, 27, 31, 33, 127, 129, 255, 1023];

/// The SIMD paths this CPU has (always at least one line in the test output says which ran).
fn simd_paths() -> Vec<Kernels> {
    let paths: Vec<Kernels> = Isa::ALL[1..]
        .iter()
        .filter(|i| i.is_available())
        .map(|&i| Kernels::new(i).unwrap())
        .collect();
    eprintln!("SIMD paths tested: {:?}", paths.iter().map(|k| k.isa.name()).collect::<Vec<_>>());
    paths
}

/// Ternary values times a scale, with runs of zeros and of extremes.
fn ternary_values(rng: &mut StdRng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.gen_range(-1i32..=1) as f32 * scale).collect()
}

/// Activations with extremes (-128 and 127 both appear) quantized per token.
fn activations(rng: &mut StdRng, n: usize, per_token: bool) -> Vec<BlockQ8K> {
    let x: Vec<f32> = (0..n)
        .map(|i| match i % 97 {
            0 => 10.0,
            1 => -10.0,
            _ => rng.gen_range(-10.0f32..10.0),
        })
        .collect();
    if per_token {
        quantize_row_q8k_per_token(&x).unwrap()
    } else {
        quantize_row_q8k(&x).unwrap()
    }
}

/// The extremes the integer cores must not overflow on: every activation -128 (which neither
/// quantizer produces, but a kernel must still accept).
fn extreme_activations(nb: usize) -> Vec<BlockQ8K> {
    let b = BlockQ8K { d: 1.0, qs: [-128; QK_K], bsums: [-128 * 16; QK_K / 16] };
    vec![b; nb]
}

#[test]
fn simd_dots_equal_scalar_at_awkward_lengths() {
    let scalar = Kernels::scalar();
    let paths = simd_paths();
    let mut rng = StdRng::seed_from_u64(7);
    for &nb in &AWKWARD_BLOCKS {
        let n = nb * QK_K;
        let w = ternary_values(&mut rng, n, 0.031);
        let wq2 = tq2_0::quantize_row_tq2_0(&w).unwrap();
        let wq1 = tq1_0::quantize_row_tq1_0(&w).unwrap();
        let codes: Vec<u8> = w.iter().map(|&v| (v.signum() as i32 + 1) as u8).collect();
        let wi2 = pack_i2_s(&codes, 0.031);
        let wi2 = I2sTensor::parse(&wi2, n).unwrap();
        let m = TernaryMatrix::new(TernaryView::Tq2_0(&wq2), 1, n).unwrap();
        let t2p = T2pMatrix::repack(&m).unwrap();
        for a in [activations(&mut rng, n, true), activations(&mut rng, n, false)] {
            let r2 = (scalar.vec_dot_tq2_0_q8k)(&wq2, &a);
            let r1 = (scalar.vec_dot_tq1_0_q8k)(&wq1, &a);
            let ri = (scalar.vec_dot_i2s_q8k)(wi2.codes, &a);
            let rp = (scalar.vec_dot_t2p_q8k)(&t2p.codes, &t2p.scales, &a);
            assert_ne!(r2, 0.0);
            for k in &paths {
                let name = k.isa.name();
                assert_eq!(
                    (k.vec_dot_tq2_0_q8k)(&wq2, &a).to_bits(),
                    r2.to_bits(),
                    "tq2_0 {name} nb={nb}"
                );
                assert_eq!(
                    (k.vec_dot_tq1_0_q8k)(&wq1, &a).to_bits(),
                    r1.to_bits(),
                    "tq1_0 {name} nb={nb}"
                );
                assert_eq!(
                    (k.vec_dot_i2s_q8k)(wi2.codes, &a).to_bits(),
                    ri.to_bits(),
                    "i2_s {name} nb={nb}"
                );
                let got = (k.vec_dot_t2p_q8k)(&t2p.codes, &t2p.scales, &a);
                assert_eq!(got.to_bits(), rp.to_bits(), "t2p {name} nb={nb}");
            }
        }
    }
}

/// With unit scales the f32 result is the exact integer `sum (code - 1) * a`, computed here
/// independently of the kernels.
#[test]
fn dots_with_unit_scales_are_exact_integer_sums() {
    let mut rng = StdRng::seed_from_u64(11);
    let mut paths = simd_paths();
    paths.push(Kernels::scalar());
    for &nb in &[1usize, 3, 33] {
        let n = nb * QK_K;
        let w = ternary_values(&mut rng, n, 1.0);
        let wq2 = tq2_0::quantize_row_tq2_0(&w).unwrap();
        let wq1 = tq1_0::quantize_row_tq1_0(&w).unwrap();
        let codes: Vec<u8> = w.iter().map(|&v| (v as i32 + 1) as u8).collect();
        let wi2 = pack_i2_s(&codes, 1.0);
        for ab in [activations(&mut rng, n, true), extreme_activations(nb)] {
            let mut ab = ab;
            ab.iter_mut().for_each(|b| b.d = 1.0);
            let want: i64 = w
                .iter()
                .zip(ab.iter().flat_map(|b| b.qs.iter()))
                .map(|(&wv, &q)| wv as i64 * q as i64)
                .sum();
            for k in &paths {
                let name = k.isa.name();
                assert_eq!((k.vec_dot_tq2_0_q8k)(&wq2, &ab) as i64, want, "tq2_0 {name}");
                assert_eq!((k.vec_dot_tq1_0_q8k)(&wq1, &ab) as i64, want, "tq1_0 {name}");
                assert_eq!((k.vec_dot_i2s_q8k)(&wi2[..n / 4], &ab) as i64, want, "i2_s {name}");
            }
        }
    }
}

/// Every code 2 against activations of -128: the largest magnitudes the i16 partial sums see.
#[test]
fn dots_do_not_overflow_at_extremes() {
    let mut paths = simd_paths();
    paths.push(Kernels::scalar());
    let nb = 4;
    let w = vec![1.0f32; nb * QK_K];
    let wq2 = tq2_0::quantize_row_tq2_0(&w).unwrap();
    let wq1 = tq1_0::quantize_row_tq1_0(&w).unwrap();
    let mut a = extreme_activations(nb);
    a.iter_mut().for_each(|b| b.d = 1.0);
    let want: i64 = a.iter().flat_map(|b| b.qs.iter()).map(|&q| q as i64).sum();
    assert!(want < -(nb as i64) * 255 * 127);
    for k in &paths {
        assert_eq!((k.vec_dot_tq2_0_q8k)(&wq2, &a) as i64, want, "{}", k.isa.name());
        assert_eq!((k.vec_dot_tq1_0_q8k)(&wq1, &a) as i64, want, "{}", k.isa.name());
    }
}

#[test]
fn repacked_t2p_matches_tq2_0_and_i2_s() {
    let mut rng = StdRng::seed_from_u64(3);
    let (rows, cols) = (8, 3 * QK_K);
    let w = ternary_values(&mut rng, rows * cols, 0.5);
    let wq2 = tq2_0::quantize_row_tq2_0(&w).unwrap();
    let m2 = TernaryMatrix::new(TernaryView::Tq2_0(&wq2), rows, cols).unwrap();
    let i2 = bitnet_core::format::i2s::quantize_i2_s(&w).unwrap();
    let mi = TernaryMatrix::from_i2s_bytes(&i2, rows, cols).unwrap();
    let a = activations(&mut rng, cols, true);
    let k = Kernels::scalar();
    for m in [m2, mi] {
        let p = T2pMatrix::repack(&m).unwrap();
        for r in 0..rows {
            let want = k.dot_row(&m, r, &a);
            let got = k.dot_row(&p.view(), r, &a);
            assert!((want - got).abs() <= 1e-5 * want.abs().max(1.0), "row {r}: {want} vs {got}");
        }
    }
}

/// GEMV and GEMM through the pool (1, 2 and 3 threads) equal the scalar reference row by row.
#[test]
fn threaded_gemv_and_gemm_equal_reference_dots() {
    let mut rng = StdRng::seed_from_u64(5);
    let (rows, cols, n_tokens) = (37, 5 * QK_K, 3);
    let w = ternary_values(&mut rng, rows * cols, 0.02);
    let wq1 = tq1_0::quantize_row_tq1_0(&w).unwrap();
    let m = TernaryMatrix::new(TernaryView::Tq1_0(&wq1), rows, cols).unwrap();
    let x: Vec<BlockQ8K> = (0..n_tokens).flat_map(|_| activations(&mut rng, cols, true)).collect();
    let reference = Kernels::scalar();
    let nb = cols / QK_K;
    let want: Vec<f32> = (0..n_tokens)
        .flat_map(|t| {
            let xt = &x[t * nb..(t + 1) * nb];
            (0..rows).map(move |r| reference.dot_row(&m, r, xt))
        })
        .collect();
    for k in std::iter::once(Kernels::scalar()).chain(simd_paths()) {
        for threads in 1..=3 {
            let mm = Matmul::new(k, threads).unwrap();
            let mut y = vec![0f32; n_tokens * rows];
            mm.gemm(&m, &x, n_tokens, &mut y).unwrap();
            assert_eq!(y, want, "gemm {} threads={threads}", k.isa.name());
            let mut y1 = vec![0f32; rows];
            mm.gemv(&m, &x[..nb], &mut y1).unwrap();
            assert_eq!(y1, want[..rows], "gemv {} threads={threads}", k.isa.name());
        }
    }
}

#[test]
fn gemm_rejects_wrong_shapes() {
    let w = vec![0.0f32; 4 * QK_K];
    let wq2 = tq2_0::quantize_row_tq2_0(&w).unwrap();
    let m = TernaryMatrix::new(TernaryView::Tq2_0(&wq2), 4, QK_K).unwrap();
    let mm = Matmul::new(Kernels::scalar(), 2).unwrap();
    let x = quantize_row_q8k_per_token(&vec![1.0; 2 * QK_K]).unwrap();
    let mut y = vec![0f32; 4];
    assert!(mm.gemv(&m, &x, &mut y).is_err(), "two blocks for a one-block row");
    let mut y = vec![0f32; 3];
    assert!(mm.gemv(&m, &x[..1], &mut y).is_err(), "output too short");
    assert!(TernaryMatrix::new(TernaryView::Tq2_0(&wq2), 5, QK_K).is_err());
    assert!(TernaryMatrix::new(TernaryView::Tq2_0(&wq2), 4, 100).is_err());
}

#[test]
fn forcing_a_path_reports_availability() {
    for isa in Isa::ALL {
        assert_eq!(Kernels::new(isa).is_ok(), isa.is_available(), "{}", isa.name());
        assert_eq!(Isa::from_name(isa.name()), Some(isa));
    }
    assert!(Isa::best().is_available());
}
