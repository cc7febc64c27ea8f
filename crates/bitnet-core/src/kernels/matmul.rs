//! Threaded GEMV and GEMM of a ternary matrix with int8 activations.
//!
//! `y[t, r] = sum_c W[r, c] * x[t, c]`: rows are split into contiguous ranges, one per thread of
//! the pool; GEMM walks a tile of rows for every token so the tile stays in L1/L2 while the
//! activations stream past it.

use super::pool::{thread_range, OutPtr};
use super::{Kernels, TernaryMatrix, ThreadPool};
use crate::format::{check_len, BlockQ8K};
use crate::Result;

/// Rows of one GEMM tile.
const GEMM_ROW_TILE: usize = 16;

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
        let (rows, nb) = (m.rows(), m.blocks_per_row());
        check_len("gemm activations (blocks)", n_tokens * nb, x.len())?;
        check_len("gemm output", n_tokens * rows, y.len())?;
        let k = self.kernels;
        self.run_tiled(rows, n_tokens, y, |r, t| k.dot_row(m, r, &x[t * nb..(t + 1) * nb]))
    }

    /// `y[t * rows + r] = dot(r, t)` for every row and token: rows split into one contiguous
    /// range per thread, walked in tiles of [`GEMM_ROW_TILE`] rows that stay in cache while every
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
                let t1 = (t0 + GEMM_ROW_TILE).min(r1);
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
