//! OTLP traces of each stanza's journey (tracing + tracing-opentelemetry +
//! opentelemetry-otlp).
//!
//! Spans live on one target, [`TARGET`], that only the OpenTelemetry layer
//! enables: with OTLP off they are disabled callsites (no span is built),
//! and with OTLP on a stanza is sampled here, before any span exists, so a
//! sampled-out stanza costs one random draw. The exporter runs on the
//! server's runtime behind a bounded batch queue: the stanza path never
//! waits on the collector. A span that finds the queue full, and a batch
//! whose export fails, are dropped and counted in
//! `instrumentation_dropped_lines_total{handler="otlp"}`.
//!
//! Shape of a trace: `c2s.stanza` (a root per stanza, linked to its
//! `c2s.session`) → `router.route` / `module.handler` → `storage.query`; the
//! trace context travels with a routed stanza, and the receiving session's
//! `c2s.deliver` joins the sender's trace. One message, one trace.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

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
        let processor = batch(
            exporter,
            &config.endpoint,
            queue_size(),
            &DROPPED,
            opentelemetry_sdk::trace::BatchConfigBuilder::default(),
        );
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name(config.service_name.clone())
            .build();
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("osprey");
        // No per-span noise by default: busy/idle times, code locations and
        // thread names say nothing about a stanza's journey.
        let layer = tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_tracked_inactivity(false)
            .with_location(false)
            .with_threads(false)
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

/// Spans dropped (queue full, or export failed) since the last [`take_dropped`].
static DROPPED: AtomicU64 = AtomicU64::new(0);
/// Unix seconds of the last drop warning (one per interval, not per span).
static LAST_WARNING: AtomicU64 = AtomicU64::new(0);
const WARN_EVERY_SECS: u64 = 15;
/// Room in the SDK's channel beyond [`Queue`]'s bound, for its control
/// messages (flush, shutdown): with it, the channel itself never overflows.
const CHANNEL_HEADROOM: usize = 16;

/// Says that spans were dropped (`what` happened), at most every 15 s.
fn warn_dropped(endpoint: &str, what: &str, why: &dyn std::fmt::Display) {
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
        tracing::warn!(target: "osprey::exporter", endpoint = %endpoint, error = %why, "{what}; spans dropped (counted in instrumentation_dropped_lines_total{{handler=\"otlp\"}})");
    }
}

/// How many spans may wait for export: the SDK's default queue size, or
/// `OTEL_BSP_MAX_QUEUE_SIZE` as the SDK itself would read it.
fn queue_size() -> usize {
    std::env::var(opentelemetry_sdk::trace::OTEL_BSP_MAX_QUEUE_SIZE)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or(opentelemetry_sdk::trace::OTEL_BSP_MAX_QUEUE_SIZE_DEFAULT)
}

/// The batch processor's queue, bounded here so that an overflow is
/// counted. The SDK's `BatchSpanProcessor` (0.33) drops a span when its
/// channel is full, but its count of them is private and only logged at
/// shutdown: no hook reports it. So spans are admitted only while fewer
/// than `limit` wait (in the channel or in the batch being filled, until
/// the exporter gets them), and the SDK's channel, `limit` plus some
/// headroom, never fills up itself.
#[derive(Debug)]
struct Queue {
    waiting: AtomicUsize,
    limit: usize,
    dropped: &'static AtomicU64,
}

impl Queue {
    /// Takes a place for one span; counts it as dropped when there is none.
    fn admit(&self) -> bool {
        if self.waiting.fetch_add(1, Ordering::AcqRel) < self.limit {
            return true;
        }
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        self.dropped.fetch_add(1, Ordering::Relaxed);
        false
    }

    /// `n` spans went to the exporter: their places are free.
    fn exported(&self, n: usize) {
        let _ = self
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                Some(w.saturating_sub(n))
            });
    }
}

/// The SDK's batch processor (on the tokio runtime) behind a [`Queue`] of
/// `limit` spans; drops are counted in `dropped`.
fn batch<E: opentelemetry_sdk::trace::SpanExporter + 'static>(
    exporter: E,
    endpoint: &str,
    limit: usize,
    dropped: &'static AtomicU64,
    config: opentelemetry_sdk::trace::BatchConfigBuilder,
) -> Bounded<
    opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor<
        opentelemetry_sdk::runtime::Tokio,
    >,
> {
    let queue = Arc::new(Queue {
        waiting: AtomicUsize::new(0),
        limit,
        dropped,
    });
    let exporter = Counting {
        inner: exporter,
        endpoint: endpoint.to_string(),
        queue: queue.clone(),
    };
    let inner =
        opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
            exporter,
            opentelemetry_sdk::runtime::Tokio,
        )
        .with_batch_config(config.with_max_queue_size(limit + CHANNEL_HEADROOM).build())
        .build();
    Bounded {
        inner,
        queue,
        endpoint: endpoint.to_string(),
    }
}

/// Admits a finished span into the batch processor only while its
/// [`Queue`] has room (the SDK documents wrapping a processor as the way
/// to filter spans).
#[derive(Debug)]
struct Bounded<P> {
    inner: P,
    queue: Arc<Queue>,
    endpoint: String,
}

impl<P: opentelemetry_sdk::trace::SpanProcessor> opentelemetry_sdk::trace::SpanProcessor
    for Bounded<P>
{
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: opentelemetry_sdk::trace::SpanData) {
        // The batch processor ignores spans that are not sampled.
        if span.span_context.is_sampled() && !self.queue.admit() {
            warn_dropped(
                &self.endpoint,
                "OTLP export queue full",
                &format_args!("{} spans waiting", self.queue.limit),
            );
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(
        &self,
        timeout: std::time::Duration,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

/// Frees the queue's places of what it exports, and counts what a failed
/// export loses.
#[derive(Debug)]
struct Counting<E> {
    inner: E,
    endpoint: String,
    queue: Arc<Queue>,
}

impl<E: opentelemetry_sdk::trace::SpanExporter> opentelemetry_sdk::trace::SpanExporter
    for Counting<E>
{
    fn export(
        &self,
        batch: Vec<opentelemetry_sdk::trace::SpanData>,
    ) -> impl std::future::Future<Output = opentelemetry_sdk::error::OTelSdkResult> + Send {
        let n = batch.len();
        self.queue.exported(n);
        async move {
            let result = self.inner.export(batch).await;
            if let Err(e) = &result {
                self.queue.dropped.fetch_add(n as u64, Ordering::Relaxed);
                warn_dropped(&self.endpoint, "OTLP export failed", e);
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
        otel.kind = "server",
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
        otel.kind = "server",
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
    // The receiving end of the hand-off between two sessions' queues.
    let span = tracing::info_span!(
        target: "osprey::otel",
        parent: None,
        "c2s.deliver",
        otel.kind = "consumer",
        messaging.system = "osprey",
        messaging.operation.type = "receive",
        messaging.destination.name = "session",
        to = to
    );
    let _ = span.set_parent(parent.clone());
    span
}

/// Marks a span failed with an error condition.
pub fn fail(span: &Span, condition: &str) {
    if !span.is_none() {
        span.set_status(Status::error(condition.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
    use opentelemetry_sdk::error::OTelSdkResult;
    use opentelemetry_sdk::trace::{BatchConfigBuilder, SpanData, SpanExporter};

    /// Counts what it is given.
    #[derive(Debug, Clone, Default)]
    struct Sink(Arc<AtomicUsize>);

    impl SpanExporter for Sink {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            self.0.fetch_add(batch.len(), Ordering::SeqCst);
            Ok(())
        }
    }

    /// The real SDK batch processor behind the bounded queue: with no
    /// export due (an hour's schedule), 8 of 20 spans fit and 12 are
    /// counted as dropped; once exported, their places are free again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn spans_beyond_the_queue_are_counted_as_dropped() {
        static DROPPED: AtomicU64 = AtomicU64::new(0);
        let sink = Sink::default();
        let processor = super::batch(
            sink.clone(),
            "test",
            8,
            &DROPPED,
            BatchConfigBuilder::default().with_scheduled_delay(Duration::from_secs(3600)),
        );
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_span_processor(processor)
            .build();
        let tracer = provider.tracer("test");
        for _ in 0..20 {
            tracer.start("span").end();
        }
        assert_eq!(DROPPED.load(Ordering::SeqCst), 12);
        let p = provider.clone();
        tokio::task::spawn_blocking(move || p.force_flush())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(sink.0.load(Ordering::SeqCst), 8);
        for _ in 0..8 {
            tracer.start("span").end();
        }
        assert_eq!(DROPPED.load(Ordering::SeqCst), 12);
        tokio::task::spawn_blocking(move || provider.shutdown())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(sink.0.load(Ordering::SeqCst), 16);
    }
}
