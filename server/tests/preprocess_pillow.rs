//! Decoding and preprocessing equal Pillow + torchvision (decode, EXIF orientation, RGB,
//! Resize(256), CenterCrop(224)) byte for byte on every good image and the TIFF samples: the
//! references in `tests/data/pillow/*.npy` were written by `scripts/make_reference_tensors.py`.

mod common;

use gateway::imaging::Preprocess::{Draft, Exact};
use sha2::{Digest, Sha256};

/// Reads a uint8 `.npy` of any shape (the decoded images differ in size).
fn load_any_npy(path: &std::path::Path) -> (Vec<usize>, Vec<u8>) {
    let raw = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&raw[..6], b"\x93NUMPY", "{}", path.display());
    let header_len = u16::from_le_bytes([raw[8], raw[9]]) as usize;
    let header = std::str::from_utf8(&raw[10..10 + header_len]).unwrap();
    assert!(header.contains("'descr': '|u1'"), "{header}");
    let shape = header
        .split("'shape': (")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap();
    let dims = shape
        .split(',')
        .filter_map(|d| d.trim().parse().ok())
        .collect();
    (dims, raw[10 + header_len..].to_vec())
}

/// Images whose Pillow answer is wrong on purpose, and why (README: "Where Pillow differs").
const PILLOW_IS_WRONG: &[(&str, &str)] = &[(
    "grey16.tif",
    "Pillow clips 16-bit grey to 0–255 (most of the range turns white); we scale it by its high byte",
)];

/// Images decoded by another decoder than Pillow's, within a stated bound.
const NEAR_PILLOW: &[(&str, u8, &str)] = &[(
    "ycbcr-jpeg.tif",
    1,
    "JPEG inside an RGB-photometric TIFF is decoded by image-tiff's own JPEG decoder, not \
     libjpeg-turbo (YCbCr-photometric JPEG TIFFs go through libjpeg-turbo and are exact)",
)];

/// Byte for byte, the decoded RGB and the 224×224 crop equal Pillow's, for every good image
/// (every format) and the TIFF samples. References: `scripts/make_reference_tensors.py`.
#[test]
fn decoding_and_preprocessing_equal_pillow_byte_for_byte() {
    let refs = common::repo().join("server/tests/data/pillow");
    let mut paths = common::files("good");
    let tiffs = common::repo().join("server/tests/data/tiff");
    if let Ok(dir) = std::fs::read_dir(&tiffs) {
        paths.extend(
            dir.map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|x| x == "tif")),
        );
    }
    let mut failures = Vec::new();
    for path in &paths {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if PILLOW_IS_WRONG.iter().any(|(n, _)| *n == name) {
            continue;
        }
        let bytes = std::fs::read(path).unwrap();
        let (dims, rgb) = load_any_npy(&refs.join(format!("{name}.rgb.npy")));
        let ours = gateway::imaging::decode_rgb(&bytes, 40_000_000).unwrap();
        let same_size = [ours.height() as usize, ours.width() as usize, 3] == dims[..];
        let decoded = if same_size {
            ours.as_raw()
                .iter()
                .zip(&rgb)
                .filter(|(a, b)| a != b)
                .count()
        } else {
            usize::MAX
        };
        let (_, crop) = load_any_npy(&refs.join(format!("{name}.npy")));
        let pixels = gateway::imaging::preprocess(&bytes, 40_000_000, Exact)
            .unwrap()
            .pixels;
        // These are small: draft decodes them at full size, the same bytes.
        let draft = gateway::imaging::preprocess(&bytes, 40_000_000, Draft).unwrap();
        assert_eq!(
            (draft.scale, &draft.pixels),
            (1, &pixels),
            "{name}: draft changed it"
        );
        let cropped = pixels.iter().zip(&crop).filter(|(a, b)| a != b).count();
        let worst = pixels
            .iter()
            .zip(&crop)
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap_or(0);
        eprintln!("{name}: decoded bytes differing {decoded}, crop bytes differing {cropped} (max {worst})");
        match NEAR_PILLOW.iter().find(|(n, _, _)| *n == name) {
            Some((_, bound, _)) if same_size && worst <= *bound => {}
            _ if decoded != 0 || cropped != 0 => failures.push(name),
            _ => {}
        }
    }
    assert!(paths.len() >= 18, "only {} images compared", paths.len());
    assert!(failures.is_empty(), "differ from Pillow: {failures:?}");
}

#[test]
fn exif_orientation_is_applied() {
    // portrait-exif.jpg is stored 113 x 150 with orientation "flip horizontal".
    let bytes = std::fs::read(common::images("good").join("portrait-exif.jpg")).unwrap();
    let upright = gateway::imaging::decode_rgb(&bytes, 40_000_000).unwrap();
    let mut stored = mozjpeg::Decompress::new_mem(&bytes).unwrap().rgb().unwrap();
    let (w, h) = (stored.width() as u32, stored.height() as u32);
    let px: Vec<[u8; 3]> = stored.read_scanlines().unwrap();
    let img = image::RgbImage::from_raw(w, h, px.into_iter().flatten().collect()).unwrap();
    assert_eq!(upright.dimensions(), img.dimensions());
    assert_eq!(
        upright,
        image::imageops::flip_horizontal(&img),
        "mirrored as EXIF says"
    );
}

#[test]
fn sixteen_bit_grey_is_scaled_not_clipped() {
    // grey16.tif holds grey8-packbits.tif's values × 257: scaled, they are the same picture
    // (Pillow would clip nearly all of it to white).
    let tiffs = common::repo().join("server/tests/data/tiff");
    let decode = |f: &str| {
        gateway::imaging::decode_rgb(&std::fs::read(tiffs.join(f)).unwrap(), 40_000_000).unwrap()
    };
    assert_eq!(decode("grey16.tif"), decode("grey8-packbits.tif"));
}

#[test]
fn large_downscales_equal_pillow_byte_for_byte() {
    // 2048×1536 and 1200×1800 photos: Resize(256) shrinks them 6–8×, where the antialiasing
    // filter's support spans dozens of source pixels.
    let refs = common::repo().join("server/tests/data/pillow");
    let dir = common::repo().join("server/tests/data/large");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let (_, crop) = load_any_npy(&refs.join(format!("{name}.npy")));
        let bytes = std::fs::read(&path).unwrap();
        let pixels = gateway::imaging::preprocess(&bytes, 40_000_000, Exact)
            .unwrap()
            .pixels;
        let differing = pixels.iter().zip(&crop).filter(|(a, b)| a != b).count();
        assert_eq!(
            differing, 0,
            "{name}: {differing} crop bytes differ from Pillow's"
        );
        n += 1;
    }
    assert_eq!(n, 2);
}

/// `PREPROCESS=draft` equals Pillow's draft pipeline byte for byte (`draft('RGB', (2w, 2h))`,
/// EXIF orientation, Resize(256), CenterCrop(224)) on JPEGs reduced 2, 4 and 8 times in the DCT
/// domain: 4:2:0, 4:2:2, 4:4:4 progressive, grey, CMYK, a portrait, EXIF orientation 6, sizes
/// that are no multiple of 8 or 16, one just too small to reduce, and the large photos.
/// References: `scripts/make_draft_references.py` (SHA-256 of Pillow's crop, and its scale).
#[test]
fn draft_equals_pillows_draft_byte_for_byte() {
    let data = common::repo().join("server/tests/data");
    let table = std::fs::read_to_string(data.join("draft/references.tsv")).unwrap();
    let mut scales = std::collections::BTreeSet::new();
    let mut failures = Vec::new();
    for line in table.lines().filter(|l| !l.starts_with('#')) {
        let [name, scale, size, digest] = line.split('\t').collect::<Vec<_>>()[..] else {
            panic!("bad line {line:?}");
        };
        let path = [data.join("draft").join(name), data.join("large").join(name)]
            .into_iter()
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("{name} not found"));
        let bytes = std::fs::read(&path).unwrap();
        let ours = gateway::imaging::preprocess(&bytes, 40_000_000, Draft).unwrap();
        let got = format!("{:x}", Sha256::digest(&ours.pixels));
        eprintln!(
            "{name}: scale 1/{} (Pillow 1/{scale}, {size}), crop {}",
            ours.scale,
            if got == digest { "equal" } else { "DIFFERS" }
        );
        if ours.scale.to_string() != scale || got != digest {
            failures.push(name.to_owned());
        }
        scales.insert(ours.scale);
    }
    assert_eq!(scales, [1, 2, 4, 8].into(), "every DCT scale is exercised");
    assert!(
        failures.is_empty(),
        "differ from Pillow's draft: {failures:?}"
    );
}
