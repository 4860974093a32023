//! The autotuning cache: the fastest convolution algorithm for each layer shape, keyed by the
//! GPU (its UUID), the cuDNN version, the shape, the activation and the math type, kept in a small text file so a restart, or
//! another pod on the same kind of node, skips the search.

use std::collections::HashMap;
use std::path::Path;

/// What a choice depends on.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TuneKey {
    /// GPU UUID (a different card may prefer a different algorithm).
    pub gpu: String,
    /// cuDNN version number.
    pub cudnn: u64,
    /// The layer's shape, from [`shape_key`].
    pub shape: String,
    /// `relu` or `identity` (the fused call supports different algorithms for each).
    pub activation: String,
    /// cuDNN math type (`tensor_op`).
    pub math: String,
}

/// The chosen algorithm.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Choice {
    /// cuDNN's algorithm id.
    pub algo: i32,
    /// Workspace bytes it needs.
    pub workspace: usize,
    /// Measured time, µs (for the record).
    pub micros: f32,
}

/// `n{batch}_c{c}_h{h}_w{w}_k{k}_r{r}_s{s}_st{stride}_p{pad}_res{0|1}`.
#[allow(clippy::too_many_arguments)]
pub fn shape_key(
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    k: usize,
    r: usize,
    s: usize,
    stride: usize,
    pad: usize,
    residual: bool,
) -> String {
    format!(
        "n{n}_c{c}_h{h}_w{w}_k{k}_r{r}_s{s}_st{stride}_p{pad}_res{}",
        u8::from(residual)
    )
}

/// The cache (load, look up, insert, save).
#[derive(Debug, Default, PartialEq)]
pub struct TuneCache {
    entries: HashMap<TuneKey, Choice>,
}

impl TuneCache {
    /// Reads `path`; a missing file is an empty cache, an unreadable line is skipped (and
    /// counted in the second value), so a damaged cache only costs a re-tune.
    pub fn load(path: &Path) -> (Self, usize) {
        let Ok(text) = std::fs::read_to_string(path) else {
            return (Self::default(), 0);
        };
        let (mut cache, mut bad) = (Self::default(), 0);
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let f: Vec<&str> = line.split('\t').collect();
            let parsed = (|| {
                let key = TuneKey {
                    gpu: f.first()?.to_string(),
                    cudnn: f.get(1)?.parse().ok()?,
                    shape: f.get(2)?.to_string(),
                    activation: f.get(3)?.to_string(),
                    math: f.get(4)?.to_string(),
                };
                let choice = Choice {
                    algo: f.get(5)?.parse().ok()?,
                    workspace: f.get(6)?.parse().ok()?,
                    micros: f.get(7)?.parse().ok()?,
                };
                (f.len() == 8).then_some((key, choice))
            })();
            match parsed {
                Some((k, c)) => {
                    cache.entries.insert(k, c);
                }
                None => bad += 1,
            }
        }
        (cache, bad)
    }

    /// Writes the cache atomically (temporary file, then rename).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let mut rows: Vec<String> = self
            .entries
            .iter()
            .map(|(k, c)| {
                format!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    k.gpu, k.cudnn, k.shape, k.activation, k.math, c.algo, c.workspace, c.micros
                )
            })
            .collect();
        rows.sort();
        let text = format!(
            "# gpu\tcudnn\tshape\tactivation\tmath\talgo\tworkspace\tmicros\n{}\n",
            rows.join("\n")
        );
        // One temporary name per process and thread: lanes or pods sharing the cache never
        // interleave their writes; the rename makes each save whole.
        let tmp = path.with_extension(format!(
            "tmp.{}.{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::write(&tmp, text)?;
        std::fs::rename(tmp, path)
    }

    /// The cached choice.
    pub fn get(&self, key: &TuneKey) -> Option<Choice> {
        self.entries.get(key).copied()
    }

    /// Records a choice.
    pub fn insert(&mut self, key: TuneKey, choice: Choice) {
        self.entries.insert(key, choice);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_round_trip_and_depend_on_gpu_and_cudnn() {
        let dir = std::env::temp_dir().join(format!("tune-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("conv-algos.tsv");
        let shape = shape_key(32, 64, 56, 56, 256, 1, 1, 1, 0, true);
        assert_eq!(shape, "n32_c64_h56_w56_k256_r1_s1_st1_p0_res1");
        let key = TuneKey {
            gpu: "GPU-1234".into(),
            cudnn: 91_000,
            shape: shape.clone(),
            activation: "relu".into(),
            math: "tensor_op".into(),
        };
        let mut cache = TuneCache::default();
        cache.insert(
            key.clone(),
            Choice {
                algo: 7,
                workspace: 1 << 20,
                micros: 12.5,
            },
        );
        cache.save(&path).unwrap();
        std::fs::write(
            &path,
            std::fs::read_to_string(&path).unwrap() + "garbage line\n",
        )
        .unwrap();
        let (back, bad) = TuneCache::load(&path);
        assert_eq!(bad, 1);
        assert_eq!(
            back.get(&key),
            Some(Choice {
                algo: 7,
                workspace: 1 << 20,
                micros: 12.5
            })
        );
        assert_eq!(
            back.get(&TuneKey {
                gpu: "GPU-other".into(),
                ..key.clone()
            }),
            None
        );
        assert_eq!(
            back.get(&TuneKey {
                cudnn: 90_100,
                ..key.clone()
            }),
            None
        );
        assert_eq!(
            back.get(&TuneKey {
                activation: "identity".into(),
                ..key
            }),
            None,
            "an identity activation allows other algorithms"
        );
        assert_eq!(
            TuneCache::load(&dir.join("missing")).0,
            TuneCache::default()
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
