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
//!
//! Queries that read the same kv head (the query heads of a group, the tokens of a prefill) go
//! through its cache together as a [`QuerySet`]: a chunk of keys or values stays in L1 while the
//! whole set reads it, and the kernels take the queries two at a time, each loaded (and, from an
//! f16 cache, widened) vector feeding both.

use super::act;

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
    /// `dst[i] = from_f32(src[i])` for a whole slice (vectorized where the CPU allows).
    fn convert(dst: &mut [Self], src: &[f32]);
    #[doc(hidden)]
    fn key_scores_simd(q: &[f32], kt: &[Self], sc: &mut [f32]) -> bool;
    /// `acc[i] += w[p] * v[p * stride + i]` for every `p` in order (the SIMD path), or false.
    #[doc(hidden)]
    fn accumulate_values_simd(w: &[f32], v: &[Self], stride: usize, acc: &mut [f32]) -> bool;
    /// [`key_scores`] for two queries over the same positions (the SIMD path), or false.
    #[doc(hidden)]
    fn key_scores_pair_simd(q: [&[f32]; 2], kt: &[Self], s0: &mut [f32], s1: &mut [f32]) -> bool;
    /// [`accumulate_values`] for two queries over the same positions (the SIMD path), or false.
    #[doc(hidden)]
    fn accumulate_values_pair_simd(
        w: [&[f32]; 2],
        v: &[Self],
        stride: usize,
        a0: &mut [f32],
        a1: &mut [f32],
    ) -> bool;
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
    fn key_scores_pair_simd(q: [&[f32]; 2], kt: &[f32], s0: &mut [f32], s1: &mut [f32]) -> bool {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 is present (checked just now).
            unsafe { key_scores_pair_avx2(q, kt, s0, s1) };
            return true;
        }
        false
    }
    fn accumulate_values_pair_simd(
        w: [&[f32]; 2],
        v: &[f32],
        stride: usize,
        a0: &mut [f32],
        a1: &mut [f32],
    ) -> bool {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 is present (checked just now).
            unsafe { accumulate_values_pair_avx2(w, v, stride, a0, a1) };
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
    fn key_scores_pair_simd(
        q: [&[f32]; 2],
        kt: &[half::f16],
        s0: &mut [f32],
        s1: &mut [f32],
    ) -> bool {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("f16c")
        {
            // SAFETY: AVX2 and F16C are present (checked just now).
            unsafe { super::x86_64::attn_f16::key_scores_pair(q, kt, s0, s1) };
            return true;
        }
        false
    }
    fn accumulate_values_pair_simd(
        w: [&[f32]; 2],
        v: &[half::f16],
        stride: usize,
        a0: &mut [f32],
        a1: &mut [f32],
    ) -> bool {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("f16c")
        {
            // SAFETY: AVX2 and F16C are present (checked just now).
            unsafe { super::x86_64::attn_f16::accumulate_values_pair(w, v, stride, a0, a1) };
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

/// Keys or values (elements) a set of queries goes through together, while they are in L1.
const SET_CHUNK: usize = 4096;

/// The queries that go through one kv head's cache together: `tokens` consecutive tokens, each
/// with `heads` query heads of that kv head (grouped-query attention), token-major (query
/// `j = t * heads + h`). Token `t` attends to the first `len0 + t` positions: a causal batch, or
/// one token's heads (`tokens == 1`) attending to `len0` positions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuerySet {
    /// Query heads per token.
    pub heads: usize,
    /// Consecutive tokens.
    pub tokens: usize,
    /// Positions the first token attends to.
    pub len0: usize,
}

impl QuerySet {
    /// The queries of the set: `heads * tokens`.
    pub fn count(&self) -> usize {
        self.heads * self.tokens
    }

    /// Positions query `j` attends to.
    pub fn positions(&self, j: usize) -> usize {
        self.len0 + j / self.heads.max(1)
    }

    /// Floats from one query's scores (or weights) to the next: the last token's positions.
    pub fn row(&self) -> usize {
        self.len0 + self.tokens.saturating_sub(1)
    }
}

/// [`key_scores`] for a set of queries that share one kv head: `q` holds each query in turn
/// (`q.len() / set.count()` dimensions), and query `j`'s scores go to
/// `sc[j * set.row()..][..set.positions(j)]`. The keys are walked once, a few blocks at a time,
/// every query scoring them while they are in cache, two queries per loaded key vector (an f16
/// key widened once for both: the conversions bound the one-query kernels). Each score is summed
/// exactly as [`key_scores`] sums it.
pub fn key_scores_set<E: KvElem>(q: &[f32], set: QuerySet, kt: &[E], sc: &mut [f32]) {
    let (m, row) = (set.count(), set.row());
    assert!(m > 0 && !q.is_empty() && q.len().is_multiple_of(m), "key_scores_set: queries");
    assert!(sc.len() >= m * row, "key_scores_set: scores too short");
    let d = q.len() / m;
    assert!(kt.len() >= key_cache_len(d, row), "key_scores_set: cache too short");
    if m == 1 {
        // Nothing to share: one pass, two blocks at a time to the end.
        return key_scores(q, kt, &mut sc[..row]);
    }
    if row == 0 {
        return;
    }
    let chunk = (SET_CHUNK / (d * KEY_BLOCK)).max(1) * KEY_BLOCK;
    for p0 in (0..row).step_by(chunk) {
        let p1 = (p0 + chunk).min(row);
        score_chunk(q, set, &kt[p0 * d..p1.next_multiple_of(KEY_BLOCK) * d], p0..p1, sc);
    }
}

/// Softmax numerators of a set's scores (as [`key_scores_set`] lays them out): each query's
/// scores are scaled by `scale` and replaced by `e^(s - max)`, and `sums[j]` is query `j`'s
/// denominator, added in order. Four queries' sums are added together (independent chains of
/// adds, each in its own order), so the results are those of one query at a time.
pub fn softmax_set(sc: &mut [f32], set: QuerySet, scale: f32, sums: &mut [f32]) {
    let (m, row) = (set.count(), set.row());
    assert!(sc.len() >= m * row && sums.len() >= m, "softmax_set: lengths");
    if row == 0 {
        sums[..m].fill(-0.0);
        return;
    }
    for (j, s) in sc.chunks_mut(row).take(m).enumerate() {
        let s = &mut s[..set.positions(j)];
        let max = act::scale_max(s, scale);
        act::exp_shifted_in_place(s, max);
    }
    let rows = |j: usize| &sc[j * row..j * row + set.positions(j)];
    let mut j = 0;
    while j + 4 <= m {
        sums[j..j + 4].copy_from_slice(&act::sums_in_order4([0, 1, 2, 3].map(|k| rows(j + k))));
        j += 4;
    }
    for (j, sum) in sums.iter_mut().enumerate().take(m).skip(j) {
        *sum = rows(j).iter().sum();
    }
}

/// [`weighted_values`] for a set of queries that share one kv head: query `j`'s weights are
/// `w[j * set.row()..][..set.positions(j)]` and its sums go to `acc[j * d..(j + 1) * d]`
/// (`d = acc.len() / set.count()`). The values are walked once, a few positions at a time, every
/// query summing them while they are in cache, two per loaded value vector; each sum is added
/// exactly as [`weighted_values`] adds it.
pub fn weighted_values_set<E: KvElem>(
    w: &[f32],
    set: QuerySet,
    v: &[E],
    stride: usize,
    acc: &mut [f32],
) {
    let (m, row) = (set.count(), set.row());
    assert!(m > 0 && !acc.is_empty() && acc.len().is_multiple_of(m), "weighted_values_set");
    assert!(w.len() >= m * row, "weighted_values_set: weights too short");
    let d = acc.len() / m;
    assert!(stride >= d, "weighted_values_set: rows overlap");
    acc.fill(0.0);
    if row == 0 {
        return;
    }
    assert!(v.len() >= (row - 1) * stride + d, "weighted_values_set: values too short");
    if m == 1 {
        return accumulate_values(&w[..row], v, stride, acc);
    }
    let chunk = (SET_CHUNK / stride.max(1)).max(8);
    for p0 in (0..row).step_by(chunk) {
        let p1 = (p0 + chunk).min(row);
        sum_chunk(w, set, &v[p0 * stride..(p1 - 1) * stride + d], stride, p0..p1, acc);
    }
}

/// Every query of `set` that attends past `ps.start` scores positions `ps` (to its own end) from
/// `keys`, the blocked keys starting at `ps.start`, the queries two at a time: each key vector
/// loaded (and an f16 one widened) once for both. Query `j + 1` attends to at least as many
/// positions as query `j`; the pair shares `j`'s, and `j + 1` scores the rest alone from the
/// block where `j`'s end falls (recomputing a few lanes, to the same bits).
fn score_chunk<E: KvElem>(
    q: &[f32],
    set: QuerySet,
    keys: &[E],
    ps: std::ops::Range<usize>,
    sc: &mut [f32],
) {
    let (m, row) = (set.count(), set.row());
    let d = q.len() / m;
    let mut rows = sc.chunks_mut(row);
    for (j, pair) in q.chunks(2 * d).enumerate().map(|(i, p)| (2 * i, p)) {
        let e0 = ps.end.min(set.positions(j));
        let s0 = rows.next().expect("a row per query");
        let Some(s1) = rows.next().filter(|_| pair.len() == 2 * d) else {
            if e0 > ps.start {
                key_scores(pair, keys, &mut s0[ps.start..e0]);
            }
            continue;
        };
        let (q0, q1) = pair.split_at(d);
        let e1 = ps.end.min(set.positions(j + 1));
        let mut b = ps.start;
        if e0 > ps.start {
            key_scores_pair(q0, q1, keys, &mut s0[ps.start..e0], &mut s1[ps.start..e0]);
            b = e0 / KEY_BLOCK * KEY_BLOCK;
        }
        if e1 > e0.max(ps.start) {
            key_scores(q1, &keys[(b - ps.start) * d..], &mut s1[b..e1]);
        }
    }
}

/// Every query of `set` that attends past `ps.start` adds positions `ps` (to its own end) of
/// `vals`, the value rows starting at `ps.start`, the queries two at a time: each value vector
/// loaded (and an f16 one widened) once for both. Query `j + 1` adds the positions past query
/// `j`'s end alone, after the shared ones, so every sum keeps its order.
fn sum_chunk<E: KvElem>(
    w: &[f32],
    set: QuerySet,
    vals: &[E],
    stride: usize,
    ps: std::ops::Range<usize>,
    acc: &mut [f32],
) {
    let (m, row) = (set.count(), set.row());
    let d = acc.len() / m;
    let mut ws = w.chunks(row);
    for (j, pair) in acc.chunks_mut(2 * d).enumerate().map(|(i, p)| (2 * i, p)) {
        let e0 = ps.end.min(set.positions(j));
        let w0 = ws.next().expect("weights per query");
        if pair.len() < 2 * d {
            if e0 > ps.start {
                accumulate_values(&w0[ps.start..e0], vals, stride, pair);
            }
            continue;
        }
        let w1 = ws.next().expect("weights per query");
        let (a0, a1) = pair.split_at_mut(d);
        let e1 = ps.end.min(set.positions(j + 1));
        let mut from = ps.start;
        if e0 > ps.start {
            let (w0, w1) = (&w0[ps.start..e0], &w1[ps.start..e0]);
            accumulate_values_pair(w0, w1, vals, stride, a0, a1);
            from = e0;
        }
        if e1 > from {
            accumulate_values(&w1[from..e1], &vals[(from - ps.start) * stride..], stride, a1);
        }
    }
}

/// [`key_scores`] for two queries over the same positions (`s0.len() == s1.len()`), each score
/// summed as `key_scores` sums it.
fn key_scores_pair<E: KvElem>(q0: &[f32], q1: &[f32], kt: &[E], s0: &mut [f32], s1: &mut [f32]) {
    assert!(q0.len() == q1.len() && s0.len() == s1.len(), "key_scores_pair");
    assert!(kt.len() >= key_cache_len(q0.len(), s0.len()), "key_scores_pair: cache too short");
    if !E::key_scores_pair_simd([q0, q1], kt, s0, s1) {
        key_scores_pair_body([q0, q1], kt, s0, s1)
    }
}

/// [`accumulate_values`] for two queries over the same positions (`w0.len() == w1.len()`).
fn accumulate_values_pair<E: KvElem>(
    w0: &[f32],
    w1: &[f32],
    v: &[E],
    stride: usize,
    a0: &mut [f32],
    a1: &mut [f32],
) {
    assert!(w0.len() == w1.len() && a0.len() == a1.len(), "accumulate_values_pair");
    if let Some(p) = w0.len().checked_sub(1) {
        assert!(v.len() >= p * stride + a0.len(), "accumulate_values_pair: values too short");
    }
    if !E::accumulate_values_pair_simd([w0, w1], v, stride, a0, a1) {
        accumulate_values_pair_body([w0, w1], v, stride, a0, a1)
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn key_scores_pair_avx2(q: [&[f32]; 2], kt: &[f32], s0: &mut [f32], s1: &mut [f32]) {
    key_scores_pair_body(q, kt, s0, s1)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn accumulate_values_pair_avx2(
    w: [&[f32]; 2],
    v: &[f32],
    stride: usize,
    a0: &mut [f32],
    a1: &mut [f32],
) {
    accumulate_values_pair_body(w, v, stride, a0, a1)
}

/// Key blocks' scores for two queries: eight accumulators, each key loaded once for both.
#[inline(always)]
fn key_scores_pair_body<E: KvElem>(
    [q0, q1]: [&[f32]; 2],
    kt: &[E],
    s0: &mut [f32],
    s1: &mut [f32],
) {
    let span = q0.len() * KEY_BLOCK;
    let outs = s0.chunks_mut(KEY_BLOCK).zip(s1.chunks_mut(KEY_BLOCK));
    for ((o0, o1), block) in outs.zip(kt.chunks(span)) {
        let mut a = [[0f32; KEY_BLOCK]; 2];
        for ((&x0, &x1), kr) in q0.iter().zip(q1).zip(block.chunks_exact(KEY_BLOCK)) {
            let kr: &[E; KEY_BLOCK] = kr.try_into().expect("a row of keys");
            for (l, &k) in kr.iter().enumerate() {
                let k = k.widen();
                a[0][l] += x0 * k;
                a[1][l] += x1 * k;
            }
        }
        o0.copy_from_slice(&a[0][..o0.len()]);
        o1.copy_from_slice(&a[1][..o1.len()]);
    }
}

/// `a0[i] += w0[p] * v[p * stride + i0 + i]` and the same for `a1`, `w1`, for `L` dimensions.
#[inline(always)]
fn values_block_pair<const L: usize, E: KvElem>(
    [w0, w1]: [&[f32]; 2],
    v: &[E],
    stride: usize,
    i0: usize,
    (o0, o1): (&mut [f32], &mut [f32]),
) {
    let mut a0: [f32; L] = o0[i0..i0 + L].try_into().expect("a block of sums");
    let mut a1: [f32; L] = o1[i0..i0 + L].try_into().expect("a block of sums");
    for (p, (&x0, &x1)) in w0.iter().zip(w1).enumerate() {
        let at = p * stride + i0;
        let vr: &[E; L] = v[at..at + L].try_into().expect("a block of values");
        for (l, &x) in vr.iter().enumerate() {
            let x = x.widen();
            a0[l] += x0 * x;
            a1[l] += x1 * x;
        }
    }
    o0[i0..i0 + L].copy_from_slice(&a0);
    o1[i0..i0 + L].copy_from_slice(&a1);
}

/// Dimensions in passes of 32 (eight accumulators), then 16, then one at a time.
#[inline(always)]
fn accumulate_values_pair_body<E: KvElem>(
    w: [&[f32]; 2],
    v: &[E],
    stride: usize,
    a0: &mut [f32],
    a1: &mut [f32],
) {
    let d = a0.len();
    let mut i0 = 0;
    while d - i0 >= 16 {
        let width = if d - i0 >= 32 { 32 } else { 16 };
        if width == 32 {
            values_block_pair::<32, E>(w, v, stride, i0, (&mut *a0, &mut *a1));
        } else {
            values_block_pair::<16, E>(w, v, stride, i0, (&mut *a0, &mut *a1));
        }
        i0 += width;
    }
    for i in i0..d {
        for (p, (&x0, &x1)) in w[0].iter().zip(w[1]).enumerate() {
            let x = v[p * stride + i].widen();
            a0[i] += x0 * x;
            a1[i] += x1 * x;
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
    use super::KEY_BLOCK;
    use super::{accumulate_values_body, key_scores_set, weighted_values, weighted_values_set};
    use super::{accumulate_values_pair_body, key_scores_pair_body};
    use super::{key_cache_len, key_scores, key_scores_body, store_key, KvElem, QuerySet};

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

    /// The set kernels give every query exactly what the one-query kernels give it over its own
    /// positions, across chunk boundaries (lengths past several chunks), for one to four heads and
    /// one to three causal tokens.
    fn sets_equal_single_queries<E: KvElem>() {
        for d in [24, 64, 96, 128] {
            for len0 in [0, 1, 31, 33, 190, 700] {
                let max = len0 + 2;
                let mut kt = vec![E::from_f32(0.5); key_cache_len(d, max)];
                for p in 0..max {
                    store_key(&mut kt, p, &values(d, 9 + p as u32));
                }
                // A row stride past the chunk: chunks of the 8-row minimum.
                let stride = if len0 == 190 { 2000 } else { d + 8 };
                let v: Vec<E> = values(max * stride + d, 5).into_iter().map(E::from_f32).collect();
                // The portable pair bodies (the SIMD paths run above on x86_64).
                let (q, w) = (values(2 * d, 11), values(2 * max, 13));
                let (mut s0, mut s1) = (vec![f32::NAN; max], vec![f32::NAN; max]);
                key_scores_pair_body([&q[..d], &q[d..]], &kt, &mut s0, &mut s1);
                let (mut a0, mut a1) = (vec![0.0; d], vec![0.0; d]);
                accumulate_values_pair_body([&w[..max], &w[max..]], &v, stride, &mut a0, &mut a1);
                for (h, (s, a)) in [(s0, a0), (s1, a1)].into_iter().enumerate() {
                    let mut one = vec![f32::NAN; max];
                    key_scores(&q[h * d..(h + 1) * d], &kt, &mut one);
                    assert!(s.iter().zip(&one).all(|(a, b)| a.to_bits() == b.to_bits()));
                    let mut one = vec![f32::NAN; d];
                    weighted_values(&w[h * max..(h + 1) * max], &v, stride, &mut one);
                    assert!(a.iter().zip(&one).all(|(a, b)| a.to_bits() == b.to_bits()));
                }
                for (heads, tokens) in (1..=4).flat_map(|h| (1..=3).map(move |t| (h, t))) {
                    let set = QuerySet { heads, tokens, len0 };
                    let (m, row) = (set.count(), set.row());
                    let q = values(m * d, 3);
                    let mut sc = vec![f32::NAN; m * row];
                    key_scores_set(&q, set, &kt, &mut sc);
                    let w = values(m * row, 7);
                    let mut acc = vec![f32::NAN; m * d];
                    weighted_values_set(&w, set, &v, stride, &mut acc);
                    for j in 0..m {
                        let len = set.positions(j);
                        assert_eq!(len, len0 + j / heads);
                        let mut one = vec![f32::NAN; len];
                        key_scores(&q[j * d..(j + 1) * d], &kt, &mut one);
                        let got = &sc[j * row..j * row + len];
                        assert!(got.iter().zip(&one).all(|(a, b)| a.to_bits() == b.to_bits()));
                        let mut one = vec![f32::NAN; d];
                        weighted_values(&w[j * row..j * row + len], &v, stride, &mut one);
                        let got = &acc[j * d..(j + 1) * d];
                        assert!(
                            got.iter().zip(&one).all(|(a, b)| a.to_bits() == b.to_bits()),
                            "d {d} len0 {len0} heads {heads} tokens {tokens} query {j}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn f32_sets_equal_single_queries_bit_for_bit() {
        sets_equal_single_queries::<f32>();
    }

    #[test]
    fn f16_sets_equal_single_queries_bit_for_bit() {
        sets_equal_single_queries::<half::f16>();
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
