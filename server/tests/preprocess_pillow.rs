//! Preprocessing agrees with Pillow + torchvision (Resize(256), CenterCrop(224), ImageNet
//! normalisation) on the good JPEGs: the references in `tests/data/pillow/*.npy` were written once
//! by `scripts/make_reference_tensors.py`.

mod common;

use engine::{BatchBuffer, IMAGE_BYTES};

/// Reads a uint8 `.npy` of shape (224, 224, 3).
fn load_npy(path: &std::path::Path) -> Vec<u8> {
    let raw = std::fs::read(path).unwrap();
    assert_eq!(&raw[..6], b"\x93NUMPY", "{}", path.display());
    let header_len = u16::from_le_bytes([raw[8], raw[9]]) as usize;
    let header = std::str::from_utf8(&raw[10..10 + header_len]).unwrap();
    assert!(
        header.contains("'descr': '|u1'") && header.contains("(224, 224, 3)"),
        "{header}"
    );
    raw[10 + header_len..].to_vec()
}

fn normalised(hwc: &[u8]) -> Vec<f32> {
    let mut b = BatchBuffer::new(1);
    assert!(b.push(hwc));
    let mut out = Vec::new();
    models::IMAGENET_NORMALIZATION.to_nchw(&b, &mut out);
    out
}

#[test]
fn input_tensors_match_pillow_within_0_01() {
    let refs = common::repo().join("server/tests/data/pillow");
    let mut checked = 0;
    for path in common::files("good") {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !(name.ends_with(".jpg") || name.ends_with(".jpeg")) {
            continue;
        }
        let reference = load_npy(&refs.join(format!("{name}.npy")));
        assert_eq!(reference.len(), IMAGE_BYTES);
        let ours = gateway::imaging::preprocess(&std::fs::read(&path).unwrap(), 40_000_000)
            .unwrap()
            .pixels;
        let (a, b) = (normalised(&ours), normalised(&reference));
        let mad = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).sum::<f32>() / a.len() as f32;
        let max = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        let exact =
            ours.iter().zip(&reference).filter(|(x, y)| x == y).count() as f64 / IMAGE_BYTES as f64;
        eprintln!(
            "{name}: mean |Δ| = {mad:.5}, max |Δ| = {max:.4}, identical bytes {:.1}%",
            exact * 100.0
        );
        assert!(mad <= 0.01, "{name}: mean absolute difference {mad} > 0.01");
        checked += 1;
    }
    assert!(checked >= 6, "only {checked} JPEGs compared");
}

#[test]
fn exif_orientation_is_applied() {
    // portrait-exif.jpg is stored 113 x 150 with orientation "flip horizontal".
    let bytes = std::fs::read(common::images("good").join("portrait-exif.jpg")).unwrap();
    let upright = gateway::imaging::decode_rgb(&bytes, 40_000_000).unwrap();
    let img = image::load_from_memory(&bytes).unwrap().into_rgb8();
    assert_eq!(upright.dimensions(), img.dimensions());
    assert_eq!(
        upright,
        image::imageops::flip_horizontal(&img),
        "mirrored as EXIF says"
    );
}
