//! The f32 inner loops of attention: a query's scores against keys stored in transposed blocks,
//! and the score-weighted sum of values.
//!
//! Keys of one head are kept as blocks of [`KEY_BLOCK`] positions: block `b` holds, for every
//! dimension `i`, the keys of positions `32b .. 32b + 32` side by side (`head_dim * 32` floats,
//! contiguous). A block of scores then reads one contiguous run of memory, and the cache of a
//! head is `ctx` rounded up to whole blocks.
//!
//! Every output is summed in a fixed order (over the head dimension for a score, over positions
//! for a value), exactly as a plain sequential dot product would sum it, so results do not depend
//! on the vector width: the lanes run across independent outputs (positions, dimensions), never
//! across the terms of one sum. On x86_64 with AVX2 the same code is compiled for 256-bit
//! registers (no FMA contraction: Rust does not fuse `a * b + c`).

/// Positions of one key block, and of one register block of scores: four 8-lane accumulators,
/// four independent chains of adds (one chain would wait on the add latency at every term).
pub const KEY_BLOCK: usize = 32;

/// Dimensions one register block of weighted values covers (eight accumulators); a narrower
/// block of [`NARROW_LANES`] takes what is left.
const VALUE_LANES: usize = 64;
const NARROW_LANES: usize = 16;

/// Floats of one head's key cache for `ctx` positions: whole blocks of [`KEY_BLOCK`].
pub fn key_cache_len(head_dim: usize, ctx: usize) -> usize {
    ctx.next_multiple_of(KEY_BLOCK) * head_dim
}

/// Stores the key `k` (one head, `head_dim` values) of position `p` in a head's blocked cache.
pub fn store_key(kt: &mut [f32], p: usize, k: &[f32]) {
    let d = k.len();
    let at = (p / KEY_BLOCK) * d * KEY_BLOCK + p % KEY_BLOCK;
    for (i, &v) in k.iter().enumerate() {
        kt[at + i * KEY_BLOCK] = v;
    }
}

/// `sc[p] = sum_i q[i] * key[p][i]` for every `p < sc.len()`, the sum over `i` in order from
/// zero, with `kt` one head's blocked key cache (at least `sc.len()` rounded up to whole blocks).
pub fn key_scores(q: &[f32], kt: &[f32], sc: &mut [f32]) {
    assert!(kt.len() >= key_cache_len(q.len(), sc.len()), "key_scores: cache too short");
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is present (checked just now).
        return unsafe { key_scores_avx2(q, kt, sc) };
    }
    key_scores_body(q, kt, sc)
}

/// `acc[i] = sum_p w[p] * v[p * stride + i]` for every `i < acc.len()`, the sum over `p` in
/// order from zero.
pub fn weighted_values(w: &[f32], v: &[f32], stride: usize, acc: &mut [f32]) {
    if let Some(p) = w.len().checked_sub(1) {
        assert!(v.len() >= p * stride + acc.len(), "weighted_values: values too short");
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is present (checked just now).
        return unsafe { weighted_values_avx2(w, v, stride, acc) };
    }
    weighted_values_body(w, v, stride, acc)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn key_scores_avx2(q: &[f32], kt: &[f32], sc: &mut [f32]) {
    key_scores_body(q, kt, sc)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn weighted_values_avx2(w: &[f32], v: &[f32], stride: usize, acc: &mut [f32]) {
    weighted_values_body(w, v, stride, acc)
}

/// The [`KEY_BLOCK`] scores of one key block (`q.len() * KEY_BLOCK` floats).
#[inline(always)]
fn score_block(q: &[f32], block: &[f32]) -> [f32; KEY_BLOCK] {
    let mut a = [0f32; KEY_BLOCK];
    for (qi, kr) in q.iter().zip(block.chunks_exact(KEY_BLOCK)) {
        for (a, &k) in a.iter_mut().zip(kr) {
            *a += qi * k;
        }
    }
    a
}

#[inline(always)]
fn key_scores_body(q: &[f32], kt: &[f32], sc: &mut [f32]) {
    let d = q.len();
    for (out, block) in sc.chunks_mut(KEY_BLOCK).zip(kt.chunks_exact(d * KEY_BLOCK)) {
        // A last, partial block still scores every lane (the cache holds whole blocks).
        let a = score_block(q, block);
        out.copy_from_slice(&a[..out.len()]);
    }
}

/// `out[i] = sum_p w[p] * v[p * stride + i0 + i]` for `L` dimensions.
#[inline(always)]
fn values_block<const L: usize>(w: &[f32], v: &[f32], stride: usize, i0: usize) -> [f32; L] {
    let mut a = [0f32; L];
    for (p, &wp) in w.iter().enumerate() {
        let at = p * stride + i0;
        let vr: &[f32; L] = v[at..at + L].try_into().expect("a block of values");
        for (a, &x) in a.iter_mut().zip(vr) {
            *a += wp * x;
        }
    }
    a
}

#[inline(always)]
fn weighted_values_body(w: &[f32], v: &[f32], stride: usize, acc: &mut [f32]) {
    let mut i0 = 0;
    while i0 < acc.len() {
        let left = acc.len() - i0;
        if left >= VALUE_LANES {
            acc[i0..i0 + VALUE_LANES]
                .copy_from_slice(&values_block::<VALUE_LANES>(w, v, stride, i0));
            i0 += VALUE_LANES;
        } else if left >= NARROW_LANES {
            acc[i0..i0 + NARROW_LANES]
                .copy_from_slice(&values_block::<NARROW_LANES>(w, v, stride, i0));
            i0 += NARROW_LANES;
        } else {
            let out = &mut acc[i0..];
            out.iter_mut().for_each(|a| *a = 0.0);
            for (p, &wp) in w.iter().enumerate() {
                let at = p * stride + i0;
                for (a, &x) in out.iter_mut().zip(&v[at..at + left]) {
                    *a += wp * x;
                }
            }
            i0 = acc.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{key_cache_len, key_scores, key_scores_body, store_key};
    use super::{weighted_values, weighted_values_body};

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) % 2001) as f32 / 1000.0
                    - 1.0
            })
            .collect()
    }

    /// Bit for bit the plain sequential sums from zero, for every length around the block size and a
    /// cache that ends inside the last block.
    #[test]
    fn scores_and_values_equal_sequential_sums_bit_for_bit() {
        let d = 24;
        for len in 0..=100 {
            let keys: Vec<Vec<f32>> = (0..len).map(|p| values(d, 2 + p as u32)).collect();
            let q = values(d, 1);
            let mut kt = vec![f32::NAN; key_cache_len(d, len)];
            // Lanes past `len` hold whatever a cache holds; their scores are thrown away.
            kt.iter_mut().for_each(|v| *v = 7.0);
            for (p, k) in keys.iter().enumerate() {
                store_key(&mut kt, p, k);
            }
            let mut got = vec![f32::NAN; len];
            key_scores(&q, &kt, &mut got);
            let mut body = vec![f32::NAN; len];
            key_scores_body(&q, &kt, &mut body);
            for p in 0..len {
                let want = q.iter().zip(&keys[p]).fold(0.0, |s, (&a, &b)| s + a * b);
                assert_eq!(got[p].to_bits(), want.to_bits(), "len {len} p {p}");
                assert_eq!(body[p].to_bits(), want.to_bits());
            }
        }
        let stride = 40;
        for dim in [5, 16, 35, 64, 100, 128] {
            for len in [0, 1, 17, 33] {
                let (w, v) = (values(len, 3), values(len * stride + dim, 4));
                let mut got = vec![f32::NAN; dim];
                weighted_values(&w, &v, stride, &mut got);
                let mut body = vec![f32::NAN; dim];
                weighted_values_body(&w, &v, stride, &mut body);
                for i in 0..dim {
                    let want =
                        w.iter().enumerate().fold(0.0, |s, (p, &wp)| s + wp * v[p * stride + i]);
                    assert_eq!(got[i].to_bits(), want.to_bits(), "dim {dim} len {len} i {i}");
                    assert_eq!(body[i].to_bits(), want.to_bits());
                }
            }
        }
    }
}
