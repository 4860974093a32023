//! The two thin layers this server puts around the SDK's export path.
//!
//! [`Bounded`] wraps the SDK's `BatchSpanProcessor` and [`Counted`] its exporter: together they
//! know how many ended spans are queued or being exported (`pending`), so a span beyond
//! `OTEL_BSP_MAX_QUEUE_SIZE` is dropped here and counted (`queue_full`), and a batch the
//! collector refused is counted (`export_failed`). The SDK's processor keeps its own count of
//! drops private, so without these the loss would only be logged.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use opentelemetry_sdk::Resource;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::telemetry::metrics::ReasonLabel;

type Dropped = Family<ReasonLabel, Counter>;

/// The exporter, counting what it finished with and what failed.
#[derive(Debug)]
pub struct Counted<E> {
    inner: E,
    pending: Arc<AtomicUsize>,
    dropped: Dropped,
}

impl<E: SpanExporter> SpanExporter for Counted<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        let result = self.inner.export(batch).await;
        self.pending.fetch_sub(n, Ordering::AcqRel);
        if result.is_err() {
            let reason = "export_failed";
            self.dropped
                .get_or_create(&ReasonLabel { reason })
                .inc_by(n as u64);
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The processor, refusing a span when `limit` are already pending.
#[derive(Debug)]
pub struct Bounded<P> {
    inner: P,
    pending: Arc<AtomicUsize>,
    limit: usize,
    dropped: Dropped,
    warned: AtomicBool,
}

/// `exporter` counted, and the processor `processor(counted exporter)` bounded to `limit`
/// pending spans.
pub fn bounded<E, P>(
    exporter: E,
    limit: usize,
    dropped: Dropped,
    processor: impl FnOnce(Counted<E>) -> P,
) -> Bounded<P> {
    let pending = Arc::new(AtomicUsize::new(0));
    let counted = Counted {
        inner: exporter,
        pending: pending.clone(),
        dropped: dropped.clone(),
    };
    Bounded {
        inner: processor(counted),
        pending,
        limit: limit.max(1),
        dropped,
        warned: AtomicBool::new(false),
    }
}

impl<P: SpanProcessor> SpanProcessor for Bounded<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return; // the batch processor exports sampled spans only
        }
        let admitted = self
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limit).then_some(n + 1)
            });
        if admitted.is_ok() {
            return self.inner.on_end(span);
        }
        let reason = "queue_full";
        self.dropped.get_or_create(&ReasonLabel { reason }).inc();
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "the span export queue is full (OTEL_BSP_MAX_QUEUE_SIZE): dropping spans \
                 (counted in trace_spans_dropped_total); requests are not affected"
            );
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}
