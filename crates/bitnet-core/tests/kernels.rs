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
    let b = BlockQ8K::with_codes(1.0, [-128; QK_K]);
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
        let wi2 = pack_i2_s(&codes_of(&w), 0.031);
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
        let wi2 = pack_i2_s(&codes_of(&w), 1.0);
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

/// `got` equals `want` within f32 rounding of sums as large as the largest output (whole-row
/// integer tiles scale once per row where the reference scales every block).
fn assert_close(got: &[f32], want: &[f32], what: &str) {
    let tol = 1e-5 * want.iter().fold(0f32, |m, v| m.max(v.abs()));
    for (i, (g, e)) in got.iter().zip(want).enumerate() {
        assert!((g - e).abs() <= tol, "{what} [{i}]: {g} vs {e} (tolerance {tol})");
    }
}

/// GEMV and GEMM through the pool, on 1, 2 and 3 threads, equal the scalar reference row by row
/// within f32 rounding (whole-row sums are scaled once per row, the reference once per block).
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
            // Several tokens run TQ1_0 as TQ2_0 tiles, one token as whole-row trit sums.
            assert_close(&y, &want, &format!("gemm {} threads={threads}", k.isa.name()));
            let mut y1 = vec![0f32; rows];
            mm.gemv(&m, &x[..nb], &mut y1).unwrap();
            assert_close(&y1, &want[..rows], &format!("gemv {} threads={threads}", k.isa.name()));
            assert_eq!(y1, y[..rows], "gemv equals the first token of the gemm");
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

/// The 2-bit codes (`w + 1`) of ternary values.
fn codes_of(w: &[f32]) -> Vec<u8> {
    w.iter().map(|&v| (trit(v) + 1) as u8).collect()
}

/// -1, 0 or 1 (`f32::signum` maps 0 to 1).
fn trit(v: f32) -> i32 {
    (v > 0.0) as i32 - (v < 0.0) as i32
}

/// Whole-row integer tiles: every SIMD path returns the reference's exact integers for both 2-bit
/// layouts, 1 to `MAX_TILE_TOKENS` tokens, awkward lengths and the -128 extreme.
#[test]
fn codes_tiles_equal_the_reference_exactly() {
    use bitnet_core::kernels::tile::{codes_tile, CodeLayout, MAX_TILE_TOKENS};
    let mut rng = StdRng::seed_from_u64(11);
    const ROWS: usize = 7;
    for &nb in &AWKWARD_BLOCKS[..9] {
        let n = nb * QK_K;
        let w = ternary_values(&mut rng, ROWS * n, 0.5);
        let tq2 = tq2_0::quantize_row_tq2_0(&w).unwrap();
        let i2s = pack_i2_s(&codes_of(&w), 0.5);
        let layouts: [(&[u8], CodeLayout); 2] = [
            (bytemuck::cast_slice(&tq2), CodeLayout::Tq2_0),
            (I2sTensor::parse(&i2s, ROWS * n).unwrap().codes, CodeLayout::I2s),
        ];
        let mut a: Vec<BlockQ8K> =
            (0..MAX_TILE_TOKENS).flat_map(|_| activations(&mut rng, n, true)).collect();
        a[nb..2 * nb].copy_from_slice(&extreme_activations(nb));
        for (codes, layout) in layouts {
            for n_tok in 1..=MAX_TILE_TOKENS {
                let xa = &a[..n_tok * nb];
                let mut want = [0i32; ROWS * MAX_TILE_TOKENS];
                assert_eq!(codes_tile(codes, layout, ROWS, xa, n_tok, &mut want), 0);
                // The reference against the ternary values: sum w a = tile - sum a.
                for (r, t) in [(0, 0), (ROWS - 1, n_tok - 1)] {
                    let row = &w[r * n..(r + 1) * n];
                    let x = |i: usize| xa[t * nb + i / QK_K].qs[i % QK_K] as i32;
                    let exact: i32 = (0..n).map(|i| trit(row[i]) * x(i)).sum();
                    let asum: i32 = (0..n).map(x).sum();
                    assert_eq!(
                        want[t * ROWS + r] - asum,
                        exact,
                        "{layout:?} reference {nb} blocks"
                    );
                }
                for k in simd_paths() {
                    let mut got = [0i32; ROWS * MAX_TILE_TOKENS];
                    assert_eq!((k.codes_tile)(codes, layout, ROWS, xa, n_tok, &mut got), 0);
                    assert_eq!(got, want, "{} {layout:?} {nb} blocks {n_tok} tokens", k.isa.name());
                }
            }
        }
        if nb > 1 {
            // Row 1's last block at another scale: only row 1 is flagged, by every path.
            let mut w2 = w.clone();
            w2[2 * n - QK_K..2 * n].iter_mut().for_each(|v| *v *= 3.0);
            let tq2 = tq2_0::quantize_row_tq2_0(&w2).unwrap();
            let mut out = [0i32; ROWS];
            for k in std::iter::once(Kernels::scalar()).chain(simd_paths()) {
                let mask = (k.codes_tile)(
                    bytemuck::cast_slice(&tq2),
                    CodeLayout::Tq2_0,
                    ROWS,
                    &a[..nb],
                    1,
                    &mut out,
                );
                assert_eq!(mask, 0b010, "{} mixed-scale mask", k.isa.name());
            }
        }
    }
}

/// GEMM through integer tiles (TQ2_0 with shared and with mixed block scales, I2_S, TQ1_0
/// rewritten as TQ2_0 for 19 tokens and summed in place for one) equals the per-block reference
/// within f32 rounding, on 1 to 3 threads and as one group of matrices.
#[test]
fn tiled_gemm_group_equals_reference_dots() {
    for n_tokens in [19, 1] {
        tiled_gemm_group_case(n_tokens);
    }
}

fn tiled_gemm_group_case(n_tokens: usize) {
    let mut rng = StdRng::seed_from_u64(9);
    let cols = 3 * QK_K;
    let nb = cols / QK_K;
    let w1 = ternary_values(&mut rng, 29 * cols, 0.02);
    let tq2 = tq2_0::quantize_row_tq2_0(&w1).unwrap();
    // Mixed scales: every third block of the second matrix scaled differently.
    let mut w2 = ternary_values(&mut rng, 11 * cols, 0.02);
    w2.chunks_mut(QK_K).step_by(3).for_each(|b| b.iter_mut().for_each(|v| *v *= 3.0));
    let tq2_mixed = tq2_0::quantize_row_tq2_0(&w2).unwrap();
    let w3 = ternary_values(&mut rng, 16 * cols, 0.07);
    let i2s = pack_i2_s(&codes_of(&w3), 0.07);
    let mut w4 = ternary_values(&mut rng, 21 * cols, 0.05);
    w4.chunks_mut(QK_K).skip(4).step_by(7).for_each(|b| b.iter_mut().for_each(|v| *v *= 2.0));
    let tq1 = tq1_0::quantize_row_tq1_0(&w4).unwrap();
    let ms = [
        TernaryMatrix::new(TernaryView::Tq2_0(&tq2), 29, cols).unwrap(),
        TernaryMatrix::new(TernaryView::Tq2_0(&tq2_mixed), 11, cols).unwrap(),
        TernaryMatrix::from_i2s_bytes(&i2s, 16, cols).unwrap(),
        TernaryMatrix::new(TernaryView::Tq1_0(&tq1), 21, cols).unwrap(),
    ];
    let x: Vec<BlockQ8K> = (0..n_tokens).flat_map(|_| activations(&mut rng, cols, true)).collect();
    let reference = Kernels::scalar();
    let want: Vec<Vec<f32>> = ms
        .iter()
        .map(|m| {
            (0..n_tokens)
                .flat_map(|t| (0..m.rows()).map(move |r| (t, r)))
                .map(|(t, r)| reference.dot_row(m, r, &x[t * nb..(t + 1) * nb]))
                .collect()
        })
        .collect();
    for k in std::iter::once(Kernels::scalar()).chain(simd_paths()) {
        for threads in 1..=3 {
            let mm = Matmul::new(k, threads).unwrap();
            let mut ys: Vec<Vec<f32>> =
                ms.iter().map(|m| vec![0f32; n_tokens * m.rows()]).collect();
            let mut refs: Vec<&mut [f32]> = ys.iter_mut().map(|y| y.as_mut_slice()).collect();
            mm.gemm_group(&ms, &x, n_tokens, &mut refs).unwrap();
            for (i, (y, w)) in ys.iter().zip(&want).enumerate() {
                assert_close(y, w, &format!("{} t{threads} m{i} {n_tokens} tokens", k.isa.name()));
            }
            let mut single = vec![0f32; n_tokens * 29];
            mm.gemm(&ms[0], &x, n_tokens, &mut single).unwrap();
            assert_eq!(single, ys[0], "gemm alone equals its part of the group");
        }
    }
}

/// TQ1_0 blocks rewritten as TQ2_0 keep every code and scale, on every path, byte for byte.
#[test]
fn tq1_0_rewrites_as_tq2_0_with_the_same_codes() {
    let mut rng = StdRng::seed_from_u64(12);
    for nb in AWKWARD_BLOCKS {
        let w = ternary_values(&mut rng, nb * QK_K, 0.3);
        let src = tq1_0::quantize_row_tq1_0(&w).unwrap();
        let zero = tq2_0::quantize_row_tq2_0(&[0.0; QK_K]).unwrap()[0];
        let mut want = vec![zero; nb];
        (Kernels::scalar().tq1_0_to_tq2_0)(&src, &mut want);
        for (s, d) in src.iter().zip(&want) {
            assert_eq!(s.d, d.d);
            assert!((0..QK_K).all(|i| s.code(i) == d.code(i)), "{nb} blocks");
        }
        for k in simd_paths() {
            let mut got = vec![zero; nb];
            (k.tq1_0_to_tq2_0)(&src, &mut got);
            assert_eq!(got, want, "{} {nb} blocks", k.isa.name());
        }
    }
}

/// Tiles of more rows than one chunked pass keeps, on rows long enough to be walked in chunks of
/// blocks: exact integers and the mixed-scale mask (a row in the third group of 16) on every path.
#[test]
fn chunked_tiles_of_many_rows_equal_the_reference() {
    use bitnet_core::kernels::tile::{codes_tile, CodeLayout, MAX_TILE_ROWS, MAX_TILE_TOKENS};
    let mut rng = StdRng::seed_from_u64(13);
    let rows = 37;
    assert!(rows <= MAX_TILE_ROWS);
    for nb in [10, 27] {
        let n = nb * QK_K;
        let mut w = ternary_values(&mut rng, rows * n, 0.5);
        // Row 33's fifth block at another scale.
        w[33 * n + 4 * QK_K..33 * n + 5 * QK_K].iter_mut().for_each(|v| *v *= 3.0);
        let tq2 = tq2_0::quantize_row_tq2_0(&w).unwrap();
        let a: Vec<BlockQ8K> =
            (0..MAX_TILE_TOKENS).flat_map(|_| activations(&mut rng, n, true)).collect();
        for n_tok in [MAX_TILE_TOKENS, 5, 3, 1] {
            let xa = &a[..n_tok * nb];
            let codes: &[u8] = bytemuck::cast_slice(&tq2);
            let mut want = vec![0i32; rows * n_tok];
            let mask = codes_tile(codes, CodeLayout::Tq2_0, rows, xa, n_tok, &mut want);
            assert_eq!(mask, 1 << 33);
            for k in simd_paths() {
                let mut got = vec![0i32; rows * n_tok];
                let m = (k.codes_tile)(codes, CodeLayout::Tq2_0, rows, xa, n_tok, &mut got);
                assert_eq!((m, &got), (mask, &want), "{} {nb} blocks {n_tok}", k.isa.name());
            }
        }
    }
}

/// Whole-row TQ1_0 sums for one token equal the reference on every path, exactly: random rows of
/// awkward lengths, a row with a block at another scale (flagged in the mask), and the extreme
/// row (every trit 2 against activations of -128) that must not overflow the i16 sums.
#[test]
fn tq1_0_rows_equal_the_reference_exactly() {
    use bitnet_core::kernels::tile::tq1_0_rows;
    let mut rng = StdRng::seed_from_u64(14);
    let rows = 37;
    for nb in AWKWARD_BLOCKS.into_iter().filter(|&nb| nb <= 129) {
        let n = nb * QK_K;
        let mut w = ternary_values(&mut rng, rows * n, 0.5);
        w[..n].iter_mut().for_each(|v| *v = 0.5);
        if nb > 1 {
            w[20 * n + QK_K..20 * n + 2 * QK_K].iter_mut().for_each(|v| *v *= 3.0);
        }
        let tq1 = tq1_0::quantize_row_tq1_0(&w).unwrap();
        for extreme in [false, true] {
            let mut a = activations(&mut rng, n, true);
            if extreme {
                a.iter_mut().for_each(|b| b.qs = [-128; QK_K]);
            }
            let mut want = vec![0i32; rows];
            let mask = tq1_0_rows(&tq1, rows, &a, &mut want);
            assert_eq!(mask, if nb > 1 { 1 << 20 } else { 0 }, "{nb} blocks");
            let row0: i32 = a.iter().flat_map(|b| b.qs).map(|q| 2 * q as i32).sum();
            assert_eq!(want[0], row0, "row of +1 weights, {nb} blocks");
            for k in simd_paths() {
                let mut got = vec![0i32; rows];
                let m = (k.tq1_0_rows)(&tq1, rows, &a, &mut got);
                assert_eq!((m, &got), (mask, &want), "{} {nb} blocks", k.isa.name());
            }
        }
    }
}
