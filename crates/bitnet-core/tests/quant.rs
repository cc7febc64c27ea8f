//! The quantizers against values worked out by hand (the arithmetic is written beside them).

use bitnet_core::quant::*;

#[test]
fn ternary_absmean_hand_example() {
    // mean|W| = (0.3 + 0.1 + 0.0 + 0.8 + 0.4 + 0.2) / 6 = 1.8 / 6 = 0.3
    // W / 0.3 = [1, -0.333, 0, -2.667, 1.333, 0.667] -> round, clamp -> [1, 0, 0, -1, 1, 1]
    let w = [0.3, -0.1, 0.0, -0.8, 0.4, 0.2];
    let q = quantize_ternary(&w, 2, 3, ScaleGranularity::PerTensor).unwrap();
    assert_eq!(q.codes, vec![1, 0, 0, -1, 1, 1]);
    assert!((q.scales[0] - 0.3).abs() < 1e-7);
    // Per row: row 0 mean = 0.4 / 3 = 0.1333 -> [2.25, -0.75, 0] -> [1, -1, 0];
    //          row 1 mean = 1.4 / 3 = 0.4667 -> [-1.714, 0.857, 0.429] -> [-1, 1, 0].
    let q = quantize_ternary(&w, 2, 3, ScaleGranularity::PerRow).unwrap();
    assert_eq!(q.codes, vec![1, -1, 0, -1, 1, 0]);
    assert_eq!(q.scales.len(), 2);
    assert!((q.scales[1] - 1.4 / 3.0).abs() < 1e-6);
}

#[test]
fn ternary_zero_input_gives_zero_codes_and_floor_scale() {
    let q = quantize_ternary(&[0.0; 8], 2, 4, ScaleGranularity::PerRow).unwrap();
    assert!(q.codes.iter().all(|&c| c == 0));
    assert_eq!(q.scales, vec![WEIGHT_EPS, WEIGHT_EPS]);
    assert!(q.dequantize().iter().all(|v| *v == 0.0));
}

#[test]
fn ternary_rejects_wrong_shape() {
    assert!(quantize_ternary(&[1.0; 5], 2, 3, ScaleGranularity::PerTensor).is_err());
}

#[test]
fn b1_sign_of_centred_weights() {
    // mean = (1 + 2 + 3 + 6) / 4 = 3 -> W - 3 = [-2, -1, 0, 3] -> sign (0 -> -1) = [-1, -1, -1, 1]
    // beta = mean|W| = 3
    let q = quantize_b1(&[1.0, 2.0, 3.0, 6.0]);
    assert_eq!(q.codes, vec![-1, -1, -1, 1]);
    assert_eq!(q.beta, 3.0);
    let z = quantize_b1(&[0.0; 4]);
    assert_eq!((z.codes, z.beta), (vec![-1; 4], 0.0));
}

#[test]
fn int8_absmax_hand_example() {
    // max|x| = 2 -> s = 63.5; x*s = [127, -63.5, 31.75, 0] -> round (half away) -> [127, -64, 32, 0]
    let q = quantize_act_i8(&[2.0, -1.0, 0.5, 0.0]);
    assert_eq!(q.codes, vec![127, -64, 32, 0]);
    assert_eq!(q.scale, 63.5);
    let z = quantize_act_i8(&[0.0; 3]);
    assert_eq!(z.codes, vec![0; 3]);
    assert_eq!(z.scale, 127.0 / ACT_EPS);
    assert!(z.scale.is_finite());
}

#[test]
fn int4_absmean_hand_example() {
    // beta = mean|x| = (1 + 1 + 2 + 4) / 4 = 2; s = sqrt(7)/2 = 1.3229
    // x*s = [1.32, -1.32, 2.65, -5.29] -> [1, -1, 3, -5]; 10 * s = 13.2 clamps to 7, -13.2 to -8
    let q = quantize_act_i4(&[1.0, -1.0, 2.0, -4.0]);
    assert_eq!(q.codes, vec![1, -1, 3, -5]);
    assert!((q.scale - 7f32.sqrt() / 2.0).abs() < 1e-6);
    let q = quantize_act_i4(&[10.0, -10.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    // beta = 20 / 10 = 2 -> 10 * 1.3229 = 13.2 -> clamp 7; -13.2 -> -8
    assert_eq!(&q.codes[..2], &[7, -8]);
    let z = quantize_act_i4(&[0.0; 4]);
    assert_eq!(z.codes, vec![0; 4]);
    assert!(z.scale.is_finite());
}

#[test]
fn hadamard_of_length_4_by_hand() {
    // H_4 [1, 2, 3, 4] = [10, -2, -4, 0]; / sqrt(4) = [5, -1, -2, 0]
    let mut x = [1.0, 2.0, 3.0, 4.0];
    hadamard_transform(&mut x);
    assert_eq!(x, [5.0, -1.0, -2.0, 0.0]);
}

/// Columns of the transform are orthonormal: `H H^T = I`.
#[test]
fn hadamard_is_orthonormal() {
    for n in [1usize, 2, 8, 64, 12, 40, 6] {
        let cols: Vec<Vec<f32>> = (0..n)
            .map(|i| {
                let mut e = vec![0.0; n];
                e[i] = 1.0;
                hadamard_transform(&mut e);
                e
            })
            .collect();
        for i in 0..n {
            for j in 0..n {
                let dot: f32 = cols[i].iter().zip(&cols[j]).map(|(a, b)| a * b).sum();
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((dot - want).abs() < 1e-5, "n={n} ({i},{j}) {dot}");
            }
        }
    }
}

#[test]
fn hadamard_is_an_involution_and_block_diagonal() {
    let x: Vec<f32> = (0..2560).map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0).collect();
    let mut y = x.clone();
    hadamard_transform(&mut y);
    assert_eq!(hadamard_block_len(2560), 512);
    assert_eq!(hadamard_block_len(6912), 256);
    assert_eq!(hadamard_block_len(7), 1);
    // Block 1 of the result depends on block 1 of the input only.
    let mut b1 = x[512..1024].to_vec();
    hadamard_transform(&mut b1);
    assert_eq!(&y[512..1024], &b1[..]);
    hadamard_transform(&mut y);
    for (a, b) in x.iter().zip(&y) {
        assert!((a - b).abs() < 1e-4);
    }
    let mut odd = [1.0, 2.0, 3.0];
    hadamard_transform(&mut odd);
    assert_eq!(odd, [1.0, 2.0, 3.0]);
}

/// The eight-lane absolute maximum equals the sequential fold, NaNs and odd lengths included.
#[test]
fn abs_max_equals_the_sequential_fold() {
    for n in [0usize, 1, 7, 8, 9, 63, 1536] {
        let mut x: Vec<f32> = (0..n).map(|i| ((i * 7919) % 2003) as f32 - 1001.5).collect();
        if n > 3 {
            x[3] = f32::NAN;
            x[n - 1] = -5000.0;
        }
        let want = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert_eq!(abs_max(&x).to_bits(), want.to_bits(), "{n} values");
    }
}
