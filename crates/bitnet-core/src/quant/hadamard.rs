//! The orthonormal fast Walsh–Hadamard transform of BitNet v2's H-BitLinear (arXiv:2504.18415).
//!
//! For a length `n = 2^k` the transform is `y = H_n x / sqrt(n)` with the Sylvester matrix
//! `H_{2m} = [[H_m, H_m], [H_m, -H_m]]`, so `H H^T = I` after the factor and applying it twice gives
//! back `x`. Other lengths: write `n = 2^k * m` with `m` odd; the transform is block-diagonal, the
//! orthonormal `H_{2^k}` applied to each of the `m` contiguous blocks of `2^k` values (so an odd
//! length is left unchanged). Hidden sizes 2560 (= 512 * 5) and 6912 (= 256 * 27) use blocks of
//! 512 and 256.

/// The block length the transform uses for a vector of length `n`: its largest power-of-two factor.
pub fn hadamard_block_len(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        1 << n.trailing_zeros()
    }
}

/// In-place orthonormal fast Walsh–Hadamard transform, block-diagonal for non-power-of-two lengths
/// (see the module documentation). It is its own inverse.
pub fn hadamard_transform(x: &mut [f32]) {
    let block = hadamard_block_len(x.len());
    if block <= 1 {
        return;
    }
    let norm = 1.0 / (block as f32).sqrt();
    for chunk in x.chunks_exact_mut(block) {
        let mut h = 1;
        while h < block {
            for i in (0..block).step_by(2 * h) {
                for j in i..i + h {
                    let (a, b) = (chunk[j], chunk[j + h]);
                    chunk[j] = a + b;
                    chunk[j + h] = a - b;
                }
            }
            h *= 2;
        }
        chunk.iter_mut().for_each(|v| *v *= norm);
    }
}
