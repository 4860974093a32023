//! The horizontal pass on x86-64 (AVX2, or SSE4.1), with Pillow's arithmetic unchanged: every
//! output is Σ pixel × coefficient over the same taps, in exact integers, rounded and clipped
//! as Pillow does, so the bytes equal the scalar pass's (tested on hundreds of sizes).
//!
//! A coefficient has 22 fractional bits, too wide for the 16-bit multiply-add (`pmaddwd`) that
//! makes the pass fast, so each is split as `hi · 2¹¹ + lo` (both < 2¹², as the weights are in
//! [0, 1]) and the two sums are recombined as `(Σ p·hi) << 11 + Σ p·lo`: the same integer, with
//! no overflow (the total is below 2³⁰, as it is for Pillow's own `int` sum).
//!
//! Layout: the taps of each output come in pairs; a pair's coefficients are 8 `i16`s,
//! `[c0 c1 | c0 c1 | c0 c1 | 0 0]` for R, G, B, and its two RGB pixels are shuffled to
//! `[r0 r1 g0 g1 b0 b1 0 0]`, so one `pmaddwd` gives the pair's R, G and B sums. AVX2 takes two
//! pairs (4 taps, 12 bytes) per step, SSE4.1 one (6 bytes). Taps past an output's own count have
//! zero coefficients; an output whose last load would leave the image is done by the scalar code.

use std::arch::x86_64::{
    __m128i, __m256i, _mm256_add_epi32, _mm256_castsi256_si128, _mm256_cvtepu8_epi16,
    _mm256_extracti128_si256, _mm256_loadu_si256, _mm256_madd_epi16, _mm256_setzero_si256,
    _mm256_slli_epi32, _mm_add_epi32, _mm_cvtepu8_epi16, _mm_cvtsi128_si32, _mm_loadl_epi64,
    _mm_loadu_si128, _mm_madd_epi16, _mm_packs_epi32, _mm_packus_epi16, _mm_set1_epi32,
    _mm_setr_epi8, _mm_setzero_si128, _mm_shuffle_epi8, _mm_slli_epi32, _mm_srai_epi32,
};

use super::{Taps, HALF, PRECISION_BITS};

/// Bits of a coefficient's low half.
const LO_BITS: u32 = 11;

/// One axis's taps, split and laid out for `pmaddwd`.
pub(super) struct Packed {
    /// Tap pairs per output (even: AVX2 reads them two by two).
    pairs: usize,
    hi: Vec<i16>,
    lo: Vec<i16>,
}

impl Packed {
    pub(super) fn new(taps: &Taps) -> Self {
        let outputs = taps.bounds.len();
        let most = taps.bounds.iter().map(|b| b.1).max().unwrap_or(0);
        let pairs = most.div_ceil(4) * 2;
        let mut hi = vec![0i16; outputs * pairs * 8];
        let mut lo = vec![0i16; outputs * pairs * 8];
        for o in 0..outputs {
            let (_, k) = taps.taps(o);
            for (t, &c) in k.iter().enumerate() {
                assert!(
                    (0..=1 << PRECISION_BITS).contains(&c),
                    "a bilinear weight is in [0, 1]"
                );
                let at = (o * pairs + t / 2) * 8 + t % 2;
                for ch in 0..3 {
                    hi[at + 2 * ch] = (c >> LO_BITS) as i16;
                    lo[at + 2 * ch] = (c & ((1 << LO_BITS) - 1)) as i16;
                }
            }
        }
        Self { pairs, hi, lo }
    }
}

/// `[R, G, B, 0]` sums of one output → its three bytes, as Pillow rounds and clips them.
///
/// # Safety
/// The CPU has SSE4.1.
#[target_feature(enable = "sse4.1")]
fn store(sum: __m128i, px: &mut [u8]) {
    let v = _mm_srai_epi32::<{ PRECISION_BITS as i32 }>(_mm_add_epi32(sum, _mm_set1_epi32(HALF)));
    // Signed saturation to i16, then unsigned to u8: Pillow's clip to 0..=255.
    let v = _mm_packus_epi16(_mm_packs_epi32(v, v), _mm_setzero_si128());
    px.copy_from_slice(&_mm_cvtsi128_si32(v).to_le_bytes()[..3]);
}

/// The horizontal pass of one row with AVX2: `input` is the image from the row's first byte to
/// its end (later rows are readable, their weights zero), `out` the row's outputs. An output
/// whose loads would leave the image is left to the scalar code.
///
/// # Safety
/// The CPU has AVX2.
#[target_feature(enable = "avx2")]
pub(super) fn row_avx2(input: &[u8], taps: &Taps, p: &Packed, out: &mut [u8]) {
    let shuffle = _mm_setr_epi8(0, 3, 1, 4, 2, 5, -1, -1, 6, 9, 7, 10, 8, 11, -1, -1);
    let steps = p.pairs / 2;
    for (o, px) in out.chunks_exact_mut(3).enumerate() {
        let start = taps.bounds[o].0 * 3;
        if steps == 0 || start + (steps - 1) * 12 + 16 > input.len() {
            super::scalar_pixel(input, taps, o, px);
            continue;
        }
        let (mut acc_hi, mut acc_lo) = (_mm256_setzero_si256(), _mm256_setzero_si256());
        let coeffs = o * p.pairs * 8;
        for s in 0..steps {
            // SAFETY: start + s·12 + 16 ≤ input.len() (checked above for the last step), and
            // the coefficients hold `pairs · 8` i16 per output, 16 per step.
            let (v, hi, lo) = unsafe {
                (
                    _mm_loadu_si128(input.as_ptr().add(start + s * 12).cast::<__m128i>()),
                    _mm256_loadu_si256(p.hi.as_ptr().add(coeffs + s * 16).cast::<__m256i>()),
                    _mm256_loadu_si256(p.lo.as_ptr().add(coeffs + s * 16).cast::<__m256i>()),
                )
            };
            let v = _mm256_cvtepu8_epi16(_mm_shuffle_epi8(v, shuffle));
            acc_hi = _mm256_add_epi32(acc_hi, _mm256_madd_epi16(v, hi));
            acc_lo = _mm256_add_epi32(acc_lo, _mm256_madd_epi16(v, lo));
        }
        let acc = _mm256_add_epi32(_mm256_slli_epi32::<{ LO_BITS as i32 }>(acc_hi), acc_lo);
        let sum = _mm_add_epi32(
            _mm256_castsi256_si128(acc),
            _mm256_extracti128_si256::<1>(acc),
        );
        store(sum, px);
    }
}

/// As [`row_avx2`], one tap pair per step, with SSE4.1.
///
/// # Safety
/// The CPU has SSE4.1.
#[target_feature(enable = "sse4.1")]
pub(super) fn row_sse41(input: &[u8], taps: &Taps, p: &Packed, out: &mut [u8]) {
    let shuffle = _mm_setr_epi8(0, 3, 1, 4, 2, 5, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    for (o, px) in out.chunks_exact_mut(3).enumerate() {
        let start = taps.bounds[o].0 * 3;
        if p.pairs == 0 || start + (p.pairs - 1) * 6 + 8 > input.len() {
            super::scalar_pixel(input, taps, o, px);
            continue;
        }
        let (mut acc_hi, mut acc_lo) = (_mm_setzero_si128(), _mm_setzero_si128());
        let coeffs = o * p.pairs * 8;
        for s in 0..p.pairs {
            // SAFETY: start + s·6 + 8 ≤ input.len() (checked above for the last pair), and the
            // coefficients hold `pairs · 8` i16 per output, 8 per pair.
            let (v, hi, lo) = unsafe {
                (
                    _mm_loadl_epi64(input.as_ptr().add(start + s * 6).cast::<__m128i>()),
                    _mm_loadu_si128(p.hi.as_ptr().add(coeffs + s * 8).cast::<__m128i>()),
                    _mm_loadu_si128(p.lo.as_ptr().add(coeffs + s * 8).cast::<__m128i>()),
                )
            };
            let v = _mm_cvtepu8_epi16(_mm_shuffle_epi8(v, shuffle));
            acc_hi = _mm_add_epi32(acc_hi, _mm_madd_epi16(v, hi));
            acc_lo = _mm_add_epi32(acc_lo, _mm_madd_epi16(v, lo));
        }
        store(
            _mm_add_epi32(_mm_slli_epi32::<{ LO_BITS as i32 }>(acc_hi), acc_lo),
            px,
        );
    }
}
