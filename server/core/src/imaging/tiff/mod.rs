//! TIFF: the first page's tags read once, and they pick the decoder. JPEG chunks in YCbCr go to
//! [`jpeg`], palette colour to [`palette`] (the `tiff` crate decodes
//! neither), each with the page's orientation tag; every other TIFF is the `image` crate's.

use std::io::Cursor;

use image::metadata::Orientation;
use image::RgbImage;
use tiff::decoder::Decoder;
use tiff::tags::Tag;

mod jpeg;
mod palette;

use super::DecodeError;

const JPEG: u16 = 7;
const YCBCR: u16 = 6;
const PALETTE: u16 = 3;

/// `Some` when `bytes` is a TIFF that one of our decoders takes (decoded, with its orientation
/// tag, or why not); `None` for any other TIFF, which the `image` crate decodes.
pub fn decode(
    bytes: &[u8],
    max_pixels: u64,
) -> Option<Result<(RgbImage, Option<Orientation>), DecodeError>> {
    let mut d = Decoder::new(Cursor::new(bytes)).ok()?;
    let decoded = match (
        tag(&mut d, Tag::Compression),
        tag(&mut d, Tag::PhotometricInterpretation),
    ) {
        (Some(JPEG), Some(YCBCR)) => jpeg::decode_chunks(&mut d, bytes, max_pixels),
        (_, Some(PALETTE)) => palette::decode_indexed(&mut d, bytes, max_pixels),
        _ => return None,
    };
    let orientation = tag(&mut d, Tag::Orientation)
        .and_then(|o| u8::try_from(o).ok())
        .and_then(Orientation::from_exif);
    Some(decoded.map(|rgb| (rgb, orientation)))
}

/// Tag `t` of the current page as a `u16`, if present and one.
pub(super) fn tag(d: &mut Decoder<Cursor<&[u8]>>, t: Tag) -> Option<u16> {
    d.find_tag_unsigned::<u16>(t).ok().flatten()
}

/// A broken TIFF.
pub(super) fn corrupt(m: impl std::fmt::Display) -> DecodeError {
    DecodeError::Corrupt(format!("TIFF: {m}"))
}
