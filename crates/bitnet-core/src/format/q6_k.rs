//! ggml `Q6_K` (type id 14): 256 weights in 210 bytes, 6.5625 bits per weight; bitnet.cpp and
//! llama.cpp use it for embeddings and output heads.
//!
//! ```text
//! offset   0..128  ql[128]    low 4 bits of the 6-bit codes
//! offset 128..192  qh[64]     high 2 bits
//! offset 192..208  scales[16] i8 scale of each group of 16 weights
//! offset 208..210  d          f16 super-block scale: x = d * scales[g] * (code - 32)
//! ```
//!
//! For half `n` (128 weights) and `l` in 0..32, with `ql`, `qh`, `scales` advanced by 64, 32, 8
//! per half, weight `l + 32k` (k in 0..4) takes its low nibble from `ql[l + 32 (k & 1)]`
//! (high nibble when `k >= 2`), its high bits from `qh[l] >> 2k`, and scale `l / 16 + 2k`.

use super::QK_K;
use half::f16;

/// One `Q6_K` block.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ6K {
    pub ql: [u8; QK_K / 2],
    pub qh: [u8; QK_K / 4],
    pub scales: [i8; QK_K / 16],
    pub d: f16,
}
const _: () = assert!(std::mem::size_of::<BlockQ6K>() == 210);

impl BlockQ6K {
    /// The signed 6-bit code (`-32..32`) of every weight, in order.
    pub fn codes(&self) -> [i8; QK_K] {
        let mut out = [0i8; QK_K];
        for n in 0..2 {
            let (ql, qh) = (&self.ql[64 * n..64 * n + 64], &self.qh[32 * n..32 * n + 32]);
            for l in 0..32 {
                for k in 0..4 {
                    let lo = (ql[l + 32 * (k & 1)] >> (4 * (k >> 1))) & 0x0f;
                    let hi = (qh[l] >> (2 * k)) & 3;
                    out[128 * n + l + 32 * k] = ((lo | hi << 4) as i8) - 32;
                }
            }
        }
        out
    }

    /// The group scale of weight `i`.
    #[inline]
    pub fn scale_of(&self, i: usize) -> i8 {
        let (n, r) = (i / 128, i % 128);
        self.scales[8 * n + (r % 32) / 16 + 2 * (r / 32)]
    }
}

/// `x = d * scales[g] * code`.
pub fn dequantize_row_q6_k(blocks: &[BlockQ6K]) -> Vec<f32> {
    let mut out = vec![0.0; blocks.len() * QK_K];
    dequantize_row_q6_k_into(blocks, &mut out);
    out
}

/// [`dequantize_row_q6_k`] into `out` (`blocks.len() * 256` values).
pub fn dequantize_row_q6_k_into(blocks: &[BlockQ6K], out: &mut [f32]) {
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        let codes = b.codes();
        for (i, o) in o.iter_mut().enumerate() {
            *o = d * b.scale_of(i) as f32 * codes[i] as f32;
        }
    }
}

/// ggml's `nearest_int`: round half to even (the magic-number trick, valid below 2^22).
#[inline]
fn nearest_int(v: f32) -> i32 {
    v.round_ties_even() as i32
}

/// Below this a group counts as all zeros (ggml's `GROUP_MAX_EPS`).
const GROUP_MAX_EPS: f32 = 1e-15;

/// ggml's `make_qx_quants(n, nmax, x, L, rmse_type = 1, NULL)`: the scale of one group and its
/// codes `L` in `0..2 nmax`, searching 19 scales near `-nmax / max` for the least weighted error
/// (weights `x²`).
fn make_qx_quants(nmax: i32, x: &[f32], l_out: &mut [i8]) -> f32 {
    let (mut max, mut amax) = (0f32, 0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        l_out.iter_mut().for_each(|l| *l = 0);
        return 0.0;
    }
    let code = |iscale: f32, v: f32| nearest_int(iscale * v).clamp(-nmax, nmax - 1);
    let sums = |iscale: f32| {
        let (mut sumlx, mut suml2) = (0f32, 0f32);
        for &v in x {
            let l = code(iscale, v) as f32;
            let w = v * v;
            sumlx += w * v * l;
            suml2 += w * l * l;
        }
        (sumlx, suml2)
    };
    let iscale = -(nmax as f32) / max;
    for (o, &v) in l_out.iter_mut().zip(x) {
        *o = (code(iscale, v) + nmax) as i8;
    }
    let (sumlx, suml2) = sums(iscale);
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in (-9..=9).filter(|&i| i != 0) {
        let iscale = -(nmax as f32 + 0.1 * is as f32) / max;
        let (sumlx, suml2) = sums(iscale);
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for (o, &v) in l_out.iter_mut().zip(x) {
                *o = (code(iscale, v) + nmax) as i8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// llama.cpp's `quantize_row_q6_K_ref` (what `llama-quantize` uses without an importance
/// matrix): a scale per 16 weights by [`make_qx_quants`], the scales quantized to int8 against
/// the block's largest, codes rounded against the quantized scales. `x.len()` must be a multiple
/// of 256.
pub fn quantize_row_q6_k(x: &[f32]) -> crate::Result<Vec<BlockQ6K>> {
    crate::format::check_multiple("quantize_row_q6_k", x.len(), QK_K)?;
    Ok(x.chunks_exact(QK_K).map(quantize_block).collect())
}

fn quantize_block(x: &[f32]) -> BlockQ6K {
    let mut l = [0i8; QK_K];
    let mut scales = [0f32; QK_K / 16];
    let (mut max_scale, mut max_abs_scale) = (0f32, 0f32);
    for (ib, s) in scales.iter_mut().enumerate() {
        *s = make_qx_quants(32, &x[16 * ib..16 * ib + 16], &mut l[16 * ib..16 * ib + 16]);
        if s.abs() > max_abs_scale {
            max_abs_scale = s.abs();
            max_scale = *s;
        }
    }
    let mut y = BlockQ6K { ql: [0; 128], qh: [0; 64], scales: [0; 16], d: f16::ZERO };
    if max_abs_scale < GROUP_MAX_EPS {
        return y;
    }
    let iscale = -128.0 / max_scale;
    y.d = f16::from_f32(1.0 / iscale);
    for (q, &s) in y.scales.iter_mut().zip(&scales) {
        *q = nearest_int(iscale * s).min(127) as i8;
    }
    for j in 0..QK_K / 16 {
        let d = y.d.to_f32() * y.scales[j] as f32;
        if d == 0.0 {
            continue;
        }
        for i in 16 * j..16 * j + 16 {
            l[i] = (nearest_int(x[i] / d).clamp(-32, 31) + 32) as i8;
        }
    }
    for n in 0..2 {
        let (j, ql, qh) = (128 * n, &mut y.ql[64 * n..64 * n + 64], &mut y.qh[32 * n..32 * n + 32]);
        for i in 0..32 {
            let c = |k: usize| l[j + i + 32 * k] as u8;
            ql[i] = (c(0) & 0xf) | (c(2) & 0xf) << 4;
            ql[i + 32] = (c(1) & 0xf) | (c(3) & 0xf) << 4;
            qh[i] = c(0) >> 4 | (c(1) >> 4) << 2 | (c(2) >> 4) << 4 | (c(3) >> 4) << 6;
        }
    }
    y
}
