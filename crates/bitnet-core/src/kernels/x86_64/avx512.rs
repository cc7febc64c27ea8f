//! AVX-512 kernels, in two flavours generated from one body: [`avx512`](self) (F + BW + VL,
//! `vpmaddubsw` then `vpmaddwd`) and [`avx512vnni`](super::avx512vnni) (`vpdpbusd`: unsigned codes
//! × signed activations straight into i32). A 64-byte register holds the codes of 256 weights;
//! the activation sums are subtracted once per block. Integer block sums and the f32 accumulation
//! order equal [`crate::kernels::scalar`]'s.

macro_rules! avx512_kernels {
    ($features:literal, $isa:expr, $tiles:path, { $($dots:item)* }) => {
        use crate::format::{BlockQ8K, BlockTQ1_0, BlockTQ2_0};
        use crate::kernels::{Isa, Kernels};
        use std::arch::x86_64::*;

        pub(crate) fn table() -> Kernels {
            Kernels {
                isa: $isa,
                // SAFETY: `Kernels::new` builds this table only where `is_available()` holds.
                vec_dot_tq2_0_q8k: |w, a| unsafe { vec_dot_tq2_0_q8k(w, a) },
                // SAFETY: `Kernels::new` builds this table only where `is_available()` holds.
                vec_dot_tq1_0_q8k: |w, a| unsafe { vec_dot_tq1_0_q8k(w, a) },
                // SAFETY: `Kernels::new` builds this table only where `is_available()` holds.
                vec_dot_i2s_q8k: |c, a| unsafe { vec_dot_i2s_q8k(c, a) },
                // SAFETY: `Kernels::new` builds this table only where `is_available()` holds.
                vec_dot_t2p_q8k: |c, s, a| unsafe { vec_dot_t2p_q8k(c, s, a) },
                // SAFETY: `Kernels::new` builds this table only where `is_available()` holds.
                codes_tile: |w, l, r, a, n, o| unsafe {
                    $tiles(w, l, r, a, n, o)
                },
                // SAFETY: AVX-512 paths imply AVX2 (`Isa::is_available`).
                tq1_0_to_tq2_0: |s, d| unsafe {
                    crate::kernels::x86_64::avx2::tq1_0_to_tq2_0(s, d)
                },
                // SAFETY: AVX-512 paths imply AVX2 (`Isa::is_available`).
                tq1_0_rows: |w, r, a, o| unsafe {
                    crate::kernels::x86_64::avx2::tq1_0_rows(w, r, a, o)
                },
            }
        }

        #[inline]
        #[target_feature(enable = $features)]
        fn load512(p: &[u8], off: usize) -> __m512i {
            assert!(off + 64 <= p.len());
            // SAFETY: bounds checked above; unaligned load.
            unsafe { _mm512_loadu_si512(p.as_ptr().add(off) as *const _) }
        }

        #[inline]
        #[target_feature(enable = $features)]
        fn load256(p: &[u8], off: usize) -> __m256i {
            assert!(off + 32 <= p.len());
            // SAFETY: bounds checked above; unaligned load.
            unsafe { _mm256_loadu_si256(p.as_ptr().add(off) as *const __m256i) }
        }

        /// Exact f16 → f32 conversion: the AVX2 path's, free of its false dependency.
        #[inline]
        #[target_feature(enable = $features)]
        fn f16_to_f32(h: half::f16) -> f32 {
            crate::kernels::x86_64::avx2::f16_to_f32(h)
        }

        /// Activations `[lo, lo + 32)` and `[hi, hi + 32)` in one register.
        #[inline]
        #[target_feature(enable = $features)]
        fn load_pair(x: &[u8], lo: usize, hi: usize) -> __m512i {
            _mm512_inserti64x4::<1>(_mm512_castsi256_si512(load256(x, lo)), load256(x, hi))
        }

        #[inline]
        #[target_feature(enable = $features)]
        fn acts(a: &BlockQ8K) -> &[u8] {
            bytemuck::cast_slice(a.qs.as_slice())
        }

        /// Codes in bit pair `S / 2` of every byte.
        #[inline]
        #[target_feature(enable = $features)]
        fn plane<const S: u32>(q: __m512i) -> __m512i {
            _mm512_and_si512(_mm512_srli_epi16::<S>(q), _mm512_set1_epi8(3))
        }

        $($dots)*

        /// `sum c*a - sum a` for one block.
        #[inline]
        #[target_feature(enable = $features)]
        fn finish(acc: __m512i, a: &BlockQ8K) -> i32 {
            let bs = load256(bytemuck::cast_slice(a.bsums.as_slice()), 0);
            let bs = _mm256_madd_epi16(bs, _mm256_set1_epi16(1));
            let lo = _mm512_castsi512_si256(acc);
            let hi = _mm512_extracti64x4_epi64::<1>(acc);
            let v = _mm256_sub_epi32(_mm256_add_epi32(lo, hi), bs);
            let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
            let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
            let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
            _mm_cvtsi128_si32(s)
        }

        /// `TQ2_0` · int8: lanes 0..32 of the 64 code bytes cover weights `32l + j`, lanes
        /// 32..64 weights `128 + 32l + j`.
        ///
        /// # Safety
        /// The CPU must support every feature of this module.
        #[target_feature(enable = $features)]
        pub unsafe fn vec_dot_tq2_0_q8k(w: &[BlockTQ2_0], a: &[BlockQ8K]) -> f32 {
            let mut acc = 0.0f32;
            for (wb, ab) in w.iter().zip(a) {
                let (q, x) = (load512(&wb.qs, 0), acts(ab));
                let mut s = _mm512_setzero_si512();
                s = dot(s, plane::<0>(q), load_pair(x, 0, 128));
                s = dot(s, plane::<2>(q), load_pair(x, 32, 160));
                s = dot(s, plane::<4>(q), load_pair(x, 64, 192));
                s = dot(s, plane::<6>(q), load_pair(x, 96, 224));
                let isum = finish(s, ab);
                acc += (f16_to_f32(wb.d) * ab.d) * isum as f32;
            }
            acc
        }

        /// `I2_S` · int8: the 64 code bytes of a block are two 128-weight `I2_S` blocks.
        ///
        /// # Safety
        /// The CPU must support every feature of this module.
        #[target_feature(enable = $features)]
        pub unsafe fn vec_dot_i2s_q8k(codes: &[u8], a: &[BlockQ8K]) -> f32 {
            let mut acc = 0.0f32;
            for (b, ab) in a.iter().enumerate() {
                let (q, x) = (load512(codes, 64 * b), acts(ab));
                let mut s = _mm512_setzero_si512();
                s = dot(s, plane::<6>(q), load_pair(x, 0, 128));
                s = dot(s, plane::<4>(q), load_pair(x, 32, 160));
                s = dot(s, plane::<2>(q), load_pair(x, 64, 192));
                s = dot(s, plane::<0>(q), load_pair(x, 96, 224));
                let isum = finish(s, ab);
                acc += ab.d * isum as f32;
            }
            acc
        }

        /// Repacked T2P · int8: plane `l` of the 64 code bytes covers weights `64l..64l + 64`.
        ///
        /// # Safety
        /// The CPU must support every feature of this module.
        #[target_feature(enable = $features)]
        pub unsafe fn vec_dot_t2p_q8k(codes: &[u8], scales: &[f32], a: &[BlockQ8K]) -> f32 {
            let mut acc = 0.0f32;
            for ((b, ab), &sc) in a.iter().enumerate().zip(scales) {
                let (q, x) = (load512(codes, 64 * b), acts(ab));
                let mut s = _mm512_setzero_si512();
                s = dot(s, plane::<0>(q), load512(x, 0));
                s = dot(s, plane::<2>(q), load512(x, 64));
                s = dot(s, plane::<4>(q), load512(x, 128));
                s = dot(s, plane::<6>(q), load512(x, 192));
                let isum = finish(s, ab);
                acc += (sc * ab.d) * isum as f32;
            }
            acc
        }

        /// `TQ1_0` · int8 with the AVX2 block decoder (its compares and byte adds gain nothing
        /// from 512-bit registers at 54 bytes per block).
        ///
        /// # Safety
        /// The CPU must support every feature of this module.
        #[target_feature(enable = $features)]
        pub unsafe fn vec_dot_tq1_0_q8k(w: &[BlockTQ1_0], a: &[BlockQ8K]) -> f32 {
            let mut acc = 0.0f32;
            for (wb, ab) in w.iter().zip(a) {
                let isum = crate::kernels::x86_64::avx2::tq1_0_block_isum(wb, ab);
                acc += (f16_to_f32(wb.d) * ab.d) * isum as f32;
            }
            acc
        }
    };
}

avx512_kernels!(
    "avx512f,avx512bw,avx512vl,avx2,f16c",
    Isa::Avx512,
    crate::kernels::x86_64::tile_avx2::codes_tile,
    {
        /// `acc += sum of 4 adjacent (unsigned c) * (signed x)` per i32 lane.
        #[inline]
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,f16c")]
        fn dot(acc: __m512i, c: __m512i, x: __m512i) -> __m512i {
            let p = _mm512_madd_epi16(_mm512_maddubs_epi16(c, x), _mm512_set1_epi16(1));
            _mm512_add_epi32(acc, p)
        }
    }
);

/// The VNNI flavour of [`super::avx512`].
pub mod vnni {
    avx512_kernels!(
        "avx512f,avx512bw,avx512vl,avx2,f16c,avx512vnni",
        Isa::Avx512Vnni,
        crate::kernels::x86_64::tile_avx512::codes_tile,
        {
            /// `acc += sum of 4 adjacent (unsigned c) * (signed x)` per i32 lane (`vpdpbusd`).
            #[inline]
            #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,f16c,avx512vnni")]
            fn dot(acc: __m512i, c: __m512i, x: __m512i) -> __m512i {
                _mm512_dpbusd_epi32(acc, c, x)
            }
        }
    );
}
