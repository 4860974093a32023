//! The standard OpenTelemetry samplers, chosen by `OTEL_TRACES_SAMPLER` and
//! `OTEL_TRACES_SAMPLER_ARG` (read in `config::trace`), as the SDK runs them.

use opentelemetry::trace::{Link, SpanKind, TraceId, TraceState};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{Sampler as Sdk, SamplingDecision, SamplingResult, ShouldSample};

use super::{Root, Sampler};

impl Sampler {
    /// The SDK's sampler for this choice, with one rule of the gateway's: a batch span (made only
    /// when some request in the batch is recorded) is always recorded, since it has no parent
    /// to follow and its links are what make the requests' traces whole.
    pub fn to_sdk(self) -> GatewaySampler {
        let root = |r: Root| match r {
            Root::AlwaysOn => Sdk::AlwaysOn,
            Root::AlwaysOff => Sdk::AlwaysOff,
            Root::Ratio(x) => Sdk::TraceIdRatioBased(x),
        };
        GatewaySampler(match self {
            Sampler::AlwaysOn => Sdk::AlwaysOn,
            Sampler::AlwaysOff => Sdk::AlwaysOff,
            Sampler::Ratio(x) => Sdk::TraceIdRatioBased(x),
            Sampler::ParentBased(r) => Sdk::ParentBased(Box::new(root(r))),
        })
    }
}

/// The configured SDK sampler, except that `inference.batch` spans are always recorded.
#[derive(Clone, Debug)]
pub struct GatewaySampler(Sdk);

impl ShouldSample for GatewaySampler {
    fn should_sample(
        &self,
        parent: Option<&Context>,
        trace_id: TraceId,
        name: &str,
        kind: &SpanKind,
        attributes: &[KeyValue],
        links: &[Link],
    ) -> SamplingResult {
        if name == super::spans::BATCH_SPAN {
            return SamplingResult {
                decision: SamplingDecision::RecordAndSample,
                attributes: Vec::new(),
                trace_state: TraceState::default(),
            };
        }
        self.0
            .should_sample(parent, trace_id, name, kind, attributes, links)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ratios_parse() {
        assert_eq!(
            Sampler::from_env(None, None),
            Ok(Sampler::ParentBased(Root::AlwaysOn))
        );
        assert_eq!(
            Sampler::from_env(Some("traceidratio"), Some("0.25")),
            Ok(Sampler::Ratio(0.25))
        );
        assert!(Sampler::from_env(Some("traceidratio"), Some("2")).is_err());
        assert!(Sampler::from_env(Some("sometimes"), None).is_err());
    }

    #[test]
    fn batch_spans_are_recorded_whatever_the_root_sampler_says() {
        let s = Sampler::ParentBased(Root::AlwaysOff).to_sdk();
        let decide = |name| {
            s.should_sample(
                None,
                TraceId::from(7u128),
                name,
                &SpanKind::Internal,
                &[],
                &[],
            )
            .decision
        };
        assert_eq!(
            decide(super::super::spans::BATCH_SPAN),
            SamplingDecision::RecordAndSample
        );
        assert_eq!(decide("request"), SamplingDecision::Drop);
    }
}
