//! Triton's statistics extension for both v2 models, from counts kept as requests finish. Per
//! Triton: `success` and `fail` count requests and their whole time; `queue` (enqueue → batch
//! start), `compute_input` (decode and preprocessing; zero for tensors) and `compute_infer`
//! (the engine's stages of the batch the input ran in) count inputs.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde_json::{json, Value};

use super::Model;

/// A count and the nanoseconds it took.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Stat {
    /// How many.
    pub count: u64,
    /// Their total time.
    pub ns: u64,
}

impl Stat {
    fn add(&mut self, n: u64, d: Duration) {
        self.count += n;
        self.ns = self.ns.saturating_add(d.as_nanos() as u64);
    }

    fn json(self) -> Value {
        json!({"count": self.count, "ns": self.ns})
    }
}

/// One model's statistics at a moment.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Snapshot {
    /// Milliseconds since the epoch of the last success (0: none yet).
    pub last_inference_ms: u64,
    /// Inputs inferred.
    pub inference_count: u64,
    /// Requests answered.
    pub success: Stat,
    /// Requests that failed.
    pub fail: Stat,
    /// Inputs' enqueue → batch start.
    pub queue: Stat,
    /// Inputs' decode and preprocessing.
    pub compute_input: Stat,
    /// Inputs' engine time.
    pub compute_infer: Stat,
}

/// The statistics of both models.
#[derive(Default)]
pub struct Stats([Mutex<Snapshot>; 2]);

/// What one input of a successful request cost.
#[derive(Debug, Clone, Copy)]
pub struct ImageCost {
    /// Enqueue → batch start.
    pub queue: Duration,
    /// Decode and preprocessing.
    pub input: Duration,
    /// The engine's stages for its batch.
    pub infer: Duration,
}

impl Stats {
    fn of(&self, model: Model) -> &Mutex<Snapshot> {
        &self.0[model as usize]
    }

    /// A request for `model` answered after `took`, with what each of its inputs cost.
    pub fn success(&self, model: Model, took: Duration, inputs: &[ImageCost]) {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut c = self.of(model).lock();
        c.last_inference_ms = now_ms;
        c.inference_count += inputs.len() as u64;
        c.success.add(1, took);
        for i in inputs {
            c.queue.add(1, i.queue);
            c.compute_input.add(1, i.input);
            c.compute_infer.add(1, i.infer);
        }
    }

    /// A request for `model` that failed after `took`.
    pub fn fail(&self, model: Model, took: Duration) {
        self.of(model).lock().fail.add(1, took);
    }

    /// `model`'s numbers now.
    pub fn snapshot(&self, model: Model) -> Snapshot {
        *self.of(model).lock()
    }

    /// The HTTP `model_stats` entry of `model`, called `name`.
    pub fn json(&self, model: Model, name: &str) -> Value {
        let c = self.snapshot(model);
        json!({
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
        })
    }
}
