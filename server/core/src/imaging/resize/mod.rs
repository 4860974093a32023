//! Resize (shorter side → 256) and centre crop (224), bit-exact with torchvision's
//! `Resize(256)` + `CenterCrop(224)` on a PIL image: Pillow's antialiased bilinear filter with
//! its fixed-point coefficients (22 fractional bits), horizontal pass first, rounded to u8 in
//! between. Only the output pixels inside the crop are computed.
//!
//! The horizontal pass, most of the work on a large photo, runs on AVX2 or SSE4.1 where the CPU
//! has them ([`Kernel::best`], detected once), with the same integer arithmetic (`x86`); the
//! scalar pass is the reference and the fallback.

#[cfg(target_arch = "x86_64")]
mod x86;

use std::sync::OnceLock;

/// Fractional bits of Pillow's 8-bit resampling coefficients.
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// The size torchvision's `Resize(shorter)` gives a `w × h` image.
pub fn resized_size(w: usize, h: usize, shorter: usize) -> (usize, usize) {
    let (short, long) = if w <= h { (w, h) } else { (h, w) };
    let new_long = ((shorter * long) as f64 / short as f64) as usize;
    if w <= h {
        (shorter, new_long)
    } else {
        (new_long, shorter)
    }
}

/// Top-left offset of torchvision's `CenterCrop` (Python's `round`: halves to even).
fn crop_offset(size: usize, crop: usize) -> usize {
    ((size as f64 - crop as f64) / 2.0).round_ties_even() as usize
}

/// Fixed-point filter taps for a contiguous range of output pixels along one axis.
struct Taps {
    /// Per output pixel: first input index and number of taps.
    bounds: Vec<(usize, usize)>,
    /// `ksize` coefficients per output pixel.
    coeffs: Vec<i32>,
    ksize: usize,
}

impl Taps {
    /// Pillow's `precompute_coeffs` for outputs `first..first + count` of an `in_size → out_size`
    /// resize with the bilinear (triangle) filter.
    fn new(in_size: usize, out_size: usize, first: usize, count: usize) -> Self {
        let scale = in_size as f64 / out_size as f64;
        let filterscale = scale.max(1.0);
        let support = filterscale; // bilinear support is 1.0
        let ksize = support.ceil() as usize * 2 + 1;
        let mut bounds = Vec::with_capacity(count);
        let mut coeffs = vec![0i32; count * ksize];
        let mut k = vec![0f64; ksize];
        for (o, xx) in (first..first + count).enumerate() {
            let center = (xx as f64 + 0.5) * scale;
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize - xmin;
            let mut total = 0.0;
            for (x, w) in k.iter_mut().enumerate().take(xmax) {
                let t = ((x + xmin) as f64 - center + 0.5) / filterscale;
                *w = (1.0 - t.abs()).max(0.0);
                total += *w;
            }
            for (x, &w) in k.iter().enumerate().take(xmax) {
                let w = if total != 0.0 { w / total } else { w };
                let fixed = w * f64::from(1u32 << PRECISION_BITS);
                coeffs[o * ksize + x] = if w < 0.0 {
                    (fixed - 0.5) as i32
                } else {
                    (fixed + 0.5) as i32
                };
            }
            bounds.push((xmin, xmax));
        }
        Self {
            bounds,
            coeffs,
            ksize,
        }
    }

    /// Input range (first, end) the outputs read.
    fn span(&self) -> (usize, usize) {
        let first = self.bounds.iter().map(|b| b.0).min().unwrap_or(0);
        let end = self.bounds.iter().map(|b| b.0 + b.1).max().unwrap_or(0);
        (first, end)
    }

    /// Taps of output `o`: first input index and the fixed-point weights.
    #[inline]
    fn taps(&self, o: usize) -> (usize, &[i32]) {
        let (first, n) = self.bounds[o];
        (first, &self.coeffs[o * self.ksize..o * self.ksize + n])
    }
}

/// Which code runs the horizontal pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// Plain Rust, any CPU.
    Scalar,
    /// x86-64 SSE4.1: one tap pair per step.
    Sse41,
    /// x86-64 AVX2: two tap pairs per step.
    Avx2,
}

impl Kernel {
    /// The fastest this CPU runs (detected once).
    pub fn best() -> Self {
        static BEST: OnceLock<Kernel> = OnceLock::new();
        *BEST.get_or_init(|| Self::available().last().copied().unwrap_or(Kernel::Scalar))
    }

    /// Every kernel this CPU runs, slowest first.
    pub fn available() -> Vec<Self> {
        let mut all = vec![Kernel::Scalar];
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("sse4.1") {
                all.push(Kernel::Sse41);
            }
            if is_x86_feature_detected!("avx2") {
                all.push(Kernel::Avx2);
            }
        }
        all
    }
}

/// Pillow's rounding of a fixed-point sum back to u8.
#[inline]
fn to_u8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Pillow's initial value of every sum (half a unit, so the shift rounds).
const HALF: i32 = 1 << (PRECISION_BITS - 1);

/// One output of the horizontal pass, in plain Rust: `input` starts at its row's first byte.
fn scalar_pixel(input: &[u8], taps: &Taps, o: usize, px: &mut [u8]) {
    let (first, k) = taps.taps(o);
    let mut acc = [HALF; 3];
    for (rgb, &c) in input[first * 3..].chunks_exact(3).zip(k) {
        for ch in 0..3 {
            acc[ch] += i32::from(rgb[ch]) * c;
        }
    }
    for ch in 0..3 {
        px[ch] = to_u8(acc[ch]);
    }
}

/// The horizontal pass of `rows` rows starting at `row0` into `tmp`, with `kernel`.
fn horizontal(src: &[u8], w: usize, row0: usize, taps: &Taps, tmp: &mut [u8], kernel: Kernel) {
    let stride = taps.bounds.len() * 3;
    #[cfg(target_arch = "x86_64")]
    let packed = (kernel != Kernel::Scalar).then(|| x86::Packed::new(taps));
    for (r, out_row) in tmp.chunks_exact_mut(stride).enumerate() {
        // From the row's first byte to the end of the image: a vector load may run into the
        // next row, whose weights are zero.
        let input = &src[(row0 + r) * w * 3..];
        match kernel {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => {
                let packed = packed.as_ref().expect("packed for the SIMD kernels");
                // SAFETY: `Kernel::available` offers this kernel only where the CPU has AVX2.
                unsafe { x86::row_avx2(input, taps, packed, out_row) };
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Sse41 => {
                let packed = packed.as_ref().expect("packed for the SIMD kernels");
                // SAFETY: `Kernel::available` offers this kernel only where the CPU has SSE4.1.
                unsafe { x86::row_sse41(input, taps, packed, out_row) };
            }
            _ => {
                for (o, px) in out_row.chunks_exact_mut(3).enumerate() {
                    scalar_pixel(input, taps, o, px);
                }
            }
        }
    }
}

/// Resizes an RGB8 image (`w × h`, row-major) so its shorter side is `shorter`, and returns
/// the centre `crop × crop` square as RGB8.
pub fn resize_centre_crop(src: &[u8], w: usize, h: usize, shorter: usize, crop: usize) -> Vec<u8> {
    resize_centre_crop_with(Kernel::best(), src, w, h, shorter, crop)
}

/// [`resize_centre_crop`] with the horizontal pass on `kernel` (one of [`Kernel::available`]).
pub fn resize_centre_crop_with(
    kernel: Kernel,
    src: &[u8],
    w: usize,
    h: usize,
    shorter: usize,
    crop: usize,
) -> Vec<u8> {
    assert!(
        Kernel::available().contains(&kernel),
        "{kernel:?} does not run here"
    );
    let (nw, nh) = resized_size(w, h, shorter);
    let (left, top) = (crop_offset(nw, crop), crop_offset(nh, crop));
    let (need_h, need_v) = (nw != w, nh != h);
    let vtaps = need_v.then(|| Taps::new(h, nh, top, crop));
    // Rows of the source the vertical pass reads (or the cropped rows, with no vertical pass).
    let (row0, row1) = vtaps.as_ref().map_or((top, top + crop), Taps::span);

    // Horizontal pass (or plain column crop) into `crop` columns of rows row0..row1.
    let mut tmp = vec![0u8; (row1 - row0) * crop * 3];
    if need_h {
        horizontal(
            src,
            w,
            row0,
            &Taps::new(w, nw, left, crop),
            &mut tmp,
            kernel,
        );
    } else {
        for (r, out_row) in tmp.chunks_exact_mut(crop * 3).enumerate() {
            let start = ((row0 + r) * w + left) * 3;
            out_row.copy_from_slice(&src[start..start + crop * 3]);
        }
    }

    let Some(vtaps) = vtaps else { return tmp };
    // Vertical pass row by row: each output row is a weighted sum of whole input rows, which the
    // compiler vectorises.
    let stride = crop * 3;
    let mut out = vec![0u8; crop * stride];
    let mut acc = vec![0i32; stride];
    for (o, out_row) in out.chunks_exact_mut(stride).enumerate() {
        let (first, k) = vtaps.taps(o);
        acc.fill(HALF);
        for (j, &c) in k.iter().enumerate() {
            let row = &tmp[(first + j - row0) * stride..(first + j - row0 + 1) * stride];
            for (a, &v) in acc.iter_mut().zip(row) {
                *a += i32::from(v) * c;
            }
        }
        for (v, &a) in out_row.iter_mut().zip(&acc) {
            *v = to_u8(a);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_torchvision() {
        assert_eq!(resized_size(227, 149, 256), (390, 256)); // int(58112 / 149) = int(390.01)
        assert_eq!(resized_size(149, 227, 256), (256, 390));
        assert_eq!(resized_size(5, 5, 256), (256, 256));
        assert_eq!(resized_size(640, 480, 256), (341, 256));
        assert_eq!(crop_offset(389, 224), 82); // 82.5 rounds to even
        assert_eq!(crop_offset(391, 224), 84); // 83.5 rounds to even
        assert_eq!(crop_offset(256, 224), 16);
    }

    #[test]
    fn flat_image_stays_flat_and_crop_is_centred() {
        let src = vec![77u8; 300 * 200 * 3];
        let out = resize_centre_crop(&src, 300, 200, 256, 224);
        assert_eq!(out.len(), 224 * 224 * 3);
        assert!(out.iter().all(|&v| v == 77));
        // Exactly 256 on the short side: no resampling, only the centre crop (left 16, top 38).
        let (w, h) = (256usize, 300usize);
        let src: Vec<u8> = (0..w * h * 3).map(|i| ((i / 3 / w) % 256) as u8).collect();
        let out = resize_centre_crop(&src, w, h, 256, 224);
        assert_eq!(out[0], 38);
        assert_eq!(out[223 * 224 * 3], ((38 + 223) % 256) as u8);
    }

    #[test]
    fn downscale_matches_pillow_taps_on_a_step() {
        // 2:1 bilinear downscale of a vertical step at x = 256: each output reads 4 inputs with
        // weights (1, 3, 3, 1) / 8, exact in 22 fixed-point bits; x.5 results round down, as
        // Pillow's `(acc + 2^21) >> 22` does for these.
        let (w, h) = (512usize, 512usize);
        let src: Vec<u8> = (0..w * h * 3)
            .map(|i| if (i / 3) % w < 256 { 0 } else { 200 })
            .collect();
        let out = resize_centre_crop(&src, w, h, 256, 224);
        // Crop x = 112 is output column 128: inputs 255..=258 → 200 · 7/8 = 175.
        let row: Vec<u8> = (0..224).map(|x| out[x * 3]).collect();
        assert_eq!(row[0], 0);
        assert_eq!(row[223], 200);
        assert_eq!(row[111], 25); // inputs 253..=256 → 200 · 1/8
        assert_eq!(row[112], 175);
        assert!(
            out.chunks_exact(224 * 3).all(|r| r == &out[..224 * 3]),
            "rows differ"
        );
    }

    /// Every kernel gives the scalar pass's bytes: on 300 random sizes (up- and downscales,
    /// tiny, thin and odd ones) of random pixels, and on the sizes the benches use.
    #[test]
    fn every_kernel_equals_the_scalar_pass_on_300_random_sizes() {
        let kernels = Kernel::available();
        eprintln!("kernels here: {kernels:?}");
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut sizes: Vec<(usize, usize)> = (0..300)
            .map(|_| {
                let mut side = || match next() % 8 {
                    0 => 1 + (next() % 8) as usize,
                    1 => 224 + (next() % 64) as usize,
                    _ => 1 + (next() % 900) as usize,
                };
                (side(), side())
            })
            .collect();
        sizes.extend([(227, 149), (1280, 960), (4032, 3024), (1, 1), (3000, 2)]);
        for (w, h) in sizes {
            let src: Vec<u8> = (0..w * h * 3).map(|_| next() as u8).collect();
            let want = resize_centre_crop_with(Kernel::Scalar, &src, w, h, 256, 224);
            for &k in &kernels[1..] {
                let got = resize_centre_crop_with(k, &src, w, h, 256, 224);
                assert!(got == want, "{k:?} differs at {w}x{h}");
            }
        }
    }
}
