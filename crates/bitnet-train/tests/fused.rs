//! Each fused training op against its composed reference (forward values and every gradient),
//! at awkward shapes: sequences of 1, 3 and 129 tokens, head counts in GQA groups, widths that
//! the integer tiles do not take (those fall back to the composed layer).

use bitnet_train::fused::adamw::sum_squares;
use bitnet_train::fused::attention::AttentionOp;
use bitnet_train::fused::cross_entropy::CausalCrossEntropyOp;
use bitnet_train::fused::embedding::EmbeddingOp;
use bitnet_train::fused::glu::GluOp;
use bitnet_train::fused::OpPath;
use bitnet_train::layers::attention::repeat_kv;
use bitnet_train::layers::{causal_mask, softmax_last_dim, Activation, BitLinear, QuantMode};
use bitnet_train::layers::{RmsNorm, Rope};
use bitnet_train::models::params::{init_rng, Init, ParamStore};
use bitnet_train::models::transformer::causal_lm_loss;
use bitnet_train::trainer::AdamW;
use candle_core::{Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;

/// Forward values: `max |fused - composed| <= FWD_TOL * max |composed|` (f32 sums in another
/// order; the quantized codes themselves are the same).
const FWD_TOL: f32 = 2e-5;
/// Gradients, relative to the largest gradient element in the same way.
const GRAD_TOL: f32 = 2e-4;
/// H-BitLinear: the fused op transforms by the fast Walsh-Hadamard butterflies, the composed one
/// by a matrix product; their f32 sums round differently, so now and then a value lands on the
/// other side of a rounding boundary and one int8 code moves by one step (a change of about
/// `1 / (127 sqrt(n))` of the output's scale, here 4e-4). This bounds a few such codes.
const HADAMARD_TOL: f32 = 2e-3;

fn randn(shape: &[usize], seed: u64, scale: f32) -> Tensor {
    let n: usize = shape.iter().product();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let v: Vec<f32> = (0..n).map(|_| (rng.gen::<f32>() * 2.0 - 1.0) * scale).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

#[track_caller]
fn assert_close(got: &Tensor, want: &Tensor, tol: f32, what: &str) {
    assert_eq!(got.dims(), want.dims(), "{what}: shapes");
    let (g, w) = (values(got), values(want));
    // A reference that is exactly zero (a one-token softmax has no gradient) is compared with an
    // absolute bound of `tol * 1e-3`: the fused op reaches its zero as a difference of two
    // products that round apart.
    let scale = w.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-3);
    let err = g.iter().zip(&w).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(err <= tol * scale, "{what}: max error {err} against scale {scale} (tolerance {tol})");
    assert!(g.iter().all(|v| v.is_finite()), "{what}: non-finite values");
}

/// The gradients of `sum(f(inputs) ⊙ r)` with respect to `inputs`, and `f`'s value, for a fixed
/// random `r` of the output's shape.
fn value_and_grads(
    inputs: &[Var],
    f: impl Fn(&[Tensor]) -> Tensor,
    seed: u64,
) -> (Tensor, Vec<Tensor>) {
    let ts: Vec<Tensor> = inputs.iter().map(|v| v.as_tensor().clone()).collect();
    let y = f(&ts);
    let r = randn(y.dims(), seed, 1.0);
    let gs = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
    let grads = inputs.iter().map(|v| gs.get(v.as_tensor()).expect("a gradient").clone()).collect();
    (y.detach(), grads)
}

#[track_caller]
fn compare(
    inputs: &[Var],
    fused: impl Fn(&[Tensor]) -> Tensor,
    composed: impl Fn(&[Tensor]) -> Tensor,
    what: &str,
) {
    compare_within(inputs, fused, composed, (FWD_TOL, GRAD_TOL), what)
}

#[track_caller]
fn compare_within(
    inputs: &[Var],
    fused: impl Fn(&[Tensor]) -> Tensor,
    composed: impl Fn(&[Tensor]) -> Tensor,
    (fwd_tol, grad_tol): (f32, f32),
    what: &str,
) {
    let (yf, gf) = value_and_grads(inputs, fused, 99);
    let (yc, gc) = value_and_grads(inputs, composed, 99);
    assert_close(&yf, &yc, fwd_tol, &format!("{what}: forward"));
    for (i, (a, b)) in gf.iter().zip(&gc).enumerate() {
        assert_close(a, b, grad_tol, &format!("{what}: gradient of input {i}"));
    }
}

fn var(shape: &[usize], seed: u64, scale: f32) -> Var {
    Var::from_tensor(&randn(shape, seed, scale)).unwrap()
}

#[test]
fn fused_bitlinear_equals_the_composed_layer_in_every_mode() {
    let modes = [
        (QuantMode::B158, false),
        (QuantMode::B1, false),
        (QuantMode::B158A4, false),
        (QuantMode::B158, true),
    ];
    for (mode, hadamard) in modes {
        for (seq, inp, out) in [(1, 256, 7), (3, 512, 33), (129, 256, 40)] {
            let x = var(&[2, seq, inp], 1, 2.0);
            let w = var(&[out, inp], 2, 0.05);
            let mut fused = BitLinear::new(w.as_tensor().clone(), mode, hadamard).unwrap();
            fused.set_path(OpPath::Fused);
            let mut composed = fused.clone();
            composed.set_path(OpPath::Composed);
            let what = format!("{mode} hadamard={hadamard} seq={seq} {out}x{inp}");
            // Once quantizing on the fly, once from the step's cached codes.
            for cached in [false, true] {
                if cached {
                    fused.cache_weight_quant().unwrap();
                    composed.cache_weight_quant().unwrap();
                }
                let inputs = [x.clone(), w.clone()];
                let tol = if hadamard { (HADAMARD_TOL, HADAMARD_TOL) } else { (FWD_TOL, GRAD_TOL) };
                compare_within(
                    &inputs,
                    |t| fused.forward(&t[0]).unwrap(),
                    |t| composed.forward(&t[0]).unwrap(),
                    tol,
                    &format!("{what} cached={cached}"),
                );
            }
        }
    }
}

#[test]
fn bitlinear_of_a_width_the_tiles_do_not_take_falls_back_to_the_composed_layer() {
    let x = var(&[1, 3, 96], 3, 1.0);
    let w = var(&[5, 96], 4, 0.05);
    let mut fused = BitLinear::new(w.as_tensor().clone(), QuantMode::B158, false).unwrap();
    fused.set_path(OpPath::Fused);
    let mut composed = fused.clone();
    composed.set_path(OpPath::Composed);
    let (a, b) = (fused.forward(x.as_tensor()).unwrap(), composed.forward(x.as_tensor()).unwrap());
    assert_eq!(values(&a), values(&b), "the fallback is the composed layer itself");
}

#[test]
fn fused_rms_norm_equals_the_composed_one() {
    for (rows, h) in [(1, 8), (3, 37), (129, 256)] {
        let x = var(&[rows, h], 5, 3.0);
        let w = var(&[h], 6, 1.5);
        let norm = |path| {
            let mut n = RmsNorm::new(w.as_tensor().clone(), 1e-6);
            n.set_path(path);
            n
        };
        let (f, c) = (norm(OpPath::Fused), norm(OpPath::Composed));
        compare(
            &[x.clone(), w.clone()],
            |t| f.forward(&t[0]).unwrap(),
            |t| c.forward(&t[0]).unwrap(),
            &format!("rms-norm {rows}x{h}"),
        );
    }
}

#[test]
fn fused_rope_on_the_projection_layout_equals_rotate_half() {
    let rope = Rope::new(16, 200, 10_000.0, &Device::Cpu).unwrap();
    for (b, t, h) in [(1, 1, 1), (2, 3, 4), (1, 129, 2)] {
        let x = var(&[b, t, h, 16], 7, 1.0);
        compare(
            std::slice::from_ref(&x),
            |v| rope.apply_fused(&v[0]).unwrap(),
            |v| {
                let bhtd = v[0].transpose(1, 2).unwrap().contiguous().unwrap();
                rope.apply(&bhtd).unwrap().transpose(1, 2).unwrap().contiguous().unwrap()
            },
            &format!("rope b={b} t={t} heads={h}"),
        );
    }
}

/// The composed attention of [`bitnet_train::layers::Attention`] on `[b, t, heads, d]` inputs.
fn composed_attention(q: &Tensor, k: &Tensor, v: &Tensor) -> Tensor {
    let (_, t, nh, d) = q.dims4().unwrap();
    let nkv = k.dim(2).unwrap();
    let heads_first = |x: &Tensor| x.transpose(1, 2).unwrap().contiguous().unwrap();
    let (q, k, v) = (heads_first(q), heads_first(k), heads_first(v));
    let (k, v) = (repeat_kv(&k, nh / nkv).unwrap(), repeat_kv(&v, nh / nkv).unwrap());
    let mask = causal_mask(t, &Device::Cpu).unwrap();
    let scores = (q.matmul(&k.t().unwrap()).unwrap() / (d as f64).sqrt()).unwrap();
    let probs = softmax_last_dim(&scores.broadcast_add(&mask).unwrap()).unwrap();
    probs.matmul(&v).unwrap().transpose(1, 2).unwrap().contiguous().unwrap()
}

#[test]
fn fused_causal_gqa_attention_equals_the_composed_one() {
    let rope = Rope::new(32, 200, 10_000.0, &Device::Cpu).unwrap();
    for (b, t, nh, nkv, d) in
        [(1, 1, 2, 1, 8), (2, 3, 4, 2, 16), (1, 129, 4, 1, 32), (1, 5, 3, 3, 8)]
    {
        let q = var(&[b, t, nh, d], 8, 1.5);
        let k = var(&[b, t, nkv, d], 9, 1.5);
        let v = var(&[b, t, nkv, d], 10, 1.0);
        // The op takes the projections' outputs `[b, t, heads * d]`, with or without RoPE.
        let flat = |x: &Tensor| x.reshape((b, t, x.dim(2).unwrap() * d)).unwrap();
        for with_rope in [false, true] {
            if with_rope && d != 32 {
                continue;
            }
            compare(
                &[q.clone(), k.clone(), v.clone()],
                |x| {
                    let op = AttentionOp::new(nh, nkv, with_rope.then(|| rope.fused_op()));
                    let y = flat(&x[0]).apply_op3(&flat(&x[1]), &flat(&x[2]), op).unwrap();
                    y.reshape((b, t, nh, d)).unwrap()
                },
                |x| {
                    let rot = |x: &Tensor| {
                        let bhtd = x.transpose(1, 2).unwrap().contiguous().unwrap();
                        rope.apply(&bhtd).unwrap().transpose(1, 2).unwrap().contiguous().unwrap()
                    };
                    if with_rope {
                        composed_attention(&rot(&x[0]), &rot(&x[1]), &x[2])
                    } else {
                        composed_attention(&x[0], &x[1], &x[2])
                    }
                },
                &format!("attention b={b} t={t} heads={nh}/{nkv} d={d} rope={with_rope}"),
            );
        }
    }
    let bad = AttentionOp::new(4, 3, None);
    let x = randn(&[1, 2, 8], 1, 1.0);
    assert!(x.apply_op3(&x, &x, bad).is_err(), "4 query heads cannot share 3 key/value heads");
}

#[test]
fn fused_glu_equals_the_composed_gate_for_each_activation() {
    for act in [Activation::Relu2, Activation::Silu, Activation::Gelu] {
        let g = var(&[3, 129], 11, 3.0);
        let u = var(&[3, 129], 12, 2.0);
        compare(
            &[g, u],
            |x| x[0].apply_op2(&x[1], GluOp { act }).unwrap(),
            |x| (act.apply(&x[0]).unwrap() * &x[1]).unwrap(),
            &format!("glu {act:?}"),
        );
    }
}

#[test]
fn fused_embedding_equals_index_select_and_scatters_repeated_ids() {
    let w = var(&[11, 6], 13, 1.0);
    let ids = Tensor::new(&[[3u32, 0, 3], [10, 3, 1]], &Device::Cpu).unwrap();
    compare(
        &[w],
        |x| x[0].apply_op2(&ids, EmbeddingOp).unwrap(),
        |x| x[0].index_select(&ids.flatten_all().unwrap(), 0).unwrap().reshape((2, 3, 6)).unwrap(),
        "embedding",
    );
    let bad = Tensor::new(&[[11u32]], &Device::Cpu).unwrap();
    let err = randn(&[11, 6], 1, 1.0).apply_op2(&bad, EmbeddingOp).unwrap_err();
    assert!(err.to_string().contains("outside the vocabulary"), "{err}");
}

#[test]
fn fused_cross_entropy_equals_the_composed_loss() {
    for (b, t, v) in [(1, 2, 5), (2, 3, 97), (2, 129, 300)] {
        let logits = var(&[b, t, v], 14, 6.0);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(15);
        let labels: Vec<u32> = (0..b * t).map(|_| rng.gen_range(0..v as u32)).collect();
        let labels = Tensor::from_vec(labels, (b, t), &Device::Cpu).unwrap();
        compare(
            &[logits],
            |x| x[0].apply_op2(&labels, CausalCrossEntropyOp::new()).unwrap(),
            |x| causal_lm_loss(&x[0], &labels).unwrap(),
            &format!("cross-entropy {b}x{t}x{v}"),
        );
    }
    let labels = Tensor::new(&[[0u32, 5]], &Device::Cpu).unwrap();
    let err = randn(&[1, 2, 5], 1, 1.0).apply_op2(&labels, CausalCrossEntropyOp::new());
    assert!(err.unwrap_err().to_string().contains("outside the vocabulary"));
}

#[test]
fn fused_adamw_equals_the_composed_update_with_clipping_and_decay() {
    let store = |seed| {
        let mut p = ParamStore::new();
        let mut rng = init_rng(seed);
        p.add("w", &[33, 7], Init::Normal(0.5), &mut rng, &Device::Cpu).unwrap();
        p.add("norm", &[7], Init::Ones, &mut rng, &Device::Cpu).unwrap();
        p
    };
    let (pf, pc) = (store(3), store(3));
    let mut of = AdamW::with_path(&pf, OpPath::Fused).unwrap();
    let mut oc = AdamW::with_path(&pc, OpPath::Composed).unwrap();
    for step in 0..5u64 {
        let grads: BTreeMap<String, Tensor> = [
            ("w".to_string(), randn(&[33, 7], 20 + step, 2.0)),
            ("norm".to_string(), randn(&[7], 30 + step, 2.0)),
        ]
        .into();
        let clip = if step % 2 == 0 { 0.25 } else { 1.0 };
        of.step(&pf, &grads, 1e-2, 0.1, clip).unwrap();
        oc.step(&pc, &grads, 1e-2, 0.1, clip).unwrap();
    }
    for name in ["w", "norm"] {
        let (a, b) = (pf.get(name).unwrap(), pc.get(name).unwrap());
        assert_close(a.as_tensor(), b.as_tensor(), 1e-6, name);
    }
    let (sf, sc) = (of.state_tensors(&pf).unwrap(), oc.state_tensors(&pc).unwrap());
    for (k, t) in &sc {
        assert_close(&sf[k], t, 1e-6, k);
    }
}

#[test]
fn sum_of_squares_is_exact_on_small_integers() {
    // 1 + 4 + 9 + ... + 100 = 385, times 3 rows.
    let v: Vec<f32> = (0..30).map(|i| (i % 10 + 1) as f32).collect();
    let t = Tensor::from_vec(v, (3, 10), &Device::Cpu).unwrap();
    assert_eq!(sum_squares(&t).unwrap(), 3.0 * 385.0);
}
