//! JPEG specifics: a marker scan that reads the frame header before any pixel is decoded
//! (size, precision, arithmetic coding, EXIF, Adobe), and the decoder: libjpeg-turbo's (through
//! mozjpeg-sys) with the islow IDCT and fancy upsampling, which is what Pillow decodes with, so
//! the pixels are Pillow's byte for byte (tested against references Pillow wrote).

use image::RgbImage;
use mozjpeg::ColorSpace;

use super::DecodeError;

/// What the frame header and APP segments say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JpegInfo<'a> {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Bits per sample (8, or 12 for extended JPEG).
    pub precision: u8,
    /// Arithmetic-coded (SOF9–SOF11).
    pub arithmetic: bool,
    /// Lossless or hierarchical, which no decoder here supports.
    pub exotic: Option<&'static str>,
    /// The EXIF payload (TIFF header onwards), when present.
    pub exif: Option<&'a [u8]>,
    /// An Adobe APP14 segment is present (its CMYK samples are stored inverted).
    pub adobe: bool,
}

/// Walks the markers up to the first scan.
pub fn scan(b: &[u8]) -> Result<JpegInfo<'_>, DecodeError> {
    let corrupt = |m: &str| DecodeError::Corrupt(format!("JPEG: {m}"));
    if b.len() < 4 || b[0] != 0xFF || b[1] != 0xD8 {
        return Err(corrupt("missing start-of-image marker"));
    }
    let (mut i, mut exif, mut frame, mut adobe) = (2usize, None, None, false);
    while i + 4 <= b.len() {
        if b[i] != 0xFF {
            return Err(corrupt("garbage between segments"));
        }
        let marker = b[i + 1];
        if marker == 0xFF {
            i += 1; // fill byte
            continue;
        }
        if marker == 0x01 || (0xD0..=0xD7).contains(&marker) {
            i += 2;
            continue;
        }
        let len = usize::from(u16::from_be_bytes([b[i + 2], b[i + 3]]));
        if len < 2 || i + 2 + len > b.len() {
            return Err(corrupt("segment runs past the end of the file"));
        }
        let seg = &b[i + 4..i + 2 + len];
        match marker {
            0xDA => break,
            0xE1 if seg.starts_with(b"Exif\0\0") => exif = Some(&seg[6..]),
            0xEE if seg.starts_with(b"Adobe") => adobe = true,
            0xC0..=0xCF if ![0xC4, 0xC8, 0xCC].contains(&marker) => {
                if seg.len() < 6 {
                    return Err(corrupt("short frame header"));
                }
                frame = Some((marker, seg[0], be16(&seg[1..3]), be16(&seg[3..5])));
            }
            _ => {}
        }
        i += 2 + len;
    }
    let (marker, precision, height, width) =
        frame.ok_or_else(|| corrupt("no frame header before the scan"))?;
    let exotic = match marker {
        0xC3 | 0xCB => Some("lossless JPEG"),
        0xC5..=0xC7 | 0xCD..=0xCF => Some("hierarchical JPEG"),
        _ => None,
    };
    Ok(JpegInfo {
        width: width.into(),
        height: height.into(),
        precision,
        arithmetic: (0xC9..=0xCF).contains(&marker),
        exotic,
        exif,
        adobe,
    })
}

/// The most scans a JPEG may have. A progressive decode costs the whole image's blocks per scan,
/// so a file of thousands of empty scans pins a decode thread for minutes while its pixels stay
/// within the limit. Encoders write 1 (baseline) to about 10 (libjpeg's progressive script) or
/// 20 (mozjpeg's optimised scans); libjpeg-turbo's own tools offer `-maxscans` for this attack.
pub const MAX_SCANS: usize = 100;

/// The number of scans (start-of-scan markers) in the file, counting at most `cap + 1`: the
/// markers are walked segment by segment and each scan's entropy-coded data skipped to the next
/// marker, so bytes inside APP segments (an EXIF thumbnail's own scans) do not count.
pub fn count_scans(b: &[u8], cap: usize) -> usize {
    let mut i = 2usize;
    let mut scans = 0usize;
    while i + 1 < b.len() && scans <= cap {
        if b[i] != 0xFF {
            // Entropy-coded data (or garbage the decoder will refuse), megabytes in a photo:
            // skipped to the next 0xFF at memchr's speed.
            match memchr::memchr(0xFF, &b[i..]) {
                Some(n) => i += n,
                None => break,
            }
            continue;
        }
        match b[i + 1] {
            0xFF => i += 1,                      // fill byte
            0x00 | 0x01 | 0xD0..=0xD7 => i += 2, // stuffing, TEM, restart
            0xD9 => break,                       // end of image
            marker => {
                let Some(len) = b.get(i + 2..i + 4).map(be16) else {
                    break;
                };
                if marker == 0xDA {
                    scans += 1;
                }
                i += 2 + usize::from(len);
            }
        }
    }
    scans
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

/// The DCT scale (1, 2, 4 or 8: decode at 1/s) that Pillow's `draft('RGB', (2w, 2h))` chooses for
/// a stored `width × height` JPEG, w × h being torchvision's Resize(`shorter`) target of it: the
/// largest s in {8, 4, 2} with s ≤ min(width // 2w, height // 2h), else 1.
pub fn draft_scale(width: u32, height: u32, shorter: u32) -> u8 {
    let (w, h) = super::resize::resized_size(width as usize, height as usize, shorter as usize);
    let room = (width as usize / (2 * w).max(1)).min(height as usize / (2 * h).max(1));
    [8u8, 4, 2]
        .into_iter()
        .find(|&s| room >= usize::from(s))
        .unwrap_or(1)
}

/// Decodes with libjpeg-turbo: islow IDCT and fancy upsampling (its defaults, and Pillow's),
/// baseline, progressive or arithmetic-coded; grey is replicated to RGB; CMYK and YCCK are turned
/// into RGB exactly as Pillow's `convert("RGB")` does. A file without its end-of-image marker is
/// refused as truncated (libjpeg would pad it with grey). `scale` (1, 2, 4 or 8) decodes at 1/s
/// of the size, ⌈w/s⌉ × ⌈h/s⌉, in the DCT domain (`scale_num = 8/s`, `scale_denom = 8`, which
/// libjpeg-turbo treats as Pillow's 1/s).
pub fn decode(bytes: &[u8], info: &JpegInfo<'_>, scale: u8) -> Result<RgbImage, DecodeError> {
    if !has_end_marker(bytes) {
        return Err(DecodeError::Corrupt(
            "JPEG: truncated (no end-of-image marker)".into(),
        ));
    }
    let adobe = info.adobe;
    let run = || -> std::io::Result<RgbImage> {
        let mut d = mozjpeg::Decompress::new_mem(bytes)?;
        d.dct_method(mozjpeg::DctMethod::IntegerSlow);
        d.do_fancy_upsampling(true);
        if scale > 1 {
            d.scale(8 / scale);
        }
        let cmyk = matches!(d.color_space(), ColorSpace::JCS_CMYK | ColorSpace::JCS_YCCK);
        let flat = if cmyk {
            let mut started = d.to_colorspace(ColorSpace::JCS_CMYK)?;
            let size = (started.width() as u32, started.height() as u32);
            let px: Vec<[u8; 4]> = started.read_scanlines()?;
            started.finish()?;
            (
                size,
                px.iter().flat_map(|p| cmyk_to_rgb(*p, adobe)).collect(),
            )
        } else {
            let mut started = d.rgb()?;
            let size = (started.width() as u32, started.height() as u32);
            // Flat bytes straight from libjpeg: no second copy of a photo's pixels.
            let px: Vec<u8> = started.read_scanlines()?;
            started.finish()?;
            (size, px)
        };
        let ((w, h), flat) = flat;
        RgbImage::from_raw(w, h, flat).ok_or_else(|| std::io::Error::other("short pixel buffer"))
    };
    match std::panic::catch_unwind(run) {
        Ok(Ok(img)) => Ok(img),
        Ok(Err(e)) => Err(DecodeError::Corrupt(format!("JPEG: {e}"))),
        Err(_) => Err(DecodeError::Corrupt(
            "JPEG: libjpeg rejected the data".into(),
        )),
    }
}

/// Pillow's CMYK → RGB (`cmyk2rgb` in its Convert.c) on what libjpeg returns; an Adobe file's
/// samples are stored inverted, and Pillow reads them with the raw mode `CMYK;I`.
fn cmyk_to_rgb(p: [u8; 4], adobe: bool) -> [u8; 3] {
    let p = if adobe { p.map(|v| 255 - v) } else { p };
    let nk = 255 - u32::from(p[3]);
    let muldiv255 = |a: u32, b: u32| {
        let t = a * b + 128;
        ((t >> 8) + t) >> 8
    };
    std::array::from_fn(|i| nk.saturating_sub(muldiv255(u32::from(p[i]), nk)) as u8)
}

fn has_end_marker(bytes: &[u8]) -> bool {
    let trimmed = bytes
        .iter()
        .rposition(|&b| b != 0)
        .map_or(&bytes[..0], |p| &bytes[..=p]);
    trimmed.ends_with(&[0xFF, 0xD9])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(marker: u8, payload: &[u8]) -> Vec<u8> {
        let mut s = vec![0xFF, marker];
        s.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
        s.extend_from_slice(payload);
        s
    }

    fn jpeg(sof: u8, precision: u8, w: u16, h: u16) -> Vec<u8> {
        let mut b = vec![0xFF, 0xD8];
        b.extend(segment(0xE1, b"Exif\0\0MM\0*rest"));
        let mut frame = vec![precision];
        frame.extend_from_slice(&h.to_be_bytes());
        frame.extend_from_slice(&w.to_be_bytes());
        frame.extend_from_slice(&[3, 1, 0x11, 0, 2, 0x11, 0, 3, 0x11, 0]);
        b.extend(segment(sof, &frame));
        b.extend(segment(0xDA, &[1, 1, 0, 0, 63, 0]));
        b
    }

    #[test]
    fn scan_reads_size_precision_coding_and_exif() {
        let bytes = jpeg(0xC0, 8, 640, 480);
        let info = scan(&bytes).unwrap();
        assert_eq!((info.width, info.height, info.precision), (640, 480, 8));
        assert!(!info.arithmetic && info.exotic.is_none());
        assert_eq!(info.exif, Some(&b"MM\0*rest"[..]));
        assert!(scan(&jpeg(0xC9, 8, 1, 1)).unwrap().arithmetic);
        assert_eq!(scan(&jpeg(0xC1, 12, 1, 1)).unwrap().precision, 12);
        assert_eq!(
            scan(&jpeg(0xC3, 8, 1, 1)).unwrap().exotic,
            Some("lossless JPEG")
        );
        // A pixel bomb is visible before anything is allocated.
        let bomb_bytes = jpeg(0xC2, 8, 65_535, 65_535);
        let bomb = scan(&bomb_bytes).unwrap();
        assert_eq!(
            u64::from(bomb.width) * u64::from(bomb.height),
            4_294_836_225
        );
    }

    #[test]
    fn scans_are_counted_by_marker_not_by_byte() {
        let mut b = jpeg(0xC2, 8, 8, 8);
        // Entropy data holding stuffed 0xFF 0x00, a restart marker and bytes that spell SOS
        // only inside an APP segment.
        b.extend_from_slice(&[0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD3, 0x56]);
        b.extend(segment(0xE2, &[0xFF, 0xDA, 0, 4, 0, 0]));
        for _ in 0..5 {
            b.extend(segment(0xDA, &[1, 1, 0, 0, 63, 0]));
            b.extend_from_slice(&[0xAB, 0xFF, 0x00]);
        }
        b.extend_from_slice(&[0xFF, 0xD9]);
        assert_eq!(count_scans(&b, MAX_SCANS), 6);
        assert_eq!(count_scans(&b, 2), 3, "counting stops past the cap");
        b.extend(segment(0xDA, &[1, 1, 0, 0, 63, 0]));
        assert_eq!(
            count_scans(&b, MAX_SCANS),
            6,
            "nothing after the end of image"
        );
    }

    #[test]
    fn draft_scales_are_pillows() {
        // 12 MP: target 341×256, room min(4032 // 682, 3024 // 512) = 5 → 1/4.
        assert_eq!(draft_scale(4032, 3024, 256), 4);
        assert_eq!(draft_scale(3024, 4032, 256), 4);
        assert_eq!(draft_scale(2048, 1536, 256), 2); // room 3
        assert_eq!(draft_scale(1023, 1023, 256), 1); // room 1: 1023 // 512
        assert_eq!(draft_scale(1024, 1024, 256), 2);
        assert_eq!(draft_scale(8192, 6144, 256), 8); // room 12
        assert_eq!(draft_scale(300, 200, 256), 1); // upscaled: room 0
                                                   // A panorama: the short side decides.
        assert_eq!(draft_scale(12_000, 1100, 256), 2);
    }

    #[test]
    fn scan_rejects_broken_structure() {
        assert!(scan(b"").is_err());
        assert!(scan(&[0xFF, 0xD8, 0xFF]).is_err());
        let mut cut = jpeg(0xC0, 8, 10, 10);
        cut.truncate(30);
        assert!(scan(&cut).is_err());
        assert!(!has_end_marker(&cut));
        assert!(has_end_marker(&[0xFF, 0xD8, 0xFF, 0xD9, 0, 0]));
    }
}
