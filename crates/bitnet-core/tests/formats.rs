//! Packed formats: the Hugging Face golden vector, hand-made I2_S bytes, zero input, and proptest
//! round trips (pack → unpack, quantize → dequantize → quantize).

use bitnet_core::format::hf_packed::{pack_hf, unpack_hf};
use bitnet_core::format::i2s::{i2s_tensor_bytes, pack_i2_s, quantize_i2_s, I2sTensor};
use bitnet_core::format::q8k::{dequantize_row_q8k, quantize_row_q8k, quantize_row_q8k_per_token};
use bitnet_core::format::{tq1_0, tq2_0, GgmlType, QK_K};
use bitnet_core::quant::quantize_act_i8;
use proptest::prelude::*;

#[test]
fn hf_packed_golden_vector() {
    let packed = [0b1010_0001u8, 0b0001_1000, 0b1001_0000, 0b0000_1010];
    let want: Vec<i8> = vec![0, -1, -1, 1, -1, 1, -1, 1, 1, 0, 0, -1, 1, -1, 1, -1];
    assert_eq!(unpack_hf(&packed, 8, 2).unwrap(), want);
    assert_eq!(pack_hf(&want, 8, 2).unwrap(), packed);
}

#[test]
fn hf_packed_rejects_bad_input() {
    assert!(unpack_hf(&[0xff, 0, 0, 0], 8, 2).is_err(), "code 3");
    assert!(unpack_hf(&[0; 3], 8, 2).is_err(), "short buffer");
    assert!(pack_hf(&[0; 12], 6, 2).is_err(), "rows not a multiple of 4");
    assert!(pack_hf(&[2; 16], 8, 2).is_err(), "value 2 is not ternary");
}

/// bitnet.cpp's x86 layout: byte k of a 128-weight block holds weights k, k+32, k+64, k+96 at
/// shifts 6, 4, 2, 0, and the f32 scale follows the codes.
#[test]
fn i2_s_layout_by_hand() {
    let mut codes = vec![1u8; 128];
    codes[0] = 2; // weight 0 = +1 -> byte 0 bits 6-7
    codes[32] = 0; // weight 32 = -1 -> byte 0 bits 4-5
    codes[97] = 2; // weight 97 = +1 -> byte 1 bits 0-1
    let t = pack_i2_s(&codes, 0.5);
    assert_eq!(t.len(), i2s_tensor_bytes(128));
    assert_eq!(t.len(), 32 + 32);
    assert_eq!(t[0], 0b10_00_01_01);
    assert_eq!(t[1], 0b01_01_01_10);
    assert_eq!(t[2], 0b01_01_01_01);
    assert_eq!(&t[32..36], &0.5f32.to_le_bytes());
    assert!(t[36..].iter().all(|&b| b == 0));
    let v = I2sTensor::parse(&t, 128).unwrap().dequantize().unwrap();
    assert_eq!((v[0], v[32], v[97], v[1]), (0.5, -0.5, 0.5, 0.0));
}

#[test]
fn i2_s_quantizer_follows_bitnet_cpp() {
    // scale = max|x| = 0.7; |x| < 1e-6 -> 0; else the sign.
    let mut x = vec![0.0f32; 128];
    x[0] = 0.7;
    x[1] = -0.2;
    x[2] = 1e-7;
    let t = quantize_i2_s(&x).unwrap();
    let v = I2sTensor::parse(&t, 128).unwrap().dequantize().unwrap();
    assert_eq!(&v[..4], &[0.7, -0.7, 0.0, 0.0]);
    assert!(I2sTensor::parse(&t[..35], 128).is_err());
}

#[test]
fn zero_input_gives_zero_codes_and_finite_scales() {
    let z = vec![0.0f32; 2 * QK_K];
    let q2 = tq2_0::quantize_row_tq2_0(&z).unwrap();
    assert!(q2.iter().all(|b| b.d.to_f32() == 0.0 && b.qs.iter().all(|&q| q == 0b0101_0101)));
    assert!(tq2_0::dequantize_row_tq2_0(&q2).iter().all(|&v| v == 0.0));
    let q1 = tq1_0::quantize_row_tq1_0(&z).unwrap();
    assert!(tq1_0::dequantize_row_tq1_0(&q1).iter().all(|&v| v == 0.0));
    for a in [quantize_row_q8k(&z).unwrap(), quantize_row_q8k_per_token(&z).unwrap()] {
        assert!(a.iter().all(|b| b.d.is_finite() && b.qs.iter().all(|&q| q == 0)));
        assert!(a.iter().all(|b| b.bsums.iter().all(|&s| s == 0)));
    }
}

#[test]
fn lengths_that_do_not_fill_blocks_are_errors() {
    assert!(tq2_0::quantize_row_tq2_0(&[0.0; 100]).is_err());
    assert!(tq1_0::quantize_row_tq1_0(&[0.0; 257]).is_err());
    assert!(quantize_i2_s(&[0.0; 64]).is_err());
    assert!(quantize_row_q8k(&[0.0; 255]).is_err());
}

#[test]
fn ggml_type_ids_and_sizes() {
    for (id, t, bytes_per_256) in [
        (34, GgmlType::TQ1_0, 54),
        (35, GgmlType::TQ2_0, 66),
        (15, GgmlType::Q8K, 292),
        (8, GgmlType::Q8_0, 8 * 34),
    ] {
        assert_eq!(GgmlType::from_id(id).unwrap(), t);
        assert_eq!(t.id(), id);
        assert_eq!(t.tensor_bytes(256).unwrap(), bytes_per_256);
    }
    assert_eq!(GgmlType::I2S.tensor_bytes(2560 * 2560).unwrap(), 2560 * 2560 / 4 + 32);
    assert!(GgmlType::from_id(99).is_err());
    assert!(GgmlType::TQ2_0.tensor_bytes(100).is_err());
}

/// The per-token activation block holds exactly `quant::quantize_act_i8` of the token.
#[test]
fn per_token_q8k_equals_the_quantizer_definition() {
    let x: Vec<f32> = (0..2 * QK_K).map(|i| ((i * 53 % 211) as f32 - 105.0) / 13.0).collect();
    let blocks = quantize_row_q8k_per_token(&x).unwrap();
    let reference = quantize_act_i8(&x);
    let codes: Vec<i8> = blocks.iter().flat_map(|b| b.qs).collect();
    assert_eq!(codes, reference.codes);
    assert!(blocks.iter().all(|b| b.d == 1.0 / reference.scale));
    for b in &blocks {
        assert_eq!(b.sum(), b.qs.iter().map(|&q| q as i32).sum::<i32>());
    }
}

fn ternary_row(blocks: usize) -> impl Strategy<Value = (Vec<i8>, f32)> {
    (prop::collection::vec(-1i8..=1, blocks * QK_K), 0.001f32..10.0)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn hf_pack_unpack_round_trip(rows4 in 1usize..5, cols in 1usize..20, seed in any::<u64>()) {
        let out = rows4 * 4;
        let w: Vec<i8> = (0..out * cols).map(|i| ((seed >> (i % 61)) % 3) as i8 - 1).collect();
        let p = pack_hf(&w, out, cols).unwrap();
        prop_assert_eq!(unpack_hf(&p, out, cols).unwrap(), w);
    }

    /// Ternary values times a scale survive quantize → dequantize up to f16 rounding of the
    /// scale, and quantizing the dequantized values again gives the same bytes.
    #[test]
    fn tq2_0_round_trip((codes, s) in ternary_row(3)) {
        let x: Vec<f32> = codes.iter().map(|&c| c as f32 * s).collect();
        let q = tq2_0::quantize_row_tq2_0(&x).unwrap();
        let y = tq2_0::dequantize_row_tq2_0(&q);
        for (a, b) in x.iter().zip(&y) {
            prop_assert!((a - b).abs() <= s * 1e-3);
        }
        prop_assert_eq!(tq2_0::quantize_row_tq2_0(&y).unwrap(), q);
    }

    #[test]
    fn tq1_0_round_trip((codes, s) in ternary_row(3)) {
        let x: Vec<f32> = codes.iter().map(|&c| c as f32 * s).collect();
        let q = tq1_0::quantize_row_tq1_0(&x).unwrap();
        let y = tq1_0::dequantize_row_tq1_0(&q);
        for (a, b) in x.iter().zip(&y) {
            prop_assert!((a - b).abs() <= s * 1e-3);
        }
        prop_assert_eq!(tq1_0::quantize_row_tq1_0(&y).unwrap(), q);
    }

    #[test]
    fn i2_s_round_trip((codes, s) in ternary_row(2)) {
        let x: Vec<f32> = codes.iter().map(|&c| c as f32 * s).collect();
        let t = quantize_i2_s(&x).unwrap();
        let y = I2sTensor::parse(&t, x.len()).unwrap().dequantize().unwrap();
        let smax = if codes.iter().any(|&c| c != 0) { s } else { 0.0 };
        for (&c, &b) in codes.iter().zip(&y) {
            prop_assert_eq!(b, c as f32 * smax);
        }
        prop_assert_eq!(quantize_i2_s(&y).unwrap(), t);
    }

    /// int8 activations: dequantization is within half a step, and requantizing is idempotent.
    #[test]
    fn q8k_round_trip(x in prop::collection::vec(-100.0f32..100.0, QK_K * 2)) {
        let q = quantize_row_q8k_per_token(&x).unwrap();
        let y = dequantize_row_q8k(&q);
        let step = q[0].d;
        for (a, b) in x.iter().zip(&y) {
            prop_assert!((a - b).abs() <= 0.5 * step + 1e-4);
        }
        let again = quantize_row_q8k_per_token(&y).unwrap();
        let c1: Vec<i8> = q.iter().flat_map(|b| b.qs).collect();
        let c2: Vec<i8> = again.iter().flat_map(|b| b.qs).collect();
        prop_assert_eq!(c1, c2);
    }
}
