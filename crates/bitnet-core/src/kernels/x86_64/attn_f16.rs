//! Attention over an f16 KV cache with AVX2 and F16C: every key and value is widened by
//! `vcvtph2ps` and summed exactly as [`crate::kernels::attn`]'s reference sums it (one multiply,
//! then one add, per term, in the same order), so the results are the same bits.

use crate::kernels::attn::KEY_BLOCK;
use half::f16;
use std::arch::x86_64::*;

/// Eight f16 at `p`, widened.
///
/// # Safety
/// F16C; 16 readable bytes at `p`.
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn load8(p: *const f16) -> __m256 {
    // SAFETY: the caller's.
    _mm256_cvtph_ps(unsafe { _mm_loadu_si128(p as *const __m128i) })
}

/// [`crate::kernels::attn::key_scores`] for an f16 cache.
///
/// # Safety
/// AVX2 and F16C; `kt` holds at least `sc.len()` positions rounded up to whole blocks of
/// `q.len()` keys (checked by the caller).
#[target_feature(enable = "avx2,f16c")]
pub unsafe fn key_scores(q: &[f32], kt: &[f16], sc: &mut [f32]) {
    let d = q.len();
    for (out, block) in sc.chunks_mut(KEY_BLOCK).zip(kt.chunks_exact(d * KEY_BLOCK)) {
        let mut acc = [_mm256_setzero_ps(); KEY_BLOCK / 8];
        for (i, &qi) in q.iter().enumerate() {
            let qv = _mm256_set1_ps(qi);
            let row = block[i * KEY_BLOCK..(i + 1) * KEY_BLOCK].as_ptr();
            for (j, a) in acc.iter_mut().enumerate() {
                // SAFETY: lanes 8j..8j + 8 of a 32-key row.
                let k = unsafe { load8(row.add(8 * j)) };
                *a = _mm256_add_ps(*a, _mm256_mul_ps(qv, k));
            }
        }
        let mut a = [0f32; KEY_BLOCK];
        for (j, v) in acc.iter().enumerate() {
            // SAFETY: 8 floats at 8j inside `a`.
            unsafe { _mm256_storeu_ps(a.as_mut_ptr().add(8 * j), *v) };
        }
        out.copy_from_slice(&a[..out.len()]);
    }
}

/// Dimensions one pass of [`weighted_values`] keeps in eight accumulators.
const WIDE: usize = 64;

/// [`crate::kernels::attn::weighted_values`] for an f16 cache.
///
/// # Safety
/// AVX2 and F16C; `v` holds `(w.len() - 1) * stride + acc.len()` values or more (checked by the
/// caller).
#[target_feature(enable = "avx2,f16c")]
pub unsafe fn weighted_values(w: &[f32], v: &[f16], stride: usize, acc: &mut [f32]) {
    let n = acc.len();
    let mut i0 = 0;
    while i0 + WIDE <= n {
        let mut a = [_mm256_setzero_ps(); WIDE / 8];
        for (p, &wp) in w.iter().enumerate() {
            let wv = _mm256_set1_ps(wp);
            let row = v[p * stride + i0..p * stride + i0 + WIDE].as_ptr();
            for (j, a) in a.iter_mut().enumerate() {
                // SAFETY: values 8j..8j + 8 of the WIDE just sliced.
                let x = unsafe { load8(row.add(8 * j)) };
                *a = _mm256_add_ps(*a, _mm256_mul_ps(wv, x));
            }
        }
        for (j, x) in a.iter().enumerate() {
            // SAFETY: 8 floats at i0 + 8j < n inside `acc`.
            unsafe { _mm256_storeu_ps(acc.as_mut_ptr().add(i0 + 8 * j), *x) };
        }
        i0 += WIDE;
    }
    while i0 + 8 <= n {
        let mut a = _mm256_setzero_ps();
        for (p, &wp) in w.iter().enumerate() {
            let row = v[p * stride + i0..p * stride + i0 + 8].as_ptr();
            // SAFETY: the 8 values just sliced.
            let x = unsafe { load8(row) };
            a = _mm256_add_ps(a, _mm256_mul_ps(_mm256_set1_ps(wp), x));
        }
        // SAFETY: 8 floats at i0 < n - 7 inside `acc`.
        unsafe { _mm256_storeu_ps(acc.as_mut_ptr().add(i0), a) };
        i0 += 8;
    }
    for (i, o) in acc.iter_mut().enumerate().skip(i0) {
        *o = w.iter().enumerate().fold(0.0, |s, (p, &wp)| s + wp * v[p * stride + i].to_f32());
    }
}
