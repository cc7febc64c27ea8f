//! One causal decoder for both architectures: `BitNetForCausalLM` (sub-norms, BitLinear, ReLU²)
//! and `LlamaForCausalLM` (no sub-norms, usually plain linears and SiLU).

use super::config::ModelConfig;
use super::params::{init_rng, Init, ParamStore};
use crate::error::Result;
use crate::fused::cross_entropy::CausalCrossEntropyOp;
use crate::fused::embedding::EmbeddingOp;
use crate::fused::OpPath;
use crate::layers::{causal_mask, Attention, BitLinear, Ffn, RmsNorm, Rope};
use candle_core::{Device, Tensor, D};

#[derive(Debug, Clone)]
struct Block {
    input_layernorm: RmsNorm,
    attn: Attention,
    post_attention_layernorm: RmsNorm,
    mlp: Ffn,
}

/// A decoder-only language model over a [`ParamStore`] of latent weights.
#[derive(Debug)]
pub struct CausalLm {
    pub config: ModelConfig,
    pub params: ParamStore,
    embed: Tensor,
    blocks: Vec<Block>,
    norm: RmsNorm,
    lm_head: Option<Tensor>,
    rope: Rope,
    device: Device,
    path: OpPath,
}

impl CausalLm {
    /// Builds the model with weights `N(0, initializer_range^2)` (norms at 1) drawn from a
    /// generator seeded with `seed`.
    pub fn new(config: &ModelConfig, seed: u64, device: &Device) -> Result<Self> {
        config.validate().map_err(crate::TrainError::Invalid)?;
        let c = config;
        let mut rng = init_rng(seed);
        let mut p = ParamStore::new();
        let std = Init::Normal(c.initializer_range);
        let (h, i, hd) = (c.hidden_size, c.intermediate_size, c.head_dim());
        let (nh, nkv) = (c.num_attention_heads, c.kv_heads());
        let (quant, had, eps) = (c.quant(), c.hadamard(), c.rms_norm_eps);
        let sub = c.has_sub_norms();

        let embed =
            p.add("model.embed_tokens.weight", &[c.vocab_size, h], std, &mut rng, device)?;
        let mut blocks = Vec::with_capacity(c.num_hidden_layers);
        for l in 0..c.num_hidden_layers {
            let pre = format!("model.layers.{l}");
            let mut lin =
                |name: &str, out: usize, inp: usize, hadamard: bool| -> Result<BitLinear> {
                    let w =
                        p.add(&format!("{pre}.{name}.weight"), &[out, inp], std, &mut rng, device)?;
                    Ok(BitLinear::new(w, quant, hadamard)?)
                };
            let q_proj = lin("self_attn.q_proj", nh * hd, h, false)?;
            let k_proj = lin("self_attn.k_proj", nkv * hd, h, false)?;
            let v_proj = lin("self_attn.v_proj", nkv * hd, h, false)?;
            let o_proj = lin("self_attn.o_proj", h, nh * hd, had)?;
            let gate_proj = lin("mlp.gate_proj", i, h, false)?;
            let up_proj = lin("mlp.up_proj", i, h, false)?;
            let down_proj = lin("mlp.down_proj", h, i, had)?;
            let mut norm = |name: &str, n: usize| -> Result<RmsNorm> {
                let w =
                    p.add(&format!("{pre}.{name}.weight"), &[n], Init::Ones, &mut rng, device)?;
                Ok(RmsNorm::new(w, eps))
            };
            let input_layernorm = norm("input_layernorm", h)?;
            let post_attention_layernorm = norm("post_attention_layernorm", h)?;
            let attn_sub = if sub { Some(norm("self_attn.attn_sub_norm", nh * hd)?) } else { None };
            let ffn_sub = if sub { Some(norm("mlp.ffn_sub_norm", i)?) } else { None };
            blocks.push(Block {
                input_layernorm,
                attn: Attention {
                    q_proj,
                    k_proj,
                    v_proj,
                    o_proj,
                    sub_norm: attn_sub,
                    n_heads: nh,
                    n_kv_heads: nkv,
                    head_dim: hd,
                    path: OpPath::default(),
                },
                post_attention_layernorm,
                mlp: Ffn {
                    gate_proj,
                    up_proj,
                    down_proj,
                    sub_norm: ffn_sub,
                    act: c.hidden_act,
                    path: OpPath::default(),
                },
            });
        }
        let norm_w = p.add("model.norm.weight", &[h], Init::Ones, &mut rng, device)?;
        let lm_head = if c.tie_word_embeddings {
            None
        } else {
            Some(p.add("lm_head.weight", &[c.vocab_size, h], std, &mut rng, device)?)
        };
        let rope = Rope::new(hd, c.max_position_embeddings, c.rope_theta, device)?;
        Ok(Self {
            config: c.clone(),
            params: p,
            embed,
            blocks,
            norm: RmsNorm::new(norm_w, eps),
            lm_head,
            rope,
            device: device.clone(),
            path: OpPath::default(),
        })
    }

    /// Runs every layer on the fused ops or on the composed reference ([`OpPath`]); the fused
    /// ops apply on the CPU only. Drops the cached weight quantization.
    pub fn set_path(&mut self, path: OpPath) {
        self.path = path;
        for b in &mut self.blocks {
            b.input_layernorm.set_path(path);
            b.attn.set_path(path);
            b.post_attention_layernorm.set_path(path);
            b.mlp.set_path(path);
        }
        self.norm.set_path(path);
    }

    fn fused(&self) -> bool {
        self.path.fused_on(&self.device)
    }

    fn linears(&self) -> impl Iterator<Item = &BitLinear> {
        self.blocks.iter().flat_map(|b| {
            let (a, m) = (&b.attn, &b.mlp);
            [&a.q_proj, &a.k_proj, &a.v_proj, &a.o_proj, &m.gate_proj, &m.up_proj, &m.down_proj]
        })
    }

    /// Quantizes every BitLinear's current weights once for the following forward passes (see
    /// [`BitLinear::cache_weight_quant`]); call again after the weights change.
    pub fn cache_weight_quant(&self) -> Result<()> {
        for l in self.linears() {
            l.cache_weight_quant()?;
        }
        Ok(())
    }

    /// [`Self::cache_weight_quant`] with the layers shared out among the threads of `pool`.
    pub fn cache_weight_quant_on(&self, pool: &bitnet_core::kernels::ThreadPool) -> Result<()> {
        let layers: Vec<&BitLinear> = self.linears().collect();
        crate::trainer::par::par_each(
            pool,
            &layers,
            |l| l.weight().elem_count(),
            |l| Ok(l.cache_weight_quant()?),
        )
    }

    /// Drops the cached weight quantization: forward passes quantize on the fly again.
    pub fn clear_weight_quant(&self) {
        self.linears().for_each(BitLinear::clear_weight_quant);
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// `ids`: `[batch, seq]` (u32) → logits `[batch, seq, vocab]`.
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        if t > self.rope.max_positions() {
            return Err(crate::TrainError::Invalid(format!(
                "sequence of {t} tokens is longer than max_position_embeddings {}",
                self.rope.max_positions()
            )));
        }
        let h = self.config.hidden_size;
        let mut x = if self.fused() {
            self.embed.apply_op2(&ids.contiguous()?, EmbeddingOp)?
        } else {
            self.embed.index_select(&ids.flatten_all()?, 0)?.reshape((b, t, h))?
        };
        let mask = if self.fused() { None } else { Some(causal_mask(t, &self.device)?) };
        for blk in &self.blocks {
            let a =
                blk.attn.forward(&blk.input_layernorm.forward(&x)?, &self.rope, mask.as_ref())?;
            x = (x + a)?;
            let m = blk.mlp.forward(&blk.post_attention_layernorm.forward(&x)?)?;
            x = (x + m)?;
        }
        let x = self.norm.forward(&x)?;
        let head = self.lm_head.as_ref().unwrap_or(&self.embed);
        Ok(crate::layers::bitlinear::matmul_t(&x, head)?)
    }

    /// Mean next-token cross-entropy with Hugging Face's label convention: `labels` has the
    /// shape of the input and is shifted here (logits at position `t` predict `labels[t + 1]`).
    pub fn loss(&self, ids: &Tensor, labels: &Tensor) -> Result<Tensor> {
        let logits = self.forward(ids)?;
        if self.fused() {
            return Ok(logits.apply_op2(&labels.contiguous()?, CausalCrossEntropyOp::new())?);
        }
        causal_lm_loss(&logits, labels)
    }
}

/// `logits[:, :-1]` against `labels[:, 1:]`, mean over all positions.
pub fn causal_lm_loss(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let (b, t, v) = logits.dims3()?;
    let logits = logits.narrow(1, 0, t - 1)?.reshape((b * (t - 1), v))?;
    let targets = labels.narrow(1, 1, t - 1)?.flatten_all()?;
    Ok(cross_entropy(&logits, &targets)?)
}

/// Mean `-log softmax(logits)[target]` from differentiable primitives (the row max is detached).
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> candle_core::Result<Tensor> {
    let max = logits.max_keepdim(D::Minus1)?.detach();
    let shifted = logits.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    let picked = shifted.gather(&targets.unsqueeze(1)?, 1)?;
    (lse - picked)?.mean_all()
}
