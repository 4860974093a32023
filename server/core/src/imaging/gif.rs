//! GIF specifics: the extent of the first frame, which is what the decoder allocates and
//! decodes, read from its image descriptor before any pixel is. The header's logical screen
//! says nothing about it: a 1x1 screen may carry a 2800x2800 frame.

use super::DecodeError;

/// `(left + width, top + height)` of the first frame: the canvas it needs.
pub(super) fn first_frame_extent(b: &[u8]) -> Result<(u32, u32), DecodeError> {
    let corrupt = |m: &str| DecodeError::Corrupt(format!("GIF: {m}"));
    let packed = *b.get(10).ok_or_else(|| corrupt("short header"))?;
    let mut i = 13 + colour_table_len(packed);
    loop {
        match b.get(i) {
            Some(0x2C) => {
                let d = b
                    .get(i + 1..i + 9)
                    .ok_or_else(|| corrupt("short image descriptor"))?;
                let le = |k: usize| u32::from(u16::from_le_bytes([d[k], d[k + 1]]));
                return Ok((le(0) + le(4), le(2) + le(6)));
            }
            // An extension: its label, then sub-blocks up to an empty one.
            Some(0x21) => {
                i += 2;
                loop {
                    let n = usize::from(*b.get(i).ok_or_else(|| corrupt("truncated extension"))?);
                    i += 1 + n;
                    if n == 0 {
                        break;
                    }
                }
            }
            Some(0x3B) | None => return Err(corrupt("no image in the file")),
            Some(_) => return Err(corrupt("unknown block")),
        }
    }
}

/// Bytes of the global colour table a logical screen descriptor's packed field announces.
fn colour_table_len(packed: u8) -> usize {
    if packed & 0x80 == 0 {
        0
    } else {
        3 << ((packed & 0x07) + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gif(screen: (u16, u16), frame: (u16, u16, u16, u16)) -> Vec<u8> {
        let mut b = b"GIF89a".to_vec();
        b.extend_from_slice(&screen.0.to_le_bytes());
        b.extend_from_slice(&screen.1.to_le_bytes());
        b.extend_from_slice(&[0x80, 0, 0]); // a 2-entry global table
        b.extend_from_slice(&[0; 6]);
        b.extend_from_slice(&[0x21, 0xF9, 4, 0, 0, 0, 0, 0]); // graphic control
        b.extend_from_slice(&[0x21, 0xFE, 3, b'h', b'i', b'!', 2, b'x', b'y', 0]); // comment
        b.push(0x2C);
        for v in [frame.0, frame.1, frame.2, frame.3] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&[0, 2, 2, 0x4C, 0x01, 0, 0x3B]);
        b
    }

    #[test]
    fn the_frame_not_the_screen_is_measured() {
        assert_eq!(
            first_frame_extent(&gif((1, 1), (0, 0, 2800, 2800))),
            Ok((2800, 2800))
        );
        assert_eq!(first_frame_extent(&gif((9, 9), (3, 4, 5, 5))), Ok((8, 9)));
        let mut cut = gif((1, 1), (0, 0, 1, 1));
        cut.truncate(24);
        assert!(first_frame_extent(&cut).is_err());
        assert!(first_frame_extent(b"GIF89a\x01\x00\x01\x00\x00\x00\x00\x3B").is_err());
    }

    #[test]
    fn the_test_image_parses() {
        let b = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../testdata/images/good/gif-sample.gif"
        ))
        .unwrap();
        let (w, h) = first_frame_extent(&b).unwrap();
        assert!(w > 0 && h > 0);
    }
}
