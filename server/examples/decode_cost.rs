//! What decoding JPEG with libjpeg-turbo (Pillow's decoder, byte-exact) costs against zune-jpeg
//! (the decoder before; `image`'s own JPEG path): the median of `ROUNDS` timed decodes of each
//! good test JPEG, decode alone (no orientation, no resize).
//!
//! `cargo run --release -p inference-gateway --example decode_cost [-- DIR]`

use std::time::{Duration, Instant};

const ROUNDS: usize = 301;

fn median(mut f: impl FnMut()) -> Duration {
    let mut t: Vec<Duration> = (0..ROUNDS)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed()
        })
        .collect();
    t.sort();
    t[ROUNDS / 2]
}

fn main() {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "testdata/images/good".into());
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("a folder of images")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jpg" || x == "jpeg"))
        .collect();
    files.sort();
    println!("file\tpixels\tlibjpeg_us\tzune_us\tratio");
    for path in files {
        let bytes = std::fs::read(&path).unwrap();
        let ours = gateway::imaging::decode_rgb(&bytes, 40_000_000).unwrap();
        let px = ours.width() * ours.height();
        let libjpeg = median(|| {
            std::hint::black_box(gateway::imaging::decode_rgb(&bytes, 40_000_000).unwrap());
        });
        let zune = match image::load_from_memory_with_format(&bytes, image::ImageFormat::Jpeg) {
            Ok(_) => Some(median(|| {
                let img = image::load_from_memory_with_format(&bytes, image::ImageFormat::Jpeg);
                std::hint::black_box(img.unwrap());
            })),
            Err(_) => None, // arithmetic coding: zune-jpeg cannot decode it
        };
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        println!(
            "{}\t{px}\t{:.1}\t{}\t{}",
            path.file_name().unwrap().to_string_lossy(),
            us(libjpeg),
            zune.map_or("-".into(), |z| format!("{:.1}", us(z))),
            zune.map_or("-".into(), |z| format!("{:.2}", us(libjpeg) / us(z))),
        );
    }
}
