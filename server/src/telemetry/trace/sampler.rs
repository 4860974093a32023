//! The standard OpenTelemetry samplers, chosen by `OTEL_TRACES_SAMPLER` and
//! `OTEL_TRACES_SAMPLER_ARG`.

use opentelemetry::trace::{Link, SpanKind, TraceId, TraceState};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{Sampler as Sdk, SamplingDecision, SamplingResult, ShouldSample};

/// Whether a new request span is recorded and exported.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sampler {
    /// `always_on`.
    AlwaysOn,
    /// `always_off`.
    AlwaysOff,
    /// `traceidratio`: this fraction of traces, decided by the trace id alone.
    Ratio(f64),
    /// `parentbased_*`: follow the caller's decision; for new traces use the inner sampler.
    ParentBased(Root),
}

/// The root sampler of a parent-based one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Root {
    /// `parentbased_always_on` (the OpenTelemetry default).
    AlwaysOn,
    /// `parentbased_always_off`.
    AlwaysOff,
    /// `parentbased_traceidratio`.
    Ratio(f64),
}

impl Sampler {
    /// Parses the variables' values (`arg` is the ratio, default 1.0).
    pub fn from_env(name: Option<&str>, arg: Option<&str>) -> Result<Self, String> {
        let ratio = || -> Result<f64, String> {
            match arg {
                None => Ok(1.0),
                Some(a) => match a.trim().parse::<f64>() {
                    Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
                    _ => Err(format!(
                        "OTEL_TRACES_SAMPLER_ARG={a:?}: expected a ratio from 0 to 1"
                    )),
                },
            }
        };
        Ok(
            match name.map(|s| s.trim().to_ascii_lowercase()).as_deref() {
                None | Some("parentbased_always_on") => Sampler::ParentBased(Root::AlwaysOn),
                Some("always_on") => Sampler::AlwaysOn,
                Some("always_off") => Sampler::AlwaysOff,
                Some("traceidratio") => Sampler::Ratio(ratio()?),
                Some("parentbased_always_off") => Sampler::ParentBased(Root::AlwaysOff),
                Some("parentbased_traceidratio") => Sampler::ParentBased(Root::Ratio(ratio()?)),
                Some(other) => {
                    return Err(format!(
                    "OTEL_TRACES_SAMPLER={other:?}: expected always_on, always_off, traceidratio, \
                     parentbased_always_on, parentbased_always_off or parentbased_traceidratio"
                ))
                }
            },
        )
    }

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
