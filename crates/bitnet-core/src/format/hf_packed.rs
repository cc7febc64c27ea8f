//! The packed 2-bit layout of Hugging Face `BitNetForCausalLM` offline checkpoints
//! (microsoft/bitnet-b1.58-2B-4T): a `uint8 [out/4, in]` tensor plus a `weight_scale`.
//!
//! ```text
//! code = w + 1 in {0, 1, 2};  R = out / 4
//! byte [r, c] = code[r, c] | code[r + R, c] << 2 | code[r + 2R, c] << 4 | code[r + 3R, c] << 6
//! ```

use super::{check_len, check_multiple};
use crate::{CoreError, Result};

/// Packs ternary codes `w` in {-1, 0, 1} of shape (out, in) into `uint8 [out/4, in]`.
pub fn pack_hf(w: &[i8], out: usize, inp: usize) -> Result<Vec<u8>> {
    check_multiple("pack_hf rows", out, 4)?;
    check_len("pack_hf", out * inp, w.len())?;
    let r4 = out / 4;
    let mut packed = vec![0u8; r4 * inp];
    for (idx, &v) in w.iter().enumerate() {
        if !(-1..=1).contains(&v) {
            return Err(CoreError::InvalidCode { what: "pack_hf", index: idx });
        }
        let (row, col) = (idx / inp, idx % inp);
        packed[(row % r4) * inp + col] |= ((v + 1) as u8) << (2 * (row / r4));
    }
    Ok(packed)
}

/// Unpacks `uint8 [out/4, in]` into ternary codes of shape (out, in); a code of 3 is an error.
pub fn unpack_hf(packed: &[u8], out: usize, inp: usize) -> Result<Vec<i8>> {
    check_multiple("unpack_hf rows", out, 4)?;
    check_len("unpack_hf", out / 4 * inp, packed.len())?;
    let r4 = out / 4;
    let mut w = vec![0i8; out * inp];
    for (row, dst) in w.chunks_exact_mut(inp.max(1)).enumerate().take(out) {
        let src = &packed[(row % r4) * inp..(row % r4 + 1) * inp];
        let shift = 2 * (row / r4);
        for (col, (d, &b)) in dst.iter_mut().zip(src).enumerate() {
            let code = (b >> shift) & 3;
            if code == 3 {
                return Err(CoreError::InvalidCode { what: "unpack_hf", index: row * inp + col });
            }
            *d = code as i8 - 1;
        }
    }
    Ok(w)
}
