//! One OTLP trace across nodes: the routing span's context travels with a
//! stanza as a W3C `traceparent` and becomes the parent of the receiving
//! node's span, under which the stanza is queued to its session.

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::Context;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The current span's context as `traceparent`, inside a sampled trace.
pub fn current_traceparent() -> Option<String> {
    let cx = crate::otel::current_context()?;
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8()
        )
    })
}

fn parse(tp: &str) -> Option<SpanContext> {
    let mut parts = tp.split('-');
    let (Some("00"), Some(trace), Some(span), Some(flags)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let sc = SpanContext::new(
        TraceId::from_hex(trace).ok()?,
        SpanId::from_hex(span).ok()?,
        TraceFlags::new(u8::from_str_radix(flags, 16).ok()?),
        true,
        TraceState::default(),
    );
    sc.is_valid().then_some(sc)
}

/// The receiving node's span of a stanza from another node, in the
/// sender's trace (none when OTLP is off or the header is bad).
pub fn receive_span(tp: &str, to: &str) -> Span {
    let Some(sc) = parse(tp).filter(|_| crate::otel::enabled()) else {
        return Span::none();
    };
    let span = tracing::info_span!(
        target: "osprey::otel",
        parent: None,
        "cluster.receive",
        otel.kind = "consumer",
        messaging.system = "nats",
        messaging.operation.type = "receive",
        to = to
    );
    let _ = span.set_parent(Context::new().with_remote_span_context(sc));
    span
}

#[cfg(test)]
mod tests {
    #[test]
    fn traceparent_parses() {
        let sc =
            super::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").expect("valid");
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert!(sc.is_remote());
        assert!(super::parse("00-0000-00f067aa0ba902b7-01").is_none());
        assert!(super::parse("garbage").is_none());
    }
}
