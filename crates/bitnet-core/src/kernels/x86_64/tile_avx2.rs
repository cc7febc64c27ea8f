//! AVX2 whole-row integer tiles ([`crate::kernels::tile`]): each 32-byte chunk of codes is loaded
//! once, split into four planes by shift and mask, and multiplied with every token's activations
//! by `vpmaddubsw` (unsigned codes × signed activations). The i16 sums are widened every
//! [`WIDEN`] blocks and reduced once per row and token.

use super::avx2::hsum;
use crate::format::BlockQ8K;
use crate::kernels::tile::{tile_blocks, CodeLayout};
use std::arch::x86_64::*;
use std::mem::MaybeUninit;

/// Blocks between two widenings of the i16 sums: a block adds at most 8 × 2 × 2 × 128 = 4096 to
/// a lane, so 4 blocks stay below 32767.
pub(crate) const WIDEN: usize = 4;

/// How far ahead of the block being multiplied its row's bytes are prefetched.
const PREFETCH: usize = 4096;

/// [`crate::kernels::tile::codes_tile`] on AVX2.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2,f16c")]
pub unsafe fn codes_tile(
    w: &[u8],
    layout: CodeLayout,
    rows: usize,
    a: &[BlockQ8K],
    n_tok: usize,
    out: &mut [i32],
) -> u64 {
    let nb = tile_blocks(w, layout, rows, a, n_tok, out);
    // SAFETY: `tile_blocks` checked the lengths `tile` reads, in every arm.
    unsafe {
        let (stride, i2s) = (layout.stride(), layout == CodeLayout::I2s);
        macro_rules! by_tokens {
            ($($t:literal)*) => {
                match (i2s, n_tok) {
                    $((false, $t) => tile::<$t, false>(w, stride, rows, nb, a, out),
                      (true, $t) => tile::<$t, true>(w, stride, rows, nb, a, out),)*
                    _ => unreachable!("tile_blocks checked 1..=MAX_TILE_TOKENS"),
                }
            };
        }
        by_tokens!(1 2 3 4 5 6 7 8)
    }
}

/// The four planes of one 32-byte chunk, in weight order.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn planes<const I2S: bool>(q: __m256i) -> [__m256i; 4] {
    let m = _mm256_set1_epi8(3);
    let p = [
        _mm256_and_si256(q, m),
        _mm256_and_si256(_mm256_srli_epi16::<2>(q), m),
        _mm256_and_si256(_mm256_srli_epi16::<4>(q), m),
        _mm256_and_si256(_mm256_srli_epi16::<6>(q), m),
    ];
    if I2S {
        [p[3], p[2], p[1], p[0]]
    } else {
        p
    }
}

/// Bytes of activations one pass over a chunk of blocks keeps in L1: a row longer than
/// `ACT_CHUNK / (T * 320)` blocks is walked chunk by chunk, every row of the tile taking the
/// chunk before the next one starts, so many tokens share each decoded chunk of codes without
/// their activations spilling out of L1.
const ACT_CHUNK: usize = 24 << 10;

/// Rows whose partial sums one chunked pass keeps (8 tokens × 16 rows × 32 bytes = 4 KiB).
const CHUNK_ROWS: usize = 16;

/// # Safety
/// AVX2; `w` holds `rows * nb * stride` bytes, `a` holds `T * nb` blocks, `out`
/// `rows * T` values.
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn tile<const T: usize, const I2S: bool>(
    w: &[u8],
    stride: usize,
    rows: usize,
    nb: usize,
    a: &[BlockQ8K],
    out: &mut [i32],
) -> u64 {
    let chunk = (ACT_CHUNK / (T * std::mem::size_of::<BlockQ8K>())).max(1);
    if nb == 0 {
        out[..rows * T].fill(0);
        return 0;
    }
    let mut mixed = 0u64;
    for r0 in (0..rows).step_by(CHUNK_ROWS) {
        let rn = CHUNK_ROWS.min(rows - r0);
        // Written by each row's first chunk: zeroing 4 KiB per call up front cost 3% of a prefill.
        let mut acc = [[MaybeUninit::<__m256i>::uninit(); T]; CHUNK_ROWS];
        for b0 in (0..nb).step_by(chunk) {
            let b1 = (b0 + chunk).min(nb);
            for (i, acc) in acc[..rn].iter_mut().enumerate() {
                let r = r0 + i;
                // SAFETY: as this function's (row r's blocks lie inside `w`); chunk `b0` of 0
                // initializes `acc`, later chunks read what it wrote.
                let m = unsafe {
                    row::<T, I2S>(w.as_ptr().add(r * nb * stride), stride, nb, b0..b1, a, acc)
                };
                mixed |= (m as u64) << r;
            }
        }
        for (i, acc) in acc[..rn].iter().enumerate() {
            let r = r0 + i;
            for (t, v) in acc.iter().enumerate() {
                // SAFETY: the first chunk (nb > 0 here) wrote every lane.
                out[t * rows + r] = hsum(unsafe { v.assume_init() });
            }
        }
    }
    mixed
}

/// Adds blocks `blocks` of one row times `T` tokens into `acc32` (eight i32 lanes per token;
/// blocks from 0 start it from zero instead), and says whether any of those `TQ2_0` blocks has a
/// scale other than the row's first block's.
///
/// # Safety
/// AVX2; `w` points at `nb * stride` readable bytes, `a` holds `T * nb` blocks, `blocks` lies in
/// `0..nb`; `acc32` is initialized unless `blocks` starts at 0.
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn row<const T: usize, const I2S: bool>(
    w: *const u8,
    stride: usize,
    nb: usize,
    blocks: std::ops::Range<usize>,
    a: &[BlockQ8K],
    acc32: &mut [MaybeUninit<__m256i>; T],
) -> bool {
    let ones = _mm256_set1_epi16(1);
    let mut sums = if blocks.start == 0 {
        [_mm256_setzero_si256(); T]
    } else {
        // SAFETY: a later chunk; the first one initialized `acc32` (caller).
        acc32.map(|v| unsafe { v.assume_init() })
    };
    let scale = |b: usize| {
        // SAFETY: TQ2_0 blocks are 66 bytes with the scale at 64..66, inside `w` (caller).
        unsafe { (w.add(b * stride + 64) as *const u16).read_unaligned() }
    };
    let d0 = if I2S || nb == 0 { 0 } else { scale(0) };
    let mut mixed = 0u16;
    let mut acc16 = [_mm256_setzero_si256(); T];
    let (b0, b1) = (blocks.start, blocks.end);
    for b in blocks {
        // SAFETY: block b's 64 code bytes are readable (caller).
        let wp = unsafe { w.add(b * stride) };
        // A hint only: it never faults, even past the end of `w` (the next row, usually).
        _mm_prefetch::<_MM_HINT_T0>(wp.wrapping_add(PREFETCH) as *const i8);
        _mm_prefetch::<_MM_HINT_T0>(wp.wrapping_add(PREFETCH + 64) as *const i8);
        if !I2S {
            mixed |= scale(b) ^ d0;
        }
        for h in 0..2 {
            // SAFETY: as above; unaligned load of bytes 32h..32h + 32 of the block.
            let q = unsafe { _mm256_loadu_si256(wp.add(32 * h) as *const __m256i) };
            let p = planes::<I2S>(q);
            for (t, acc) in acc16.iter_mut().enumerate() {
                // SAFETY: `a` holds T * nb blocks (caller); qs has 256 bytes.
                let ap = unsafe { a.get_unchecked(t * nb + b).qs.as_ptr().add(128 * h) };
                for (k, pk) in p.iter().enumerate() {
                    // SAFETY: bytes 128h + 32k .. + 32 of qs.
                    let x = unsafe { _mm256_loadu_si256(ap.add(32 * k) as *const __m256i) };
                    *acc = _mm256_add_epi16(*acc, _mm256_maddubs_epi16(*pk, x));
                }
            }
        }
        if (b - b0) % WIDEN == WIDEN - 1 || b + 1 == b1 {
            for (a32, a16) in sums.iter_mut().zip(acc16.iter_mut()) {
                *a32 = _mm256_add_epi32(*a32, _mm256_madd_epi16(*a16, ones));
                *a16 = _mm256_setzero_si256();
            }
        }
    }
    for (o, v) in acc32.iter_mut().zip(sums) {
        o.write(v);
    }
    mixed != 0
}
