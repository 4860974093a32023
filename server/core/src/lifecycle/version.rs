//! Content versions: a model is known by the first 12 hex digits of its SHA-256, in
//! `model_info{version}`, `x-model-version`, the repository index and the reload log.

use std::path::Path;

use sha2::{Digest, Sha256};

/// A short id of a model's content: the first 12 hex digits of its SHA-256.
pub fn version_of(bytes: &[u8]) -> String {
    short_hex(&Sha256::digest(bytes))
}

fn short_hex(digest: &[u8]) -> String {
    hex(&digest[..6])
}

/// Lower-case hex of `bytes` (content versions and cache keys).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// [`version_of`] the file at `path`.
pub fn content_version(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hash = Sha256::new();
    std::io::copy(&mut file, &mut hash)?;
    Ok(short_hex(&hash.finalize()))
}
