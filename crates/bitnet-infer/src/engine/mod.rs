//! The forward pass: one top-down function over the layers, with the configuration, the weights
//! and the per-sequence state (KV cache, scratch buffers) kept apart.
//!
//! Ternary layers take per-token absmax int8 activations (BitNet b1.58); llama.cpp weight types
//! take the activation blocks llama.cpp pairs them with. Norms, RoPE, softmax and the FFN
//! activation run in f32.

use crate::error::{InferError, Result};
use crate::model::{Config, FfnAct, Linear, MatrixRef, Model, RopeStyle};
use bitnet_core::format::q8k::quantize_row_q8k_per_token_into;
use bitnet_core::format::{BlockQ8K, QK_K};
use bitnet_core::kernels::act;
use bitnet_core::kernels::attn::{
    self, key_cache_len, key_scores_set, store_key, weighted_values_set, KvElem, QuerySet,
};
use bitnet_core::kernels::pool::SharedMut;
use bitnet_core::kernels::{Kernels, Matmul, QuantActs, ThreadPool};
use half::f16;
use std::sync::Mutex;

mod batch;
pub use batch::{BatchScratch, SeqStep};

/// Tokens processed together in one prefill step.
pub const MAX_BATCH: usize = 256;

/// Queries (tokens × the query heads of one kv head) that go through a kv head's cache together
/// in a prefill: each chunk of keys and values is read once for all, two queries per vector.
const QUERY_TILE: usize = 16;

/// Which logits a forward call returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    /// Only the last token's (generation).
    Last,
    /// Every token's (perplexity).
    All,
}

/// The element type of a KV cache (llama.cpp's `--cache-type-k/v`): f32 by default, or f16
/// (llama.cpp's default: half the memory and half the bytes attention reads per position, at the
/// cost of rounding every key and value to 11 significant bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KvType {
    #[default]
    F32,
    F16,
}

impl KvType {
    pub fn name(self) -> &'static str {
        match self {
            KvType::F16 => "f16",
            KvType::F32 => "f32",
        }
    }

    /// `f32` or `f16`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "f32" => Some(KvType::F32),
            "f16" => Some(KvType::F16),
            _ => None,
        }
    }
}

/// Keys, (layer, kv head, blocked keys of `ctx` positions) (see [`attn`] for the blocks), and
/// values, (layer, kv head, position, head_dim), in one element type: each head's keys and
/// values are contiguous, so attention reads them as two forward streams.
#[derive(Debug)]
enum KvCache {
    F32 { k: Vec<f32>, v: Vec<f32> },
    F16 { k: Vec<f16>, v: Vec<f16> },
}

/// The state of one sequence: its position and KV cache, plus scratch buffers.
#[derive(Debug)]
pub struct State {
    ctx: usize,
    pos: usize,
    kv: KvCache,
    s: Scratch,
}

/// Buffers reused from one batch to the next.
#[derive(Debug, Default)]
struct Scratch {
    /// The residual stream, (n, hidden).
    x: Vec<f32>,
    /// Normed input of the current sub-layer.
    h: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    /// Attention output, (n, q_dim).
    o: Vec<f32>,
    /// Output of o_proj or down_proj before it joins the residual stream.
    proj: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    /// (cos, sin) of every token's RoPE angles, (n, head_dim / 2).
    rope: Vec<(f32, f32)>,
    logits: Vec<f32>,
    /// Attention's per-thread scores and value sums (`threads × (positions + head_dim)`).
    attn: Vec<f32>,
    acts: Acts,
}

/// Quantized activations of the current linear layer's input.
#[derive(Debug, Default)]
struct Acts {
    i8: Vec<BlockQ8K>,
    quant: QuantActs,
}

impl State {
    /// The element type of this state's KV cache.
    pub fn kv_type(&self) -> KvType {
        match self.kv {
            KvCache::F32 { .. } => KvType::F32,
            KvCache::F16 { .. } => KvType::F16,
        }
    }

    /// Tokens already in the cache.
    pub fn pos(&self) -> usize {
        self.pos
    }
    pub fn ctx(&self) -> usize {
        self.ctx
    }
    /// Forgets the sequence (the cache is overwritten as new tokens arrive).
    pub fn reset(&mut self) {
        self.pos = 0;
    }
    /// Keeps only the first `n` tokens of the cache (a shared prefix); later ones are forgotten.
    pub fn truncate(&mut self, n: usize) {
        self.pos = self.pos.min(n);
    }
}

/// A model plus the kernels and threads that run it.
#[derive(Debug)]
pub struct Engine {
    pub model: Model,
    matmul: Matmul,
    /// RoPE inverse frequencies, one per rotated pair.
    inv_freq: Vec<f32>,
}

/// RMSNorm of one row, in place (the sum of squares in f64, over eight independent lanes: one
/// chain of dependent adds took longer than the rest of the norm).
fn rms_norm_row(x: &mut [f32], w: &[f32], eps: f32) {
    let mut lanes = [0f64; 8];
    let chunks = x.chunks_exact(8);
    let tail: f64 = chunks.remainder().iter().map(|&v| v as f64 * v as f64).sum();
    for c in chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l += v as f64 * v as f64;
        }
    }
    let ss = lanes.iter().sum::<f64>() + tail;
    let scale = 1.0 / ((ss / w.len() as f64) as f32 + eps).sqrt();
    for (xv, &wv) in x.iter_mut().zip(w) {
        *xv = *xv * scale * wv;
    }
}

/// RMSNorm of every `w.len()`-wide row of `x`, in place, rows spread over the pool.
fn rms_norm(pool: &ThreadPool, x: &mut [f32], w: &[f32], eps: f32) -> Result<()> {
    pool.for_each_chunk_mut(x, w.len(), &|_, xr| rms_norm_row(xr, w, eps))
        .map_err(InferError::core("rms_norm"))
}

/// `out = rms_norm(x)`, reusing `out`'s allocation.
fn rms_norm_into(
    pool: &ThreadPool,
    x: &[f32],
    w: &[f32],
    eps: f32,
    out: &mut Vec<f32>,
) -> Result<()> {
    out.clear();
    out.extend_from_slice(x);
    rms_norm(pool, out, w, eps)
}

/// Per-token absmax int8 activations of every `cols`-wide row of `x`, into `out`; tokens spread
/// over the pool.
fn quantize_tokens(
    pool: &ThreadPool,
    x: &[f32],
    cols: usize,
    out: &mut Vec<BlockQ8K>,
) -> bitnet_core::Result<()> {
    let nb = cols / QK_K;
    if nb == 0 || !cols.is_multiple_of(QK_K) || !x.len().is_multiple_of(cols) {
        // The per-row quantizer names the problem.
        return quantize_row_q8k_per_token_into(x, &mut []);
    }
    out.resize(x.len() / cols * nb, BlockQ8K::with_codes(0.0, [0; QK_K]));
    let first_error = Mutex::new(None);
    pool.for_each_chunk_mut(out, nb, &|t, blocks| {
        if let Err(e) = quantize_row_q8k_per_token_into(&x[t * cols..(t + 1) * cols], blocks) {
            if let Ok(mut first) = first_error.lock() {
                first.get_or_insert(e);
            }
        }
    })?;
    match first_error.into_inner().ok().flatten() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// `gate = act(gate) * up`, token by token (`ffn` wide) over the pool.
fn gated_activation(
    pool: &ThreadPool,
    act: FfnAct,
    gate: &mut [f32],
    up: &[f32],
    ffn: usize,
) -> Result<()> {
    pool.for_each_chunk_mut(gate, ffn, &|t, g| {
        let u = &up[t * ffn..(t + 1) * ffn];
        match act {
            FfnAct::Silu => act::silu_mul(g, u),
            FfnAct::Relu2 => g.iter_mut().zip(u).for_each(|(g, u)| {
                let r = g.max(0.0);
                *g = r * r * u;
            }),
        }
    })
    .map_err(InferError::core("ffn activation"))
}

/// Stores the keys `k` (tokens × kv_dim) of positions `pos0..` in one layer's blocked key cache
/// (`kt`: one `k_head`-float cache per kv head).
fn store_keys<E: KvElem>(
    kt: &mut [E],
    k_head: usize,
    k: &[f32],
    head_dim: usize,
    kvd: usize,
    pos0: usize,
) {
    for (t, kr) in k.chunks_exact(kvd).enumerate() {
        for (kh, key) in kt.chunks_exact_mut(k_head).zip(kr.chunks_exact(head_dim)) {
            store_key(kh, pos0 + t, key);
        }
    }
}

/// A sequence's whole KV cache, borrowed for one forward.
enum KvMut<'a> {
    F32 { k: &'a mut [f32], v: &'a mut [f32] },
    F16 { k: &'a mut [f16], v: &'a mut [f16] },
}

impl KvCache {
    fn borrow(&mut self) -> KvMut<'_> {
        match self {
            KvCache::F32 { k, v } => KvMut::F32 { k, v },
            KvCache::F16 { k, v } => KvMut::F16 { k, v },
        }
    }
}

/// One sequence's part of a forward: its cache, context, first position and tokens, and whether
/// its last token's logits are wanted.
struct Seg<'a> {
    kv: KvMut<'a>,
    ctx: usize,
    pos0: usize,
    tokens: &'a [u32],
    logits: bool,
}

/// One layer's new keys and caches, for [`Engine::attention`].
struct LayerKv<'a, E> {
    /// The batch's keys (tokens × kv_dim) after RoPE, not yet stored.
    new_k: &'a [f32],
    /// The layer's key cache: one blocked cache per kv head ([`attn`]).
    kt: &'a mut [E],
    /// The layer's values, kv heads × positions × head_dim, the batch's included.
    vc: &'a [E],
}

/// Stores the values `v` (tokens × kv_dim) of positions `pos0..` in one layer's value cache
/// (`vc`: one `ctx × head_dim` run per kv head).
fn store_values<E: KvElem>(vc: &mut [E], ctx: usize, v: &[f32], head_dim: usize, pos0: usize) {
    let kvd = vc.len() / ctx;
    for (t, vr) in v.chunks_exact(kvd).enumerate() {
        for (vh, val) in vc.chunks_exact_mut(ctx * head_dim).zip(vr.chunks_exact(head_dim)) {
            let at = (pos0 + t) * head_dim;
            E::convert(&mut vh[at..at + head_dim], val);
        }
    }
}

/// `x += y`, row by row (`h` wide) over the pool.
fn add_rows(pool: &ThreadPool, x: &mut [f32], y: &[f32], h: usize) -> Result<()> {
    pool.for_each_chunk_mut(x, h, &|t, xr| {
        xr.iter_mut().zip(&y[t * h..(t + 1) * h]).for_each(|(x, a)| *x += a)
    })
    .map_err(InferError::core("residual add"))
}

impl Engine {
    /// An engine on `n_threads` threads with the fastest kernels this CPU has.
    pub fn new(model: Model, n_threads: usize) -> Result<Self> {
        Self::with_kernels(model, Kernels::detect(), n_threads)
    }

    pub fn with_kernels(model: Model, kernels: Kernels, n_threads: usize) -> Result<Self> {
        let c = &model.config;
        let matmul = Matmul::new(kernels, n_threads).map_err(InferError::core("thread pool"))?;
        let half = c.head_dim / 2;
        let inv_freq = (0..half)
            .map(|i| (c.rope_theta as f64).powf(-(2.0 * i as f64) / c.head_dim as f64) as f32)
            .collect();
        Ok(Self { model, matmul, inv_freq })
    }

    pub fn config(&self) -> &Config {
        &self.model.config
    }

    pub fn n_threads(&self) -> usize {
        self.matmul.n_threads()
    }

    /// A fresh sequence with room for `ctx` tokens (the model's own context when 0).
    pub fn new_state(&self, ctx: usize) -> Result<State> {
        self.new_state_with(ctx, KvType::default())
    }

    /// [`Engine::new_state`] with a KV cache of elements `kv`.
    pub fn new_state_with(&self, ctx: usize, kv: KvType) -> Result<State> {
        let c = self.config();
        let ctx = if ctx == 0 { c.max_ctx } else { ctx };
        let n = c
            .n_layers
            .checked_mul(ctx.next_multiple_of(attn::KEY_BLOCK))
            .and_then(|v| v.checked_mul(c.kv_dim()))
            .filter(|&n| n < (1usize << 40))
            .ok_or_else(|| InferError::BadConfig(format!("a KV cache of {ctx} tokens")))?;
        let n_v = c.n_layers * ctx * c.kv_dim();
        let kv = match kv {
            KvType::F32 => KvCache::F32 { k: vec![0.0; n], v: vec![0.0; n_v] },
            KvType::F16 => KvCache::F16 { k: vec![f16::ZERO; n], v: vec![f16::ZERO; n_v] },
        };
        Ok(State { ctx, pos: 0, kv, s: Scratch::default() })
    }

    /// Runs `tokens` at the state's next positions, in batches of at most [`MAX_BATCH`], and
    /// returns the requested logits: (1, vocab) for [`Logits::Last`], (n, vocab) for
    /// [`Logits::All`].
    pub fn forward<'s>(
        &self,
        st: &'s mut State,
        tokens: &[u32],
        which: Logits,
    ) -> Result<&'s [f32]> {
        let c = self.config();
        if tokens.is_empty() {
            return Err(InferError::EmptyPrompt);
        }
        if let Some(&id) = tokens.iter().find(|&&t| t as usize >= c.vocab_size) {
            return Err(InferError::TokenOutOfRange { id, vocab: c.vocab_size });
        }
        if st.pos + tokens.len() > st.ctx {
            return Err(InferError::ContextFull { tokens: st.pos + tokens.len(), ctx: st.ctx });
        }
        let n_chunks = tokens.len().div_ceil(MAX_BATCH);
        let gather = which == Logits::All && n_chunks > 1;
        let mut all = Vec::new();
        for (i, chunk) in tokens.chunks(MAX_BATCH).enumerate() {
            let want = match which {
                Logits::All => Some(Logits::All),
                Logits::Last => (i + 1 == n_chunks).then_some(Logits::Last),
            };
            self.forward_batch(st, chunk, want)?;
            if gather {
                all.extend_from_slice(&st.s.logits);
            }
        }
        if gather {
            st.s.logits = all;
        }
        Ok(&st.s.logits)
    }

    /// `y = W x` for the n tokens of `x`, quantizing activations as the weight type requires.
    fn linear(
        &self,
        w: &Linear,
        x: &[f32],
        n: usize,
        acts: &mut Acts,
        y: &mut Vec<f32>,
    ) -> Result<()> {
        y.resize(n * w.rows, 0.0);
        let ctx = || format!("{} ({} x {})", w.name, w.rows, w.cols);
        match w.matrix()? {
            MatrixRef::Ternary(m) => {
                quantize_tokens(self.matmul.pool(), x, w.cols, &mut acts.i8)
                    .map_err(InferError::core_with(ctx))?;
                self.matmul.gemm(&m, &acts.i8, n, y).map_err(InferError::core_with(ctx))?;
            }
            MatrixRef::Quant(m) => {
                acts.quant.quantize(m.act_kind(), x, w.cols).map_err(InferError::core_with(ctx))?;
                self.matmul.gemm_quant(&m, &acts.quant, y).map_err(InferError::core_with(ctx))?;
            }
        }
        if w.out_scale != 1.0 {
            y.iter_mut().for_each(|v| *v *= w.out_scale);
        }
        Ok(())
    }

    /// Several linear layers on the same input (Q, K, V; gate, up): ternary ones share one
    /// activation quantization and one pass of the thread pool.
    fn linear_group<const N: usize>(
        &self,
        ws: [&Linear; N],
        x: &[f32],
        n: usize,
        acts: &mut Acts,
        mut ys: [&mut Vec<f32>; N],
    ) -> Result<()> {
        const { assert!(N > 0) };
        let MatrixRef::Ternary(first) = ws[0].matrix()? else {
            return self.linear_each(ws, x, n, acts, ys);
        };
        let mut fused = [first; N];
        for (f, w) in fused.iter_mut().zip(ws) {
            match w.matrix()? {
                MatrixRef::Ternary(t) if w.out_scale == 1.0 && w.cols == ws[0].cols => *f = t,
                _ => return self.linear_each(ws, x, n, acts, ys),
            }
        }
        let ctx = || ws.map(|w| w.name.as_str()).join(", ");
        quantize_tokens(self.matmul.pool(), x, ws[0].cols, &mut acts.i8)
            .map_err(InferError::core_with(ctx))?;
        for (w, y) in ws.iter().zip(ys.iter_mut()) {
            y.resize(n * w.rows, 0.0);
        }
        let mut outs = ys.map(|y| y.as_mut_slice());
        self.matmul.gemm_group(&fused, &acts.i8, n, &mut outs).map_err(InferError::core_with(ctx))
    }

    /// [`Engine::linear_group`]'s layers one by one (any of them not a plain ternary matrix).
    fn linear_each<const N: usize>(
        &self,
        ws: [&Linear; N],
        x: &[f32],
        n: usize,
        acts: &mut Acts,
        ys: [&mut Vec<f32>; N],
    ) -> Result<()> {
        for (w, y) in ws.into_iter().zip(ys) {
            self.linear(w, x, n, acts, y)?;
        }
        Ok(())
    }

    /// Appends the (cos, sin) of every RoPE angle of tokens at `pos0..pos0 + n` to `table`.
    fn rope_table(&self, pos0: usize, n: usize, table: &mut Vec<(f32, f32)>) {
        for t in 0..n {
            let p = (pos0 + t) as f32;
            table.extend(self.inv_freq.iter().map(|&f| {
                let (sin, cos) = (p * f).sin_cos();
                (cos, sin)
            }));
        }
    }

    /// Rotates every head of every token of `x` by the angles of `table`.
    fn rope(&self, x: &mut [f32], n_heads: usize, table: &[(f32, f32)]) {
        let d = self.config().head_dim;
        let half = d / 2;
        let style = self.config().rope_style;
        for (row, angles) in x.chunks_exact_mut(n_heads * d).zip(table.chunks_exact(half)) {
            for head in row.chunks_exact_mut(d) {
                for (i, &(cos, sin)) in angles.iter().enumerate() {
                    let (a, b) = match style {
                        RopeStyle::Interleaved => (2 * i, 2 * i + 1),
                        RopeStyle::Half => (i, i + half),
                    };
                    let (x0, x1) = (head[a], head[b]);
                    head[a] = x0 * cos - x1 * sin;
                    head[b] = x0 * sin + x1 * cos;
                }
            }
        }
    }

    /// Causal attention of the queries at positions `pos` over one layer's cache (`kt`: one
    /// blocked key cache per kv head, [`attn`]; `vc`: positions × kv_dim), into `o`; `scratch`
    /// holds each thread's scores.
    ///
    /// Every score is summed over the head dimension in order, as a plain dot product would, but
    /// a block of positions advances together: the vector lanes run across positions.
    fn attention<E: KvElem>(
        &self,
        q: &[f32],
        kv: LayerKv<'_, E>,
        pos: std::ops::Range<usize>,
        o: &mut [f32],
        scratch: &mut Vec<f32>,
    ) -> Result<()> {
        let (pos0, n) = (pos.start, pos.len());
        let c = self.config();
        let (d, nh, nkv, kvd) = (c.head_dim, c.n_heads, c.n_kv_heads, c.kv_dim());
        let group = nh / nkv;
        debug_assert_eq!(o.len(), n * nh * d);
        let out = SharedMut::new(o.as_mut_ptr());
        let scale = 1.0 / (d as f32).sqrt();
        let n_threads = self.matmul.n_threads();
        let k_head = kv.kt.len() / nkv;
        let v_head = kv.vc.len() / nkv;
        // When the kv heads split evenly over the threads, each thread takes whole kv heads and
        // stores their keys itself: the cache lines it writes are the ones it reads next, in its
        // own cache. Otherwise the keys are stored first.
        let by_kv_head = nkv.is_multiple_of(n_threads);
        if !by_kv_head {
            store_keys(kv.kt, k_head, kv.new_k, d, kvd, pos0);
        }
        let kt = SharedMut::new(kv.kt.as_mut_ptr());
        let (new_k, vc) = (kv.new_k, kv.vc);
        // A prefill's tokens go through each kv head's cache in tiles: the queries of `tile`
        // consecutive tokens and all the group's heads read each chunk once.
        let tile = QUERY_TILE.div_ceil(group).min(n).max(1);
        let m_max = tile * group;
        // Grows to the longest context seen, then is reused: no allocation per token.
        let per_thread = m_max * (pos0 + n) + 2 * m_max * d + m_max;
        if scratch.len() < n_threads * per_thread {
            scratch.resize(n_threads * per_thread, 0.0);
        }
        let scratch = SharedMut::new(scratch.as_mut_ptr());
        self.matmul
            .pool()
            .run(&|tid| {
                // SAFETY: thread `tid` alone uses floats `tid * per_thread ..` of the scratch
                // buffer (resized above to hold every thread's), which outlives `run`.
                let mine = unsafe {
                    std::slice::from_raw_parts_mut(scratch.get().add(tid * per_thread), per_thread)
                };
                let (scores, rest) = mine.split_at_mut(m_max * (pos0 + n));
                let (qs, rest) = rest.split_at_mut(m_max * d);
                let (acc, sums) = rest.split_at_mut(m_max * d);
                // Tokens t0..t1, query heads h..he, all of one kv head: they score its keys and
                // sum its values together, reading each once.
                let mut unit = |t0: usize, t1: usize, h: usize, he: usize| {
                    let (kvh, g) = (h / group, he - h);
                    let set = QuerySet { heads: g, tokens: t1 - t0, len0: pos0 + t0 + 1 };
                    let (m, row) = (set.count(), set.row());
                    let (qs, acc) = (&mut qs[..m * d], &mut acc[..m * d]);
                    for (t, qt) in (t0..t1).zip(qs.chunks_exact_mut(g * d)) {
                        qt.copy_from_slice(&q[(t * nh + h) * d..(t * nh + he) * d]);
                    }
                    let sc = &mut scores[..m * row];
                    // SAFETY: kv head kvh's cache lies inside the layer's key cache; nothing
                    // writes it while units read it (its keys were stored before this run, or by
                    // this thread, which owns it, before its units).
                    let keys = unsafe {
                        std::slice::from_raw_parts(kt.get().add(kvh * k_head) as *const E, k_head)
                    };
                    key_scores_set(qs, set, keys, sc);
                    attn::softmax_set(sc, set, scale, sums);
                    weighted_values_set(sc, set, &vc[kvh * v_head..(kvh + 1) * v_head], d, acc);
                    for (t, at) in (t0..t1).zip(acc.chunks_exact(g * d)) {
                        // SAFETY: this unit alone owns o[(t*nh + h)*d .. (t*nh + he)*d], inside o.
                        let o_heads = unsafe {
                            std::slice::from_raw_parts_mut(out.get().add((t * nh + h) * d), g * d)
                        };
                        let sums = &sums[(t - t0) * g..(t - t0 + 1) * g];
                        for ((oh, ah), &sum) in
                            o_heads.chunks_exact_mut(d).zip(at.chunks(d)).zip(sums)
                        {
                            let inv = 1.0 / sum;
                            oh.iter_mut().zip(ah).for_each(|(o, &a)| *o = a * inv);
                        }
                    }
                };
                let tiles = n.div_ceil(tile);
                let bounds = |i: usize| (i * tile, ((i + 1) * tile).min(n));
                if by_kv_head {
                    for kvh in (tid..nkv).step_by(n_threads) {
                        {
                            // SAFETY: kv head kvh belongs to this thread alone in this run.
                            let head = unsafe {
                                std::slice::from_raw_parts_mut(kt.get().add(kvh * k_head), k_head)
                            };
                            for (t, kr) in new_k.chunks_exact(kvd).enumerate() {
                                store_key(head, pos0 + t, &kr[kvh * d..(kvh + 1) * d]);
                            }
                        }
                        for i in 0..tiles {
                            let (t0, t1) = bounds(i);
                            unit(t0, t1, kvh * group, (kvh + 1) * group);
                        }
                    }
                } else if n == 1 {
                    // One token: a contiguous range of query heads per thread, cut where the kv
                    // head changes, so a kv head is read by at most two threads.
                    let (h0, h1) = (nh * tid / n_threads, nh * (tid + 1) / n_threads);
                    let mut h = h0;
                    while h < h1 {
                        let he = h1.min((h / group + 1) * group);
                        unit(0, 1, h, he);
                        h = he;
                    }
                } else {
                    // Interleaved (tile, kv head) units: later tokens attend to more positions,
                    // so contiguous ranges would leave the last thread with most of the work.
                    for j in (tid..tiles * nkv).step_by(n_threads) {
                        let ((t0, t1), kvh) = (bounds(j / nkv), j % nkv);
                        unit(t0, t1, kvh * group, (kvh + 1) * group);
                    }
                }
            })
            .map_err(InferError::core("attention"))
    }

    /// One batch of at most [`MAX_BATCH`] tokens; logits when asked. The position advances
    /// only when the whole batch succeeded.
    fn forward_batch(&self, st: &mut State, tokens: &[u32], want: Option<Logits>) -> Result<()> {
        let State { ctx, pos, kv, s } = st;
        let seg = Seg { kv: kv.borrow(), ctx: *ctx, pos0: *pos, tokens, logits: want.is_some() };
        self.run_segments(&mut [seg], s, want == Some(Logits::All))?;
        *pos += tokens.len();
        Ok(())
    }

    /// One layer's attention for one sequence: its new values are stored, then its queries
    /// attend over its cache (storing its new keys on the way).
    #[allow(clippy::too_many_arguments)]
    fn seg_attention<E: KvElem>(
        &self,
        layer: usize,
        (k_cache, v_cache): (&mut [E], &mut [E]),
        (ctx, pos0): (usize, usize),
        (q, k, v): (&[f32], &[f32], &[f32]),
        o: &mut [f32],
        scratch: &mut Vec<f32>,
    ) -> Result<()> {
        let c = self.config();
        let (l, kvd, n) = (layer, c.kv_dim(), k.len() / c.kv_dim());
        let k_head = key_cache_len(c.head_dim, ctx);
        let k_layer = l * c.n_kv_heads * k_head..(l + 1) * c.n_kv_heads * k_head;
        let vl = l * ctx * kvd..(l + 1) * ctx * kvd;
        store_values(&mut v_cache[vl.clone()], ctx, v, c.head_dim, pos0);
        let kv = LayerKv { new_k: k, kt: &mut k_cache[k_layer], vc: &v_cache[vl] };
        self.attention(q, kv, pos0..pos0 + n, o, scratch)
    }

    /// The forward of every segment's tokens together: the linear layers, norms and activations
    /// run over all of them at once, attention runs per segment over its own cache. Logits: every
    /// token's when `all`, else the last token's of each segment that wants them, in order.
    /// Each token's result depends on its own sequence only, never on the other segments.
    fn run_segments(&self, segs: &mut [Seg<'_>], s: &mut Scratch, all: bool) -> Result<()> {
        let c = self.config();
        let w = &self.model.weights;
        let pool = self.matmul.pool();
        let n: usize = segs.iter().map(|g| g.tokens.len()).sum();
        let (h, kvd, qd, eps) = (c.hidden, c.kv_dim(), c.n_heads * c.head_dim, c.norm_eps);
        let MatrixRef::Quant(emb) = w.embed.matrix()? else {
            return Err(InferError::UnsupportedTensorType {
                name: w.embed.name.clone(),
                ty: format!("{:?}", w.embed.ty),
            });
        };
        s.x.resize(n * h, 0.0);
        let tokens = segs.iter().flat_map(|g| g.tokens.iter());
        for (xr, &tok) in s.x.chunks_exact_mut(h).zip(tokens) {
            emb.row_f32(tok as usize, xr).map_err(InferError::core("embedding lookup"))?;
        }
        s.rope.clear();
        for g in segs.iter() {
            self.rope_table(g.pos0, g.tokens.len(), &mut s.rope);
        }
        for (l, lw) in w.layers.iter().enumerate() {
            rms_norm_into(pool, &s.x, &lw.attn_norm, eps, &mut s.h)?;
            let qkv = [&lw.wq, &lw.wk, &lw.wv];
            self.linear_group(qkv, &s.h, n, &mut s.acts, [&mut s.q, &mut s.k, &mut s.v])?;
            self.rope(&mut s.q, c.n_heads, &s.rope);
            self.rope(&mut s.k, c.n_kv_heads, &s.rope);
            s.o.resize(n * qd, 0.0);
            let mut t0 = 0;
            for g in segs.iter_mut() {
                let t1 = t0 + g.tokens.len();
                let qkv =
                    (&s.q[t0 * qd..t1 * qd], &s.k[t0 * kvd..t1 * kvd], &s.v[t0 * kvd..t1 * kvd]);
                let o = &mut s.o[t0 * qd..t1 * qd];
                let at = (g.ctx, g.pos0);
                match &mut g.kv {
                    KvMut::F32 { k, v } => {
                        self.seg_attention(l, (k, v), at, qkv, o, &mut s.attn)?
                    }
                    KvMut::F16 { k, v } => {
                        self.seg_attention(l, (k, v), at, qkv, o, &mut s.attn)?
                    }
                }
                t0 = t1;
            }
            if let Some(sn) = &lw.attn_sub_norm {
                rms_norm(pool, &mut s.o, sn, eps)?;
            }
            self.linear(&lw.wo, &s.o, n, &mut s.acts, &mut s.proj)?;
            add_rows(pool, &mut s.x, &s.proj, h)?;

            rms_norm_into(pool, &s.x, &lw.ffn_norm, eps, &mut s.h)?;
            let gate_up = [&lw.w_gate, &lw.w_up];
            self.linear_group(gate_up, &s.h, n, &mut s.acts, [&mut s.gate, &mut s.up])?;
            gated_activation(pool, c.ffn_act, &mut s.gate, &s.up, lw.w_up.rows)?;
            if let Some(sn) = &lw.ffn_sub_norm {
                rms_norm(pool, &mut s.gate, sn, eps)?;
            }
            self.linear(&lw.w_down, &s.gate, n, &mut s.acts, &mut s.proj)?;
            add_rows(pool, &mut s.x, &s.proj, h)?;
        }
        // The rows whose logits are wanted, gathered, then normed and through the head.
        s.h.clear();
        if all {
            s.h.extend_from_slice(&s.x);
        } else {
            let mut t1 = 0;
            for g in segs.iter() {
                t1 += g.tokens.len();
                if g.logits {
                    s.h.extend_from_slice(&s.x[(t1 - 1) * h..t1 * h]);
                }
            }
        }
        if s.h.is_empty() {
            s.logits.clear();
        } else {
            rms_norm(pool, &mut s.h, &w.final_norm, eps)?;
            self.linear(w.head(), &s.h, s.h.len() / h, &mut s.acts, &mut s.logits)?;
        }
        Ok(())
    }
}
