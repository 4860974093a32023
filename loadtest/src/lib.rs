//! `loadtest`: a black-box HTTP load generator that measures the right thing.
//!
//! Data flows like this:
//! 1. [`request::Target`] holds the URL, method, headers and a set of prebuilt bodies (image files
//!    from a folder or generated JPEGs, as multipart or raw bytes), built once before the run.
//! 2. [`load::run`] drives one load ([`config::RunConfig`]): a closed loop (`concurrency`
//!    workers, each sending its next request when the last one answers) or an open loop
//!    (requests due at fixed or Poisson intervals, claimed by a pool of keep-alive
//!    connections). In the open loop each latency is measured from the request's *intended*
//!    send time, so a stalled server cannot hide its stall by slowing the sender (no
//!    coordinated omission).
//! 3. Every answer lands in [`stats::Recorder`]: HDR histograms (µs) of successful latency, failed
//!    latency and send lag, status and error counts, sharded so workers rarely meet on a lock.
//! 4. [`scrape`] reads the server's own `/metrics` before and after (and polls the queue depth
//!    during) the run, so the report carries the server's view: mean batch size, max queue depth,
//!    rejects by reason.
//! 5. [`report::RunReport`] is the result: a table for people, JSON for machines, checked against
//!    [`slo::Slo`] thresholds. [`sweep`] repeats runs over a list of concurrencies or rates, finds
//!    the highest throughput that meets the SLO and draws throughput against p99 as SVG.
//!
//! Nothing here knows the gateway's code: it speaks HTTP/1.1 to any `http://` endpoint.

pub mod cli;
pub mod client;
pub mod config;
pub mod error;
pub mod load;
pub mod report;
pub mod request;
pub mod scrape;
pub mod slo;
pub mod stats;
pub mod sweep;

pub use config::{Arrivals, LoadShape, RunConfig, Stop};
pub use error::LoadError;
pub use load::run;
pub use report::RunReport;
pub use request::{BodyFormat, BodySource, Target};
pub use slo::Slo;
