//! Image bytes → the network's input: sniff the format, check the claimed size before
//! allocating, decode, apply EXIF orientation, convert to RGB, then resize and centre-crop
//! exactly as torchvision + Pillow do. Runs on the decode pool (`pool`), never on the async executor.

pub mod folder;
mod gif;
pub mod jpeg;
pub mod pool;
pub mod resize;
mod tiff;

use std::io::Cursor;
use std::time::{Duration, Instant};

use image::{
    metadata::Orientation, DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage,
};

pub use crate::config::Preprocess;

/// Why an image was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Zero bytes.
    #[error("the image is empty")]
    Empty,
    /// The bytes are no image format we know.
    #[error("the data is not a recognised image (JPEG, PNG, WebP, GIF or BMP)")]
    NotAnImage,
    /// A real image in a format or variant this server does not decode.
    #[error("{0}")]
    Unsupported(String),
    /// The header claims more pixels than allowed.
    #[error("the image claims {width}x{height} pixels, more than the limit of {limit}")]
    TooLarge {
        /// Claimed width.
        width: u32,
        /// Claimed height.
        height: u32,
        /// The pixel limit.
        limit: u64,
    },
    /// The data is broken or truncated.
    #[error("the image could not be decoded: {0}")]
    Corrupt(String),
}

/// A preprocessed image and what it cost.
#[derive(Debug)]
pub struct Preprocessed {
    /// u8 HWC 224×224×3.
    pub pixels: Vec<u8>,
    /// Time to decode (incl. orientation and RGB conversion).
    pub decode: Duration,
    /// Time to resize and crop.
    pub preprocess: Duration,
    /// When decoding started (for trace spans).
    pub started: Instant,
    /// The DCT scale the JPEG was decoded at (1/`scale`; 1: full size, always for `Exact`).
    pub scale: u8,
}

/// Decodes `bytes` (a JPEG as `mode` says) and resizes/crops to the network input.
pub fn preprocess(
    bytes: &[u8],
    max_pixels: u64,
    mode: Preprocess,
) -> Result<Preprocessed, DecodeError> {
    let start = Instant::now();
    let (rgb, scale) = tracing::info_span!(target: "gateway::imaging", "decode")
        .in_scope(|| decode_with(bytes, max_pixels, mode))?;
    let decoded = Instant::now();
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    let side = models::RESIZE_SHORTER_SIDE as usize;
    let pixels = tracing::info_span!(target: "gateway::imaging", "preprocess").in_scope(|| {
        resize::resize_centre_crop(rgb.as_raw(), w, h, side, models::CROP_SIDE as usize)
    });
    Ok(Preprocessed {
        pixels,
        decode: decoded - start,
        preprocess: decoded.elapsed(),
        started: start,
        scale,
    })
}

/// Decodes any supported format to upright RGB8, at full size.
pub fn decode_rgb(bytes: &[u8], max_pixels: u64) -> Result<RgbImage, DecodeError> {
    decode_with(bytes, max_pixels, Preprocess::Exact).map(|(rgb, _)| rgb)
}

/// Decodes any supported format to upright RGB8; a JPEG in `Draft` at the DCT scale Pillow's
/// draft would choose (returned: 1/`scale`).
pub fn decode_with(
    bytes: &[u8],
    max_pixels: u64,
    mode: Preprocess,
) -> Result<(RgbImage, u8), DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    let format = image::guess_format(bytes).map_err(|_| match known_unsupported(bytes) {
        Some(name) => DecodeError::Unsupported(format!("{name} images are not supported")),
        None => DecodeError::NotAnImage,
    })?;
    match format {
        ImageFormat::Jpeg => decode_jpeg(bytes, max_pixels, mode),
        ImageFormat::Tiff => match tiff::decode(bytes, max_pixels) {
            Some(decoded) => decoded.map(|(rgb, o)| (upright(DynamicImage::ImageRgb8(rgb), o), 1)),
            None => decode_generic(bytes, format, max_pixels).map(|rgb| (rgb, 1)),
        },
        ImageFormat::Png | ImageFormat::WebP | ImageFormat::Gif | ImageFormat::Bmp => {
            decode_generic(bytes, format, max_pixels).map(|rgb| (rgb, 1))
        }
        other => Err(DecodeError::Unsupported(format!(
            "{other:?} images are not supported"
        ))),
    }
}

fn check_size(width: u32, height: u32, limit: u64) -> Result<(), DecodeError> {
    if width == 0 || height == 0 {
        return Err(DecodeError::Corrupt(format!(
            "the header claims a {width}x{height} image"
        )));
    }
    if u64::from(width) * u64::from(height) > limit {
        return Err(DecodeError::TooLarge {
            width,
            height,
            limit,
        });
    }
    Ok(())
}

fn decode_jpeg(
    bytes: &[u8],
    max_pixels: u64,
    mode: Preprocess,
) -> Result<(RgbImage, u8), DecodeError> {
    let info = jpeg::scan(bytes)?;
    if let Some(kind) = info.exotic {
        return Err(DecodeError::Unsupported(format!("{kind} is not supported")));
    }
    if info.precision != 8 {
        return Err(DecodeError::Unsupported(format!(
            "{}-bit JPEG is not supported (only 8-bit samples); re-encode it as 8-bit",
            info.precision
        )));
    }
    check_size(info.width, info.height, max_pixels)?;
    let scans = jpeg::count_scans(bytes, jpeg::MAX_SCANS);
    if scans > jpeg::MAX_SCANS {
        return Err(DecodeError::Unsupported(format!(
            "JPEG with more than {} scans is not supported (each scan costs a pass over the whole image)",
            jpeg::MAX_SCANS
        )));
    }
    let scale = match mode {
        Preprocess::Exact => 1,
        Preprocess::Draft => {
            jpeg::draft_scale(info.width, info.height, models::RESIZE_SHORTER_SIDE)
        }
    };
    let rgb = jpeg::decode(bytes, &info, scale)?;
    let orientation = info.exif.and_then(Orientation::from_exif_chunk);
    Ok((upright(DynamicImage::ImageRgb8(rgb), orientation), scale))
}

fn decode_generic(
    bytes: &[u8],
    format: ImageFormat,
    max_pixels: u64,
) -> Result<RgbImage, DecodeError> {
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = image::Limits::default();
    // Room for the decoded image at 16-bit RGBA plus the decoder's own buffers.
    limits.max_alloc = Some(max_pixels.saturating_mul(8).saturating_add(64 << 20));
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(from_image_error)?;
    let (w, h) = decoder.dimensions();
    check_size(w, h, max_pixels)?;
    if format == ImageFormat::Gif {
        // The logical screen may be 1x1 while the frame decoded is far larger.
        let (fw, fh) = gif::first_frame_extent(bytes)?;
        check_size(fw, fh, max_pixels)?;
    }
    let orientation = decoder.orientation().ok();
    let img = DynamicImage::from_decoder(decoder).map_err(from_image_error)?;
    Ok(upright(img, orientation))
}

/// Applies the EXIF orientation (if any) and converts to RGB8, dropping alpha as Pillow's
/// `convert("RGB")` does. An RGB8 image without rotation passes through without a copy.
fn upright(mut img: DynamicImage, orientation: Option<Orientation>) -> RgbImage {
    img.apply_orientation(orientation.unwrap_or(Orientation::NoTransforms));
    match img {
        DynamicImage::ImageRgb16(_)
        | DynamicImage::ImageRgba16(_)
        | DynamicImage::ImageLuma16(_)
        | DynamicImage::ImageLumaA16(_) => high_bytes(&img),
        other => other.into_rgb8(),
    }
}

/// 16-bit samples to 8 bits by their high byte, as Pillow (libpng's `strip_16`) does for colour.
/// For 16-bit grey Pillow clips to 0–255 instead (most of the range turns white); we scale it the
/// same way as colour, on purpose (README, "Where we differ from Pillow").
fn high_bytes(img: &DynamicImage) -> RgbImage {
    let rgb16 = img.to_rgb16();
    let (w, h) = rgb16.dimensions();
    let bytes = rgb16
        .into_raw()
        .into_iter()
        .map(|v| (v >> 8) as u8)
        .collect();
    RgbImage::from_raw(w, h, bytes).expect("same dimensions")
}

fn from_image_error(e: image::ImageError) -> DecodeError {
    match e {
        image::ImageError::Unsupported(u) => DecodeError::Unsupported(u.to_string()),
        image::ImageError::Limits(l) => {
            DecodeError::Corrupt(format!("over the decoder's limits: {l}"))
        }
        image::ImageError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            DecodeError::Corrupt("the file is truncated".into())
        }
        other => DecodeError::Corrupt(other.to_string()),
    }
}

/// Names image formats we recognise but do not decode, so the client hears "unsupported".
fn known_unsupported(b: &[u8]) -> Option<&'static str> {
    let ftyp_brand = (b.len() >= 12 && &b[4..8] == b"ftyp").then(|| &b[8..12]);
    match b {
        [0xFF, 0x0A, ..] | [0, 0, 0, 0x0C, b'J', b'X', b'L', b' ', ..] => Some("JPEG XL"),
        [b'8', b'B', b'P', b'S', ..] => Some("PSD"),
        _ => match ftyp_brand {
            Some(b"avif" | b"avis") => Some("AVIF"),
            Some(b"heic" | b"heix" | b"mif1" | b"msf1" | b"hevc") => Some("HEIC/HEIF"),
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffing_separates_unsupported_from_garbage() {
        assert_eq!(decode_rgb(b"", 100), Err(DecodeError::Empty));
        assert_eq!(
            decode_rgb(b"hello world, not an image", 100),
            Err(DecodeError::NotAnImage)
        );
        let tiff = b"II*\0\x08\0\0\0rest";
        assert!(
            matches!(decode_rgb(tiff, 100), Err(DecodeError::Corrupt(_))),
            "a broken TIFF is a bad image, not an unsupported one"
        );
        let avif = b"\0\0\0\x1cftypavif\0\0\0\0";
        assert!(
            matches!(decode_rgb(avif, 100), Err(DecodeError::Unsupported(m)) if m.to_lowercase().contains("avif"))
        );
    }

    #[test]
    fn size_limit_applies_before_decoding() {
        assert!(matches!(
            check_size(10_000, 10_000, 1_000_000),
            Err(DecodeError::TooLarge { .. })
        ));
        assert!(check_size(1000, 1000, 1_000_000).is_ok());
        assert!(check_size(0, 10, 1_000_000).is_err());
    }

    #[test]
    fn a_jpeg_of_too_many_scans_is_refused_before_decoding() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../testdata/images/good/progressive-cat.jpg"
        );
        let good = std::fs::read(path).unwrap();
        assert!(decode_rgb(&good, 40_000_000).is_ok());
        // Its last scan (from its start-of-scan marker to the end of image) repeated: libjpeg
        // would decode every copy.
        let eoi = good.len() - 2;
        let sos = good.windows(2).rposition(|w| w == [0xFF, 0xDA]).unwrap();
        let mut bomb = good[..eoi].to_vec();
        for _ in 0..jpeg::MAX_SCANS {
            bomb.extend_from_slice(&good[sos..eoi]);
        }
        bomb.extend_from_slice(&[0xFF, 0xD9]);
        assert!(jpeg::count_scans(&bomb, jpeg::MAX_SCANS) > jpeg::MAX_SCANS);
        let refused = decode_rgb(&bomb, 40_000_000).unwrap_err();
        assert!(
            matches!(&refused, DecodeError::Unsupported(m) if m.contains("scans")),
            "{refused}"
        );
    }

    #[test]
    fn a_gif_frame_larger_than_its_screen_meets_the_pixel_limit() {
        let mut b = b"GIF89a\x01\x00\x01\x00\x00\x00\x00".to_vec();
        b.extend_from_slice(&[0x2C, 0, 0, 0, 0, 0xF0, 0x0A, 0xF0, 0x0A, 0]); // 2800x2800
        b.extend_from_slice(&[2, 2, 0x4C, 0x01, 0, 0x3B]);
        assert!(matches!(
            decode_rgb(&b, 4_000_000),
            Err(DecodeError::TooLarge {
                width: 2800,
                height: 2800,
                ..
            })
        ));
    }
}
