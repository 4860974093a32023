//! The load drivers: closed loop and open loop, over keep-alive connections.
//!
//! Both loops share one worker shape: claim a ticket from the [`Plan`], wait for its intended
//! time (open loop only), send, record. In the open loop the tickets come from one schedule
//! (constant or Poisson gaps) and any free connection takes the next due request, so a slow
//! answer on one connection does not delay the schedule; when every connection is busy, due
//! requests go out late and that lateness is part of their latency (and shows as send lag).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::client::{Conn, Failure, Outcome};
use crate::config::{Arrivals, LoadShape, RunConfig, Stop};
use crate::report::RunReport;
use crate::scrape::ServerWatch;
use crate::stats::Recorder;
use crate::Target;

/// One request to send.
struct Ticket {
    /// Open loop: when it is due. Closed loop: now.
    intended: Option<Instant>,
    /// Inside the measured window (not warm-up).
    record: bool,
}

/// The open loop's arrival times, handed out in order.
struct Schedule {
    start: Instant,
    mean_gap: f64,
    poisson: bool,
    rng: u64,
    index: u64,
    offset: f64,
}

impl Schedule {
    fn next_offset(&mut self) -> f64 {
        let t = self.offset;
        self.index += 1;
        self.offset = if self.poisson {
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            let u = ((self.rng >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
            t - u.ln() * self.mean_gap
        } else {
            self.index as f64 * self.mean_gap
        };
        t
    }
}

/// Hands out tickets until the stop condition is met.
struct Plan {
    record_from: Instant,
    end: Option<Instant>,
    limit: Option<u64>,
    counted: AtomicU64,
    schedule: Option<Mutex<Schedule>>,
}

impl Plan {
    fn new(cfg: &RunConfig, start: Instant) -> Self {
        let record_from = start + cfg.warmup;
        let (end, limit) = match cfg.stop {
            Stop::Duration(d) => (Some(record_from + d), None),
            Stop::Requests(n) => (None, Some(n)),
        };
        let schedule = match cfg.shape {
            LoadShape::Closed { .. } => None,
            LoadShape::Open { rate, arrivals, .. } => Some(Mutex::new(Schedule {
                start,
                mean_gap: 1.0 / rate,
                poisson: arrivals == Arrivals::Poisson,
                rng: cfg.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
                index: 0,
                offset: 0.0,
            })),
        };
        Plan {
            record_from,
            end,
            limit,
            counted: AtomicU64::new(0),
            schedule,
        }
    }

    /// The next request, or `None` when the run is over.
    fn claim(&self) -> Option<Ticket> {
        let at = match &self.schedule {
            None => Instant::now(),
            Some(schedule) => {
                let mut s = schedule.lock();
                let offset = s.next_offset();
                s.start + Duration::from_secs_f64(offset)
            }
        };
        let intended = self.schedule.as_ref().map(|_| at);
        if at < self.record_from {
            return Some(Ticket {
                intended,
                record: false,
            });
        }
        if self.end.is_some_and(|end| at >= end) {
            return None;
        }
        if let Some(limit) = self.limit {
            if self.counted.fetch_add(1, Ordering::Relaxed) >= limit {
                return None;
            }
        }
        Some(Ticket {
            intended,
            record: true,
        })
    }
}

async fn worker(
    id: usize,
    plan: Arc<Plan>,
    target: Arc<Target>,
    rec: Arc<Recorder>,
    timeout: Duration,
) {
    let mut conn = Conn::new(&target.addr);
    while let Some(ticket) = plan.claim() {
        if let Some(at) = ticket.intended {
            tokio::time::sleep_until(at.into()).await;
        }
        let sent = Instant::now();
        let origin = ticket.intended.unwrap_or(sent);
        rec.sent.fetch_add(1, Ordering::Relaxed);
        let outcome = conn.send(target.request(), timeout).await;
        if ticket.record {
            rec.record(
                id,
                outcome,
                origin.elapsed(),
                sent.saturating_duration_since(origin),
            );
        }
        if outcome == Outcome::Failed(Failure::Connect) {
            // A refused port answers in microseconds; do not spin on it.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn spawn_progress(rec: Arc<Recorder>, start: Instant) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        let mut last = 0;
        loop {
            tick.tick().await;
            let done = rec.completed.load(Ordering::Relaxed);
            let sent = rec.sent.load(Ordering::Relaxed);
            eprintln!(
                "[{:6.1}s] sent {sent}, measured {done} ({}/s), errors {}",
                start.elapsed().as_secs_f64(),
                done - last,
                rec.errors.load(Ordering::Relaxed),
            );
            last = done;
        }
    })
}

/// Runs one load against `target` and returns its report (not yet checked against an SLO).
pub async fn run(cfg: &RunConfig, target: Arc<Target>) -> RunReport {
    let rec = Arc::new(Recorder::default());
    let start = Instant::now();
    let plan = Arc::new(Plan::new(cfg, start));
    let watch = cfg
        .metrics
        .clone()
        .map(|m| ServerWatch::spawn(m, plan.record_from));
    let progress = cfg.progress.then(|| spawn_progress(rec.clone(), start));
    let workers = match cfg.shape {
        LoadShape::Closed { concurrency } => concurrency,
        LoadShape::Open { connections, .. } => connections,
    };
    let handles: Vec<_> = (0..workers.max(1))
        .map(|id| {
            let fut = worker(id, plan.clone(), target.clone(), rec.clone(), cfg.timeout);
            tokio::spawn(fut)
        })
        .collect();
    for h in handles {
        let _ = h.await;
    }
    if let Some(p) = progress {
        p.abort();
    }
    let server = match watch {
        Some(w) => w.finish().await,
        None => None,
    };
    RunReport::new(cfg, &rec.totals(), plan.record_from, server)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(shape: LoadShape, stop: Stop) -> RunConfig {
        RunConfig {
            shape,
            stop,
            warmup: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            metrics: None,
            progress: false,
            seed: 7,
        }
    }

    #[test]
    fn open_schedule_counts_exactly_rate_times_duration_after_warmup() {
        let open = LoadShape::Open {
            rate: 100.0,
            arrivals: Arrivals::Constant,
            connections: 1,
        };
        let plan = Plan::new(
            &cfg(open, Stop::Duration(Duration::from_secs(2))),
            Instant::now(),
        );
        let tickets: Vec<_> = std::iter::from_fn(|| plan.claim()).collect();
        assert_eq!(tickets.iter().filter(|t| !t.record).count(), 100);
        assert_eq!(tickets.iter().filter(|t| t.record).count(), 200);
        let times: Vec<_> = tickets.iter().map(|t| t.intended.unwrap()).collect();
        assert!(times.windows(2).all(|w| w[1] > w[0]));
    }

    #[test]
    fn poisson_gaps_have_the_asked_mean_and_spread() {
        let open = LoadShape::Open {
            rate: 1000.0,
            arrivals: Arrivals::Poisson,
            connections: 1,
        };
        let plan = Plan::new(&cfg(open, Stop::Requests(20_000)), Instant::now());
        let tickets: Vec<_> = std::iter::from_fn(|| plan.claim())
            .filter(|t| t.record)
            .collect();
        assert_eq!(tickets.len(), 20_000);
        let gaps: Vec<f64> = tickets
            .windows(2)
            .map(|w| (w[1].intended.unwrap() - w[0].intended.unwrap()).as_secs_f64())
            .collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
        assert!((mean - 0.001).abs() < 0.00003, "mean gap {mean}");
        // Exponential gaps: standard deviation equals the mean.
        assert!(
            (var.sqrt() / mean - 1.0).abs() < 0.05,
            "cv {}",
            var.sqrt() / mean
        );
    }

    #[test]
    fn closed_request_budget_is_exact() {
        let mut c = cfg(LoadShape::Closed { concurrency: 2 }, Stop::Requests(5));
        c.warmup = Duration::ZERO;
        let plan = Plan::new(&c, Instant::now());
        assert_eq!(std::iter::from_fn(|| plan.claim()).count(), 5);
    }
}
