//! The standard OpenTelemetry samplers, chosen by `OTEL_TRACES_SAMPLER` and
//! `OTEL_TRACES_SAMPLER_ARG`.

use super::context::{Parent, TraceId};

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

fn ratio(trace: TraceId, r: f64) -> bool {
    if r >= 1.0 {
        return true;
    }
    // Compare the trace id's low 63 bits with the threshold, so every service that samples by
    // ratio keeps the same traces.
    let threshold = (r.max(0.0) * (1u64 << 63) as f64) as u64;
    (trace.low_u64() >> 1) < threshold
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

    /// The decision for a span in `trace` whose caller was `parent`.
    pub fn sample(&self, trace: TraceId, parent: Option<&Parent>) -> bool {
        match (self, parent) {
            (Sampler::AlwaysOn, _) => true,
            (Sampler::AlwaysOff, _) => false,
            (Sampler::Ratio(r), _) => ratio(trace, *r),
            (Sampler::ParentBased(_), Some(p)) => p.sampled,
            (Sampler::ParentBased(Root::AlwaysOn), None) => true,
            (Sampler::ParentBased(Root::AlwaysOff), None) => false,
            (Sampler::ParentBased(Root::Ratio(r)), None) => ratio(trace, *r),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::context::SpanId;
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
    fn ratio_keeps_about_that_fraction_and_parents_decide() {
        let s = Sampler::Ratio(0.25);
        let kept = (0..20_000)
            .filter(|_| s.sample(TraceId::random(), None))
            .count();
        assert!((4_500..5_500).contains(&kept), "{kept} of 20000 at 0.25");
        assert_eq!(
            (0..100)
                .filter(|_| Sampler::Ratio(0.0).sample(TraceId::random(), None))
                .count(),
            0
        );
        let parent = |sampled| Parent {
            trace_id: TraceId::random(),
            span_id: SpanId::random(),
            sampled,
        };
        let pb = Sampler::ParentBased(Root::AlwaysOff);
        assert!(pb.sample(TraceId::random(), Some(&parent(true))));
        assert!(
            !Sampler::ParentBased(Root::AlwaysOn).sample(TraceId::random(), Some(&parent(false)))
        );
        assert!(!pb.sample(TraceId::random(), None));
    }
}
