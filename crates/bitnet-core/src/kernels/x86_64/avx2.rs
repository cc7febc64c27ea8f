//! AVX2 kernels: codes (0, 1, 2) as unsigned bytes × int8 activations with `vpmaddubsw`, i16
//! partial sums widened by `vpmaddwd`, minus the activation sums (`sum (c - 1) a = sum c a - sum a`).
//! The integer block sums and the f32 accumulation order equal [`crate::kernels::scalar`]'s.

use super::tile_avx2::WIDEN;
use crate::format::{BlockQ8K, BlockTQ1_0, BlockTQ2_0};
use crate::kernels::{Isa, Kernels};
use std::arch::x86_64::*;

pub(crate) fn table() -> Kernels {
    Kernels {
        isa: Isa::Avx2,
        // SAFETY: `Kernels::new` builds this table only where `is_available()` holds.
        vec_dot_tq2_0_q8k: |w, a| unsafe { vec_dot_tq2_0_q8k(w, a) },
        // SAFETY: `Kernels::new` builds this table only where `is_available()` holds.
        vec_dot_tq1_0_q8k: |w, a| unsafe { vec_dot_tq1_0_q8k(w, a) },
        // SAFETY: `Kernels::new` builds this table only where `is_available()` holds.
        vec_dot_i2s_q8k: |c, a| unsafe { vec_dot_i2s_q8k(c, a) },
        // SAFETY: `Kernels::new` builds this table only where `is_available()` holds.
        vec_dot_t2p_q8k: |c, s, a| unsafe { vec_dot_t2p_q8k(c, s, a) },
        // SAFETY: `Kernels::new` builds this table only where `is_available()` holds.
        codes_tile: |w, l, r, a, n, o| unsafe {
            crate::kernels::x86_64::tile_avx2::codes_tile(w, l, r, a, n, o)
        },
        // SAFETY: `Kernels::new` builds this table only where `is_available()` holds.
        tq1_0_to_tq2_0: |s, d| unsafe { tq1_0_to_tq2_0(s, d) },
        // SAFETY: `Kernels::new` builds this table only where `is_available()` holds.
        tq1_0_rows: |w, r, a, o| unsafe { tq1_0_rows(w, r, a, o) },
    }
}

#[inline]
#[target_feature(enable = "avx2,f16c")]
fn load(p: &[u8], off: usize) -> __m256i {
    assert!(off + 32 <= p.len());
    // SAFETY: bounds checked above; unaligned load.
    unsafe { _mm256_loadu_si256(p.as_ptr().add(off) as *const __m256i) }
}

#[inline]
#[target_feature(enable = "avx2,f16c")]
fn load_i8(p: &[i8; 256], off: usize) -> __m256i {
    load(bytemuck::cast_slice(p.as_slice()), off)
}

/// Exact f16 → f32 conversion with `vcvtph2ps`.
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(crate) fn f16_to_f32(h: half::f16) -> f32 {
    // `vmovd` writes the whole register. Left to itself the compiler narrows this to `vpinsrw`,
    // which merges the register's other lanes, and it picked a live accumulator for them:
    // every block's scale then waited for the previous block's sum.
    let v: __m128i;
    // SAFETY: a register move with no memory access; `vmovd` needs only SSE2.
    unsafe {
        std::arch::asm!(
            "vmovd {v}, {r:e}",
            v = lateout(xmm_reg) v,
            r = in(reg) h.to_bits() as u32,
            options(pure, nomem, nostack, preserves_flags),
        )
    };
    _mm_cvtss_f32(_mm_cvtph_ps(v))
}

/// Codes in bit pair `S / 2` of every byte.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn plane<const S: i32>(q: __m256i) -> __m256i {
    _mm256_and_si256(_mm256_srli_epi16::<S>(q), _mm256_set1_epi8(3))
}

/// `acc16 += maddubs(codes, activations)`.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn mac(acc: __m256i, c: __m256i, x: __m256i) -> __m256i {
    _mm256_add_epi16(acc, _mm256_maddubs_epi16(c, x))
}

/// Sum of the eight i32 lanes.
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(crate) fn hsum(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s)
}

/// The exact block sum `sum c*a - sum a` from i16 products and the block's `bsums`.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn finish(acc16: __m256i, a: &BlockQ8K) -> i32 {
    let ones = _mm256_set1_epi16(1);
    let bs = load(bytemuck::cast_slice(a.bsums.as_slice()), 0);
    hsum(_mm256_sub_epi32(_mm256_madd_epi16(acc16, ones), _mm256_madd_epi16(bs, ones)))
}

/// `TQ2_0` · int8: byte `32h + j` holds weights `128h + j + 32l` in bit pair `l`.
///
/// # Safety
/// The CPU must support AVX2 and F16C.
#[target_feature(enable = "avx2,f16c")]
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
        let isum = finish(s, ab);
        acc += (f16_to_f32(wb.d) * ab.d) * isum as f32;
    }
    acc
}

/// `I2_S` · int8: per 128 weights, byte `k` holds weights `k + 32g` at shift `6 - 2g`.
///
/// # Safety
/// The CPU must support AVX2 and F16C.
#[target_feature(enable = "avx2,f16c")]
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
        let isum = finish(s, ab);
        acc += ab.d * isum as f32;
    }
    acc
}

/// Repacked T2P · int8: byte `j` of a 64-byte chunk holds weights `j + 64l` in bit pair `l`.
///
/// # Safety
/// The CPU must support AVX2 and F16C.
#[target_feature(enable = "avx2,f16c")]
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
        let isum = finish(s, ab);
        acc += (sc * ab.d) * isum as f32;
    }
    acc
}

/// `x * 3 mod 256` in every byte. It keeps the bias of [`biased`]: `3 (x + 128) = 3x + 128`
/// (mod 256), so a biased byte times 3 is the biased byte of `3x`.
///
/// Two byte adds, written as assembly: seen through, a chain of these became byte multiplies by
/// 9, 27 and 81 from the first register (three to five instructions each, where the chain
/// takes two per step).
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn times3(x: __m256i) -> __m256i {
    let y: __m256i;
    // SAFETY: two AVX2 byte adds on registers (the caller's target features include AVX2); no
    // memory, stack or flags are touched.
    unsafe {
        std::arch::asm!(
            "vpaddb {y}, {x}, {x}",
            "vpaddb {y}, {y}, {x}",
            x = in(ymm_reg) x,
            y = out(ymm_reg) y,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    y
}

/// Every byte plus 128 (mod 256): unsigned order becomes signed order, so [`top_trit`]'s
/// thresholds are single signed compares.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn biased(x: __m256i) -> __m256i {
    _mm256_xor_si256(x, _mm256_set1_epi8(i8::MIN))
}

/// The top trit of every packed byte `x`, given biased (`x + 128`, see [`biased`]): `(x * 3) >> 8`,
/// which is `[x >= 86] + [x >= 171]`; biased, `x >= 86` is `> -43` and `x >= 171` is `> 42`, each
/// true compare giving -1.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn top_trit(x: __m256i) -> __m256i {
    let gt = |t: i8| _mm256_cmpgt_epi8(x, _mm256_set1_epi8(t));
    _mm256_abs_epi8(_mm256_add_epi8(gt(-43), gt(42)))
}

/// The trits (0, 1, 2) of one `TQ1_0` block as eight planes in weight order: plane `p` holds
/// weights `32p .. 32p + 32` (layout in [`crate::format::tq1_0`]).
///
/// Multiplying a packed byte by 3 (mod 256) brings its next trit to the top, so the planes come
/// from byte adds and two compares, with no 16-bit multiplies; the bytes are biased once when
/// loaded, so each compare is one instruction. `qs[32..48]` is processed two planes at a time
/// (the upper 16 bytes one plane ahead), and its last plane shares a register with the 16 `qh`
/// weights, whose four trit planes are made by per-dword powers of three.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn tq1_0_planes(wb: &BlockTQ1_0) -> [__m256i; 8] {
    let mut p = [_mm256_setzero_si256(); 8];
    // qs[0..32]: plane n covers weights 32n..32n + 32.
    let mut q = biased(load(&wb.qs, 0));
    for pn in p.iter_mut().take(5) {
        *pn = top_trit(q);
        q = times3(q);
    }
    // qs[32..48]: plane n covers weights 160 + 16n..+16. Low half plane 2k, high half 2k + 1.
    // SAFETY: qs has 48 bytes; the load reads 32..48.
    let q16 = unsafe { _mm_loadu_si128(wb.qs.as_ptr().add(32) as *const __m128i) };
    let q = biased(_mm256_broadcastsi128_si256(q16));
    let mut q = _mm256_blend_epi32::<0xf0>(q, times3(q));
    for pn in p.iter_mut().skip(5).take(2) {
        *pn = top_trit(q);
        q = times3(times3(q));
    }
    // Plane 4 of qs[32..48] (weights 224..240) beside qh (weights 240 + 4n + j: dword n of the
    // high half holds the four qh bytes times 3^n).
    let h1 = biased(_mm256_set1_epi32(i32::from_le_bytes(wb.qh)));
    let h3 = times3(h1);
    let h9 = times3(h3);
    let h = _mm256_blend_epi32::<0b0010_0000>(h1, h3);
    let h = _mm256_blend_epi32::<0b0100_0000>(h, h9);
    let h = _mm256_blend_epi32::<0b1000_0000>(h, times3(h9));
    p[7] = top_trit(_mm256_blend_epi32::<0xf0>(q, h));
    p
}

/// `sum (trit - 1) * a` of one `TQ1_0` block.
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(crate) fn tq1_0_block_isum(wb: &BlockTQ1_0, ab: &BlockQ8K) -> i32 {
    let x = bytemuck::cast_slice::<i8, u8>(ab.qs.as_slice());
    let mut s = _mm256_setzero_si256();
    for (n, pn) in tq1_0_planes(wb).into_iter().enumerate() {
        s = mac(s, pn, load(x, 32 * n));
    }
    finish(s, ab)
}

/// [`crate::kernels::tile::tq1_0_to_tq2_0`] on AVX2: plane `4h + l` of the trits goes to bit
/// pair `l` of half `h`.
///
/// # Safety
/// The CPU must support AVX2 and F16C.
#[target_feature(enable = "avx2,f16c")]
pub unsafe fn tq1_0_to_tq2_0(src: &[BlockTQ1_0], dst: &mut [BlockTQ2_0]) {
    assert_eq!(src.len(), dst.len(), "tq1_0_to_tq2_0: block counts");
    for (s, d) in src.iter().zip(dst.iter_mut()) {
        let p = tq1_0_planes(s);
        for h in 0..2 {
            // Trits are at most 2, so 16-bit shifts by up to 6 never carry into the next byte.
            let q = _mm256_or_si256(
                _mm256_or_si256(p[4 * h], _mm256_slli_epi16::<2>(p[4 * h + 1])),
                _mm256_or_si256(
                    _mm256_slli_epi16::<4>(p[4 * h + 2]),
                    _mm256_slli_epi16::<6>(p[4 * h + 3]),
                ),
            );
            // SAFETY: `qs` has 64 bytes; this stores bytes 32h..32h + 32.
            unsafe { _mm256_storeu_si256(d.qs.as_mut_ptr().add(32 * h) as *mut __m256i, q) };
        }
        d.d = s.d;
    }
}

/// How far ahead of the block being multiplied a `TQ1_0` row is prefetched.
const TQ1_PREFETCH: usize = 4096;

/// [`crate::kernels::tile::tq1_0_rows`] on AVX2: the trit planes of [`tq1_0_planes`] into i16
/// sums, widened every [`WIDEN`] blocks as the 2-bit tiles widen theirs (trits are at most 2,
/// as those codes are) and reduced once per row: no per-block reduction or scaling.
///
/// # Safety
/// The CPU must support AVX2 and F16C.
#[target_feature(enable = "avx2,f16c")]
pub unsafe fn tq1_0_rows(w: &[BlockTQ1_0], rows: usize, a: &[BlockQ8K], out: &mut [i32]) -> u64 {
    let nb = crate::kernels::tile::tq1_rows_blocks(w, rows, a, out);
    let ones = _mm256_set1_epi16(1);
    let mut mixed = 0u64;
    for (r, o) in out[..rows].iter_mut().enumerate() {
        let row = &w[r * nb..(r + 1) * nb];
        let d0 = row.first().map_or(0, |b| b.d.to_bits());
        let (mut acc32, mut acc16) = (_mm256_setzero_si256(), _mm256_setzero_si256());
        let mut m = 0u16;
        for (b, (wb, ab)) in row.iter().zip(a).enumerate() {
            let wp = (wb as *const BlockTQ1_0).cast::<i8>();
            // A hint only: it never faults, even past the end of `w`.
            _mm_prefetch::<_MM_HINT_T0>(wp.wrapping_add(TQ1_PREFETCH));
            m |= wb.d.to_bits() ^ d0;
            let x = bytemuck::cast_slice::<i8, u8>(ab.qs.as_slice());
            for (n, pn) in tq1_0_planes(wb).into_iter().enumerate() {
                acc16 = mac(acc16, pn, load(x, 32 * n));
            }
            if b % WIDEN == WIDEN - 1 || b + 1 == nb {
                acc32 = _mm256_add_epi32(acc32, _mm256_madd_epi16(acc16, ones));
                acc16 = _mm256_setzero_si256();
            }
        }
        *o = hsum(acc32);
        mixed |= ((m != 0) as u64) << r;
    }
    mixed
}

/// `TQ1_0` · int8 (see [`tq1_0_block_isum`]).
///
/// # Safety
/// The CPU must support AVX2 and F16C.
#[target_feature(enable = "avx2,f16c")]
pub unsafe fn vec_dot_tq1_0_q8k(w: &[BlockTQ1_0], a: &[BlockQ8K]) -> f32 {
    let mut acc = 0.0f32;
    for (wb, ab) in w.iter().zip(a) {
        let isum = tq1_0_block_isum(wb, ab);
        acc += (f16_to_f32(wb.d) * ab.d) * isum as f32;
    }
    acc
}
