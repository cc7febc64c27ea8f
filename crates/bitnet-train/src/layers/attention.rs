//! Causal grouped-query self-attention. The BitNet variant normalizes the attention output with
//! `attn_sub_norm` before `o_proj`.

use super::{softmax_last_dim, BitLinear, RmsNorm, Rope};
use crate::fused::attention::AttentionOp;
use crate::fused::OpPath;
use candle_core::{Device, Result, Tensor};

#[derive(Debug, Clone)]
pub struct Attention {
    pub q_proj: BitLinear,
    pub k_proj: BitLinear,
    pub v_proj: BitLinear,
    pub o_proj: BitLinear,
    pub sub_norm: Option<RmsNorm>,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub path: OpPath,
}

/// `[seq, seq]` additive mask: 0 on and below the diagonal, -inf above it.
pub fn causal_mask(seq: usize, device: &Device) -> Result<Tensor> {
    let m: Vec<f32> = (0..seq)
        .flat_map(|i| (0..seq).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Tensor::from_vec(m, (seq, seq), device)
}

impl Attention {
    pub fn set_path(&mut self, path: OpPath) {
        self.path = path;
        for l in [&mut self.q_proj, &mut self.k_proj, &mut self.v_proj, &mut self.o_proj] {
            l.set_path(path);
        }
        if let Some(n) = &mut self.sub_norm {
            n.set_path(path);
        }
    }

    /// `x`: `[batch, seq, hidden]`; `mask`: from [`causal_mask`], shared by the layers of one
    /// forward (the composed path builds its own when none is given; the fused one needs none).
    pub fn forward(&self, x: &Tensor, rope: &Rope, mask: Option<&Tensor>) -> Result<Tensor> {
        if self.path.fused_on(x.device()) {
            return self.forward_fused(x, rope);
        }
        let (b, t, _) = x.dims3()?;
        let (nh, nkv, hd) = (self.n_heads, self.n_kv_heads, self.head_dim);
        let split = |y: Tensor, heads: usize| -> Result<Tensor> {
            y.reshape((b, t, heads, hd))?.transpose(1, 2)?.contiguous()
        };
        let q = rope.apply(&split(self.q_proj.forward(x)?, nh)?)?;
        let k = rope.apply(&split(self.k_proj.forward(x)?, nkv)?)?;
        let v = split(self.v_proj.forward(x)?, nkv)?;
        let (k, v) = (repeat_kv(&k, nh / nkv)?, repeat_kv(&v, nh / nkv)?);

        let mask = match mask {
            Some(m) => m.clone(),
            None => causal_mask(t, x.device())?,
        };
        let scores = (q.matmul(&k.t()?)? / (hd as f64).sqrt())?.broadcast_add(&mask)?;
        let probs = softmax_last_dim(&scores)?;
        let y = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, t, nh * hd))?;
        let y = match &self.sub_norm {
            Some(n) => n.forward(&y)?,
            None => y,
        };
        self.o_proj.forward(&y)
    }

    /// The fused path: RoPE and attention in one op on the projections' outputs.
    fn forward_fused(&self, x: &Tensor, rope: &Rope) -> Result<Tensor> {
        let (q, k, v) = (self.q_proj.forward(x)?, self.k_proj.forward(x)?, self.v_proj.forward(x)?);
        let op = AttentionOp::new(self.n_heads, self.n_kv_heads, Some(rope.fused_op()));
        let y = q.contiguous()?.apply_op3(&k.contiguous()?, &v.contiguous()?, op)?;
        let y = match &self.sub_norm {
            Some(n) => n.forward(&y)?,
            None => y,
        };
        self.o_proj.forward(&y)
    }
}

/// `[b, n_kv, t, d]` → `[b, n_kv * rep, t, d]`, each kv head repeated `rep` times in a row.
pub fn repeat_kv(x: &Tensor, rep: usize) -> Result<Tensor> {
    if rep == 1 {
        return Ok(x.clone());
    }
    let (b, nkv, t, d) = x.dims4()?;
    x.unsqueeze(2)?.expand((b, nkv, rep, t, d))?.reshape((b, nkv * rep, t, d))
}
