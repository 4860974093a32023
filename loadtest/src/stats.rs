//! Where answers are counted: HDR histograms in microseconds, status and failure counts.
//!
//! Workers record into one of a few shards chosen by worker index, so the locks are almost never
//! contended; [`Recorder::totals`] merges the shards once at the end. Live counters for the
//! progress line are plain atomics.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use parking_lot::Mutex;

use crate::client::Outcome;

const SHARDS: usize = 16;
/// Largest recordable value: one hour in µs (larger values are clamped).
const MAX_MICROS: u64 = 3_600_000_000;

/// A latency histogram in µs, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid bounds")
}

fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).clamp(1, MAX_MICROS)
}

/// What all workers recorded, merged.
#[derive(Clone)]
pub struct Totals {
    /// Latency of 2xx answers.
    pub ok: Histogram<u64>,
    /// Latency of non-2xx answers.
    pub failed: Histogram<u64>,
    /// Open loop: how late each request was actually sent after its intended time.
    pub lag: Histogram<u64>,
    /// Count per HTTP status.
    pub statuses: BTreeMap<u16, u64>,
    /// Count per transport failure (`connect`, `timeout`, `io`).
    pub failures: BTreeMap<&'static str, u64>,
    /// When the last recorded request completed.
    pub last_completion: Option<Instant>,
}

impl Totals {
    fn new() -> Self {
        Totals {
            ok: histogram(),
            failed: histogram(),
            lag: histogram(),
            statuses: BTreeMap::new(),
            failures: BTreeMap::new(),
            last_completion: None,
        }
    }

    /// Every recorded request (answered or not).
    pub fn total(&self) -> u64 {
        self.statuses.values().sum::<u64>() + self.failures.values().sum::<u64>()
    }

    /// Requests without a 2xx answer.
    pub fn errors(&self) -> u64 {
        self.total() - self.ok.len()
    }

    fn merge(&mut self, other: &Totals) {
        self.ok.add(&other.ok).expect("same bounds");
        self.failed.add(&other.failed).expect("same bounds");
        self.lag.add(&other.lag).expect("same bounds");
        for (k, v) in &other.statuses {
            *self.statuses.entry(*k).or_default() += v;
        }
        for (k, v) in &other.failures {
            *self.failures.entry(k).or_default() += v;
        }
        self.last_completion = self.last_completion.max(other.last_completion);
    }
}

/// Shared by every worker of one run.
pub struct Recorder {
    shards: Vec<Mutex<Totals>>,
    /// Requests sent so far (warm-up included).
    pub sent: AtomicU64,
    /// Answers (any status) recorded so far.
    pub completed: AtomicU64,
    /// Recorded requests without a 2xx answer so far.
    pub errors: AtomicU64,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            shards: (0..SHARDS).map(|_| Mutex::new(Totals::new())).collect(),
            sent: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        }
    }
}

impl Recorder {
    /// Records one measured request: `latency` from its intended (open loop) or actual (closed
    /// loop) send time, `lag` between intended and actual send (zero in a closed loop).
    pub fn record(&self, worker: usize, outcome: Outcome, latency: Duration, lag: Duration) {
        let now = Instant::now();
        self.completed.fetch_add(1, Ordering::Relaxed);
        if !outcome.is_success() {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        let mut shard = self.shards[worker % SHARDS].lock();
        match outcome {
            Outcome::Status(code) => {
                *shard.statuses.entry(code).or_default() += 1;
                let h = if outcome.is_success() {
                    &mut shard.ok
                } else {
                    &mut shard.failed
                };
                h.saturating_record(micros(latency));
            }
            Outcome::Failed(f) => *shard.failures.entry(f.name()).or_default() += 1,
        }
        shard.lag.saturating_record(micros(lag));
        shard.last_completion = shard.last_completion.max(Some(now));
    }

    /// Merges every shard.
    pub fn totals(&self) -> Totals {
        let mut all = Totals::new();
        for shard in &self.shards {
            all.merge(&shard.lock());
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Failure;

    #[test]
    fn merges_shards_and_splits_success_from_failure() {
        let r = Recorder::default();
        let ms = Duration::from_millis;
        r.record(0, Outcome::Status(200), ms(10), ms(0));
        r.record(1, Outcome::Status(200), ms(30), ms(2));
        r.record(17, Outcome::Status(429), ms(1), ms(0));
        r.record(3, Outcome::Failed(Failure::Timeout), ms(5000), ms(0));
        let t = r.totals();
        assert_eq!(
            (t.total(), t.errors(), t.ok.len(), t.failed.len()),
            (4, 2, 2, 1)
        );
        assert_eq!(t.statuses[&200], 2);
        assert_eq!(t.failures["timeout"], 1);
        assert!((t.ok.max() as i64 - 30_000).abs() < 50);
        assert!(t.last_completion.is_some());
        assert_eq!(r.errors.load(Ordering::Relaxed), 2);
    }
}
