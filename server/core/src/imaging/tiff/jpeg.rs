//! TIFF whose strips or tiles are JPEG in YCbCr (compression 7, photometric 6): what libtiff's
//! `tiffcp -c jpeg` and most scanners write, and what the `tiff` crate does not decode. Each
//! strip or tile is a JPEG stream, abbreviated when the file keeps its tables once
//! (`JPEGTables`); it is decoded on its own by libjpeg-turbo with libtiff's `JPEGCOLORMODE_RGB`
//! settings (YCbCr in, RGB out, islow IDCT, fancy upsampling within the chunk), as Pillow reads
//! it through libtiff, and the chunks are placed into the image. The `tiff` crate reads the tags.

use std::io::Cursor;

use image::RgbImage;
use tiff::decoder::{ChunkType, Decoder};
use tiff::tags::Tag;

use super::super::{check_size, jpeg, DecodeError};
use super::{corrupt, tag};

/// The image from its JPEG chunks (the page's tags already say JPEG in YCbCr).
pub(super) fn decode_chunks(
    d: &mut Decoder<Cursor<&[u8]>>,
    bytes: &[u8],
    max_pixels: u64,
) -> Result<RgbImage, DecodeError> {
    let (width, height) = d.dimensions().map_err(corrupt)?;
    check_size(width, height, max_pixels)?;
    let planar = tag(d, Tag::PlanarConfiguration);
    let samples = tag(d, Tag::SamplesPerPixel);
    if planar.unwrap_or(1) != 1 || samples.unwrap_or(3) != 3 {
        return Err(DecodeError::Unsupported(
            "JPEG-compressed YCbCr TIFF with separate planes is not supported".into(),
        ));
    }
    let (offsets, counts) = match d.get_chunk_type() {
        ChunkType::Strip => (Tag::StripOffsets, Tag::StripByteCounts),
        ChunkType::Tile => (Tag::TileOffsets, Tag::TileByteCounts),
    };
    let offsets: Vec<u64> = d.get_tag_u64_vec(offsets).map_err(corrupt)?;
    let counts: Vec<u64> = d.get_tag_u64_vec(counts).map_err(corrupt)?;
    let tables = d.get_tag_u8_vec(Tag::JPEGTables).ok();
    let (cw, ch) = d.chunk_dimensions();
    let (cw, ch) = (cw.min(width).max(1), ch.min(height).max(1));
    let across = width.div_ceil(cw);
    let chunks = across as u64 * u64::from(height.div_ceil(ch));
    if offsets.len() as u64 != chunks || counts.len() != offsets.len() {
        return Err(corrupt("chunk offsets and counts do not cover the image"));
    }
    let mut out = RgbImage::new(width, height);
    for (i, (&at, &n)) in offsets.iter().zip(&counts).enumerate() {
        let chunk = usize::try_from(at)
            .ok()
            .zip(usize::try_from(n).ok())
            .and_then(|(at, n)| bytes.get(at..at.checked_add(n)?))
            .ok_or_else(|| corrupt("a chunk lies outside the file"))?;
        let (x, y) = ((i as u32 % across) * cw, (i as u32 / across) * ch);
        let rgb = decode_chunk(chunk, tables.as_deref(), cw, ch)?;
        place(&mut out, &rgb, x, y);
    }
    Ok(out)
}

/// One chunk's JPEG stream (completed with the file's tables) → RGB, at most `w × h` (a strip
/// or a whole tile, padding included).
fn decode_chunk(
    chunk: &[u8],
    tables: Option<&[u8]>,
    w: u32,
    h: u32,
) -> Result<RgbImage, DecodeError> {
    let stream = match tables {
        // The tables' stream without its end marker, then the chunk's without its start marker.
        Some(t) if t.len() >= 4 && chunk.len() >= 2 && t.ends_with(&[0xFF, 0xD9]) => {
            [&t[..t.len() - 2], &chunk[2..]].concat()
        }
        _ => chunk.to_vec(),
    };
    let info = jpeg::scan(&stream)?;
    // A small TIFF cannot hide a large JPEG.
    if info.width > w || info.height > h || info.precision != 8 {
        return Err(corrupt("a JPEG chunk does not match its strip or tile"));
    }
    if jpeg::count_scans(&stream, jpeg::MAX_SCANS) > jpeg::MAX_SCANS {
        return Err(DecodeError::Unsupported(format!(
            "a TIFF's JPEG chunk with more than {} scans is not supported",
            jpeg::MAX_SCANS
        )));
    }
    jpeg::decode(&stream, &info, 1)
}

/// Copies `chunk` into `out` at (`x`, `y`), cut at the image's edges.
fn place(out: &mut RgbImage, chunk: &RgbImage, x: u32, y: u32) {
    let w = chunk.width().min(out.width() - x) as usize;
    let rows = chunk.height().min(out.height() - y);
    let (stride, cstride) = (out.width() as usize * 3, chunk.width() as usize * 3);
    for r in 0..rows as usize {
        let dst = (y as usize + r) * stride + x as usize * 3;
        out.as_mut()[dst..dst + w * 3]
            .copy_from_slice(&chunk.as_raw()[r * cstride..r * cstride + w * 3]);
    }
}
