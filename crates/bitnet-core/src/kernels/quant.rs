//! Matrices in llama.cpp's non-ternary weight types (`F32`, `F16`, `BF16`, `Q8_0`, `Q4_0`, `Q4_1`,
//! `Q6_K`) and their dot products with the activation type llama.cpp pairs each one with
//! (`Q8_0`, `Q8_1`, `Q8_K`, or plain f32): the path of pretrained models such as SmolLM2 and of
//! the embeddings and heads of ternary models. Scalar loops; the compiler vectorises them.

use super::matrix::cast;
use super::{Isa, Matmul};
use crate::format::q4::{dequantize_row_q4_0_into, dequantize_row_q4_1_into};
use crate::format::q6_k::dequantize_row_q6_k_into;
use crate::format::q8_0::{
    dequantize_row_q8_0_into, quantize_row_q8_0_into, quantize_row_q8_1_into, QK8_0,
};
use crate::format::q8k::quantize_row_q8k_into;
use crate::format::{
    check_len, check_multiple, BlockQ4_0, BlockQ4_1, BlockQ6K, BlockQ8K, BlockQ8_0, BlockQ8_1,
    GgmlType, QK_K,
};
use crate::{CoreError, Result};
use half::{bf16, f16};

/// The packed weights of a (rows, cols) matrix, row-major.
#[derive(Debug, Clone, Copy)]
pub enum QuantView<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
    BF16(&'a [bf16]),
    Q8_0(&'a [BlockQ8_0]),
    Q4_0(&'a [BlockQ4_0]),
    Q4_1(&'a [BlockQ4_1]),
    Q6K(&'a [BlockQ6K]),
}

/// The activation type a weight type is multiplied with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActKind {
    F32,
    Q8_0,
    Q8_1,
    Q8K,
}

/// A validated (rows, cols) matrix of a llama.cpp weight type.
#[derive(Debug, Clone, Copy)]
pub struct QuantMatrix<'a> {
    view: QuantView<'a>,
    rows: usize,
    cols: usize,
}

/// Row `r` of a row-major buffer with `per_row` items per row.
#[inline]
fn row<T>(v: &[T], r: usize, per_row: usize) -> &[T] {
    &v[r * per_row..(r + 1) * per_row]
}

impl<'a> QuantMatrix<'a> {
    /// Checks that `view` holds exactly (rows, cols) values.
    pub fn new(view: QuantView<'a>, rows: usize, cols: usize) -> Result<Self> {
        let n = rows.checked_mul(cols).ok_or(CoreError::ShapeMismatch {
            name: "matrix size",
            expected: usize::MAX,
            got: rows,
        })?;
        let (block, len) = match view {
            QuantView::F32(v) => (1, v.len()),
            QuantView::F16(v) => (1, v.len()),
            QuantView::BF16(v) => (1, v.len()),
            QuantView::Q8_0(v) => (QK8_0, v.len()),
            QuantView::Q4_0(v) => (QK8_0, v.len()),
            QuantView::Q4_1(v) => (QK8_0, v.len()),
            QuantView::Q6K(v) => (QK_K, v.len()),
        };
        check_multiple("quantized matrix columns", cols, block)?;
        check_len("quantized matrix blocks", n / block, len)?;
        Ok(Self { view, rows, cols })
    }

    /// A matrix from the raw bytes of a tensor of type `ty`.
    pub fn from_bytes(ty: GgmlType, bytes: &'a [u8], rows: usize, cols: usize) -> Result<Self> {
        let view = match ty {
            GgmlType::F32 => QuantView::F32(cast("F32 tensor", bytes)?),
            GgmlType::F16 => QuantView::F16(cast("F16 tensor", bytes)?),
            GgmlType::BF16 => QuantView::BF16(cast("BF16 tensor", bytes)?),
            GgmlType::Q8_0 => QuantView::Q8_0(cast("Q8_0 tensor", bytes)?),
            GgmlType::Q4_0 => QuantView::Q4_0(cast("Q4_0 tensor", bytes)?),
            GgmlType::Q4_1 => QuantView::Q4_1(cast("Q4_1 tensor", bytes)?),
            GgmlType::Q6K => QuantView::Q6K(cast("Q6_K tensor", bytes)?),
            other => return Err(CoreError::UnknownTypeId { id: other.id() }),
        };
        Self::new(view, rows, cols)
    }

    pub fn view(&self) -> QuantView<'a> {
        self.view
    }
    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The activation type llama.cpp multiplies this weight type with.
    pub fn act_kind(&self) -> ActKind {
        match self.view {
            QuantView::F32(_) | QuantView::F16(_) | QuantView::BF16(_) => ActKind::F32,
            QuantView::Q8_0(_) | QuantView::Q4_0(_) => ActKind::Q8_0,
            QuantView::Q4_1(_) => ActKind::Q8_1,
            QuantView::Q6K(_) => ActKind::Q8K,
        }
    }

    /// Bytes of weights one pass over the matrix reads.
    pub fn weight_bytes(&self) -> usize {
        match self.view {
            QuantView::F32(v) => std::mem::size_of_val(v),
            QuantView::F16(v) => std::mem::size_of_val(v),
            QuantView::BF16(v) => std::mem::size_of_val(v),
            QuantView::Q8_0(v) => std::mem::size_of_val(v),
            QuantView::Q4_0(v) => std::mem::size_of_val(v),
            QuantView::Q4_1(v) => std::mem::size_of_val(v),
            QuantView::Q6K(v) => std::mem::size_of_val(v),
        }
    }

    /// Dequantizes row `r` into `out` (`cols` values): an embedding lookup.
    pub fn row_f32(&self, r: usize, out: &mut [f32]) -> Result<()> {
        check_len("row_f32 output", self.cols, out.len())?;
        if r >= self.rows {
            return Err(CoreError::ShapeMismatch {
                name: "row index",
                expected: self.rows,
                got: r,
            });
        }
        let c = self.cols;
        let (b32, b256) = (c / QK8_0, c / QK_K);
        match self.view {
            QuantView::F32(v) => out.copy_from_slice(row(v, r, c)),
            QuantView::F16(v) => {
                out.iter_mut().zip(row(v, r, c)).for_each(|(o, x)| *o = x.to_f32())
            }
            QuantView::BF16(v) => {
                out.iter_mut().zip(row(v, r, c)).for_each(|(o, x)| *o = x.to_f32())
            }
            QuantView::Q8_0(v) => dequantize_row_q8_0_into(row(v, r, b32), out),
            QuantView::Q4_0(v) => dequantize_row_q4_0_into(row(v, r, b32), out),
            QuantView::Q4_1(v) => dequantize_row_q4_1_into(row(v, r, b32), out),
            QuantView::Q6K(v) => dequantize_row_q6_k_into(row(v, r, b256), out),
        }
        Ok(())
    }
}

/// Quantized activations of `n_tokens` tokens, reused across calls.
#[derive(Debug, Default, Clone)]
pub struct QuantActs {
    f32: Vec<f32>,
    q8_0: Vec<BlockQ8_0>,
    q8_1: Vec<BlockQ8_1>,
    q8k: Vec<BlockQ8K>,
    kind: Option<ActKind>,
    cols: usize,
    n_tokens: usize,
}

impl QuantActs {
    /// Quantizes `x` (n_tokens × cols, row-major) for weights that take `kind`.
    pub fn quantize(&mut self, kind: ActKind, x: &[f32], cols: usize) -> Result<()> {
        if cols == 0 {
            return Err(CoreError::ShapeMismatch {
                name: "activation columns",
                expected: 1,
                got: 0,
            });
        }
        check_multiple("activations", x.len(), cols)?;
        match kind {
            ActKind::F32 => {
                self.f32.clear();
                self.f32.extend_from_slice(x);
            }
            ActKind::Q8_0 => quantize_row_q8_0_into(x, &mut self.q8_0)?,
            ActKind::Q8_1 => quantize_row_q8_1_into(x, &mut self.q8_1)?,
            ActKind::Q8K => quantize_row_q8k_into(x, &mut self.q8k)?,
        }
        self.kind = Some(kind);
        self.cols = cols;
        self.n_tokens = x.len() / cols;
        Ok(())
    }

    pub fn n_tokens(&self) -> usize {
        self.n_tokens
    }
}

/// The block dot products of one instruction-set path.
#[derive(Clone, Copy)]
struct QuantDots {
    q8_0: fn(&[BlockQ8_0], &[BlockQ8_0]) -> f32,
    q4_0: fn(&[BlockQ4_0], &[BlockQ8_0]) -> f32,
    q4_1: fn(&[BlockQ4_1], &[BlockQ8_1]) -> f32,
    q6_k: fn(&[BlockQ6K], &[BlockQ8K]) -> f32,
    f16: fn(&[f16], &[f32]) -> f32,
    bf16: fn(&[bf16], &[f32]) -> f32,
}

impl QuantDots {
    const SCALAR: Self = Self {
        q8_0: vec_dot_q8_0_q8_0,
        q4_0: vec_dot_q4_0_q8_0,
        q4_1: vec_dot_q4_1_q8_1,
        q6_k: vec_dot_q6_k_q8_k,
        f16: dot_f16_f32,
        bf16: dot_bf16_f32,
    };

    /// Every path above scalar implies AVX2 and F16C.
    fn for_isa(isa: Isa) -> Self {
        match isa {
            Isa::Scalar => Self::SCALAR,
            #[cfg(target_arch = "x86_64")]
            _ => {
                use super::x86_64::quant_avx2 as k;
                Self {
                    // SAFETY: a non-scalar table exists only where AVX2 and F16C were detected
                    // (`Kernels::new`).
                    q8_0: |w, x| unsafe { k::vec_dot_q8_0_q8_0(w, x) },
                    // SAFETY: as above.
                    q4_0: |w, x| unsafe { k::vec_dot_q4_0_q8_0(w, x) },
                    // SAFETY: as above.
                    q4_1: |w, x| unsafe { k::vec_dot_q4_1_q8_1(w, x) },
                    // SAFETY: as above.
                    q6_k: |w, x| unsafe { k::vec_dot_q6_k_q8_k(w, x) },
                    // SAFETY: as above.
                    f16: |w, x| unsafe { k::dot_f16_f32(w, x) },
                    // SAFETY: as above.
                    bf16: |w, x| unsafe { k::dot_bf16_f32(w, x) },
                }
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => Self::SCALAR,
        }
    }
}

/// `W[r, :] · x[t, :]` for one row and one token; `m` and `a` must have been checked together.
fn dot_row(d: &QuantDots, m: &QuantMatrix<'_>, r: usize, a: &QuantActs, t: usize) -> f32 {
    let c = m.cols;
    let (b32, b256) = (c / QK8_0, c / QK_K);
    match m.view {
        QuantView::F32(w) => dot_f32(row(w, r, c), row(&a.f32, t, c)),
        QuantView::F16(w) => (d.f16)(row(w, r, c), row(&a.f32, t, c)),
        QuantView::BF16(w) => (d.bf16)(row(w, r, c), row(&a.f32, t, c)),
        QuantView::Q8_0(w) => (d.q8_0)(row(w, r, b32), row(&a.q8_0, t, b32)),
        QuantView::Q4_0(w) => (d.q4_0)(row(w, r, b32), row(&a.q8_0, t, b32)),
        QuantView::Q4_1(w) => (d.q4_1)(row(w, r, b32), row(&a.q8_1, t, b32)),
        QuantView::Q6K(w) => (d.q6_k)(row(w, r, b256), row(&a.q8k, t, b256)),
    }
}

/// f32 dot product with sixteen partial sums, so the compiler vectorises it (inlined into
/// `#[target_feature]` callers, it uses their wider registers).
#[inline(always)]
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..16 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// f16 weights · f32 activations (the reference: widen each weight, add in order).
pub fn dot_f16_f32(w: &[f16], x: &[f32]) -> f32 {
    w.iter().zip(x).map(|(w, x)| w.to_f32() * x).sum()
}

/// bf16 weights · f32 activations (the reference).
pub fn dot_bf16_f32(w: &[bf16], x: &[f32]) -> f32 {
    w.iter().zip(x).map(|(w, x)| w.to_f32() * x).sum()
}

/// ggml `vec_dot_q8_0_q8_0`: per block `d_w * d_x * sum(q_w * q_x)`.
pub fn vec_dot_q8_0_q8_0(w: &[BlockQ8_0], x: &[BlockQ8_0]) -> f32 {
    w.iter()
        .zip(x)
        .map(|(w, x)| {
            let s: i32 = w.qs.iter().zip(&x.qs).map(|(&a, &b)| a as i32 * b as i32).sum();
            s as f32 * (w.d.to_f32() * x.d.to_f32())
        })
        .sum()
}

/// ggml `vec_dot_q4_0_q8_0`: per block `d_w * d_x * sum((q_w - 8) * q_x)`.
pub fn vec_dot_q4_0_q8_0(w: &[BlockQ4_0], x: &[BlockQ8_0]) -> f32 {
    w.iter()
        .zip(x)
        .map(|(w, x)| {
            let (mut s, mut sx) = (0i32, 0i32);
            for j in 0..QK8_0 / 2 {
                let b = w.qs[j];
                let (x0, x1) = (x.qs[j] as i32, x.qs[j + QK8_0 / 2] as i32);
                s += (b & 0x0f) as i32 * x0 + (b >> 4) as i32 * x1;
                sx += x0 + x1;
            }
            (s - 8 * sx) as f32 * (w.d.to_f32() * x.d.to_f32())
        })
        .sum()
}

/// ggml `vec_dot_q4_1_q8_1`: per block `d_w * d_x * sum(q_w * q_x) + m_w * s_x`.
pub fn vec_dot_q4_1_q8_1(w: &[BlockQ4_1], x: &[BlockQ8_1]) -> f32 {
    w.iter()
        .zip(x)
        .map(|(w, x)| {
            let mut s = 0i32;
            for j in 0..QK8_0 / 2 {
                let b = w.qs[j];
                s += (b & 0x0f) as i32 * x.qs[j] as i32
                    + (b >> 4) as i32 * x.qs[j + QK8_0 / 2] as i32;
            }
            s as f32 * (w.d.to_f32() * x.d.to_f32()) + w.m.to_f32() * x.s.to_f32()
        })
        .sum()
}

/// ggml `vec_dot_q6_K_q8_K`: per block `d_w * d_x * sum_g scale_g * sum_{i in g}(q_w * q_x)`.
pub fn vec_dot_q6_k_q8_k(w: &[BlockQ6K], x: &[BlockQ8K]) -> f32 {
    w.iter()
        .zip(x)
        .map(|(w, x)| {
            let codes = w.codes();
            let mut isum = 0i32;
            for g in 0..QK_K / 16 {
                let s: i32 = (16 * g..16 * g + 16).map(|i| codes[i] as i32 * x.qs[i] as i32).sum();
                isum += w.scale_of(16 * g) as i32 * s;
            }
            w.d.to_f32() * x.d * isum as f32
        })
        .sum()
}

impl Matmul {
    /// `y[t, r] = W[r, :] · x[t, :]` for the tokens in `a` (quantized with `m.act_kind()`).
    pub fn gemm_quant(&self, m: &QuantMatrix<'_>, a: &QuantActs, y: &mut [f32]) -> Result<()> {
        if a.kind != Some(m.act_kind()) || a.cols != m.cols {
            return Err(CoreError::ShapeMismatch {
                name: "gemm_quant activations (columns)",
                expected: m.cols,
                got: a.cols,
            });
        }
        let (rows, n_tokens) = (m.rows, a.n_tokens);
        check_len("gemm_quant output", n_tokens * rows, y.len())?;
        let dots = QuantDots::for_isa(self.kernels().isa);
        self.run_tiled(rows, n_tokens, y, |r, t| dot_row(&dots, m, r, a, t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> u32 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (*seed >> 33) as u32
    }

    /// Random blocks: codes over the whole range; `unit` gives d = 1, m = 0 so that every
    /// path must return the exact integer sum.
    fn blocks(
        n: usize,
        unit: bool,
        seed: &mut u64,
    ) -> (Vec<BlockQ8_0>, Vec<BlockQ4_0>, Vec<BlockQ4_1>, Vec<BlockQ8_1>) {
        let scale = |s: &mut u64| {
            if unit {
                f16::ONE
            } else {
                f16::from_f32((lcg(s) % 1000) as f32 / 997.0 - 0.3)
            }
        };
        let (mut q8, mut q40, mut q41, mut a81) = (vec![], vec![], vec![], vec![]);
        for _ in 0..n {
            let mut qs = [0i8; 32];
            qs.iter_mut().for_each(|q| *q = ((lcg(seed) % 255) as i32 - 127) as i8);
            q8.push(BlockQ8_0 { d: scale(seed), qs });
            let mut nib = [0u8; 16];
            nib.iter_mut().for_each(|b| *b = lcg(seed) as u8);
            q40.push(BlockQ4_0 { d: scale(seed), qs: nib });
            let m = if unit { f16::ZERO } else { scale(seed) };
            q41.push(BlockQ4_1 { d: scale(seed), m, qs: nib });
            let mut xs = [0i8; 32];
            xs.iter_mut().for_each(|q| *q = ((lcg(seed) % 255) as i32 - 127) as i8);
            let s = if unit { f16::ZERO } else { scale(seed) };
            a81.push(BlockQ8_1 { d: scale(seed), s, qs: xs });
        }
        (q8, q40, q41, a81)
    }

    /// Random Q6_K blocks (every byte random, so codes and scales cover their whole ranges) and
    /// Q8_K activations; `unit` gives unit scales, group scales in -3..=3 and activations in
    /// -8..=8, so that every partial sum (at most 27 × 256 × 32 × 3 × 8 < 2^24) is exact in f32
    /// in any order and every path must return the exact sum. (With full-range scales and
    /// activations the sums pass 2^24, and summing per-lane f32 values rounds differently from
    /// converting one i32 sum.)
    fn q6_k_blocks(n: usize, unit: bool, seed: &mut u64) -> (Vec<BlockQ6K>, Vec<BlockQ8K>) {
        let mut w = vec![BlockQ6K { ql: [0; 128], qh: [0; 64], scales: [0; 16], d: f16::ONE }; n];
        let mut x = Vec::with_capacity(n);
        for b in w.iter_mut() {
            b.ql.iter_mut().for_each(|v| *v = lcg(seed) as u8);
            b.qh.iter_mut().for_each(|v| *v = lcg(seed) as u8);
            let small = |seed: &mut u64, m: u32| (lcg(seed) % (2 * m + 1)) as i8 - m as i8;
            if unit {
                b.scales.iter_mut().for_each(|v| *v = small(seed, 3));
            } else {
                b.scales.iter_mut().for_each(|v| *v = lcg(seed) as i8);
            }
            let mut qs = [0i8; QK_K];
            if unit {
                qs.iter_mut().for_each(|q| *q = small(seed, 8));
            } else {
                qs.iter_mut().for_each(|q| *q = lcg(seed) as i8);
            }
            let (dw, dx) = match unit {
                true => (1.0, 1.0),
                false => ((lcg(seed) % 1000) as f32 / 997.0 - 0.3, (lcg(seed) % 100) as f32 / 1e4),
            };
            b.d = f16::from_f32(dw);
            x.push(BlockQ8K::with_codes(dx, qs));
        }
        (w, x)
    }

    #[test]
    fn simd_q6_k_dot_matches_the_scalar_reference() {
        let mut seed = 3;
        for isa in Isa::ALL.into_iter().filter(|i| i.is_available()) {
            let d = QuantDots::for_isa(isa);
            for n in [1, 2, 5, 10, 27] {
                for unit in [true, false] {
                    let (w, x) = q6_k_blocks(n, unit, &mut seed);
                    let (got, want) = ((d.q6_k)(&w, &x), vec_dot_q6_k_q8_k(&w, &x));
                    if unit {
                        assert_eq!(got, want, "{isa:?} q6_k, {n} blocks");
                    } else {
                        let tol = 2e-6 * (1.0 + want.abs()) * (n as f32).sqrt();
                        assert!((got - want).abs() <= tol, "{isa:?} q6_k: {got} vs {want}");
                    }
                }
            }
        }
    }

    #[test]
    fn simd_block_dots_match_the_scalar_reference() {
        let mut seed = 7;
        for isa in Isa::ALL.into_iter().filter(|i| i.is_available()) {
            let d = QuantDots::for_isa(isa);
            for n in [1, 2, 5, 18, 63] {
                for unit in [true, false] {
                    let (w8, w40, w41, x81) = blocks(n, unit, &mut seed);
                    let (_, _, _, x) = blocks(n, unit, &mut seed);
                    let x8: Vec<BlockQ8_0> =
                        x.iter().map(|b| BlockQ8_0 { d: b.d, qs: b.qs }).collect();
                    let pairs = [
                        ((d.q8_0)(&w8, &x8), vec_dot_q8_0_q8_0(&w8, &x8)),
                        ((d.q4_0)(&w40, &x8), vec_dot_q4_0_q8_0(&w40, &x8)),
                        ((d.q4_1)(&w41, &x81), vec_dot_q4_1_q8_1(&w41, &x81)),
                    ];
                    let wf: Vec<f16> = x8
                        .iter()
                        .flat_map(|b| b.qs.map(|q| f16::from_f32(q as f32 / 64.0)))
                        .collect();
                    let xf: Vec<f32> =
                        w8.iter().flat_map(|b| b.qs.map(|q| q as f32 / 32.0)).collect();
                    let (fg, fw) = ((d.f16)(&wf[1..], &xf[1..]), dot_f16_f32(&wf[1..], &xf[1..]));
                    let wb: Vec<bf16> = wf.iter().map(|v| bf16::from_f32(v.to_f32())).collect();
                    let (bg, bw) = ((d.bf16)(&wb[1..], &xf[1..]), dot_bf16_f32(&wb[1..], &xf[1..]));
                    assert!(
                        (bg - bw).abs() <= 1e-5 * (1.0 + bw.abs()) * n as f32,
                        "{isa:?} bf16: {bg} vs {bw}"
                    );
                    assert!(
                        (fg - fw).abs() <= 1e-5 * (1.0 + fw.abs()) * n as f32,
                        "{isa:?} f16: {fg} vs {fw}"
                    );
                    for (k, (got, want)) in pairs.into_iter().enumerate() {
                        if unit {
                            assert_eq!(got, want, "{isa:?} kernel {k}, {n} blocks");
                        } else {
                            let tol = 2e-6 * (1.0 + want.abs()) * (n as f32).sqrt();
                            assert!((got - want).abs() <= tol, "{isa:?} {k}: {got} vs {want}");
                        }
                    }
                }
            }
        }
    }
}
