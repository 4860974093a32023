//! A folder of images, preprocessed as served: what the calibration set, `plan-check` and the
//! tools read. Files in name order; one that cannot be read or decoded is returned as such, for
//! the caller to skip or refuse.

use std::path::{Path, PathBuf};

use super::{preprocess, Preprocess, Preprocessed};

/// Every file of `dir` (not its subfolders), in name order, with its preprocessed image or why
/// it has none.
pub fn read(
    dir: &Path,
    max_pixels: u64,
) -> std::io::Result<Vec<(PathBuf, Result<Preprocessed, String>)>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    Ok(paths
        .into_iter()
        .map(|p| {
            let image = std::fs::read(&p).map_err(|e| e.to_string()).and_then(|b| {
                preprocess(&b, max_pixels, Preprocess::Exact).map_err(|e| e.to_string())
            });
            (p, image)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_folder_is_read_in_name_order_with_its_failures() {
        let dir = std::env::temp_dir().join(format!("gw-folder-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let good = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../testdata/images/good/gif-sample.gif"
        );
        std::fs::copy(good, dir.join("b.gif")).unwrap();
        std::fs::write(dir.join("a.txt"), b"not an image").unwrap();
        let read = super::read(&dir, 40_000_000).unwrap();
        let names: Vec<_> = read
            .iter()
            .map(|(p, _)| p.file_name().unwrap().to_owned())
            .collect();
        assert_eq!(names, ["a.txt", "b.gif"]);
        assert!(read[0].1.is_err());
        assert_eq!(read[1].1.as_ref().unwrap().pixels.len(), 224 * 224 * 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
