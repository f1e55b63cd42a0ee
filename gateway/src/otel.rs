//! OTLP traces of each stanza's journey (tracing + tracing-opentelemetry +
//! opentelemetry-otlp).
//!
//! Spans live on one target, [`TARGET`], that only the OpenTelemetry layer
//! enables: with OTLP off they are disabled callsites (no span is built),
//! and with OTLP on a stanza is sampled here, before any span exists, so a
//! sampled-out stanza costs one random draw. The exporter runs on the
//! server's runtime behind a bounded batch queue: the stanza path never
//! waits on the collector.
//!
//! Shape of a trace: `c2s.stanza` (a root per stanza, linked to its
//! `c2s.session`) → `router.route` / `module.handler` → `storage.query`; the
//! trace context travels with a routed stanza, and the receiving session's
//! `c2s.deliver` joins the sender's trace. One message, one trace.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use opentelemetry::trace::{Status, TraceContextExt, TracerProvider as _};
use opentelemetry::Context;
use opentelemetry_otlp::WithExportConfig;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::config::{OtlpConfig, OtlpProtocol};

pub const TARGET: &str = "osprey::otel";

static ENABLED: AtomicBool = AtomicBool::new(false);
/// f64 bits of the sample ratio.
static RATIO: AtomicU64 = AtomicU64::new(0);

/// The running exporter; shut it down to flush.
pub struct Otel {
    provider: opentelemetry_sdk::trace::SdkTracerProvider,
}

impl Otel {
    /// Builds the exporter and the tracing layer (call inside the runtime).
    pub fn start<S>(
        config: &OtlpConfig,
    ) -> Result<(Otel, impl tracing_subscriber::Layer<S>), String>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        use tracing_subscriber::Layer;
        let timeout = std::time::Duration::from_secs(5);
        let exporter = match config.protocol {
            OtlpProtocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(config.endpoint.clone())
                .with_timeout(timeout)
                .build(),
            OtlpProtocol::Http => opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(format!(
                    "{}/v1/traces",
                    config.endpoint.trim_end_matches('/')
                ))
                .with_timeout(timeout)
                .build(),
        }
        .map_err(|e| format!("OTLP exporter for {}: {e}", config.endpoint))?;
        let exporter = Counting {
            inner: exporter,
            endpoint: config.endpoint.clone(),
        };
        let processor =
            opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
                exporter,
                opentelemetry_sdk::runtime::Tokio,
            )
            .build();
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name(config.service_name.clone())
            .build();
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("osprey");
        let layer = tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(
                tracing_subscriber::filter::Targets::new()
                    .with_target(TARGET, tracing::Level::TRACE),
            );
        RATIO.store(config.sample_ratio.to_bits(), Ordering::Relaxed);
        ENABLED.store(true, Ordering::Relaxed);
        Ok((Otel { provider }, layer))
    }

    /// Flushes what is queued and stops the exporter.
    pub fn shutdown(self) {
        ENABLED.store(false, Ordering::Relaxed);
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "OTLP shutdown");
        }
    }
}

/// Spans lost to failed exports since the last [`take_dropped`].
static DROPPED: AtomicU64 = AtomicU64::new(0);
/// Unix seconds of the last export warning (one per interval, not per span).
static LAST_WARNING: AtomicU64 = AtomicU64::new(0);
const WARN_EVERY_SECS: u64 = 15;

/// Counts what a failed export loses, and says so at most every 15 s.
#[derive(Debug)]
struct Counting {
    inner: opentelemetry_otlp::SpanExporter,
    endpoint: String,
}

impl opentelemetry_sdk::trace::SpanExporter for Counting {
    fn export(
        &self,
        batch: Vec<opentelemetry_sdk::trace::SpanData>,
    ) -> impl std::future::Future<Output = opentelemetry_sdk::error::OTelSdkResult> + Send {
        let n = batch.len() as u64;
        async move {
            let result = self.inner.export(batch).await;
            if let Err(e) = &result {
                DROPPED.fetch_add(n, Ordering::Relaxed);
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let last = LAST_WARNING.load(Ordering::Relaxed);
                if now >= last + WARN_EVERY_SECS
                    && LAST_WARNING
                        .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                        .is_ok()
                {
                    // Not the otel target: that one is for spans and never logged.
                    tracing::warn!(target: "osprey::exporter", endpoint = %self.endpoint, error = %e, "OTLP export failed; spans dropped (counted in instrumentation_dropped_lines_total{{handler=\"otlp\"}})");
                }
            }
            result
        }
    }

    fn shutdown_with_timeout(
        &self,
        timeout: std::time::Duration,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource)
    }
}

/// Spans dropped since the last call (a probe reports them).
pub fn take_dropped() -> u64 {
    DROPPED.swap(0, Ordering::Relaxed)
}

/// Changes sampling at run time (benchmarks compare ratios in one process).
pub fn set_sampling(on: bool, ratio: f64) {
    RATIO.store(ratio.to_bits(), Ordering::Relaxed);
    ENABLED.store(on, Ordering::Relaxed);
}

pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Whether to trace the next stanza (or session).
pub fn sample() -> bool {
    if !enabled() {
        return false;
    }
    let ratio = f64::from_bits(RATIO.load(Ordering::Relaxed));
    ratio >= 1.0 || (ratio > 0.0 && rand::random::<f64>() < ratio)
}

/// Inside a traced stanza (so children may be created).
pub fn in_trace() -> bool {
    enabled() && !Span::current().is_none()
}

/// A child span of the current one, only inside a sampled trace.
#[macro_export]
macro_rules! child_span {
    ($($t:tt)*) => {
        if $crate::otel::in_trace() {
            tracing::info_span!(target: "osprey::otel", $($t)*)
        } else {
            tracing::Span::none()
        }
    };
}

/// The connection's span (not entered: stanzas are their own traces).
pub fn session_span(listener: &str, tls: bool) -> Span {
    if !sample() {
        return Span::none();
    }
    tracing::info_span!(
        target: "osprey::otel",
        parent: None,
        "c2s.session",
        listener = listener,
        transport = "tcp",
        tls = tls,
        host = tracing::field::Empty,
        jid = tracing::field::Empty,
    )
}

/// A stanza's root span, linked to its session's span.
pub fn stanza_span(session: &Span, kind: &str, typ: Option<&str>, session_id: u64) -> Span {
    if !sample() {
        return Span::none();
    }
    let span = tracing::info_span!(
        target: "osprey::otel",
        parent: None,
        "c2s.stanza",
        stanza.kind = kind,
        stanza.type = typ.unwrap_or(""),
        session.id = session_id,
    );
    if !session.is_none() {
        let cx = session.context();
        span.add_link(cx.span().span_context().clone());
    }
    span
}

/// The current trace context, to travel with a routed stanza.
pub fn current_context() -> Option<Context> {
    in_trace().then(|| Span::current().context())
}

/// The receiving session's write of a routed stanza, in the sender's trace.
pub fn deliver_span(parent: &Context, to: &str) -> Span {
    let span = tracing::info_span!(target: "osprey::otel", parent: None, "c2s.deliver", to = to);
    let _ = span.set_parent(parent.clone());
    span
}

/// Marks a span failed with an error condition.
pub fn fail(span: &Span, condition: &str) {
    if !span.is_none() {
        span.set_status(Status::error(condition.to_string()));
    }
}
