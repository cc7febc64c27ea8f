//! AVX2 kernels: codes (0, 1, 2) as unsigned bytes × int8 activations with `vpmaddubsw`, i16
//! partial sums widened by `vpmaddwd`, minus the activation sums (`sum (c - 1) a = sum c a - sum a`).
//! The integer block sums and the f32 accumulation order equal [`crate::kernels::scalar`]'s.

use crate::format::{BlockQ8K, BlockTQ1_0, BlockTQ2_0};
use crate::kernels::{Isa, Kernels};
use std::arch::x86_64::*;

pub(crate) fn table() -> Kernels {
    // SAFETY (all four): `Kernels::new` builds this table only after `Isa::Avx2.is_available()`.
    Kernels {
        isa: Isa::Avx2,
        vec_dot_tq2_0_q8k: |w, a| unsafe { vec_dot_tq2_0_q8k(w, a) },
        vec_dot_tq1_0_q8k: |w, a| unsafe { vec_dot_tq1_0_q8k(w, a) },
        vec_dot_i2s_q8k: |c, a| unsafe { vec_dot_i2s_q8k(c, a) },
        vec_dot_t2p_q8k: |c, s, a| unsafe { vec_dot_t2p_q8k(c, s, a) },
    }
}

#[inline]
#[target_feature(enable = "avx2")]
fn load(p: &[u8], off: usize) -> __m256i {
    assert!(off + 32 <= p.len());
    // SAFETY: bounds checked above; unaligned load.
    unsafe { _mm256_loadu_si256(p.as_ptr().add(off) as *const __m256i) }
}

#[inline]
#[target_feature(enable = "avx2")]
fn load_i8(p: &[i8; 256], off: usize) -> __m256i {
    load(bytemuck::cast_slice(p.as_slice()), off)
}

/// Codes in bit pair `S / 2` of every byte.
#[inline]
#[target_feature(enable = "avx2")]
fn plane<const S: i32>(q: __m256i) -> __m256i {
    _mm256_and_si256(_mm256_srli_epi16::<S>(q), _mm256_set1_epi8(3))
}

/// `acc16 += maddubs(codes, activations)`.
#[inline]
#[target_feature(enable = "avx2")]
fn mac(acc: __m256i, c: __m256i, x: __m256i) -> __m256i {
    _mm256_add_epi16(acc, _mm256_maddubs_epi16(c, x))
}

/// The exact block sum `sum c*a - sum a` from i16 products and the block's `bsums`.
#[inline]
#[target_feature(enable = "avx2")]
fn finish(acc16: __m256i, extra32: __m128i, a: &BlockQ8K) -> i32 {
    let ones = _mm256_set1_epi16(1);
    let bs = load(bytemuck::cast_slice(a.bsums.as_slice()), 0);
    let v = _mm256_sub_epi32(_mm256_madd_epi16(acc16, ones), _mm256_madd_epi16(bs, ones));
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, extra32);
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s)
}

/// `TQ2_0` · int8: byte `32h + j` holds weights `128h + j + 32l` in bit pair `l`.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub unsafe fn vec_dot_tq2_0_q8k(w: &[BlockTQ2_0], a: &[BlockQ8K]) -> f32 {
    let mut acc = 0.0f32;
    for (wb, ab) in w.iter().zip(a) {
        let mut s = _mm256_setzero_si256();
        for h in 0..2 {
            let q = load(&wb.qs, 32 * h);
            s = mac(s, plane::<0>(q), load_i8(&ab.qs, 128 * h));
            s = mac(s, plane::<2>(q), load_i8(&ab.qs, 128 * h + 32));
            s = mac(s, plane::<4>(q), load_i8(&ab.qs, 128 * h + 64));
            s = mac(s, plane::<6>(q), load_i8(&ab.qs, 128 * h + 96));
        }
        let isum = finish(s, _mm_setzero_si128(), ab);
        acc += (wb.d.to_f32() * ab.d) * isum as f32;
    }
    acc
}

/// `I2_S` · int8: per 128 weights, byte `k` holds weights `k + 32g` at shift `6 - 2g`.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub unsafe fn vec_dot_i2s_q8k(codes: &[u8], a: &[BlockQ8K]) -> f32 {
    let mut acc = 0.0f32;
    for (b, ab) in a.iter().enumerate() {
        let mut s = _mm256_setzero_si256();
        for h in 0..2 {
            let q = load(codes, 64 * b + 32 * h);
            s = mac(s, plane::<6>(q), load_i8(&ab.qs, 128 * h));
            s = mac(s, plane::<4>(q), load_i8(&ab.qs, 128 * h + 32));
            s = mac(s, plane::<2>(q), load_i8(&ab.qs, 128 * h + 64));
            s = mac(s, plane::<0>(q), load_i8(&ab.qs, 128 * h + 96));
        }
        let isum = finish(s, _mm_setzero_si128(), ab);
        acc += ab.d * isum as f32;
    }
    acc
}

/// Repacked T2P · int8: byte `j` of a 64-byte chunk holds weights `j + 64l` in bit pair `l`.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub unsafe fn vec_dot_t2p_q8k(codes: &[u8], scales: &[f32], a: &[BlockQ8K]) -> f32 {
    let mut acc = 0.0f32;
    for ((b, ab), &sc) in a.iter().enumerate().zip(scales) {
        let mut s = _mm256_setzero_si256();
        for h in 0..2 {
            let q = load(codes, 64 * b + 32 * h);
            s = mac(s, plane::<0>(q), load_i8(&ab.qs, 32 * h));
            s = mac(s, plane::<2>(q), load_i8(&ab.qs, 64 + 32 * h));
            s = mac(s, plane::<4>(q), load_i8(&ab.qs, 128 + 32 * h));
            s = mac(s, plane::<6>(q), load_i8(&ab.qs, 192 + 32 * h));
        }
        let isum = finish(s, _mm_setzero_si128(), ab);
        acc += (sc * ab.d) * isum as f32;
    }
    acc
}

/// Trits of bytes held in the high byte of each 16-bit lane: `((v * p mod 256) * 3) >> 8`,
/// returned in the low byte of each lane.
#[inline]
#[target_feature(enable = "avx2")]
fn trits16(hi_bytes: __m256i, p: __m256i) -> __m256i {
    _mm256_mulhi_epu16(_mm256_mullo_epi16(hi_bytes, p), _mm256_set1_epi16(3))
}

#[inline]
#[target_feature(enable = "avx2")]
fn trits16_128(hi_bytes: __m128i, p: __m128i) -> __m128i {
    _mm_mulhi_epu16(_mm_mullo_epi16(hi_bytes, p), _mm_set1_epi16(3))
}

/// Trit plane `p` (a power of three per 16-bit lane) of 32 packed bytes, as one code per byte.
#[inline]
#[target_feature(enable = "avx2")]
fn tq1_plane(lo: __m256i, hi: __m256i, p: __m256i) -> __m256i {
    _mm256_or_si256(trits16(lo, p), _mm256_slli_epi16::<8>(trits16(hi, p)))
}

#[inline]
#[target_feature(enable = "avx2")]
fn tq1_plane_128(lo: __m128i, hi: __m128i, p: __m128i) -> __m128i {
    _mm_or_si128(trits16_128(lo, p), _mm_slli_epi16::<8>(trits16_128(hi, p)))
}

/// `TQ1_0` · int8 (layout in [`crate::format::tq1_0`]). Trits are decoded in 16-bit lanes: the
/// even and odd bytes are moved to the high byte of their lane, so `mullo` by `3^n` keeps exactly
/// `byte * 3^n mod 256` there and `mulhi` by 3 yields the trit.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub unsafe fn vec_dot_tq1_0_q8k(w: &[BlockTQ1_0], a: &[BlockQ8K]) -> f32 {
    const P3: [i16; 5] = [1, 3, 9, 27, 81];
    let hi_mask = _mm256_set1_epi16(0xff00u16 as i16);
    let mut acc = 0.0f32;
    for (wb, ab) in w.iter().zip(a) {
        let x = bytemuck::cast_slice::<i8, u8>(ab.qs.as_slice());
        // qs[0..32]: weights m + 32n.
        let q = load(&wb.qs, 0);
        let (lo, hi) = (_mm256_slli_epi16::<8>(q), _mm256_and_si256(q, hi_mask));
        let mut s = _mm256_setzero_si256();
        for (n, &p) in P3.iter().enumerate() {
            let c = tq1_plane(lo, hi, _mm256_set1_epi16(p));
            s = mac(s, c, load(x, 32 * n));
        }
        // qs[32..48]: weights 160 + m + 16n.
        // SAFETY: qs has 48 bytes, the load reads 32..48.
        let q = unsafe { _mm_loadu_si128(wb.qs.as_ptr().add(32) as *const __m128i) };
        let (lo, hi) = (_mm_slli_epi16::<8>(q), _mm_and_si128(q, _mm_set1_epi16(0xff00u16 as i16)));
        let mut s128 = _mm_setzero_si128();
        for (n, &p) in P3.iter().enumerate() {
            let c = tq1_plane_128(lo, hi, _mm_set1_epi16(p));
            // SAFETY: 160 + 16n + 16 <= 256.
            let xv = unsafe { _mm_loadu_si128(x.as_ptr().add(160 + 16 * n) as *const __m128i) };
            s128 = _mm_add_epi16(s128, _mm_maddubs_epi16(c, xv));
        }
        // qh: byte lane 4n + j holds trit n of qh[j], weight 240 + 4n + j.
        let q = _mm_set1_epi32(i32::from_le_bytes(wb.qh));
        let (lo, hi) = (_mm_slli_epi16::<8>(q), _mm_and_si128(q, _mm_set1_epi16(0xff00u16 as i16)));
        let c = tq1_plane_128(lo, hi, _mm_setr_epi16(1, 1, 3, 3, 9, 9, 27, 27));
        // SAFETY: 240 + 16 <= 256.
        let xv = unsafe { _mm_loadu_si128(x.as_ptr().add(240) as *const __m128i) };
        s128 = _mm_add_epi16(s128, _mm_maddubs_epi16(c, xv));
        let extra = _mm_madd_epi16(s128, _mm_set1_epi16(1));
        let isum = finish(s, extra, ab);
        acc += (wb.d.to_f32() * ab.d) * isum as f32;
    }
    acc
}
