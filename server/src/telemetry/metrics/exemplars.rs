//! The latest exemplar per (method, route, bucket) of `http_request_duration_seconds`: the trace
//! id of a sampled request that landed in that bucket. Bounded: routes and methods are fixed
//! sets and buckets are the histogram's.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

/// One exemplar.
#[derive(Clone, Debug, PartialEq)]
pub struct Exemplar {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// The observed value (seconds).
    pub value: f64,
    /// Unix seconds.
    pub timestamp: f64,
}

/// Exemplars of one histogram family.
#[derive(Default)]
pub struct Exemplars {
    buckets: Vec<f64>,
    latest: Mutex<HashMap<(&'static str, &'static str, usize), Exemplar>>,
}

impl Exemplars {
    /// For a histogram with these upper bounds (without `+Inf`).
    pub fn new(buckets: &[f64]) -> Self {
        Exemplars {
            buckets: buckets.to_vec(),
            latest: Mutex::default(),
        }
    }

    /// Index of the bucket `v` falls in (`buckets.len()` is `+Inf`).
    fn bucket(&self, v: f64) -> usize {
        self.buckets
            .iter()
            .position(|b| v <= *b)
            .unwrap_or(self.buckets.len())
    }

    /// Keeps `trace_id` as the exemplar of the bucket `value` fell in.
    pub fn observe(&self, method: &'static str, route: &'static str, value: f64, trace_id: String) {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let e = Exemplar {
            trace_id,
            value,
            timestamp,
        };
        self.latest
            .lock()
            .insert((method, route, self.bucket(value)), e);
    }

    /// The exemplar for the series with these `method` and `route` labels, bucket `index`.
    pub fn get(&self, method: &str, route: &str, index: usize) -> Option<Exemplar> {
        let latest = self.latest.lock();
        latest
            .iter()
            .find(|((m, r, i), _)| *m == method && *r == route && *i == index)
            .map(|(_, e)| e.clone())
    }
}
