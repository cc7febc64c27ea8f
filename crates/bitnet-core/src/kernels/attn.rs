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

/// Floats of one head's key cache for `ctx` positions: whole blocks of [`KEY_BLOCK`].
pub fn key_cache_len(head_dim: usize, ctx: usize) -> usize {
    ctx.next_multiple_of(KEY_BLOCK) * head_dim
}

/// An element type of the KV cache: `f32`, or `f16` (half the bytes to read per position, as
/// llama.cpp keeps its cache by default). Values are rounded to the element type when stored and
/// widened exactly when read, so both types sum the same way.
pub trait KvElem: Copy + Default + Send + Sync + 'static + sealed::Sealed {
    /// The element nearest `v` (round to nearest even).
    fn from_f32(v: f32) -> Self;
    /// The exact f32 value.
    fn widen(self) -> f32;
    /// Whether `Self` is `f32` (widening is a copy).
    const IS_F32: bool;
    /// `dst[i] = src[i].widen()` for a whole slice (vectorized where the CPU allows).
    fn widen_slice(src: &[Self], dst: &mut [f32]);
    /// `dst[i] = from_f32(src[i])` for a whole slice (vectorized where the CPU allows).
    fn convert(dst: &mut [Self], src: &[f32]);
    #[doc(hidden)]
    fn key_scores_simd(q: &[f32], kt: &[Self], sc: &mut [f32]) -> bool;
    /// `acc[i] += w[p] * v[p * stride + i]` for every `p` in order (the SIMD path), or false.
    #[doc(hidden)]
    fn accumulate_values_simd(w: &[f32], v: &[Self], stride: usize, acc: &mut [f32]) -> bool;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for half::f16 {}
}

impl KvElem for f32 {
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        v
    }
    #[inline(always)]
    fn widen(self) -> f32 {
        self
    }
    fn convert(dst: &mut [f32], src: &[f32]) {
        dst.copy_from_slice(src)
    }
    const IS_F32: bool = true;
    fn widen_slice(src: &[f32], dst: &mut [f32]) {
        dst.copy_from_slice(src)
    }
    fn key_scores_simd(q: &[f32], kt: &[f32], sc: &mut [f32]) -> bool {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 is present (checked just now).
            unsafe { key_scores_avx2(q, kt, sc) };
            return true;
        }
        false
    }
    fn accumulate_values_simd(w: &[f32], v: &[f32], stride: usize, acc: &mut [f32]) -> bool {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 is present (checked just now).
            unsafe { accumulate_values_avx2(w, v, stride, acc) };
            return true;
        }
        false
    }
}

impl KvElem for half::f16 {
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        half::f16::from_f32_const(v)
    }
    #[inline(always)]
    fn widen(self) -> f32 {
        self.to_f32_const()
    }
    fn convert(dst: &mut [half::f16], src: &[f32]) {
        use half::slice::HalfFloatSliceExt;
        dst.convert_from_f32_slice(src)
    }
    const IS_F32: bool = false;
    fn widen_slice(src: &[half::f16], dst: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("f16c")
        {
            // SAFETY: AVX2 and F16C are present (checked just now).
            return unsafe { super::x86_64::attn_f16::widen(src, dst) };
        }
        use half::slice::HalfFloatSliceExt;
        src.convert_to_f32_slice(dst)
    }
    fn key_scores_simd(q: &[f32], kt: &[half::f16], sc: &mut [f32]) -> bool {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("f16c")
        {
            // SAFETY: AVX2 and F16C are present (checked just now).
            unsafe { super::x86_64::attn_f16::key_scores(q, kt, sc) };
            return true;
        }
        false
    }
    fn accumulate_values_simd(w: &[f32], v: &[half::f16], stride: usize, acc: &mut [f32]) -> bool {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("f16c")
        {
            // SAFETY: AVX2 and F16C are present (checked just now).
            unsafe { super::x86_64::attn_f16::accumulate_values(w, v, stride, acc) };
            return true;
        }
        false
    }
}

/// Stores the key `k` (one head, `head_dim` values) of position `p` in a head's blocked cache.
pub fn store_key<E: KvElem>(kt: &mut [E], p: usize, k: &[f32]) {
    let d = k.len();
    let at = (p / KEY_BLOCK) * d * KEY_BLOCK + p % KEY_BLOCK;
    // Converted 64 at a time (one vector conversion), then scattered down the block.
    let mut buf = [E::default(); 64];
    for (c, kc) in k.chunks(64).enumerate() {
        let b = &mut buf[..kc.len()];
        E::convert(b, kc);
        for (i, &v) in b.iter().enumerate() {
            kt[at + (64 * c + i) * KEY_BLOCK] = v;
        }
    }
}

/// `sc[p] = sum_i q[i] * key[p][i]` for every `p < sc.len()`, the sum over `i` in order from
/// zero, with `kt` one head's blocked key cache (at least `sc.len()` rounded up to whole blocks).
pub fn key_scores<E: KvElem>(q: &[f32], kt: &[E], sc: &mut [f32]) {
    assert!(kt.len() >= key_cache_len(q.len(), sc.len()), "key_scores: cache too short");
    if !E::key_scores_simd(q, kt, sc) {
        key_scores_body(q, kt, sc)
    }
}

/// `acc[i] = sum_p w[p] * v[p * stride + i]` for every `i < acc.len()`, the sum over `p` in
/// order from zero.
pub fn weighted_values<E: KvElem>(w: &[f32], v: &[E], stride: usize, acc: &mut [f32]) {
    acc.fill(0.0);
    accumulate_values(w, v, stride, acc)
}

/// `acc[i] += w[p] * v[p * stride + i]` for `p` in order: the sums of [`weighted_values`]
/// carried on from where `acc` left them (from zero, the same bits).
fn accumulate_values<E: KvElem>(w: &[f32], v: &[E], stride: usize, acc: &mut [f32]) {
    if let Some(p) = w.len().checked_sub(1) {
        assert!(v.len() >= p * stride + acc.len(), "weighted_values: values too short");
    }
    if !E::accumulate_values_simd(w, v, stride, acc) {
        accumulate_values_body(w, v, stride, acc)
    }
}

/// Floats of keys or values a group of query heads goes through together (in L1/L2). An f16
/// cache is widened into a buffer this long once, for all the heads of the group.
const GROUP_CHUNK: usize = 8192;

/// [`key_scores`] for `heads` query heads that share one kv head (grouped-query attention): `q`
/// holds each head's query in turn (`q.len() / heads` dimensions), `sc` each head's scores
/// (`sc.len() / heads` positions). The keys are walked once, a few blocks at a time, every head
/// scoring them while they are in cache; an f16 cache is widened once per chunk for all the
/// heads (the conversions bound its kernels). Each score is summed exactly as [`key_scores`]
/// sums it.
pub fn key_scores_group<E: KvElem>(q: &[f32], heads: usize, kt: &[E], sc: &mut [f32]) {
    assert!(
        heads > 0 && q.len().is_multiple_of(heads) && sc.len().is_multiple_of(heads),
        "key_scores_group"
    );
    let (d, len) = (q.len() / heads, sc.len() / heads);
    assert!(kt.len() >= key_cache_len(d, len), "key_scores_group: cache too short");
    let blocks = GROUP_CHUNK / (d * KEY_BLOCK).max(1);
    let widen = heads > 1 && !E::IS_F32 && blocks > 0;
    let chunk = blocks.max(1) * KEY_BLOCK;
    // Zeroed only where used (a whole-array initializer per call would cost a 32 KiB memset).
    let mut buf = if widen { Some([0f32; GROUP_CHUNK]) } else { None };
    for p0 in (0..len).step_by(chunk) {
        let p1 = (p0 + chunk).min(len);
        let keys = &kt[p0 * d..p1.next_multiple_of(KEY_BLOCK) * d];
        if let Some(buf) = buf.as_mut() {
            let wide = &mut buf[..keys.len()];
            E::widen_slice(keys, wide);
            for (qh, sh) in q.chunks_exact(d).zip(sc.chunks_exact_mut(len)) {
                key_scores(qh, wide, &mut sh[p0..p1]);
            }
        } else {
            for (qh, sh) in q.chunks_exact(d).zip(sc.chunks_exact_mut(len)) {
                key_scores(qh, keys, &mut sh[p0..p1]);
            }
        }
    }
}

/// [`weighted_values`] for `heads` query heads that share one kv head: `w` holds each head's
/// weights in turn (`w.len() / heads` positions), `acc` each head's sums (`acc.len() / heads`
/// dimensions). The values are walked once, a few positions at a time, every head summing them
/// while they are in cache (an f16 cache widened once per chunk, as in [`key_scores_group`]);
/// each sum is added exactly as [`weighted_values`] adds it.
pub fn weighted_values_group<E: KvElem>(
    w: &[f32],
    v: &[E],
    stride: usize,
    acc: &mut [f32],
    heads: usize,
) {
    assert!(
        heads > 0 && w.len().is_multiple_of(heads) && acc.len().is_multiple_of(heads),
        "weighted_values_group"
    );
    let (len, d) = (w.len() / heads, acc.len() / heads);
    acc.fill(0.0);
    // Positions per chunk; the widened buffer holds a chunk only when at least 8 rows fit.
    let rows = GROUP_CHUNK / stride.max(1);
    let widen = heads > 1 && !E::IS_F32 && rows >= 8;
    let chunk = rows.max(8);
    let mut buf = if widen { Some([0f32; GROUP_CHUNK]) } else { None };
    for p0 in (0..len).step_by(chunk) {
        let p1 = (p0 + chunk).min(len);
        if let Some(buf) = buf.as_mut() {
            let vals = &v[p0 * stride..(p1 - 1) * stride + d];
            let wide = &mut buf[..vals.len()];
            E::widen_slice(vals, wide);
            for (wh, ah) in w.chunks_exact(len).zip(acc.chunks_exact_mut(d)) {
                accumulate_values(&wh[p0..p1], wide, stride, ah);
            }
        } else {
            for (wh, ah) in w.chunks_exact(len).zip(acc.chunks_exact_mut(d)) {
                accumulate_values(&wh[p0..p1], &v[p0 * stride..], stride, ah);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn key_scores_avx2(q: &[f32], kt: &[f32], sc: &mut [f32]) {
    key_scores_body(q, kt, sc)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn accumulate_values_avx2(w: &[f32], v: &[f32], stride: usize, acc: &mut [f32]) {
    accumulate_values_body(w, v, stride, acc)
}

/// The [`KEY_BLOCK`] scores of one key block (`q.len() * KEY_BLOCK` floats).
#[inline(always)]
fn score_block<E: KvElem>(q: &[f32], block: &[E]) -> [f32; KEY_BLOCK] {
    let mut a = [0f32; KEY_BLOCK];
    for (qi, kr) in q.iter().zip(block.chunks_exact(KEY_BLOCK)) {
        for (a, &k) in a.iter_mut().zip(kr) {
            *a += qi * k.widen();
        }
    }
    a
}

/// The scores of two key blocks at once: eight independent chains of adds instead of four (one
/// block alone waits on the add latency at every dimension); each score summed as in
/// [`score_block`].
#[inline(always)]
fn score_block_pair<E: KvElem>(q: &[f32], b0: &[E], b1: &[E]) -> [f32; 2 * KEY_BLOCK] {
    let mut a = [0f32; 2 * KEY_BLOCK];
    let rows = b0.chunks_exact(KEY_BLOCK).zip(b1.chunks_exact(KEY_BLOCK));
    for (qi, (k0, k1)) in q.iter().zip(rows) {
        let (a0, a1) = a.split_at_mut(KEY_BLOCK);
        for (a, &k) in a0.iter_mut().zip(k0) {
            *a += qi * k.widen();
        }
        for (a, &k) in a1.iter_mut().zip(k1) {
            *a += qi * k.widen();
        }
    }
    a
}

#[inline(always)]
fn key_scores_body<E: KvElem>(q: &[f32], kt: &[E], sc: &mut [f32]) {
    let d = q.len();
    let span = d * KEY_BLOCK;
    // A last, partial block still scores every lane (the cache holds whole blocks).
    let mut pairs = sc.chunks_mut(2 * KEY_BLOCK).zip(kt.chunks(2 * span));
    for (out, blocks) in &mut pairs {
        if out.len() > KEY_BLOCK {
            let a = score_block_pair(q, &blocks[..span], &blocks[span..2 * span]);
            out.copy_from_slice(&a[..out.len()]);
        } else {
            let a = score_block(q, &blocks[..span]);
            out.copy_from_slice(&a[..out.len()]);
        }
    }
}

/// `out[i] += w[p] * v[p * stride + i0 + i]` for `L` dimensions, `p` in order.
#[inline(always)]
fn values_block<const L: usize, E: KvElem>(
    w: &[f32],
    v: &[E],
    stride: usize,
    i0: usize,
    out: &mut [f32],
) {
    let mut a: [f32; L] = out.try_into().expect("a block of sums");
    for (p, &wp) in w.iter().enumerate() {
        let at = p * stride + i0;
        let vr: &[E; L] = v[at..at + L].try_into().expect("a block of values");
        for (a, &x) in a.iter_mut().zip(vr) {
            *a += wp * x.widen();
        }
    }
    out.copy_from_slice(&a);
}

/// Dimensions go in register blocks as wide as fits (96, 64, 32 or 16: 12 to 2 eight-lane
/// accumulators), each a pass over the positions; fewer than 16 left are summed one by one.
#[inline(always)]
fn accumulate_values_body<E: KvElem>(w: &[f32], v: &[E], stride: usize, acc: &mut [f32]) {
    let mut i0 = 0;
    while i0 < acc.len() {
        let left = acc.len() - i0;
        let width = match left {
            96.. => 96,
            64.. => 64,
            32.. => 32,
            16.. => 16,
            _ => left,
        };
        let out = &mut acc[i0..i0 + width];
        match width {
            96 => values_block::<96, E>(w, v, stride, i0, out),
            64 => values_block::<64, E>(w, v, stride, i0, out),
            32 => values_block::<32, E>(w, v, stride, i0, out),
            16 => values_block::<16, E>(w, v, stride, i0, out),
            _ => {
                for (p, &wp) in w.iter().enumerate() {
                    let at = p * stride + i0;
                    for (a, &x) in out.iter_mut().zip(&v[at..at + left]) {
                        *a += wp * x.widen();
                    }
                }
            }
        }
        i0 += width;
    }
}

#[cfg(test)]
mod tests {
    use super::{accumulate_values_body, key_scores_group, weighted_values, weighted_values_group};
    use super::{key_cache_len, key_scores, key_scores_body, store_key, KvElem, KEY_BLOCK};

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) % 2001) as f32 / 1000.0
                    - 1.0
            })
            .collect()
    }

    /// Bit for bit the plain sequential sums from zero (of the keys and values as the cache holds
    /// them: rounded to `E`), for every length around the block size and a cache that ends inside
    /// the last block, on the SIMD path and the reference body.
    fn equal_sequential_sums<E: KvElem>() {
        let d = 24;
        for len in 0..=100 {
            let keys: Vec<Vec<f32>> = (0..len).map(|p| values(d, 2 + p as u32)).collect();
            let q = values(d, 1);
            // Lanes past `len` hold whatever a cache holds; their scores are thrown away.
            let mut kt = vec![E::from_f32(7.0); key_cache_len(d, len)];
            for (p, k) in keys.iter().enumerate() {
                store_key(&mut kt, p, k);
            }
            let mut got = vec![f32::NAN; len];
            key_scores(&q, &kt, &mut got);
            let mut body = vec![f32::NAN; len];
            key_scores_body(&q, &kt, &mut body);
            for p in 0..len {
                let want =
                    q.iter().zip(&keys[p]).fold(0.0, |s, (&a, &b)| s + a * E::from_f32(b).widen());
                assert_eq!(got[p].to_bits(), want.to_bits(), "len {len} p {p}");
                assert_eq!(body[p].to_bits(), want.to_bits());
            }
        }
        let stride = 40;
        for dim in [5, 16, 35, 64, 96, 100, 128, 130, 200] {
            for len in [0, 1, 17, 33] {
                let w = values(len, 3);
                let v: Vec<E> =
                    values(len * stride + dim, 4).into_iter().map(E::from_f32).collect();
                let mut got = vec![f32::NAN; dim];
                weighted_values(&w, &v, stride, &mut got);
                let mut body = vec![0.0; dim];
                accumulate_values_body(&w, &v, stride, &mut body);
                for i in 0..dim {
                    let want = w
                        .iter()
                        .enumerate()
                        .fold(0.0, |s, (p, &wp)| s + wp * v[p * stride + i].widen());
                    assert_eq!(got[i].to_bits(), want.to_bits(), "dim {dim} len {len} i {i}");
                    assert_eq!(body[i].to_bits(), want.to_bits());
                }
            }
        }
    }

    /// The group kernels give every head exactly what the one-head kernels give it, across
    /// chunk boundaries (lengths past several chunks) and for one to four heads.
    fn groups_equal_single_heads<E: KvElem>() {
        for d in [24, 64, 96, 128] {
            for len in [0, 1, 31, 33, 190, 700] {
                let mut kt = vec![E::from_f32(0.5); key_cache_len(d, len)];
                for p in 0..len {
                    store_key(&mut kt, p, &values(d, 9 + p as u32));
                }
                // A row stride too long for 8 rows to fit the widening buffer goes unwidened.
                let stride = if len == 190 { 2000 } else { d + 8 };
                let v: Vec<E> = values(len * stride + d, 5).into_iter().map(E::from_f32).collect();
                for heads in 1..=4 {
                    let q = values(heads * d, 3);
                    let mut sc = vec![f32::NAN; heads * len];
                    key_scores_group(&q, heads, &kt, &mut sc);
                    let w = values(heads * len, 7);
                    let mut acc = vec![f32::NAN; heads * d];
                    weighted_values_group(&w, &v, stride, &mut acc, heads);
                    for h in 0..heads {
                        let mut one = vec![f32::NAN; len];
                        key_scores(&q[h * d..(h + 1) * d], &kt, &mut one);
                        let got = &sc[h * len..(h + 1) * len];
                        assert!(got.iter().zip(&one).all(|(a, b)| a.to_bits() == b.to_bits()));
                        let mut one = vec![f32::NAN; d];
                        weighted_values(&w[h * len..(h + 1) * len], &v, stride, &mut one);
                        let got = &acc[h * d..(h + 1) * d];
                        assert!(
                            got.iter().zip(&one).all(|(a, b)| a.to_bits() == b.to_bits()),
                            "d {d} len {len} heads {heads} head {h}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn f32_groups_equal_single_heads_bit_for_bit() {
        groups_equal_single_heads::<f32>();
    }

    #[test]
    fn f16_groups_equal_single_heads_bit_for_bit() {
        groups_equal_single_heads::<half::f16>();
    }

    #[test]
    fn f32_scores_and_values_equal_sequential_sums_bit_for_bit() {
        equal_sequential_sums::<f32>();
    }

    #[test]
    fn f16_scores_and_values_equal_sequential_sums_bit_for_bit() {
        equal_sequential_sums::<half::f16>();
    }

    #[test]
    fn f16_cache_rounds_to_nearest() {
        let mut kt = vec![half::f16::ZERO; key_cache_len(2, 1)];
        store_key(&mut kt, 0, &[1.0 + 1.0 / 4096.0, 65519.0]);
        // A quarter of an f16 ulp above 1 rounds down to 1; 65519 rounds to the largest f16.
        assert_eq!(kt[0].to_f32(), 1.0);
        assert_eq!(kt[KEY_BLOCK].to_f32(), 65504.0);
    }
}
