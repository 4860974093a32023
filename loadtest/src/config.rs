//! What one run is asked to do: the load's shape (closed or open loop, and the open loop's
//! [`Arrivals`]), when it [`Stop`]s, and the rest of its [`RunConfig`]. Plain data, read by the
//! drivers ([`crate::load`]) and echoed by the report ([`crate::report`]).

use std::time::Duration;

use crate::scrape::MetricsSource;

/// How open-loop requests are spaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrivals {
    /// Exactly `1/rate` apart.
    Constant,
    /// Exponentially distributed gaps with mean `1/rate` (a Poisson process).
    Poisson,
}

/// The kind of load.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LoadShape {
    /// `concurrency` workers, each sending its next request when its last one is answered.
    Closed {
        /// Workers (= connections).
        concurrency: usize,
    },
    /// Requests at `rate` per second regardless of how fast answers come back.
    Open {
        /// Requests per second.
        rate: f64,
        /// Spacing.
        arrivals: Arrivals,
        /// Keep-alive connections that take the due requests.
        connections: usize,
    },
}

/// When a run ends (after the warm-up).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Measure for this long: no new request starts after it (open loop: none is due after it).
    Duration(Duration),
    /// Measure exactly this many requests.
    Requests(u64),
}

/// Everything about one run except the target.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Closed or open loop.
    pub shape: LoadShape,
    /// When to stop.
    pub stop: Stop,
    /// Load before measuring starts (same shape, not recorded).
    pub warmup: Duration,
    /// Per-request timeout.
    pub timeout: Duration,
    /// The server's Prometheus endpoint, read before, during and after.
    pub metrics: Option<MetricsSource>,
    /// Print a progress line to stderr every second.
    pub progress: bool,
    /// Seed of the Poisson arrivals.
    pub seed: u64,
}
