//! Criterion benchmarks of the request's hot path, stage by stage, so a change to one shows its
//! cost: decoding (JPEG through libjpeg-turbo, PNG), resizing and cropping, the engine's
//! normalisation, multipart intake, and the answer's top-k and JSON encoding. The benchmarks are
//! in `benches/hot_path.rs`; this library is empty. Run: `cargo bench -p benches`; CI builds them
//! (`cargo bench --workspace --no-run`).
