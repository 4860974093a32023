//! Admission control: counts images admitted and not yet in a batch against `MAX_QUEUE_SIZE`.
//! A [`Permit`] is taken once a request's body has arrived and released when the image's batch starts
//! (or the request ends), so the queue can never hold more than the limit.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use prometheus_client::metrics::gauge::Gauge;

/// The counter of waiting images.
#[derive(Debug)]
pub struct Admission {
    waiting: AtomicUsize,
    limit: usize,
    gauge: Gauge,
}

/// One admitted image; dropping it frees its place.
#[derive(Debug)]
pub struct Permit(Arc<Admission>);

impl Admission {
    /// A counter allowing `limit` waiting images, mirrored into `gauge`.
    pub fn new(limit: usize, gauge: Gauge) -> Arc<Self> {
        Arc::new(Self {
            waiting: AtomicUsize::new(0),
            limit,
            gauge,
        })
    }

    /// A permit, or `None` when `limit` images are already waiting.
    pub fn try_admit(self: &Arc<Self>) -> Option<Permit> {
        self.waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limit).then_some(n + 1)
            })
            .ok()?;
        self.gauge.inc();
        Some(Permit(self.clone()))
    }

    /// Images admitted whose batch has not started: being read, decoded or queued.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    /// The limit.
    pub fn limit(&self) -> usize {
        self.limit
    }
}

impl Permit {
    /// Gives the place back: the image's batch has started. (Dropping does the same; this
    /// names the moment.)
    pub fn release(self) {}
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::AcqRel);
        self.0.gauge.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_the_limit_and_frees_on_drop() {
        let gauge = Gauge::default();
        let a = Admission::new(2, gauge.clone());
        let p1 = a.try_admit().unwrap();
        let _p2 = a.try_admit().unwrap();
        assert!(a.try_admit().is_none());
        assert_eq!((a.waiting(), gauge.get()), (2, 2));
        drop(p1);
        assert_eq!(gauge.get(), 1);
        assert!(a.try_admit().is_some());
    }
}
