//! The forward pass: one top-down function over the layers, with the configuration, the weights
//! and the per-sequence state (KV cache, scratch buffers) kept apart.
//!
//! Ternary layers take per-token absmax int8 activations (BitNet b1.58); llama.cpp weight types
//! take the activation blocks llama.cpp pairs them with. Norms, RoPE, softmax and the FFN
//! activation run in f32.

use crate::error::{InferError, Result};
use crate::model::{Config, FfnAct, Linear, MatrixRef, Model, RopeStyle};
use bitnet_core::format::q8k::quantize_row_q8k_per_token;
use bitnet_core::format::BlockQ8K;
use bitnet_core::kernels::{Kernels, Matmul, QuantActs};

/// Tokens processed together in one prefill step.
pub const MAX_BATCH: usize = 256;

/// Which logits a forward call returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    /// Only the last token's (generation).
    Last,
    /// Every token's (perplexity).
    All,
}

/// The state of one sequence: its position and KV cache, plus scratch buffers.
#[derive(Debug)]
pub struct State {
    ctx: usize,
    pos: usize,
    /// (layer, position, kv_dim).
    k: Vec<f32>,
    v: Vec<f32>,
    s: Scratch,
}

#[derive(Debug, Default)]
struct Scratch {
    x: Vec<f32>,
    h: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    att: Vec<f32>,
    o: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    logits: Vec<f32>,
    act_i8: Vec<BlockQ8K>,
    act_q: QuantActs,
}

impl State {
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
    /// Bytes of the KV cache.
    pub fn kv_bytes(&self) -> usize {
        (self.k.len() + self.v.len()) * 4
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

#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: used only to let pool threads write disjoint ranges of one buffer.
unsafe impl Send for SendPtr {}
// SAFETY: as above; every thread writes its own indices.
unsafe impl Sync for SendPtr {}

impl SendPtr {
    fn get(self) -> *mut f32 {
        self.0
    }
}

fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let n = w.len();
    for (xr, orow) in x.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
        let ss: f64 = xr.iter().map(|&v| v as f64 * v as f64).sum();
        let scale = 1.0 / ((ss / n as f64) as f32 + eps).sqrt();
        for ((o, &xv), &wv) in orow.iter_mut().zip(xr).zip(w) {
            *o = xv * scale * wv;
        }
    }
}

fn rms_norm_inplace(x: &mut [f32], w: &[f32], eps: f32) {
    let n = w.len();
    for xr in x.chunks_exact_mut(n) {
        let ss: f64 = xr.iter().map(|&v| v as f64 * v as f64).sum();
        let scale = 1.0 / ((ss / n as f64) as f32 + eps).sqrt();
        for (xv, &wv) in xr.iter_mut().zip(w) {
            *xv = *xv * scale * wv;
        }
    }
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
        let c = self.config();
        let ctx = if ctx == 0 { c.max_ctx } else { ctx };
        let n = c
            .n_layers
            .checked_mul(ctx)
            .and_then(|v| v.checked_mul(c.kv_dim()))
            .filter(|&n| n < (1usize << 40))
            .ok_or_else(|| InferError::BadConfig(format!("a KV cache of {ctx} tokens")))?;
        Ok(State { ctx, pos: 0, k: vec![0.0; n], v: vec![0.0; n], s: Scratch::default() })
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
        let mut all = Vec::new();
        let chunks: Vec<&[u32]> = tokens.chunks(MAX_BATCH).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let last = i + 1 == chunks.len();
            let want = match which {
                Logits::All => Logits::All,
                Logits::Last if last => Logits::Last,
                Logits::Last => {
                    self.forward_batch(st, chunk, None)?;
                    continue;
                }
            };
            self.forward_batch(st, chunk, Some(want))?;
            if which == Logits::All && chunks.len() > 1 {
                all.extend_from_slice(&st.s.logits);
            }
        }
        if which == Logits::All && chunks.len() > 1 {
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
        s: &mut Scratch,
        y: &mut Vec<f32>,
    ) -> Result<()> {
        y.resize(n * w.rows, 0.0);
        let ctx = || format!("{} ({} x {})", w.name, w.rows, w.cols);
        match w.matrix()? {
            MatrixRef::Ternary(m) => {
                s.act_i8.clear();
                for row in x.chunks_exact(w.cols) {
                    s.act_i8
                        .extend(quantize_row_q8k_per_token(row).map_err(InferError::core(ctx()))?);
                }
                self.matmul.gemm(&m, &s.act_i8, n, y).map_err(InferError::core(ctx()))?;
            }
            MatrixRef::Quant(m) => {
                s.act_q.quantize(m.act_kind(), x, w.cols).map_err(InferError::core(ctx()))?;
                self.matmul.gemm_quant(&m, &s.act_q, y).map_err(InferError::core(ctx()))?;
            }
        }
        if w.out_scale != 1.0 {
            y.iter_mut().for_each(|v| *v *= w.out_scale);
        }
        Ok(())
    }

    fn rope(&self, x: &mut [f32], n_heads: usize, pos0: usize) {
        let d = self.config().head_dim;
        let half = d / 2;
        let width = n_heads * d;
        for (t, row) in x.chunks_exact_mut(width).enumerate() {
            let p = (pos0 + t) as f32;
            for head in row.chunks_exact_mut(d) {
                for (i, &f) in self.inv_freq.iter().enumerate() {
                    let (sin, cos) = (p * f).sin_cos();
                    let (a, b) = match self.config().rope_style {
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

    /// Causal attention of the batch's queries over the cache of layer `l`.
    fn attention(&self, st: &mut State, l: usize, n: usize) -> Result<()> {
        let c = self.config();
        let (d, nh, kvd) = (c.head_dim, c.n_heads, c.kv_dim());
        let group = nh / c.n_kv_heads;
        let base = l * st.ctx * kvd;
        let (kc, vc) = (&st.k[base..base + st.ctx * kvd], &st.v[base..base + st.ctx * kvd]);
        let q = &st.s.q;
        st.s.o.resize(n * nh * d, 0.0);
        let out = SendPtr(st.s.o.as_mut_ptr());
        let pos0 = st.pos;
        let scale = 1.0 / (d as f32).sqrt();
        let n_threads = self.matmul.n_threads();
        let jobs = n * nh;
        self.matmul
            .pool()
            .run(&|tid| {
                let mut scores = vec![0.0f32; pos0 + n];
                let mut acc = vec![0.0f32; d];
                let (j0, j1) = (jobs * tid / n_threads, jobs * (tid + 1) / n_threads);
                for j in j0..j1 {
                    let (t, h) = (j / nh, j % nh);
                    let kvh = h / group;
                    let qh = &q[(t * nh + h) * d..(t * nh + h + 1) * d];
                    let len = pos0 + t + 1;
                    let mut max = f32::NEG_INFINITY;
                    for (p, sc) in scores[..len].iter_mut().enumerate() {
                        let kr = &kc[p * kvd + kvh * d..p * kvd + kvh * d + d];
                        *sc = qh.iter().zip(kr).map(|(a, b)| a * b).sum::<f32>() * scale;
                        max = max.max(*sc);
                    }
                    let mut sum = 0.0f32;
                    for sc in scores[..len].iter_mut() {
                        *sc = (*sc - max).exp();
                        sum += *sc;
                    }
                    acc.iter_mut().for_each(|a| *a = 0.0);
                    for (p, &w) in scores[..len].iter().enumerate() {
                        let vr = &vc[p * kvd + kvh * d..p * kvd + kvh * d + d];
                        for (a, &v) in acc.iter_mut().zip(vr) {
                            *a += w * v;
                        }
                    }
                    let inv = 1.0 / sum;
                    for (i, &a) in acc.iter().enumerate() {
                        // SAFETY: job j owns o[(t*nh + h)*d .. +d], inside o (len n*nh*d).
                        unsafe { *out.get().add((t * nh + h) * d + i) = a * inv };
                    }
                }
            })
            .map_err(InferError::core("attention"))
    }

    /// One batch of at most [`MAX_BATCH`] tokens; logits when asked.
    fn forward_batch(&self, st: &mut State, tokens: &[u32], want: Option<Logits>) -> Result<()> {
        let c = self.config().clone();
        let w = &self.model.weights;
        let n = tokens.len();
        let (h, kvd) = (c.hidden, c.kv_dim());
        let mut s = std::mem::take(&mut st.s);
        s.x.resize(n * h, 0.0);
        {
            let MatrixRef::Quant(emb) = w.embed.matrix()? else {
                return Err(InferError::UnsupportedTensorType {
                    name: w.embed.name.clone(),
                    ty: format!("{:?}", w.embed.ty),
                });
            };
            for (t, &tok) in tokens.iter().enumerate() {
                emb.row_f32(tok as usize, &mut s.x[t * h..(t + 1) * h])
                    .map_err(InferError::core("embedding lookup"))?;
            }
        }
        let result = (|| -> Result<()> {
            for (l, lw) in w.layers.iter().enumerate() {
                s.h.resize(n * h, 0.0);
                rms_norm(&s.x, &lw.attn_norm, c.norm_eps, &mut s.h);
                let hx = std::mem::take(&mut s.h);
                let (mut q, mut k, mut v) =
                    (std::mem::take(&mut s.q), std::mem::take(&mut s.k), std::mem::take(&mut s.v));
                self.linear(&lw.wq, &hx, n, &mut s, &mut q)?;
                self.linear(&lw.wk, &hx, n, &mut s, &mut k)?;
                self.linear(&lw.wv, &hx, n, &mut s, &mut v)?;
                self.rope(&mut q, c.n_heads, st.pos);
                self.rope(&mut k, c.n_kv_heads, st.pos);
                let base = l * st.ctx * kvd + st.pos * kvd;
                st.k[base..base + n * kvd].copy_from_slice(&k);
                st.v[base..base + n * kvd].copy_from_slice(&v);
                (s.h, s.q, s.k, s.v) = (hx, q, k, v);
                st.s = std::mem::take(&mut s);
                let r = self.attention(st, l, n);
                s = std::mem::take(&mut st.s);
                r?;
                let mut o = std::mem::take(&mut s.o);
                if let Some(sn) = &lw.attn_sub_norm {
                    rms_norm_inplace(&mut o, sn, c.norm_eps);
                }
                let mut att = std::mem::take(&mut s.att);
                self.linear(&lw.wo, &o, n, &mut s, &mut att)?;
                s.x.iter_mut().zip(&att).for_each(|(x, a)| *x += a);
                (s.o, s.att) = (o, att);

                rms_norm(&s.x, &lw.ffn_norm, c.norm_eps, &mut s.h);
                let hx = std::mem::take(&mut s.h);
                let (mut g, mut u) = (std::mem::take(&mut s.gate), std::mem::take(&mut s.up));
                self.linear(&lw.w_gate, &hx, n, &mut s, &mut g)?;
                self.linear(&lw.w_up, &hx, n, &mut s, &mut u)?;
                match c.ffn_act {
                    FfnAct::Silu => g.iter_mut().zip(&u).for_each(|(g, u)| {
                        *g = *g / (1.0 + (-*g).exp()) * u;
                    }),
                    FfnAct::Relu2 => g.iter_mut().zip(&u).for_each(|(g, u)| {
                        let r = g.max(0.0);
                        *g = r * r * u;
                    }),
                }
                if let Some(sn) = &lw.ffn_sub_norm {
                    rms_norm_inplace(&mut g, sn, c.norm_eps);
                }
                let mut down = std::mem::take(&mut s.att);
                self.linear(&lw.w_down, &g, n, &mut s, &mut down)?;
                s.x.iter_mut().zip(&down).for_each(|(x, a)| *x += a);
                (s.h, s.gate, s.up, s.att) = (hx, g, u, down);
            }
            if let Some(want) = want {
                let (first, m) = match want {
                    Logits::Last => (n - 1, 1),
                    Logits::All => (0, n),
                };
                let mut hx = std::mem::take(&mut s.h);
                hx.resize(m * h, 0.0);
                rms_norm(&s.x[first * h..], &w.final_norm, c.norm_eps, &mut hx);
                let mut logits = std::mem::take(&mut s.logits);
                self.linear(w.head(), &hx, m, &mut s, &mut logits)?;
                (s.h, s.logits) = (hx, logits);
            }
            Ok(())
        })();
        st.s = s;
        result?;
        st.pos += n;
        Ok(())
    }
}
