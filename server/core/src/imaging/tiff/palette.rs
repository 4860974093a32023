//! Palette-colour TIFF (photometric 3, 1, 2, 4 or 8 bits per index), which the `tiff` crate
//! refuses. Its indices are stored exactly as grey samples are, so a copy of the file whose first
//! page says "grey" (`BlackIsZero`) is decoded by the `tiff` crate (every compression it reads),
//! and each index is then looked up in the `ColorMap`, keeping each 16-bit entry's high byte, as
//! Pillow does (`TiffImagePlugin`: `b // 256`, then `convert("RGB")`).

use std::io::Cursor;

use image::RgbImage;
use tiff::decoder::{Decoder, DecodingResult, Limits};
use tiff::tags::Tag;

use super::super::{check_size, DecodeError};
use super::{corrupt, tag};

const BLACK_IS_ZERO: u16 = 1;
const PHOTOMETRIC: u16 = 262;

/// The image from its palette indices and colour map (the page's tags already say palette).
pub(super) fn decode_indexed(
    d: &mut Decoder<Cursor<&[u8]>>,
    bytes: &[u8],
    max_pixels: u64,
) -> Result<RgbImage, DecodeError> {
    let bits = tag(d, Tag::BitsPerSample).unwrap_or(1);
    let samples = tag(d, Tag::SamplesPerPixel).unwrap_or(1);
    let (width, height) = d.dimensions().map_err(corrupt)?;
    check_size(width, height, max_pixels)?;
    if !matches!(bits, 1 | 2 | 4 | 8) || samples != 1 {
        return Err(DecodeError::Unsupported(format!(
            "palette TIFF with {samples} samples of {bits} bits is not supported"
        )));
    }
    let map = d.get_tag_u16_vec(Tag::ColorMap).map_err(corrupt)?;
    let entries = 1usize << bits;
    if map.len() != 3 * entries {
        return Err(corrupt("the colour map does not have 3 × 2^bits entries"));
    }
    let grey = as_grey(bytes).ok_or_else(|| corrupt("no photometric tag in the first page"))?;
    let mut limits = Limits::default();
    limits.decoding_buffer_size = usize::try_from(max_pixels).unwrap_or(usize::MAX);
    let mut g = Decoder::new(Cursor::new(&grey[..]))
        .map_err(corrupt)?
        .with_limits(limits);
    let DecodingResult::U8(packed) = g.read_image().map_err(corrupt)? else {
        return Err(corrupt("palette indices are not bytes"));
    };
    let (w, h) = (width as usize, height as usize);
    let row_bytes = (w * usize::from(bits)).div_ceil(8);
    if packed.len() < row_bytes * h {
        return Err(corrupt("the image data is short"));
    }
    let per_byte = 8 / usize::from(bits);
    let lut: Vec<[u8; 3]> = (0..entries)
        .map(|i| std::array::from_fn(|c| (map[c * entries + i] >> 8) as u8))
        .collect();
    let mut out = Vec::with_capacity(w * h * 3);
    for row in packed.chunks_exact(row_bytes).take(h) {
        for x in 0..w {
            let shift = 8 - usize::from(bits) * (x % per_byte + 1);
            let index = (row[x / per_byte] >> shift) as usize & (entries - 1);
            out.extend_from_slice(&lut[index]);
        }
    }
    Ok(RgbImage::from_raw(width, height, out).expect("w × h × 3 bytes"))
}

/// A copy of the TIFF `bytes` whose first page's photometric tag says `BlackIsZero`; `None` if
/// that page has no such tag (classic and BigTIFF, either byte order).
fn as_grey(bytes: &[u8]) -> Option<Vec<u8>> {
    let little = match bytes.get(..2)? {
        b"II" => true,
        b"MM" => false,
        _ => return None,
    };
    let u16_at = |at: usize| -> Option<u16> {
        let b: [u8; 2] = bytes.get(at..at + 2)?.try_into().ok()?;
        Some(if little {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        })
    };
    let u32_at = |at: usize| -> Option<u64> {
        let b: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
        Some(u64::from(if little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }))
    };
    let u64_at = |at: usize| -> Option<u64> {
        let b: [u8; 8] = bytes.get(at..at + 8)?.try_into().ok()?;
        Some(if little {
            u64::from_le_bytes(b)
        } else {
            u64::from_be_bytes(b)
        })
    };
    // Classic: 2-byte count, 12-byte entries, value at +8. BigTIFF: 8-byte count, 20-byte
    // entries, value at +12.
    let (count, first, size, value) = match u16_at(2)? {
        42 => {
            let ifd = usize::try_from(u32_at(4)?).ok()?;
            (u64::from(u16_at(ifd)?), ifd + 2, 12, 8)
        }
        43 => {
            let ifd = usize::try_from(u64_at(8)?).ok()?;
            (u64_at(ifd)?, ifd + 8, 20, 12)
        }
        _ => return None,
    };
    // Entries past the end of the file end the search, whatever the count claims.
    let entry = (0..usize::try_from(count).ok()?)
        .map_while(|i| {
            Some(first.checked_add(i.checked_mul(size)?)?).filter(|&at| at < bytes.len())
        })
        .find(|&at| u16_at(at) == Some(PHOTOMETRIC))?;
    let mut grey = bytes.to_vec();
    let v = match little {
        true => BLACK_IS_ZERO.to_le_bytes(),
        false => BLACK_IS_ZERO.to_be_bytes(),
    };
    grey.get_mut(entry + value..entry + value + 2)?
        .copy_from_slice(&v);
    Some(grey)
}

#[cfg(test)]
mod tests {
    use super::super::decode;
    use super::*;

    const PALETTE: u16 = 3;

    /// A 3×1 palette TIFF of 2-bit indices 0, 1, 3 (one byte), uncompressed, little-endian.
    fn tiny(photometric: u16) -> Vec<u8> {
        let map: Vec<u16> = (0..12).map(|i| (i as u16) << 8 | 0x7F).collect();
        let mut f = b"II*\0".to_vec();
        let ifd = 8 + 1 + 1 + 24;
        f.extend_from_slice(&(ifd as u32).to_le_bytes());
        f.push(0b00_01_11_00);
        f.push(0);
        map.iter()
            .for_each(|v| f.extend_from_slice(&v.to_le_bytes()));
        let entries: [(u16, u16, u32, u32); 9] = [
            (256, 3, 1, 3),
            (257, 3, 1, 1),
            (258, 3, 1, 2),
            (259, 3, 1, 1),
            (262, 3, 1, u32::from(photometric)),
            (273, 4, 1, 8),
            (278, 3, 1, 1),
            (279, 4, 1, 1),
            (320, 3, 12, 10),
        ];
        f.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        for (tag, ty, n, v) in entries {
            f.extend_from_slice(&tag.to_le_bytes());
            f.extend_from_slice(&ty.to_le_bytes());
            f.extend_from_slice(&n.to_le_bytes());
            f.extend_from_slice(&v.to_le_bytes());
        }
        f.extend_from_slice(&0u32.to_le_bytes());
        f
    }

    #[test]
    fn indices_are_looked_up_by_the_high_byte_of_each_entry() {
        let (rgb, orientation) = decode(&tiny(PALETTE), 100).unwrap().unwrap();
        assert_eq!(orientation, None);
        // Entry i is red i, green 4 + i, blue 8 + i (high bytes); indices 0, 1, 3.
        assert_eq!(rgb.as_raw(), &[0, 4, 8, 1, 5, 9, 3, 7, 11]);
        assert!(
            decode(&tiny(BLACK_IS_ZERO), 100).is_none(),
            "not a palette TIFF"
        );
        assert!(matches!(
            decode(&tiny(PALETTE), 2),
            Some(Err(DecodeError::TooLarge { .. }))
        ));
    }

    #[test]
    fn a_short_colour_map_or_broken_header_is_corrupt_not_a_panic() {
        let mut short = tiny(PALETTE);
        let at = short.len() - 4 - 12 + 4;
        short[at..at + 4].copy_from_slice(&6u32.to_le_bytes());
        assert!(matches!(
            decode(&short, 100),
            Some(Err(DecodeError::Corrupt(_)))
        ));
        assert_eq!(as_grey(b"II*\0\xFF\xFF\xFF\x7F"), None);
        // A BigTIFF whose first page claims 2^63 entries: the search stops at the file's end.
        let mut big = b"II+\0\x08\0\0\0\x10\0\0\0\0\0\0\0".to_vec();
        big.extend_from_slice(&(1u64 << 63).to_le_bytes());
        big.extend_from_slice(&[0; 40]);
        assert_eq!(as_grey(&big), None);
        assert_eq!(as_grey(b"XX"), None);
    }
}
