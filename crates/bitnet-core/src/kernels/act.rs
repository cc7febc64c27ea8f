//! Element-wise f32 functions of inference: `exp` as a polynomial that vectorizes (libm's `expf`
//! is a call per element), the SiLU gate, and softmax's exponentials.
//!
//! [`exp`] is Cephes' single-precision method: `x = n ln 2 + r` with `|r| <= ln 2 / 2` (`ln 2`
//! split in two parts so `r` is exact), a degree-6 polynomial for `e^r`, and `2^n` built in the
//! exponent bits (as two factors, each a normal float). Over the whole range it stays within 2
//! ulp of the exact value (test against f64). It is written with plain arithmetic and selects,
//! so the loops below compile to vector code; on x86_64 with AVX2 they are compiled a second
//! time for 256-bit registers (the same operations, so the same results).

/// Above this, `e^x` overflows f32.
const EXP_HI: f32 = 88.72284;
/// Below this, `e^x` is under `f32::MIN_POSITIVE`: returned as 0.
const EXP_LO: f32 = -87.33654;

/// `e^x` within 2 ulp (`+inf` above 88.72, 0 below -87.34, NaN for NaN).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Round to nearest by the 1.5 * 2^23 trick: exact for |v| < 2^22.
    const ROUND: f32 = 12_582_912.0;
    let xc = x.clamp(EXP_LO, EXP_HI);
    let n = (xc * LOG2E + ROUND) - ROUND;
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let y = p * (r * r) + r + 1.0;
    // `2^n` in two normal factors: `n` reaches 128 just below the overflow threshold.
    // SAFETY: `xc` is clamped (NaN excepted, whose result is replaced below), so `n` is an
    // integer in -126..=128; the checked `as` cast would keep the loop scalar.
    let n: i32 = unsafe { if xc.is_nan() { 0.0f32 } else { n }.to_int_unchecked() };
    let half = n >> 1;
    let pow2 = |k: i32| f32::from_bits(((k + 127) as u32) << 23);
    let v = y * pow2(half) * pow2(n - half);
    let v = if x > EXP_HI { f32::INFINITY } else { v };
    let v = if x < EXP_LO { 0.0 } else { v };
    if x.is_nan() {
        x
    } else {
        v
    }
}

/// `g = silu(g) * u = g / (1 + e^-g) * u`, element by element.
pub fn silu_mul(g: &mut [f32], u: &[f32]) {
    assert_eq!(g.len(), u.len(), "silu_mul: lengths");
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is present (checked just now).
        return unsafe { silu_mul_avx2(g, u) };
    }
    silu_mul_body(g, u)
}

/// `s = e^(s - max)` for every score, returning their sum (added in order).
pub fn exp_shifted(s: &mut [f32], max: f32) -> f32 {
    exp_shifted_in_place(s, max);
    // In order: SmolLM2's greedy choices against llama.cpp are near enough to ties that another
    // rounding of this sum changes one of them.
    s.iter().sum()
}

/// `s = e^(s - max)` for every score (the exponentials of [`exp_shifted`], without the sum).
pub fn exp_shifted_in_place(s: &mut [f32], max: f32) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is present (checked just now).
        return unsafe { exp_in_place_avx2(s, max) };
    }
    exp_in_place_body(s, max)
}

/// The sums of four rows, each added in order from the first element exactly as
/// `row.iter().sum::<f32>()` adds it, the four rows' adds interleaved: four independent chains
/// where one row alone waits on the add latency at every term. The rows' lengths must not
/// decrease (`rows[0]` is the shortest): the shared length runs interleaved, the rest row by row.
pub fn sums_in_order4(rows: [&[f32]; 4]) -> [f32; 4] {
    let n = rows[0].len();
    assert!(rows.windows(2).all(|w| w[0].len() <= w[1].len()), "sums_in_order4: lengths");
    // -0.0 is the identity of f32 addition (std's sum starts there too).
    let mut acc = [-0.0f32; 4];
    let [r0, r1, r2, r3] = rows.map(|r| &r[..n]);
    for (((&a, &b), &c), &d) in r0.iter().zip(r1).zip(r2).zip(r3) {
        acc[0] += a;
        acc[1] += b;
        acc[2] += c;
        acc[3] += d;
    }
    for (a, r) in acc.iter_mut().zip(rows) {
        *a = r[n..].iter().fold(*a, |s, &x| s + x);
    }
    acc
}

/// `s *= scale` for every score, returning the largest (NaN ignored, as `f32::max` does; `-inf`
/// for an empty slice). The maximum of a set does not depend on the order it is taken in, so
/// eight lanes give the sequential result exactly.
pub fn scale_max(s: &mut [f32], scale: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is present (checked just now).
        return unsafe { scale_max_avx2(s, scale) };
    }
    scale_max_body(s, scale)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn scale_max_avx2(s: &mut [f32], scale: f32) -> f32 {
    scale_max_body(s, scale)
}

#[inline(always)]
fn scale_max_body(s: &mut [f32], scale: f32) -> f32 {
    let mut m = [f32::NEG_INFINITY; 8];
    let mut chunks = s.chunks_exact_mut(8);
    for c in &mut chunks {
        for (m, v) in m.iter_mut().zip(c) {
            *v *= scale;
            *m = m.max(*v);
        }
    }
    for (m, v) in m.iter_mut().zip(chunks.into_remainder()) {
        *v *= scale;
        *m = m.max(*v);
    }
    m.into_iter().fold(f32::NEG_INFINITY, f32::max)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn silu_mul_avx2(g: &mut [f32], u: &[f32]) {
    silu_mul_body(g, u)
}

#[inline(always)]
fn silu_mul_body(g: &mut [f32], u: &[f32]) {
    for (g, &u) in g.iter_mut().zip(u) {
        *g = *g / (1.0 + exp(-*g)) * u;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn exp_in_place_avx2(s: &mut [f32], max: f32) {
    exp_in_place_body(s, max)
}

#[inline(always)]
fn exp_in_place_body(s: &mut [f32], max: f32) {
    for v in s.iter_mut() {
        *v = exp(*v - max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance in units in the last place between two finite positive floats.
    fn ulps(a: f32, b: f32) -> u32 {
        a.to_bits().abs_diff(b.to_bits())
    }

    #[test]
    fn exp_is_within_two_ulp_of_the_exact_value() {
        let mut worst = 0;
        let mut x = -87.3f32;
        while x < 88.7 {
            let want = (x as f64).exp() as f32;
            let got = exp(x);
            worst = worst.max(ulps(got, want));
            x += 0.000_731;
        }
        assert!(worst <= 2, "{worst} ulp");
        for x in [0.0f32, -0.0, 1e-30, -1e-30, 1.0, -1.0, 10.0, -10.0] {
            assert!(ulps(exp(x), (x as f64).exp() as f32) <= 2, "{x}");
        }
    }

    #[test]
    fn exp_saturates_and_passes_nan() {
        assert_eq!(exp(89.0), f32::INFINITY);
        assert_eq!(exp(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp(-88.0), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn silu_and_softmax_exponentials_match_libm_closely() {
        let g0: Vec<f32> = (0..1000).map(|i| (i as f32 - 500.0) * 0.037).collect();
        let u: Vec<f32> = (0..1000).map(|i| 1.0 + (i % 7) as f32 * 0.25).collect();
        let mut g = g0.clone();
        silu_mul(&mut g, &u);
        for ((&got, &x), &u) in g.iter().zip(&g0).zip(&u) {
            let want = (x as f64 / (1.0 + (-x as f64).exp()) * u as f64) as f32;
            assert!((got - want).abs() <= 4e-7 * want.abs().max(1e-3), "{x}: {got} vs {want}");
        }
        let mut s = g0.clone();
        let sum = exp_shifted(&mut s, 18.5);
        let want: f64 = g0.iter().map(|&x| (x as f64 - 18.5).exp()).sum();
        assert!(((sum as f64 - want) / want).abs() < 1e-5, "{sum} vs {want}");
        assert_eq!(sum, s.iter().sum::<f32>(), "the sum is of the stored values, in order");
    }

    #[test]
    fn interleaved_sums_equal_sequential_sums_bit_for_bit() {
        let v: Vec<f32> =
            (0..410u32).map(|i| (i.wrapping_mul(2654435761) % 1000) as f32 / 7.0).collect();
        for lens in
            [[0, 0, 0, 0], [0, 1, 2, 3], [5, 5, 6, 6], [100, 100, 100, 100], [37, 90, 91, 400]]
        {
            let rows = [0, 1, 2, 3].map(|r| &v[r..r + lens[r]]);
            let got = sums_in_order4(rows);
            for (g, r) in got.iter().zip(rows) {
                assert_eq!(g.to_bits(), r.iter().sum::<f32>().to_bits(), "{lens:?}");
            }
        }
    }

    #[test]
    fn scale_max_scales_and_finds_the_sequential_maximum() {
        for len in [0usize, 1, 7, 8, 9, 33, 100] {
            let s0: Vec<f32> = (0..len).map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.5).collect();
            let mut s = s0.clone();
            let got = scale_max(&mut s, 0.25);
            let want = s0.iter().map(|v| v * 0.25).fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(got, want, "len {len}");
            assert!(s.iter().zip(&s0).all(|(a, b)| *a == b * 0.25));
        }
        let mut s = [1.0, f32::NAN, 3.0];
        assert_eq!(scale_max(&mut s, 2.0), 6.0, "NaN is ignored, as f32::max does");
    }
}
