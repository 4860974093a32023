//! Triton's statistics extension for the v2 image model: `GET /v2/models/{m}/stats`, from
//! counts kept as requests finish. Per Triton: `success` and `fail` count requests and their
//! whole time; `queue` (enqueue → batch start), `compute_input` (decode and preprocessing) and
//! `compute_infer` (the engine's stages of the batch the image ran in) count images.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde_json::{json, Value};

#[derive(Default, Clone, Copy)]
struct Stat {
    count: u64,
    ns: u128,
}

impl Stat {
    fn add(&mut self, n: u64, d: Duration) {
        self.count += n;
        self.ns += d.as_nanos();
    }

    fn json(self) -> Value {
        json!({"count": self.count, "ns": self.ns as u64})
    }
}

#[derive(Default)]
struct Counts {
    last_inference_ms: u64,
    inference_count: u64,
    success: Stat,
    fail: Stat,
    queue: Stat,
    compute_input: Stat,
    compute_infer: Stat,
}

/// The image model's statistics.
#[derive(Default)]
pub struct Stats(Mutex<Counts>);

/// What one image of a successful request cost.
pub struct ImageCost {
    /// Enqueue → batch start.
    pub queue: Duration,
    /// Decode and preprocessing.
    pub input: Duration,
    /// The engine's stages for its batch.
    pub infer: Duration,
}

impl Stats {
    /// A request answered 200 after `took`, with the costs of its images.
    pub fn success(&self, took: Duration, images: &[ImageCost]) {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut c = self.0.lock();
        c.last_inference_ms = now_ms;
        c.inference_count += images.len() as u64;
        c.success.add(1, took);
        for i in images {
            c.queue.add(1, i.queue);
            c.compute_input.add(1, i.input);
            c.compute_infer.add(1, i.infer);
        }
    }

    /// A request that failed after `took`.
    pub fn fail(&self, took: Duration) {
        self.0.lock().fail.add(1, took);
    }

    /// The `model_stats` entry of `name`.
    pub fn json(&self, name: &str) -> Value {
        let c = self.0.lock();
        json!({"model_stats": [{
            "name": name,
            "version": "1",
            "last_inference": c.last_inference_ms,
            "inference_count": c.inference_count,
            "inference_stats": {
                "success": c.success.json(),
                "fail": c.fail.json(),
                "queue": c.queue.json(),
                "compute_input": c.compute_input.json(),
                "compute_infer": c.compute_infer.json(),
            },
        }]})
    }
}
