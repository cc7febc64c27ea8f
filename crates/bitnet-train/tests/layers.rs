//! BitLinear fake quantization: agreement with bitnet-core, a hand-computed example, and the
//! straight-through estimator checked against finite differences.

use bitnet_core::quant::{
    quantize_act_i4, quantize_act_i8, quantize_b1, quantize_ternary, ScaleGranularity,
};
use bitnet_train::layers::quant::{act_int4, act_int8, binary_weight, ternary_weight};
use bitnet_train::layers::{BitLinear, QuantMode};
use candle_core::{Device, Tensor, Var};
use rand::{Rng, SeedableRng};

fn randn(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| (rng.gen::<f32>() * 2.0 - 1.0) * scale).collect()
}

fn vec2(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn fake_quant_equals_bitnet_core_dequantization() {
    let dev = Device::Cpu;
    let (rows, cols) = (7, 96);
    let w = randn(rows * cols, 1, 0.08);
    let x = randn(rows * cols, 2, 3.0);
    let wt = Tensor::from_vec(w.clone(), (rows, cols), &dev).unwrap();
    let xt = Tensor::from_vec(x.clone(), (rows, cols), &dev).unwrap();

    let tq = quantize_ternary(&w, rows, cols, ScaleGranularity::PerTensor).unwrap();
    assert_eq!(vec2(&ternary_weight(&wt).unwrap()), tq.dequantize());

    let b1 = quantize_b1(&w);
    let want: Vec<f32> = b1.codes.iter().map(|&c| c as f32 * b1.beta).collect();
    assert_eq!(vec2(&binary_weight(&wt).unwrap()), want);

    let got8 = vec2(&act_int8(&xt).unwrap());
    let got4 = vec2(&act_int4(&xt).unwrap());
    for r in 0..rows {
        let row = &x[r * cols..(r + 1) * cols];
        let q8 = quantize_act_i8(row);
        let want8: Vec<f32> = q8.codes.iter().map(|&c| c as f32 / q8.scale).collect();
        assert_eq!(&got8[r * cols..(r + 1) * cols], &want8[..], "int8 row {r}");
        let q4 = quantize_act_i4(row);
        let want4: Vec<f32> = q4.codes.iter().map(|&c| c as f32 / q4.scale).collect();
        assert_eq!(&got4[r * cols..(r + 1) * cols], &want4[..], "int4 row {r}");
    }
}

#[test]
fn b158_forward_matches_hand_computed_example() {
    // mean|W| = 5.75 / 8 = 0.71875; W / 0.71875 rounds to [[1,-1,0,0],[1,0,-1,-1]].
    // max|x| = 4, s = 127/4 = 31.75; x * s = [31.75, -63.5, 15.875, 127] -> [32, -64, 16, 127].
    // Row 0: 32 + 64 = 96; row 1: 32 - 16 - 127 = -111; y = isum * 0.71875 / 31.75.
    let dev = Device::Cpu;
    let w = Tensor::new(&[[0.5f32, -1.0, 0.0, 0.25], [1.5, 0.1, -0.4, -2.0]], &dev).unwrap();
    let x = Tensor::new(&[[1.0f32, -2.0, 0.5, 4.0]], &dev).unwrap();
    let y = vec2(&BitLinear::new(w, QuantMode::B158, false).unwrap().forward(&x).unwrap());
    let expect = [96.0 * 0.71875 / 31.75, -111.0 * 0.71875 / 31.75];
    for (g, e) in y.iter().zip(expect) {
        assert!((g - e).abs() < 1e-5, "{y:?} vs {expect:?}");
    }
    assert!((expect[0] - 2.173_228).abs() < 1e-5);
}

#[test]
fn b1_forward_matches_hand_computed_example() {
    // mean W = 0.125, beta = mean|W| = 0.875: signs of W - 0.125 are [[+,-],[+,-]].
    let dev = Device::Cpu;
    let w = Tensor::new(&[[1.0f32, -0.5], [0.5, -1.5]], &dev).unwrap();
    let x = Tensor::new(&[[2.0f32, 1.0]], &dev).unwrap();
    // x*s: s = 127/2 -> [127, 63.5 -> 64]; row dots: 127 - 64 = 63 for both rows.
    let y = vec2(&BitLinear::new(w, QuantMode::B1, false).unwrap().forward(&x).unwrap());
    let e = 63.0 * 0.875 / 63.5;
    assert!((y[0] - e).abs() < 1e-5 && (y[1] - e).abs() < 1e-5, "{y:?}");
}

#[test]
fn ste_gradient_is_identity() {
    let dev = Device::Cpu;
    let x = Var::new(&[0.3f32, -1.7, 2.2, 0.05], &dev).unwrap();
    let q = x.as_tensor().round().unwrap();
    let y = bitnet_train::layers::quant::ste(x.as_tensor(), &q).unwrap();
    assert_eq!(vec2(&y), vec![0.0, -2.0, 2.0, 0.0]);
    let g = (y * Tensor::new(&[1f32, 2.0, 3.0, 4.0], &dev).unwrap()).unwrap().sum_all().unwrap();
    let grads = g.backward().unwrap();
    assert_eq!(vec2(grads.get(x.as_tensor()).unwrap()), vec![1.0, 2.0, 3.0, 4.0]);
}

/// The STE gradient of the latent weights equals the finite-difference gradient of the same
/// linear map at the quantized point: `dL/dW = dL/dQ(W)`. The loss is linear in the weights, and
/// perturbations stay far from rounding boundaries because they are applied to the quantized
/// weights of a plain linear.
#[test]
fn ste_gradients_match_finite_differences() {
    let dev = Device::Cpu;
    let (out, inp, n) = (5, 16, 3);
    for mode in [QuantMode::B158, QuantMode::B1, QuantMode::B158A4] {
        let w = Var::from_vec(randn(out * inp, 3, 0.1), (out, inp), &dev).unwrap();
        let x = Var::from_vec(randn(n * inp, 4, 1.0), (n, inp), &dev).unwrap();
        let c = Tensor::from_vec(randn(n * out, 5, 1.0), (n, out), &dev).unwrap();
        let lin = BitLinear::new(w.as_tensor().clone(), mode, false).unwrap();
        let loss = (lin.forward(x.as_tensor()).unwrap() * &c).unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        let gw = vec2(grads.get(w.as_tensor()).unwrap());
        let gx = vec2(grads.get(x.as_tensor()).unwrap());

        let wq = vec2(&mode.fake_quant_weight(w.as_tensor()).unwrap());
        let xq = vec2(&mode.fake_quant_act(x.as_tensor()).unwrap());
        let cv = vec2(&c);
        // f(V, U) = sum_ij c_ij * (U V^T)_ij in f64.
        let f = |v: &[f32], u: &[f32]| -> f64 {
            let mut s = 0.0;
            for i in 0..n {
                for o in 0..out {
                    let d: f64 =
                        (0..inp).map(|k| u[i * inp + k] as f64 * v[o * inp + k] as f64).sum();
                    s += cv[i * out + o] as f64 * d;
                }
            }
            s
        };
        // Central difference of `g` at `at` along coordinate `idx`.
        let h = 1e-2f32;
        let fd = |g: &dyn Fn(&[f32]) -> f64, at: &[f32], idx: usize| {
            let (mut p, mut m) = (at.to_vec(), at.to_vec());
            p[idx] += h;
            m[idx] -= h;
            (g(&p) - g(&m)) / (2.0 * h as f64)
        };
        for (idx, &g) in gw.iter().enumerate() {
            let d = fd(&|v| f(v, &xq), &wq, idx);
            assert!((d - g as f64).abs() < 1e-3, "{mode} dW[{idx}]: fd {d} vs {g}");
        }
        for (idx, &g) in gx.iter().enumerate() {
            let d = fd(&|u| f(&wq, u), &xq, idx);
            assert!((d - g as f64).abs() < 1e-3, "{mode} dx[{idx}]: fd {d} vs {g}");
        }
    }
}

#[test]
fn hadamard_bitlinear_transforms_the_input_orthonormally() {
    let dev = Device::Cpu;
    let x = randn(2 * 24, 6, 1.0); // 24 = 8 * 3: blocks of 8
    let xt = Tensor::from_vec(x.clone(), (2, 24), &dev).unwrap();
    let h = bitnet_train::layers::bitlinear::hadamard_matrix(24, &dev).unwrap();
    assert_eq!(h.dims(), &[8, 8]);
    let got = vec2(&bitnet_train::layers::bitlinear::block_hadamard(&xt, &h).unwrap());
    let mut want = x.clone();
    for row in want.chunks_mut(24) {
        bitnet_core::quant::hadamard_transform(row);
    }
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() < 1e-5);
    }
    // H-BitLinear on x equals the plain BitLinear on the transformed x.
    let w = Tensor::from_vec(randn(4 * 24, 7, 0.1), (4, 24), &dev).unwrap();
    let hb = BitLinear::new(w.clone(), QuantMode::B158, true).unwrap().forward(&xt).unwrap();
    let hx = Tensor::from_vec(got, (2, 24), &dev).unwrap();
    let plain = BitLinear::new(w, QuantMode::B158, false).unwrap().forward(&hx).unwrap();
    assert_eq!(vec2(&hb), vec2(&plain));
}
