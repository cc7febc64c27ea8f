//! Baselines that ternary kernels are measured against in the same run: a plain streaming read of
//! a buffer and an f32 GEMV, both split across the same [`ThreadPool`] as the ternary GEMV.

use super::pool::{thread_range, OutPtr, ThreadPool};
use super::quant::dot_f32;
use crate::format::check_len;
use crate::Result;

#[inline(always)]
fn sum_words(words: &[u64]) -> u64 {
    let mut acc = [0u64; 8];
    let mut chunks = words.chunks_exact(8);
    for c in &mut chunks {
        for k in 0..8 {
            acc[k] = acc[k].wrapping_add(c[k]);
        }
    }
    chunks
        .remainder()
        .iter()
        .fold(acc.iter().fold(0, |a, &b| a.wrapping_add(b)), |a, &b| a.wrapping_add(b))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn sum_words_avx2(words: &[u64]) -> u64 {
    sum_words(words)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn dot_f32_avx2(a: &[f32], b: &[f32]) -> f32 {
    dot_f32(a, b)
}

fn sum_words_best(words: &[u64]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 was detected just above.
        return unsafe { sum_words_avx2(words) };
    }
    sum_words(words)
}

fn dot_f32_best(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 was detected just above.
        return unsafe { dot_f32_avx2(a, b) };
    }
    dot_f32(a, b)
}

/// Reads every byte of `buf` once (as u64 words, split across the pool) and returns their sum,
/// so the read cannot be optimised away.
pub fn stream_read(pool: &ThreadPool, buf: &[u64]) -> Result<u64> {
    let n = pool.n_threads();
    let total = std::sync::atomic::AtomicU64::new(0);
    pool.run(&|tid| {
        let (a, b) = thread_range(buf.len(), n, tid);
        let s = sum_words_best(&buf[a..b]);
        total.fetch_add(s, std::sync::atomic::Ordering::Relaxed);
    })?;
    Ok(total.into_inner())
}

/// `y = W x` for an f32 (rows, cols) matrix, rows split across the pool.
pub fn gemv_f32(pool: &ThreadPool, w: &[f32], cols: usize, x: &[f32], y: &mut [f32]) -> Result<()> {
    let rows = y.len();
    check_len("gemv_f32 weights", rows * cols, w.len())?;
    check_len("gemv_f32 input", cols, x.len())?;
    let out = OutPtr(y.as_mut_ptr());
    let n = pool.n_threads();
    pool.run(&|tid| {
        let (a, b) = thread_range(rows, n, tid);
        for r in a..b {
            let v = dot_f32_best(&w[r * cols..(r + 1) * cols], x);
            // SAFETY: `r < rows == y.len()` and the range `a..b` belongs to this thread only.
            unsafe { *out.get().add(r) = v };
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baselines_compute_exact_results() {
        let pool = ThreadPool::new(2).unwrap();
        let buf: Vec<u64> = (1..=1001).collect();
        assert_eq!(stream_read(&pool, &buf).unwrap(), 1001 * 1002 / 2);
        // W = [[1, 2, 3], [0, 1, 0]] (twice over 17 columns of padding zeros), x = [1, 1, 2]
        let cols = 20;
        let mut w = vec![0f32; 2 * cols];
        w[..3].copy_from_slice(&[1.0, 2.0, 3.0]);
        w[cols + 1] = 1.0;
        let mut x = vec![0f32; cols];
        x[..3].copy_from_slice(&[1.0, 1.0, 2.0]);
        let mut y = vec![0f32; 2];
        gemv_f32(&pool, &w, cols, &x, &mut y).unwrap();
        assert_eq!(y, vec![9.0, 1.0]);
    }
}
