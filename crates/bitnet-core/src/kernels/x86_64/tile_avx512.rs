//! AVX-512 VNNI whole-row integer tiles ([`crate::kernels::tile`]) for prefill: `vpdpbusd`
//! multiplies four unsigned codes by four signed activations and adds them into each i32 lane,
//! with no i16 stage, no widening and no separate add.
//!
//! A 256-weight block's 32-byte chunk `h` (weights `128h .. 128h + 128`, four planes of 32) is
//! loaded into both halves of a register and shifted per half, so one register holds planes
//! `2k` and `2k + 1`: the codes of 64 consecutive weights, matched by one contiguous 64-byte load
//! of activations. Two rows share each activation load (two rows × up to eight tokens of
//! accumulators in registers), so the multiply-adds, not the loads, set the pace. One token
//! (decode) goes to the AVX2 tile, which streams memory faster.

use crate::format::BlockQ8K;
use crate::kernels::tile::{tile_blocks, CodeLayout};
use std::arch::x86_64::*;
use std::mem::MaybeUninit;

/// Rows that share each activation load.
const PAIR: usize = 2;

/// How far ahead of the block being multiplied its row's bytes are prefetched.
const PREFETCH: usize = 4096;

/// Bytes of activations one pass over a chunk of blocks keeps in L1 (as the AVX2 tiles).
const ACT_CHUNK: usize = 24 << 10;

/// Rows whose partial sums one chunked pass keeps (8 tokens × 16 rows × 64 bytes = 8 KiB).
const CHUNK_ROWS: usize = 16;

/// [`crate::kernels::tile::codes_tile`] on this path.
///
/// # Safety
/// The CPU must support every feature of this module.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,f16c,avx512vnni")]
pub unsafe fn codes_tile(
    w: &[u8],
    layout: CodeLayout,
    rows: usize,
    a: &[BlockQ8K],
    n_tok: usize,
    out: &mut [i32],
) -> u64 {
    if n_tok == 1 {
        // Decode reads each weight once, bound by memory: the AVX2 tile streams it
        // faster (700M tg64 0.90-0.98x with these tiles of one row, 2 threads).
        // SAFETY: this module's features include AVX2 and F16C.
        return unsafe {
            crate::kernels::x86_64::tile_avx2::codes_tile(w, layout, rows, a, n_tok, out)
        };
    }
    let nb = tile_blocks(w, layout, rows, a, n_tok, out);
    let (stride, i2s) = (layout.stride(), layout == CodeLayout::I2s);
    macro_rules! by_tokens {
        ($($t:literal)*) => {
            // SAFETY: `tile_blocks` checked the lengths `tile` reads, in every arm.
            unsafe {
                match (i2s, n_tok) {
                    $((false, $t) => tile::<$t, false>(w, stride, rows, nb, a, out),
                      (true, $t) => tile::<$t, true>(w, stride, rows, nb, a, out),)*
                    _ => unreachable!("tile_blocks checked 1..=MAX_TILE_TOKENS; 1 went to AVX2"),
                }
            }
        };
    }
    by_tokens!(2 3 4 5 6 7 8)
}

/// # Safety
/// As [`codes_tile`]; `w` holds `rows * nb * stride` bytes, `a` holds `T * nb` blocks,
/// `out` `rows * T` values.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,f16c,avx512vnni")]
unsafe fn tile<const T: usize, const I2S: bool>(
    w: &[u8],
    stride: usize,
    rows: usize,
    nb: usize,
    a: &[BlockQ8K],
    out: &mut [i32],
) -> u64 {
    if nb == 0 {
        out[..rows * T].fill(0);
        return 0;
    }
    // Chunks of equal length: 10 blocks walk as 5 + 5, not 9 + 1.
    let most = (ACT_CHUNK / (T * std::mem::size_of::<BlockQ8K>())).max(1);
    let chunk = nb.div_ceil(nb.div_ceil(most));
    let mut mixed = 0u64;
    for r0 in (0..rows).step_by(CHUNK_ROWS) {
        let rn = CHUNK_ROWS.min(rows - r0);
        // Written by each row's first chunk of blocks, read by the later ones.
        let mut acc = [[MaybeUninit::<__m512i>::uninit(); T]; CHUNK_ROWS];
        for b0 in (0..nb).step_by(chunk) {
            let b1 = (b0 + chunk).min(nb);
            let mut i = 0;
            while i < rn {
                let r = r0 + i;
                let n = if i + PAIR <= rn { PAIR } else { 1 };
                // SAFETY: rows r..r + n lie inside `w` (caller); chunk 0 initializes `acc`.
                let m = unsafe {
                    let wp = w.as_ptr().add(r * nb * stride);
                    let acc = &mut acc[i..i + n];
                    match acc.try_into() {
                        Ok(pair) => rows_pass::<T, PAIR, I2S>(wp, stride, nb, b0..b1, a, pair),
                        Err(_) => {
                            let one = acc.try_into().expect("one row");
                            rows_pass::<T, 1, I2S>(wp, stride, nb, b0..b1, a, one)
                        }
                    }
                };
                mixed |= m << r;
                i += n;
            }
        }
        let keep = ((1u32 << rn) - 1) as u16;
        for t in 0..T {
            let s = sum16(|i| match i < rn {
                // SAFETY: the first chunk (nb > 0 here) wrote rows 0..rn.
                true => unsafe { acc[i][t].assume_init() },
                false => _mm512_setzero_si512(),
            });
            let at = &mut out[t * rows + r0..t * rows + r0 + rn];
            // SAFETY: the mask writes lanes 0..rn, the `rn` values of `at`.
            unsafe { _mm512_mask_storeu_epi32(at.as_mut_ptr(), keep, s) };
        }
    }
    mixed
}

/// Lane `r` of the result is the sum of the 16 lanes of `v(r)`: a transposing tree of 15 adds
/// (pairs of rows interleaved within 128-bit lanes, then 128-bit lanes folded), where reducing
/// each row alone takes four shuffles and four adds.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,f16c,avx512vnni")]
fn sum16(v: impl Fn(usize) -> __m512i) -> __m512i {
    // Rows 2i, 2i + 1 alternating within each 128-bit lane.
    let p: [__m512i; 8] = std::array::from_fn(|i| {
        let (a, b) = (v(2 * i), v(2 * i + 1));
        _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b))
    });
    // Rows 4i .. 4i + 4 in order within each 128-bit lane.
    let q: [__m512i; 4] = std::array::from_fn(|i| {
        let (a, b) = (p[2 * i], p[2 * i + 1]);
        _mm512_add_epi32(_mm512_unpacklo_epi64(a, b), _mm512_unpackhi_epi64(a, b))
    });
    // 128-bit lanes: rows 8i..8i + 4 (lanes 0+1, 2+3), rows 8i + 4..8i + 8 (same).
    let fold = |a: __m512i, b: __m512i| {
        _mm512_add_epi32(
            _mm512_shuffle_i32x4::<0b10_00_10_00>(a, b),
            _mm512_shuffle_i32x4::<0b11_01_11_01>(a, b),
        )
    };
    let (d0, d1) = (fold(q[0], q[1]), fold(q[2], q[3]));
    // Rows 0..4, 4..8, 8..12, 12..16, each summed over all four lanes.
    fold(d0, d1)
}

/// The shifts that put planes `2k` (low half) and `2k + 1` (high half) of a chunk in the
/// low bits of every byte.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,f16c,avx512vnni")]
fn plane_shifts<const I2S: bool>() -> [__m512i; 2] {
    let s = |p: u16| if I2S { 6 - 2 * p } else { 2 * p };
    let pair = |lo: u16, hi: u16| {
        let h = _mm256_set1_epi16(s(hi) as i16);
        _mm512_inserti64x4::<1>(_mm512_set1_epi16(s(lo) as i16), h)
    };
    [pair(0, 1), pair(2, 3)]
}

/// Adds blocks `blocks` of `R` consecutive rows (`nb * stride` bytes apart from `w`) times
/// `T` tokens into `acc` (blocks from 0 start it from zero instead); bit `r` of the result
/// says whether row `r`'s `TQ2_0` blocks there have a scale other than its first block's.
///
/// # Safety
/// This module's features; `w` points at `R * nb * stride` readable bytes, `a` holds
/// `T * nb` blocks, `blocks` lies in `0..nb`; `acc` is initialized unless `blocks` starts
/// at 0.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,f16c,avx512vnni")]
unsafe fn rows_pass<const T: usize, const R: usize, const I2S: bool>(
    w: *const u8,
    stride: usize,
    nb: usize,
    blocks: std::ops::Range<usize>,
    a: &[BlockQ8K],
    acc: &mut [[MaybeUninit<__m512i>; T]; R],
) -> u64 {
    // Token-major: `step` takes one token's R accumulators.
    let mut sums = [[_mm512_setzero_si512(); R]; T];
    if blocks.start > 0 {
        for (t, sums) in sums.iter_mut().enumerate() {
            for (r, v) in sums.iter_mut().enumerate() {
                // SAFETY: a later chunk; the first one initialized `acc` (caller).
                *v = unsafe { acc[r][t].assume_init() };
            }
        }
    }
    let row = |r: usize| w.wrapping_add(r * nb * stride);
    let scale = |r: usize, b: usize| {
        // SAFETY: TQ2_0 blocks are 66 bytes with the scale at 64..66, inside `w`.
        unsafe { (row(r).add(b * stride + 64) as *const u16).read_unaligned() }
    };
    let mut d0 = [0u16; R];
    if !I2S {
        for (r, d) in d0.iter_mut().enumerate() {
            *d = scale(r, 0);
        }
    }
    let mut mixed = [0u16; R];
    let [s01, s23] = plane_shifts::<I2S>();
    let m3 = _mm512_set1_epi8(3);
    for b in blocks {
        for r in 0..R {
            let wp = row(r).wrapping_add(b * stride);
            // A hint only: it never faults, even past the end of `w`.
            _mm_prefetch::<_MM_HINT_T0>(wp.wrapping_add(PREFETCH) as *const i8);
            _mm_prefetch::<_MM_HINT_T0>(wp.wrapping_add(PREFETCH + 64) as *const i8);
            if !I2S {
                mixed[r] |= scale(r, b) ^ d0[r];
            }
        }
        // The four plane pairs of every row, then each token's 256 activations against
        // them: R × T accumulators and 4R planes live in registers.
        let mut planes = [[_mm512_setzero_si512(); 4]; R];
        for (r, p) in planes.iter_mut().enumerate() {
            for h in 0..2 {
                // SAFETY: bytes 32h..32h + 32 of block b of row r (caller).
                let q = unsafe {
                    let wp = row(r).add(b * stride + 32 * h);
                    _mm512_broadcast_i64x4(_mm256_loadu_si256(wp as *const __m256i))
                };
                p[2 * h] = _mm512_and_si512(_mm512_srlv_epi16(q, s01), m3);
                p[2 * h + 1] = _mm512_and_si512(_mm512_srlv_epi16(q, s23), m3);
            }
        }
        for (t, sums) in sums.iter_mut().enumerate() {
            // SAFETY: token t's block b is inside `a` (T * nb blocks, caller); `step`
            // reads its 256 activations.
            unsafe { step::<R>(sums, &planes, a.get_unchecked(t * nb + b).qs.as_ptr()) };
        }
    }
    for (t, sums) in sums.iter().enumerate() {
        for (r, &v) in sums.iter().enumerate() {
            acc[r][t].write(v);
        }
    }
    mixed.iter().enumerate().fold(0, |m, (r, &x)| m | ((x != 0) as u64) << r)
}

/// `acc[r] += planes[r] · x` for one token's 256 activations at `x` (plane pair `k`
/// against bytes `64k .. 64k + 64`). Assembly for one and two rows: given the loads as
/// intrinsics, LLVM issued every token's loads of a block first and spilled most of
/// them to the stack; here each load sits beside its multiply-adds.
///
/// # Safety
/// 256 bytes at `x` are readable.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,f16c,avx512vnni")]
unsafe fn step<const R: usize>(acc: &mut [__m512i; R], planes: &[[__m512i; 4]; R], x: *const i8) {
    use std::arch::asm;
    match R {
        // SAFETY: reads the 256 bytes at `x` (the caller's promise) and writes only the
        // accumulators; the casts are to the same type, R being 1 in this arm.
        1 => unsafe {
            let a = &mut *(acc as *mut [__m512i; R] as *mut [__m512i; 1]);
            let c = &*(planes as *const [[__m512i; 4]; R] as *const [[__m512i; 4]; 1]);
            asm!(
                "vpdpbusd {a0}, {c0}, zmmword ptr [{x}]",
                "vpdpbusd {a0}, {c1}, zmmword ptr [{x} + 64]",
                "vpdpbusd {a0}, {c2}, zmmword ptr [{x} + 128]",
                "vpdpbusd {a0}, {c3}, zmmword ptr [{x} + 192]",
                a0 = inout(zmm_reg) a[0],
                c0 = in(zmm_reg) c[0][0], c1 = in(zmm_reg) c[0][1],
                c2 = in(zmm_reg) c[0][2], c3 = in(zmm_reg) c[0][3],
                x = in(reg) x,
                options(pure, readonly, nostack, preserves_flags),
            );
        },
        // SAFETY: as above, also writing one scratch register; R is 2 in this arm.
        2 => unsafe {
            let a = &mut *(acc as *mut [__m512i; R] as *mut [__m512i; 2]);
            let c = &*(planes as *const [[__m512i; 4]; R] as *const [[__m512i; 4]; 2]);
            let _scratch: __m512i;
            asm!(
                "vmovdqu64 {v}, zmmword ptr [{x}]",
                "vpdpbusd {a0}, {c00}, {v}",
                "vpdpbusd {a1}, {c10}, {v}",
                "vmovdqu64 {v}, zmmword ptr [{x} + 64]",
                "vpdpbusd {a0}, {c01}, {v}",
                "vpdpbusd {a1}, {c11}, {v}",
                "vmovdqu64 {v}, zmmword ptr [{x} + 128]",
                "vpdpbusd {a0}, {c02}, {v}",
                "vpdpbusd {a1}, {c12}, {v}",
                "vmovdqu64 {v}, zmmword ptr [{x} + 192]",
                "vpdpbusd {a0}, {c03}, {v}",
                "vpdpbusd {a1}, {c13}, {v}",
                a0 = inout(zmm_reg) a[0], a1 = inout(zmm_reg) a[1],
                c00 = in(zmm_reg) c[0][0], c01 = in(zmm_reg) c[0][1],
                c02 = in(zmm_reg) c[0][2], c03 = in(zmm_reg) c[0][3],
                c10 = in(zmm_reg) c[1][0], c11 = in(zmm_reg) c[1][1],
                c12 = in(zmm_reg) c[1][2], c13 = in(zmm_reg) c[1][3],
                v = out(zmm_reg) _scratch,
                x = in(reg) x,
                options(pure, readonly, nostack, preserves_flags),
            );
        },
        _ => unreachable!("rows_pass runs one or two rows"),
    }
}
