//! The f32 inner loops of attention: a query's scores against keys stored transposed, and the
//! score-weighted sum of values.
//!
//! Every output is summed in a fixed order (over the head dimension for a score, over positions
//! for a value), exactly as a plain sequential dot product would sum it, so results do not depend
//! on the vector width: the lanes run across independent outputs (positions, dimensions), never
//! across the terms of one sum. On x86_64 with AVX2 the same code is compiled for 256-bit
//! registers (no FMA contraction: Rust does not fuse `a * b + c`).

/// Outputs one register block covers.
const LANES: usize = 16;

/// `sc[p] = sum_i q[i] * kt[i * ctx + p]` for every `p < sc.len()`, the sum over `i` in order
/// from zero. `kt` holds `q.len()` rows of `ctx` positions (a key head, transposed).
pub fn key_scores(q: &[f32], kt: &[f32], ctx: usize, sc: &mut [f32]) {
    assert!(sc.len() <= ctx && kt.len() >= q.len() * ctx, "key_scores: {} of {ctx}", sc.len());
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is present (checked just now).
        return unsafe { key_scores_avx2(q, kt, ctx, sc) };
    }
    key_scores_body(q, kt, ctx, sc)
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
fn key_scores_avx2(q: &[f32], kt: &[f32], ctx: usize, sc: &mut [f32]) {
    key_scores_body(q, kt, ctx, sc)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn weighted_values_avx2(w: &[f32], v: &[f32], stride: usize, acc: &mut [f32]) {
    weighted_values_body(w, v, stride, acc)
}

/// [`LANES`] scores from position `p0`: `p0 + LANES <= ctx`.
#[inline(always)]
fn score_block(q: &[f32], kt: &[f32], ctx: usize, p0: usize) -> [f32; LANES] {
    let mut a = [0f32; LANES];
    for (qi, kr) in q.iter().zip(kt.chunks_exact(ctx)) {
        let k: &[f32; LANES] = kr[p0..p0 + LANES].try_into().expect("a block of LANES keys");
        for (a, &k) in a.iter_mut().zip(k) {
            *a += qi * k;
        }
    }
    a
}

#[inline(always)]
fn key_scores_body(q: &[f32], kt: &[f32], ctx: usize, sc: &mut [f32]) {
    let len = sc.len();
    let whole = len - len % LANES;
    for p0 in (0..whole).step_by(LANES) {
        sc[p0..p0 + LANES].copy_from_slice(&score_block(q, kt, ctx, p0));
    }
    if whole == len {
        return;
    }
    if whole + LANES <= ctx {
        // The cache row goes on past `len`: score a whole block and keep its first lanes.
        let a = score_block(q, kt, ctx, whole);
        sc[whole..].copy_from_slice(&a[..len - whole]);
    } else {
        let rest = &mut sc[whole..];
        rest.iter_mut().for_each(|s| *s = 0.0);
        for (qi, kr) in q.iter().zip(kt.chunks_exact(ctx)) {
            for (s, &k) in rest.iter_mut().zip(&kr[whole..len]) {
                *s += qi * k;
            }
        }
    }
}

#[inline(always)]
fn weighted_values_body(w: &[f32], v: &[f32], stride: usize, acc: &mut [f32]) {
    for (c, out) in acc.chunks_mut(LANES).enumerate() {
        let i0 = c * LANES;
        if let Ok(out) = <&mut [f32; LANES]>::try_from(&mut *out) {
            let mut a = [0f32; LANES];
            for (p, &wp) in w.iter().enumerate() {
                let at = p * stride + i0;
                let vr: &[f32; LANES] = v[at..at + LANES].try_into().expect("LANES values");
                for (a, &x) in a.iter_mut().zip(vr) {
                    *a += wp * x;
                }
            }
            *out = a;
        } else {
            let n = out.len();
            out.iter_mut().for_each(|a| *a = 0.0);
            for (p, &wp) in w.iter().enumerate() {
                let at = p * stride + i0;
                for (a, &x) in out.iter_mut().zip(&v[at..at + n]) {
                    *a += wp * x;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{key_scores, key_scores_body, weighted_values, weighted_values_body};

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
        for ctx in [16, 37, 64] {
            let (q, kt) = (values(d, 1), values(d * ctx, 2));
            for len in 0..=ctx {
                let mut got = vec![f32::NAN; len];
                key_scores(&q, &kt, ctx, &mut got);
                let mut body = vec![f32::NAN; len];
                key_scores_body(&q, &kt, ctx, &mut body);
                for p in 0..len {
                    let want =
                        q.iter().enumerate().fold(0.0, |s, (i, &qi)| s + qi * kt[i * ctx + p]);
                    assert_eq!(got[p].to_bits(), want.to_bits(), "ctx {ctx} len {len} p {p}");
                    assert_eq!(body[p].to_bits(), want.to_bits());
                }
            }
        }
        let stride = 40;
        for dim in [5, 16, 35] {
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
