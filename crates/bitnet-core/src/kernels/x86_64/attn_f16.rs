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
        store_lanes(&acc, out);
    }
}

/// `acc[i0 + i] += w[p] * v[p * stride + i0 + i]` for `8 * A` dimensions, `p` in order, in `A`
/// accumulators (slices checked: out of range panics).
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn values_pass<const A: usize>(w: &[f32], v: &[f16], stride: usize, acc: &mut [f32], i0: usize) {
    let out = &mut acc[i0..i0 + 8 * A];
    let mut a = [_mm256_setzero_ps(); A];
    for (j, a) in a.iter_mut().enumerate() {
        // SAFETY: 8 floats at 8j inside the 8A just sliced.
        *a = unsafe { _mm256_loadu_ps(out.as_ptr().add(8 * j)) };
    }
    for (p, &wp) in w.iter().enumerate() {
        let wv = _mm256_set1_ps(wp);
        let row = v[p * stride + i0..p * stride + i0 + 8 * A].as_ptr();
        for (j, a) in a.iter_mut().enumerate() {
            // SAFETY: values 8j..8j + 8 of the 8A just sliced.
            let x = unsafe { load8(row.add(8 * j)) };
            *a = _mm256_add_ps(*a, _mm256_mul_ps(wv, x));
        }
    }
    for (j, x) in a.iter().enumerate() {
        // SAFETY: 8 floats at 8j inside the 8A just sliced.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(8 * j), *x) };
    }
}

/// `acc[i] += w[p] * v[p * stride + i]`, `p` in order, for an f16 cache: the SIMD path of
/// [`crate::kernels::attn::weighted_values`]. Dimensions go in passes over the
/// positions as wide as fits (96, 64, 32, 16 or 8, in 12 to 1 accumulators): a head of 96 or 64
/// is one pass, and no pass is a single chain of dependent adds unless fewer than 16 are left.
///
/// # Safety
/// AVX2 and F16C; `v` holds `(w.len() - 1) * stride + acc.len()` values or more (checked by the
/// caller).
#[target_feature(enable = "avx2,f16c")]
pub unsafe fn accumulate_values(w: &[f32], v: &[f16], stride: usize, acc: &mut [f32]) {
    let n = acc.len();
    let mut i0 = 0;
    while n - i0 >= 8 {
        let width = match n - i0 {
            96.. => 96,
            64.. => 64,
            32.. => 32,
            16.. => 16,
            _ => 8,
        };
        match width {
            96 => values_pass::<12>(w, v, stride, acc, i0),
            64 => values_pass::<8>(w, v, stride, acc, i0),
            32 => values_pass::<4>(w, v, stride, acc, i0),
            16 => values_pass::<2>(w, v, stride, acc, i0),
            _ => values_pass::<1>(w, v, stride, acc, i0),
        }
        i0 += width;
    }
    for (i, o) in acc.iter_mut().enumerate().skip(i0) {
        *o = w.iter().enumerate().fold(*o, |s, (p, &wp)| s + wp * v[p * stride + i].to_f32());
    }
}

/// [`crate::kernels::attn::key_scores`] for two queries over the same positions of an f16
/// cache: each key vector widened once for both.
///
/// # Safety
/// AVX2 and F16C; `q0.len() == q1.len()`, `s0.len() == s1.len()`, and `kt` holds at least
/// `s0.len()` positions rounded up to whole blocks of `q0.len()` keys (checked by the caller).
#[target_feature(enable = "avx2,f16c")]
pub unsafe fn key_scores_pair([q0, q1]: [&[f32]; 2], kt: &[f16], s0: &mut [f32], s1: &mut [f32]) {
    let d = q0.len();
    let outs = s0.chunks_mut(KEY_BLOCK).zip(s1.chunks_mut(KEY_BLOCK));
    for ((o0, o1), block) in outs.zip(kt.chunks_exact(d * KEY_BLOCK)) {
        let mut a0 = [_mm256_setzero_ps(); KEY_BLOCK / 8];
        let mut a1 = [_mm256_setzero_ps(); KEY_BLOCK / 8];
        for (i, (&x0, &x1)) in q0.iter().zip(q1).enumerate() {
            let (v0, v1) = (_mm256_set1_ps(x0), _mm256_set1_ps(x1));
            let row = block[i * KEY_BLOCK..(i + 1) * KEY_BLOCK].as_ptr();
            for j in 0..KEY_BLOCK / 8 {
                // SAFETY: lanes 8j..8j + 8 of a 32-key row.
                let k = unsafe { load8(row.add(8 * j)) };
                a0[j] = _mm256_add_ps(a0[j], _mm256_mul_ps(v0, k));
                a1[j] = _mm256_add_ps(a1[j], _mm256_mul_ps(v1, k));
            }
        }
        store_lanes(&a0, o0);
        store_lanes(&a1, o1);
    }
}

/// The first `out.len()` lanes of `acc` (at most 32).
#[inline]
#[target_feature(enable = "avx2")]
fn store_lanes(acc: &[__m256; KEY_BLOCK / 8], out: &mut [f32]) {
    let mut a = [0f32; KEY_BLOCK];
    for (j, v) in acc.iter().enumerate() {
        // SAFETY: 8 floats at 8j inside `a`.
        unsafe { _mm256_storeu_ps(a.as_mut_ptr().add(8 * j), *v) };
    }
    out.copy_from_slice(&a[..out.len()]);
}

/// `a0[i0 + i] += w0[p] * v[p * stride + i0 + i]` and the same for `a1`, `w1`, for `8 * A`
/// dimensions, `p` in order, each value vector widened once for both (slices checked).
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn values_pass_pair<const A: usize>(
    (w0, w1): (&[f32], &[f32]),
    v: &[f16],
    stride: usize,
    (o0, o1): (&mut [f32], &mut [f32]),
    i0: usize,
) {
    let (o0, o1) = (&mut o0[i0..i0 + 8 * A], &mut o1[i0..i0 + 8 * A]);
    let mut a0 = [_mm256_setzero_ps(); A];
    let mut a1 = [_mm256_setzero_ps(); A];
    for j in 0..A {
        // SAFETY: 8 floats at 8j inside the 8A just sliced.
        unsafe {
            a0[j] = _mm256_loadu_ps(o0.as_ptr().add(8 * j));
            a1[j] = _mm256_loadu_ps(o1.as_ptr().add(8 * j));
        }
    }
    for (p, (&x0, &x1)) in w0.iter().zip(w1).enumerate() {
        let (v0, v1) = (_mm256_set1_ps(x0), _mm256_set1_ps(x1));
        let row = v[p * stride + i0..p * stride + i0 + 8 * A].as_ptr();
        for j in 0..A {
            // SAFETY: values 8j..8j + 8 of the 8A just sliced.
            let x = unsafe { load8(row.add(8 * j)) };
            a0[j] = _mm256_add_ps(a0[j], _mm256_mul_ps(v0, x));
            a1[j] = _mm256_add_ps(a1[j], _mm256_mul_ps(v1, x));
        }
    }
    for j in 0..A {
        // SAFETY: 8 floats at 8j inside the 8A just sliced.
        unsafe {
            _mm256_storeu_ps(o0.as_mut_ptr().add(8 * j), a0[j]);
            _mm256_storeu_ps(o1.as_mut_ptr().add(8 * j), a1[j]);
        }
    }
}

/// [`accumulate_values`] for two queries over the same positions (`w0.len() == w1.len()`,
/// `a0.len() == a1.len()`): dimensions in passes of 32 (eight accumulators), 16 and 8, the rest
/// one at a time.
///
/// # Safety
/// AVX2 and F16C (slices are checked).
#[target_feature(enable = "avx2,f16c")]
pub unsafe fn accumulate_values_pair(
    [w0, w1]: [&[f32]; 2],
    v: &[f16],
    stride: usize,
    a0: &mut [f32],
    a1: &mut [f32],
) {
    let n = a0.len();
    let mut i0 = 0;
    while n - i0 >= 8 {
        let (ws, outs) = ((w0, w1), (&mut *a0, &mut *a1));
        let width = match n - i0 {
            32.. => 32,
            16.. => 16,
            _ => 8,
        };
        match width {
            32 => values_pass_pair::<4>(ws, v, stride, outs, i0),
            16 => values_pass_pair::<2>(ws, v, stride, outs, i0),
            _ => values_pass_pair::<1>(ws, v, stride, outs, i0),
        }
        i0 += width;
    }
    for i in i0..n {
        for (p, (&x0, &x1)) in w0.iter().zip(w1).enumerate() {
            let x = v[p * stride + i].to_f32();
            a0[i] += x0 * x;
            a1[i] += x1 * x;
        }
    }
}
