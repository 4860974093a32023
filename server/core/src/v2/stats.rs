//! Triton's statistics extension for both v2 models, from counts kept as requests finish. As
//! Triton keeps them (and perf_analyzer divides them by `success.count`), every duration is
//! counted once per successful request: `success` its whole time, `queue` the longest wait of
//! its inputs (enqueue → batch start), `compute_input` the longest decode and preprocessing
//! (zero for tensors; the inputs decode in parallel), `compute_infer` the longest engine time
//! of the batches they ran in, `compute_output` building the output. `fail` counts failed
//! requests and their time; `inference_count` counts inputs and `execution_count` the batches
//! they ran in (a batch of images may also hold `/predict` requests: it counts once here).

use std::collections::VecDeque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde_json::{json, Value};

use super::model::Model;

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
    /// Batches they ran in.
    pub execution_count: u64,
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
    /// Inputs' share of building the response.
    pub compute_output: Stat,
}

/// Batches remembered per model to count each execution once, though its requests finish one
/// by one and, with several lanes, batches may finish out of order.
const RECENT_BATCHES: usize = 256;

#[derive(Default)]
struct Counts {
    now: Snapshot,
    recent: VecDeque<u64>,
}

/// The statistics of both models.
#[derive(Default)]
pub struct Stats([Mutex<Counts>; 2]);

/// What one input of a successful request cost.
#[derive(Debug, Clone, Copy)]
pub struct ImageCost {
    /// Enqueue → batch start.
    pub queue: Duration,
    /// Decode and preprocessing.
    pub input: Duration,
    /// The engine's stages for its batch.
    pub infer: Duration,
    /// The number of its batch.
    pub batch: u64,
}

impl Stats {
    fn of(&self, model: Model) -> &Mutex<Counts> {
        &self.0[model as usize]
    }

    /// A request for `model` answered after `took`, with what each of its inputs cost and the
    /// time its output took to build.
    pub fn success(&self, model: Model, took: Duration, inputs: &[ImageCost], output: Duration) {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let longest =
            |f: fn(&ImageCost) -> Duration| inputs.iter().map(f).max().unwrap_or_default();
        let mut guard = self.of(model).lock();
        let Counts { now: c, recent } = &mut *guard;
        c.last_inference_ms = now_ms;
        c.inference_count += inputs.len() as u64;
        c.success.add(1, took);
        c.queue.add(1, longest(|i| i.queue));
        c.compute_input.add(1, longest(|i| i.input));
        c.compute_infer.add(1, longest(|i| i.infer));
        c.compute_output.add(1, output);
        for i in inputs {
            if !recent.contains(&i.batch) {
                c.execution_count += 1;
                if recent.len() == RECENT_BATCHES {
                    recent.pop_front();
                }
                recent.push_back(i.batch);
            }
        }
    }

    /// A request for `model` that failed after `took`.
    pub fn fail(&self, model: Model, took: Duration) {
        self.of(model).lock().now.fail.add(1, took);
    }

    /// `model`'s numbers now.
    pub fn snapshot(&self, model: Model) -> Snapshot {
        self.of(model).lock().now
    }

    /// The HTTP `model_stats` entry of `model`, called `name`.
    pub fn json(&self, model: Model, name: &str) -> Value {
        let c = self.snapshot(model);
        json!({
            "name": name,
            "version": "1",
            "last_inference": c.last_inference_ms,
            "inference_count": c.inference_count,
            "execution_count": c.execution_count,
            "inference_stats": {
                "success": c.success.json(),
                "fail": c.fail.json(),
                "queue": c.queue.json(),
                "compute_input": c.compute_input.json(),
                "compute_infer": c.compute_infer.json(),
                "compute_output": c.compute_output.json(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cost(batch: u64) -> ImageCost {
        let ms = Duration::from_millis(1);
        ImageCost {
            queue: ms,
            input: ms,
            infer: 2 * ms,
            batch,
        }
    }

    #[test]
    fn inputs_batches_and_requests_are_counted_per_model() {
        let s = Stats::default();
        // Two requests whose inputs shared batch 7; the second also ran in batch 8.
        s.success(
            Model::Tensor,
            Duration::from_millis(9),
            &[cost(7), cost(7)],
            Duration::from_millis(2),
        );
        s.success(
            Model::Tensor,
            Duration::from_millis(5),
            &[cost(7), cost(8)],
            Duration::ZERO,
        );
        s.fail(Model::Tensor, Duration::from_millis(1));
        let t = s.snapshot(Model::Tensor);
        assert_eq!((t.inference_count, t.execution_count), (4, 2));
        assert_eq!((t.success.count, t.fail.count), (2, 1));
        // Once per request, as Triton: the longest of its inputs.
        let (infer, output) = (t.compute_infer, t.compute_output);
        assert_eq!((infer.count, infer.ns), (2, 4_000_000));
        assert_eq!((output.count, output.ns), (2, 2_000_000));
        assert_eq!(
            t.queue.count, t.compute_input.count,
            "perf_analyzer needs equal counts"
        );
        assert_eq!(s.snapshot(Model::Image), Snapshot::default());
        let j = s.json(Model::Tensor, "resnet50");
        assert_eq!(j["inference_stats"]["compute_output"]["count"], 2);
    }
}
