//! AVX2 dot products of the llama.cpp weight blocks with their activation blocks, as ggml's
//! AVX2 path computes them: 32 products per block with `vpmaddubsw` (unsigned × signed bytes,
//! signs moved onto the activations for signed × signed), widened by `vpmaddwd`, then one f32
//! multiply and add per block into eight lanes. The integer block sums equal the scalar reference's;
//! the f32 sums are added in a different order, so results agree to rounding, not bit for bit.

use super::avx2::f16_to_f32 as f16;
use crate::format::{BlockQ4_0, BlockQ4_1, BlockQ6K, BlockQ8K, BlockQ8_0, BlockQ8_1};
use std::arch::x86_64::*;

#[inline]
#[target_feature(enable = "avx2,f16c")]
fn load32(p: &[i8; 32]) -> __m256i {
    // SAFETY: 32 readable bytes; unaligned load.
    unsafe { _mm256_loadu_si256(p.as_ptr() as *const __m256i) }
}

/// The 32 4-bit codes of a block as bytes 0..15: weights 0..15 (low nibbles), 16..31 (high).
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn nibbles(qs: &[u8; 16]) -> __m256i {
    // SAFETY: 16 readable bytes; unaligned load.
    let lo = unsafe { _mm_loadu_si128(qs.as_ptr() as *const __m128i) };
    let both = _mm256_insertf128_si256::<1>(_mm256_castsi128_si256(lo), _mm_srli_epi16::<4>(lo));
    _mm256_and_si256(both, _mm256_set1_epi8(0x0f))
}

/// Eight i32 partial sums of unsigned `u` × signed `s` bytes.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn dot_u8_i8(u: __m256i, s: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1))
}

/// Eight i32 partial sums of signed × signed bytes (the sign of `a` moved onto `b`).
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn dot_i8_i8(a: __m256i, b: __m256i) -> __m256i {
    dot_u8_i8(_mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a))
}

#[inline]
#[target_feature(enable = "avx2,f16c")]
fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

/// ggml `vec_dot_q8_0_q8_0`.
#[target_feature(enable = "avx2,f16c")]
pub(crate) fn vec_dot_q8_0_q8_0(w: &[BlockQ8_0], x: &[BlockQ8_0]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for (w, x) in w.iter().zip(x) {
        // A hint only (it never faults): the row's bytes ahead, as in the Q6_K dot.
        _mm_prefetch::<_MM_HINT_T0>(
            (w as *const BlockQ8_0 as *const i8).wrapping_add(Q6K_PREFETCH),
        );
        let d = _mm256_set1_ps(f16(w.d) * f16(x.d));
        let s = dot_i8_i8(load32(&w.qs), load32(&x.qs));
        acc = _mm256_add_ps(acc, _mm256_mul_ps(d, _mm256_cvtepi32_ps(s)));
    }
    hsum(acc)
}

/// ggml `vec_dot_q4_0_q8_0`: codes minus 8 are signed bytes.
#[target_feature(enable = "avx2,f16c")]
pub(crate) fn vec_dot_q4_0_q8_0(w: &[BlockQ4_0], x: &[BlockQ8_0]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for (w, x) in w.iter().zip(x) {
        let d = _mm256_set1_ps(f16(w.d) * f16(x.d));
        let q = _mm256_sub_epi8(nibbles(&w.qs), _mm256_set1_epi8(8));
        let s = dot_i8_i8(q, load32(&x.qs));
        acc = _mm256_add_ps(acc, _mm256_mul_ps(d, _mm256_cvtepi32_ps(s)));
    }
    hsum(acc)
}

/// ggml `vec_dot_q4_1_q8_1`: unsigned codes × activations, plus `m_w * s_x` per block.
#[target_feature(enable = "avx2,f16c")]
pub(crate) fn vec_dot_q4_1_q8_1(w: &[BlockQ4_1], x: &[BlockQ8_1]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let mut mins = 0f32;
    for (w, x) in w.iter().zip(x) {
        let d = _mm256_set1_ps(f16(w.d) * f16(x.d));
        let s = dot_u8_i8(nibbles(&w.qs), load32(&x.qs));
        acc = _mm256_add_ps(acc, _mm256_mul_ps(d, _mm256_cvtepi32_ps(s)));
        mins += f16(w.m) * f16(x.s);
    }
    hsum(acc) + mins
}

/// Defines `$name(w: &[$t], x: &[f32]) -> f32`: eight weights widened to f32 by `$widen` per
/// step, four independent accumulators, the tail in scalar code.
macro_rules! wide_dot {
    ($(#[$doc:meta])* $name:ident, $t:ty, |$h:ident| $widen:expr) => {
        $(#[$doc])*
        #[target_feature(enable = "avx2,f16c")]
        pub(crate) fn $name(w: &[$t], x: &[f32]) -> f32 {
            let n = w.len().min(x.len());
            let mut acc = [_mm256_setzero_ps(); 4];
            let mut i = 0;
            while i + 32 <= n {
                for (k, a) in acc.iter_mut().enumerate() {
                    let j = i + 8 * k;
                    // SAFETY: j + 8 <= n for both slices; unaligned loads.
                    let ($h, xv) = unsafe {
                        (
                            _mm_loadu_si128(w.as_ptr().add(j) as *const __m128i),
                            _mm256_loadu_ps(x.as_ptr().add(j)),
                        )
                    };
                    *a = _mm256_add_ps(*a, _mm256_mul_ps($widen, xv));
                }
                i += 32;
            }
            let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
            let tail: f32 = w[i..n].iter().zip(&x[i..n]).map(|(a, b)| a.to_f32() * b).sum();
            hsum(sum) + tail
        }
    };
}

wide_dot!(
    /// f16 weights · f32 activations, widened with `vcvtph2ps`.
    dot_f16_f32, half::f16, |h| _mm256_cvtph_ps(h)
);

wide_dot!(
    /// bf16 weights · f32 activations: a bf16 is the top half of an f32, so the weights widen
    /// with a zero-extension and a 16-bit shift.
    dot_bf16_f32,
    half::bf16,
    |h| _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
);

/// Bytes ahead of the current block that the `Q6_K` and `Q8_0` dot products prefetch (the
/// output head streams tens of megabytes; the hardware prefetcher alone left it latency-bound).
const Q6K_PREFETCH: usize = 4096;

/// ggml `vec_dot_q6_K_q8_K`: per half block, the four 32-weight planes of 6-bit codes (0..64)
/// are rebuilt from `ql` nibbles and `qh` bit pairs, multiplied with `vpmaddubsw`, weighted by
/// their two group scales with `vpmaddwd`; the code offset 32 comes off once per block through the
/// activations' 16-weight sums (`32 * sum_g scale_g * bsum_g`).
#[target_feature(enable = "avx2,f16c")]
pub(crate) fn vec_dot_q6_k_q8_k(w: &[BlockQ6K], x: &[BlockQ8K]) -> f32 {
    let m4 = _mm256_set1_epi8(0x0f);
    let m30 = _mm256_set1_epi8(0x30);
    // Byte shuffles that spread 16-bit scale 2k over the low 128-bit lane and 2k + 1 over the
    // high one.
    let picks: [__m256i; 4] = std::array::from_fn(|k| {
        let bytes: [u8; 32] = std::array::from_fn(|i| (4 * k + 2 * (i / 16) + i % 2) as u8);
        // SAFETY: 32 bytes; unaligned load.
        unsafe { _mm256_loadu_si256(bytes.as_ptr() as *const __m256i) }
    });
    let mut acc = _mm256_setzero_ps();
    for (w, x) in w.iter().zip(x) {
        // Hints only (they never fault): the row's bytes a few blocks ahead, so the head's
        // stream of weights is in cache when its blocks come up.
        let ahead = (w as *const BlockQ6K as *const i8).wrapping_add(Q6K_PREFETCH);
        for line in 0..4 {
            _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64 * line));
        }
        // SAFETY: 16 scale bytes; unaligned load.
        let sc8 = unsafe { _mm_loadu_si128(w.scales.as_ptr() as *const __m128i) };
        // SAFETY: 16 bsums (32 bytes); unaligned load.
        let bs = unsafe { _mm256_loadu_si256(x.bsums.as_ptr() as *const __m256i) };
        let sc16 = _mm256_cvtepi8_epi16(sc8);
        let offset = _mm256_slli_epi32::<5>(_mm256_madd_epi16(bs, sc16));
        let mut isum = _mm256_sub_epi32(_mm256_setzero_si256(), offset);
        for n in 0..2 {
            let ql = &w.ql[64 * n..64 * n + 64];
            // SAFETY: ql has 64 bytes, qh 32 from 32n; unaligned loads.
            let (l0, l1, qh) = unsafe {
                (
                    _mm256_loadu_si256(ql.as_ptr() as *const __m256i),
                    _mm256_loadu_si256(ql.as_ptr().add(32) as *const __m256i),
                    _mm256_loadu_si256(w.qh.as_ptr().add(32 * n) as *const __m256i),
                )
            };
            let codes = [
                _mm256_or_si256(
                    _mm256_and_si256(l0, m4),
                    _mm256_and_si256(_mm256_slli_epi16::<4>(qh), m30),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(l1, m4),
                    _mm256_and_si256(_mm256_slli_epi16::<2>(qh), m30),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16::<4>(l0), m4),
                    _mm256_and_si256(qh, m30),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16::<4>(l1), m4),
                    _mm256_and_si256(_mm256_srli_epi16::<2>(qh), m30),
                ),
            ];
            // This half's eight group scales (16-bit) in both 128-bit lanes.
            let half = if n == 0 {
                _mm256_permute2x128_si256::<0x00>(sc16, sc16)
            } else {
                _mm256_permute2x128_si256::<0x11>(sc16, sc16)
            };
            for (k, (&c, &pick)) in codes.iter().zip(&picks).enumerate() {
                // Group 8n + 2k for weights 0..16 of the plane (low lanes), the next for 16..32.
                let sc = _mm256_shuffle_epi8(half, pick);
                // SAFETY: activations 128n + 32k .. + 32 of 256.
                let a = unsafe {
                    _mm256_loadu_si256(x.qs.as_ptr().add(128 * n + 32 * k) as *const __m256i)
                };
                isum = _mm256_add_epi32(isum, _mm256_madd_epi16(_mm256_maddubs_epi16(c, a), sc));
            }
        }
        let d = _mm256_set1_ps(f16(w.d) * x.d);
        acc = _mm256_add_ps(acc, _mm256_mul_ps(d, _mm256_cvtepi32_ps(isum)));
    }
    hsum(acc)
}
