//! Threaded GEMV and GEMM of a ternary matrix with int8 activations.
//!
//! `y[t, r] = sum_c W[r, c] * x[t, c]`: rows are split into contiguous ranges, one per thread of
//! the pool; GEMM walks a tile of rows for every token so the tile stays in L1/L2 while the
//! activations stream past it.

use super::pool::{thread_range, OutPtr};
use super::tile::{uniform_act_sum, CodeLayout, MAX_TILE_ROWS, MAX_TILE_TOKENS};
use super::{Kernels, TernaryMatrix, TernaryView, ThreadPool};
use crate::format::{check_len, BlockQ8K, BlockTQ1_0, BlockTQ2_0};
use crate::Result;
use half::slice::HalfFloatSliceExt;

/// Rows of one integer GEMM tile: one kernel call takes all of them for up to
/// [`MAX_TILE_TOKENS`] tokens, so those tokens' activations stay in L1 while 64 rows pass (the
/// kernels walk them 16 at a time), and the 64 rows' codes (25-114 KiB on the 700M and 2B4T
/// shapes) stay in L2 while every token passes. Against 16-row tiles: prefill +9-14% (700M) and
/// +6% (2B4T) with the VNNI tiles, 1.00 with AVX2.
const GEMM_ROW_TILE: usize = MAX_TILE_ROWS;

/// Rows of one tile when a single token passes (decode): nothing is reused across tokens, so a
/// longer tile only spreads the per-call work (scales, outputs) over more rows.
const GEMV_ROW_TILE: usize = MAX_TILE_ROWS;

/// Rows of one tile of per-row dot products ([`Matmul::run_tiled`]).
const DOT_ROW_TILE: usize = 16;

/// Matrices one pass of the pool takes at most (a larger group runs as several passes).
const MAX_GROUP: usize = 4;

/// Threads whose tile ranges live on the stack of a pass.
const MAX_STEAL_THREADS: usize = 16;

/// One thread's remaining tiles `front..back`, packed in one atomic: the owner takes from the
/// front, the others from the back, each by compare-and-swap, so every tile is taken once.
#[derive(Default)]
#[repr(align(128))]
struct TileRange(std::sync::atomic::AtomicU64);

impl TileRange {
    fn set(&self, front: usize, back: usize) {
        let v = (front as u64) << 32 | back as u64;
        self.0.store(v, std::sync::atomic::Ordering::Relaxed);
    }

    fn take(&self, from_front: bool) -> Option<usize> {
        use std::sync::atomic::Ordering;
        let mut cur = self.0.load(Ordering::Relaxed);
        loop {
            let (front, back) = (cur >> 32, cur & 0xffff_ffff);
            if front >= back {
                return None;
            }
            let (new, got) =
                if from_front { (cur + (1 << 32), front) } else { (cur - 1, back - 1) };
            match self.0.compare_exchange_weak(cur, new, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return Some(got as usize),
                Err(seen) => cur = seen,
            }
        }
    }

    fn take_front(&self) -> Option<usize> {
        self.take(true)
    }

    fn take_back(&self) -> Option<usize> {
        self.take(false)
    }
}

/// Kernels plus the thread pool that runs them: one per model.
#[derive(Debug)]
pub struct Matmul {
    kernels: Kernels,
    pool: ThreadPool,
}

impl Matmul {
    pub fn new(kernels: Kernels, n_threads: usize) -> Result<Self> {
        Ok(Self { kernels, pool: ThreadPool::new(n_threads)? })
    }

    pub fn kernels(&self) -> &Kernels {
        &self.kernels
    }

    pub fn n_threads(&self) -> usize {
        self.pool.n_threads()
    }

    /// The pool, for other work that should run on the same threads.
    pub fn pool(&self) -> &ThreadPool {
        &self.pool
    }

    /// One token: `y[r] = W[r, :] · x` with `x` the token's `cols / 256` activation blocks.
    pub fn gemv(&self, m: &TernaryMatrix<'_>, x: &[BlockQ8K], y: &mut [f32]) -> Result<()> {
        self.gemm(m, x, 1, y)
    }

    /// `n_tokens` tokens: `x` is (n_tokens, cols / 256) blocks, `y` is (n_tokens, rows).
    pub fn gemm(
        &self,
        m: &TernaryMatrix<'_>,
        x: &[BlockQ8K],
        n_tokens: usize,
        y: &mut [f32],
    ) -> Result<()> {
        self.gemm_group(&[*m], x, n_tokens, &mut [y])
    }

    /// Several matrices of the same width on the same activations (Q, K and V; gate and up):
    /// `ys[i]` is (n_tokens, rows of `ms[i]`). 2-bit matrices with per-token activations run as
    /// whole-row integer tiles ([`super::tile`]) in one pass of the pool; other formats run the
    /// per-block dot products.
    pub fn gemm_group(
        &self,
        ms: &[TernaryMatrix<'_>],
        x: &[BlockQ8K],
        n_tokens: usize,
        ys: &mut [&mut [f32]],
    ) -> Result<()> {
        check_len("gemm outputs", ms.len(), ys.len())?;
        let Some(nb) = ms.first().map(|m| m.blocks_per_row()) else { return Ok(()) };
        check_len("gemm activations (blocks)", n_tokens * nb, x.len())?;
        for (m, y) in ms.iter().zip(ys.iter()) {
            check_len("gemm matrix columns (blocks)", nb, m.blocks_per_row())?;
            check_len("gemm output", n_tokens * m.rows(), y.len())?;
        }
        let k = self.kernels;
        if ms.len() > MAX_GROUP {
            let (m0, m1) = ms.split_at(MAX_GROUP);
            let (y0, y1) = ys.split_at_mut(MAX_GROUP);
            self.gemm_group(m0, x, n_tokens, y0)?;
            return self.gemm_group(m1, x, n_tokens, y1);
        }
        if ms.iter().all(tiles_fit) {
            // One token (decode) keeps its sums on the stack: nothing is allocated per token.
            let one;
            let many;
            let acts: Option<&[(f32, i32)]> = if n_tokens == 1 {
                one = uniform_act_sum(x).map(|s| [(x[0].d, s)]);
                one.as_ref().map(|a| a.as_slice())
            } else {
                many = token_sums(x, nb, n_tokens);
                many.as_deref()
            };
            if let Some(acts) = acts {
                return self.gemm_tiles(ms, x, nb, acts, ys);
            }
        }
        for (m, y) in ms.iter().zip(ys.iter_mut()) {
            self.run_tiled(m.rows(), n_tokens, y, |r, t| {
                k.dot_row(m, r, &x[t * nb..(t + 1) * nb])
            })?;
        }
        Ok(())
    }

    /// The integer-tile pass of [`Matmul::gemm_group`]: the tiles of [`GEMM_ROW_TILE`] rows
    /// ([`GEMV_ROW_TILE`] for a single token) of all matrices, in turn, split into one range per
    /// thread, every tile meeting all tokens, [`MAX_TILE_TOKENS`] at a time. A thread done with
    /// its range takes tiles from the back of the others' ([`TileRange`]): two threads streaming
    /// weights rarely get the same share of the memory bandwidth, and the faster one would wait.
    fn gemm_tiles(
        &self,
        ms: &[TernaryMatrix<'_>],
        x: &[BlockQ8K],
        nb: usize,
        acts: &[(f32, i32)],
        ys: &mut [&mut [f32]],
    ) -> Result<()> {
        let n_tokens = acts.len();
        debug_assert!(ms.len() <= MAX_GROUP);
        let mut outs = [OutPtr(std::ptr::null_mut()); MAX_GROUP];
        for (o, y) in outs.iter_mut().zip(ys.iter_mut()) {
            *o = OutPtr(y.as_mut_ptr());
        }
        let n_threads = self.pool.n_threads();
        let k = self.kernels;
        let any_tq1 = n_tokens >= TQ1_TILE_MIN_TOKENS
            && ms.iter().any(|m| matches!(m.view(), TernaryView::Tq1_0(_)));
        let row_tile = if n_tokens == 1 { GEMV_ROW_TILE } else { GEMM_ROW_TILE };
        // Tiles of every matrix in turn (a matrix's last tile may be short), one range per
        // thread; a thread done with its own takes tiles from the back of the others'.
        let mut tiles = [0usize; MAX_GROUP];
        for (t, m) in tiles.iter_mut().zip(ms) {
            *t = m.rows().div_ceil(row_tile);
        }
        let n_units: usize = tiles.iter().sum();
        let steal = (2..=MAX_STEAL_THREADS).contains(&n_threads) && n_units < u32::MAX as usize;
        let share = |tid: usize| (n_units * tid / n_threads, n_units * (tid + 1) / n_threads);
        let ranges: [TileRange; MAX_STEAL_THREADS] = Default::default();
        for (tid, r) in ranges.iter().enumerate().take(n_threads) {
            let (front, back) = share(tid);
            r.set(front, back);
        }
        let unit = |u: usize| {
            let (mut i, mut u) = (0, u);
            while u >= tiles[i] {
                u -= tiles[i];
                i += 1;
            }
            let t0 = u * row_tile;
            (i, t0, (t0 + row_tile).min(ms[i].rows()))
        };
        self.pool.run(&|tid| {
            // TQ1_0 row tiles are rewritten here as TQ2_0 before the tokens pass.
            let zero = BlockTQ2_0 { qs: [0; 64], d: half::f16::ZERO };
            let mut scratch = if any_tq1 { vec![zero; row_tile * nb] } else { Vec::new() };
            // The kernel overwrites the first `rows * tokens` sums of every call.
            let mut isum = [0i32; MAX_TILE_ROWS * MAX_TILE_TOKENS];
            let (mut u_next, u_end) = share(tid);
            let mut next = || -> Option<usize> {
                if !steal {
                    u_next += 1;
                    return (u_next <= u_end).then_some(u_next - 1);
                }
                ranges[tid].take_front().or_else(|| {
                    (1..n_threads).find_map(|k| ranges[(tid + k) % n_threads].take_back())
                })
            };
            while let Some(u) = next() {
                let (i, t0, t1) = unit(u);
                let (m, out, rows) = (&ms[i], &outs[i], ms[i].rows());
                let nr = t1 - t0;
                let tile = tile_codes(&k, m, t0, t1, n_tokens, &mut scratch);
                let mut scales = [0f32; MAX_TILE_ROWS];
                for tok in (0..n_tokens).step_by(MAX_TILE_TOKENS) {
                    let nt = MAX_TILE_TOKENS.min(n_tokens - tok);
                    let xa = &x[tok * nb..(tok + nt) * nb];
                    let mixed = tile.sums(&k, nr, xa, nt, &mut isum);
                    if tok == 0 {
                        // After the kernel: the rows' first blocks are in cache by now.
                        tile.row_scales(nb, &mut scales[..nr]);
                    }
                    for j in 0..nt {
                        let t = tok + j;
                        let (d, s) = acts[t];
                        // SAFETY: `t * rows + t0 .. + nr` lies inside this output
                        // (`n_tokens * rows` values, checked by the caller), and the tile
                        // of rows `t0..t1` of this matrix was taken by this thread only.
                        let y = unsafe {
                            std::slice::from_raw_parts_mut(out.get().add(t * rows + t0), nr)
                        };
                        scale_sums(y, &scales[..nr], d, s, &isum[j * nr..]);
                        let mut bad = mixed;
                        while bad != 0 {
                            let i = bad.trailing_zeros() as usize;
                            bad &= bad - 1;
                            y[i] = k.dot_row(m, t0 + i, &x[t * nb..(t + 1) * nb]);
                        }
                    }
                }
            }
        })
    }

    /// `y[t * rows + r] = dot(r, t)` for every row and token: rows split into one contiguous
    /// range per thread, walked in tiles of [`DOT_ROW_TILE`] rows that stay in cache while every
    /// token passes. `y` must hold `n_tokens * rows` values (callers check it).
    pub(crate) fn run_tiled<F>(
        &self,
        rows: usize,
        n_tokens: usize,
        y: &mut [f32],
        dot: F,
    ) -> Result<()>
    where
        F: Fn(usize, usize) -> f32 + Sync,
    {
        debug_assert_eq!(y.len(), n_tokens * rows);
        let out = OutPtr(y.as_mut_ptr());
        let n_threads = self.pool.n_threads();
        self.pool.run(&|tid| {
            let (r0, r1) = thread_range(rows, n_threads, tid);
            let mut t0 = r0;
            while t0 < r1 {
                let t1 = (t0 + DOT_ROW_TILE).min(r1);
                for t in 0..n_tokens {
                    for r in t0..t1 {
                        let v = dot(r, t);
                        // SAFETY: `t * rows + r < n_tokens * rows == y.len()`, and row `r` belongs
                        // to this thread's range only.
                        unsafe { *out.get().add(t * rows + r) = v };
                    }
                }
                t0 = t1;
            }
        })
    }
}

/// Tokens from which `TQ1_0` rows are rewritten as `TQ2_0` tiles: below it (decode), the trits
/// are decoded inside one whole-row sum instead ([`Kernels::tq1_0_rows`]).
const TQ1_TILE_MIN_TOKENS: usize = 2;

/// Whether `m` runs as integer tiles: every layout but the per-block-scaled `T2P` repack.
fn tiles_fit(m: &TernaryMatrix<'_>) -> bool {
    !matches!(m.view(), TernaryView::T2p { .. })
}

/// The codes of a tile of rows as the tile kernels read them.
enum TileCodes<'a> {
    /// `TQ2_0` blocks, from the file or rewritten from `TQ1_0`.
    Tq2(&'a [BlockTQ2_0]),
    /// `TQ1_0` blocks summed as they are (one token).
    Tq1(&'a [BlockTQ1_0]),
    /// `I2_S` codes and the tensor scale.
    I2s { codes: &'a [u8], scale: f32 },
}

impl TileCodes<'_> {
    /// The tile's integer sums for `n_tok` tokens of activations `a` ([`CodesTile`] contract).
    ///
    /// [`CodesTile`]: super::tile::CodesTile
    fn sums(&self, k: &Kernels, rows: usize, a: &[BlockQ8K], n_tok: usize, out: &mut [i32]) -> u64 {
        match *self {
            TileCodes::Tq2(b) => {
                (k.codes_tile)(bytemuck::cast_slice(b), CodeLayout::Tq2_0, rows, a, n_tok, out)
            }
            TileCodes::Tq1(b) => {
                debug_assert_eq!(n_tok, 1);
                (k.tq1_0_rows)(b, rows, a, out)
            }
            TileCodes::I2s { codes, .. } => {
                (k.codes_tile)(codes, CodeLayout::I2s, rows, a, n_tok, out)
            }
        }
    }

    /// Every row's scale: its first block's, valid when the kernel finds the others equal. The
    /// f16 values are converted together (F16C where present, checked once per call rather than
    /// once per row).
    fn row_scales(&self, nb: usize, out: &mut [f32]) {
        let mut d = [half::f16::ZERO; MAX_TILE_ROWS];
        let d = &mut d[..out.len()];
        match *self {
            TileCodes::Tq2(b) => d.iter_mut().zip(b.iter().step_by(nb)).for_each(|(d, b)| *d = b.d),
            TileCodes::Tq1(b) => d.iter_mut().zip(b.iter().step_by(nb)).for_each(|(d, b)| *d = b.d),
            TileCodes::I2s { scale, .. } => return out.fill(scale),
        }
        d.convert_to_f32_slice(out);
    }
}

/// Rows `r0..r1` of `m` as a tile for `n_tokens` tokens; from [`TQ1_TILE_MIN_TOKENS`] on,
/// `TQ1_0` rows are rewritten as `TQ2_0` into `scratch` (at least `(r1 - r0) * nb` blocks).
/// Only views that [`tiles_fit`] admits come here.
fn tile_codes<'a>(
    k: &Kernels,
    m: &TernaryMatrix<'a>,
    r0: usize,
    r1: usize,
    n_tokens: usize,
    scratch: &'a mut [BlockTQ2_0],
) -> TileCodes<'a> {
    let nb = m.blocks_per_row();
    let (lo, hi) = (r0 * nb, r1 * nb);
    match m.view() {
        TernaryView::Tq2_0(b) => TileCodes::Tq2(&b[lo..hi]),
        TernaryView::Tq1_0(b) if n_tokens < TQ1_TILE_MIN_TOKENS => TileCodes::Tq1(&b[lo..hi]),
        TernaryView::Tq1_0(b) => {
            let out = &mut scratch[..hi - lo];
            (k.tq1_0_to_tq2_0)(&b[lo..hi], out);
            TileCodes::Tq2(out)
        }
        TernaryView::I2s { codes, scale } => {
            TileCodes::I2s { codes: &codes[lo * 64..hi * 64], scale }
        }
        TernaryView::T2p { .. } => unreachable!("tiles_fit admits no T2P matrix"),
    }
}

/// `y[i] = scale[i] * d * (sums[i] - s)`: one token's outputs of a tile from its integer sums,
/// over contiguous slices, so it compiles to vector code.
fn scale_sums(y: &mut [f32], scale: &[f32], d: f32, s: i32, sums: &[i32]) {
    let f = |((y, &w), &v): ((&mut f32, &f32), &i32)| *y = w * d * (v - s) as f32;
    y.iter_mut().zip(scale).zip(sums).for_each(f);
}

/// Per token, the shared activation scale and the sum of its int8 activations; `None` unless
/// every token's blocks share one scale (per-token quantization).
fn token_sums(x: &[BlockQ8K], nb: usize, n_tokens: usize) -> Option<Vec<(f32, i32)>> {
    (0..n_tokens)
        .map(|t| {
            let a = &x[t * nb..(t + 1) * nb];
            uniform_act_sum(a).map(|s| (a[0].d, s))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::TileRange;

    /// An owner taking from the front and three threads taking from the back, all at once: every
    /// tile is taken exactly once, and the owner's in order.
    #[test]
    fn tile_ranges_give_every_tile_once() {
        for n in [0, 1, 2, 5, 1000, 20_000] {
            let range = TileRange::default();
            range.set(3, 3 + n);
            let (mut owned, stolen) = std::thread::scope(|s| {
                let thieves: Vec<_> = (0..3)
                    .map(|_| {
                        s.spawn(|| std::iter::from_fn(|| range.take_back()).collect::<Vec<_>>())
                    })
                    .collect();
                let owned: Vec<usize> = std::iter::from_fn(|| range.take_front()).collect();
                let stolen: Vec<usize> =
                    thieves.into_iter().flat_map(|t| t.join().expect("thief")).collect();
                (owned, stolen)
            });
            assert!(owned.windows(2).all(|w| w[0] < w[1]));
            owned.extend(stolen);
            owned.sort_unstable();
            assert_eq!(owned, (3..3 + n).collect::<Vec<_>>(), "n {n}");
        }
    }
}
