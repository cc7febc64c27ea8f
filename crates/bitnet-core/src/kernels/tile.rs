//! Whole-row integer tiles: `sum_c code[r, c] * a[t, c]` for one row and up to [`MAX_TILE_TOKENS`]
//! tokens at once, with no per-block scaling.
//!
//! When every block of a weight row has the same scale (always for `I2_S`; for `TQ2_0` rows whose
//! blocks share one `d`, which is how BitNet models are exported) and every block of a token's
//! activations has the same scale (per-token absmax quantization), the dot product factors:
//!
//! ```text
//! y[r, t] = s_w[r] * d_a[t] * (sum_c code[r, c] * a[t, c] - sum_c a[t, c])
//! ```
//!
//! The integer sum runs over the whole row in SIMD accumulators, reduced once; the activation sum
//! is computed once per token instead of once per block and row. A tile reads each weight byte
//! once for several tokens, so prefill reuses every decoded plane of codes.
//!
//! Both file layouts are read in place: a 256-weight block is two 32-byte chunks, chunk `h` holds
//! weights `128h .. 128h + 128` as four planes of 32 consecutive weights, plane `p` in one bit pair
//! of every byte (`TQ2_0`: bits `2p`; `I2_S`: bits `6 - 2p`).

use crate::format::{BlockQ8K, BlockTQ1_0, BlockTQ2_0, QK_K};

/// Tokens one tile call covers.
pub const MAX_TILE_TOKENS: usize = 8;

/// The byte layout of one row's 2-bit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeLayout {
    /// 66-byte `TQ2_0` blocks (64 bytes of codes, then the f16 scale); plane `p` at bits `2p`.
    Tq2_0,
    /// 64 bytes per block; plane `p` at bits `6 - 2p`.
    I2s,
}

impl CodeLayout {
    /// Bytes from one block to the next.
    pub const fn stride(self) -> usize {
        match self {
            CodeLayout::Tq2_0 => 66,
            CodeLayout::I2s => 64,
        }
    }

    /// The bit offset of plane `p` (0..4) in every code byte.
    pub const fn shift(self, p: usize) -> usize {
        match self {
            CodeLayout::Tq2_0 => 2 * p,
            CodeLayout::I2s => 6 - 2 * p,
        }
    }

    /// The code (0..4) of weight `i` of the block at `block` (`stride()` bytes or more).
    #[inline]
    pub fn code(self, block: &[u8], i: usize) -> u8 {
        let (h, p, j) = (i / 128, (i % 128) / 32, i % 32);
        (block[32 * h + j] >> self.shift(p)) & 3
    }
}

/// `out[t * rows + r] = sum_c code[r, c] * a[t, c]` for `rows` consecutive rows of `nb` blocks
/// (`w` holds `rows * nb` blocks of `layout.stride()` bytes) and `n_tok` tokens
/// (1..=[`MAX_TILE_TOKENS`]) of `nb` activation blocks each; `rows` is at most
/// [`MAX_TILE_ROWS`]. Token-major, so one token's sums of the tile's rows are contiguous, as its
/// outputs are.
///
/// Returns a mask with bit `r` set when row `r`'s `TQ2_0` blocks do not all share the scale of its
/// first block: such a row's sums cannot be scaled once, and the caller recomputes it per block.
pub type CodesTile = fn(
    w: &[u8],
    layout: CodeLayout,
    rows: usize,
    a: &[BlockQ8K],
    n_tok: usize,
    out: &mut [i32],
) -> u64;

/// `out[r] = sum_c trit[r, c] * a[c]` (trits 0, 1, 2) for `rows` consecutive `TQ1_0` rows of
/// `a.len()` blocks each and one token: decode's whole-row sums, read straight from the 1.6-bit
/// packing. Returns the mask of rows whose blocks do not all share their first block's scale,
/// as [`CodesTile`] does.
pub type Tq1Rows = fn(w: &[BlockTQ1_0], rows: usize, a: &[BlockQ8K], out: &mut [i32]) -> u64;

/// Rows one tile call covers at most.
pub const MAX_TILE_ROWS: usize = 64;

/// The scale bits of `TQ2_0` block `b` (bytes 64..66 of its 66).
#[inline]
pub(crate) fn tq2_scale_bits(w: &[u8], b: usize) -> u16 {
    let at = b * CodeLayout::Tq2_0.stride() + 64;
    u16::from_le_bytes([w[at], w[at + 1]])
}

/// Checks the lengths a [`CodesTile`] relies on and returns the blocks per row.
#[inline]
pub(crate) fn tile_blocks(
    w: &[u8],
    layout: CodeLayout,
    rows: usize,
    a: &[BlockQ8K],
    n_tok: usize,
    out: &[i32],
) -> usize {
    assert!((1..=MAX_TILE_TOKENS).contains(&n_tok), "tile of {n_tok} tokens");
    assert!(rows <= MAX_TILE_ROWS, "tile of {rows} rows");
    assert!(out.len() >= rows * n_tok, "output of {rows} x {n_tok}");
    let nb = a.len() / n_tok;
    assert_eq!(nb * n_tok, a.len(), "activations of whole tokens");
    assert!(w.len() >= rows * nb * layout.stride(), "codes of {rows} x {nb} blocks");
    nb
}

/// Checks the lengths a [`Tq1Rows`] relies on and returns the blocks per row.
#[inline]
pub(crate) fn tq1_rows_blocks(w: &[BlockTQ1_0], rows: usize, a: &[BlockQ8K], out: &[i32]) -> usize {
    assert!(rows <= MAX_TILE_ROWS, "tile of {rows} rows");
    assert!(out.len() >= rows, "output of {rows} rows");
    assert!(w.len() >= rows * a.len(), "TQ1_0 codes of {rows} x {} blocks", a.len());
    a.len()
}

/// The reference [`Tq1Rows`]: plain loops over every trit.
pub fn tq1_0_rows(w: &[BlockTQ1_0], rows: usize, a: &[BlockQ8K], out: &mut [i32]) -> u64 {
    let nb = tq1_rows_blocks(w, rows, a, out);
    let mut mixed = 0u64;
    for (r, o) in out[..rows].iter_mut().enumerate() {
        let row = &w[r * nb..(r + 1) * nb];
        let same = row.iter().all(|b| b.d.to_bits() == row[0].d.to_bits());
        mixed |= (!same as u64) << r;
        *o = row
            .iter()
            .zip(a)
            .map(|(wb, ab)| (0..QK_K).map(|i| wb.code(i) as i32 * ab.qs[i] as i32).sum::<i32>())
            .sum();
    }
    mixed
}

/// The reference tile: plain loops over every weight.
pub fn codes_tile(
    w: &[u8],
    layout: CodeLayout,
    rows: usize,
    a: &[BlockQ8K],
    n_tok: usize,
    out: &mut [i32],
) -> u64 {
    let nb = tile_blocks(w, layout, rows, a, n_tok, out);
    let mut mixed = 0u64;
    for r in 0..rows {
        if layout == CodeLayout::Tq2_0 {
            let d0 = tq2_scale_bits(w, r * nb);
            let same = (0..nb).all(|b| tq2_scale_bits(w, r * nb + b) == d0);
            mixed |= (!same as u64) << r;
        }
        for t in 0..n_tok {
            let mut s = 0i32;
            for b in 0..nb {
                let block = &w[(r * nb + b) * layout.stride()..];
                let ab = &a[t * nb + b];
                s += (0..QK_K).map(|i| layout.code(block, i) as i32 * ab.qs[i] as i32).sum::<i32>();
            }
            out[t * rows + r] = s;
        }
    }
    mixed
}

/// The reference transcoder: every `TQ1_0` block of `src` as the `TQ2_0` block with the same
/// codes and scale (`TQ1_0` is a denser packing of the same trits). Panics unless the slices have
/// the same length.
pub fn tq1_0_to_tq2_0(src: &[BlockTQ1_0], dst: &mut [BlockTQ2_0]) {
    assert_eq!(src.len(), dst.len(), "tq1_0_to_tq2_0: block counts");
    for (s, d) in src.iter().zip(dst.iter_mut()) {
        d.qs = [0; QK_K / 4];
        for i in 0..QK_K {
            let (h, p, j) = (i / 128, (i % 128) / 32, i % 32);
            d.qs[32 * h + j] |= s.code(i) << CodeLayout::Tq2_0.shift(p);
        }
        d.d = s.d;
    }
}

/// `sum_c a[c]` of one token's blocks when they all share one scale, else `None`.
pub fn uniform_act_sum(a: &[BlockQ8K]) -> Option<i32> {
    let d = a.first()?.d;
    let mut s = 0i32;
    for b in a {
        if b.d.to_bits() != d.to_bits() {
            return None;
        }
        s += b.bsums.iter().map(|&v| v as i32).sum::<i32>();
    }
    Some(s)
}
