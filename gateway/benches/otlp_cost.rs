//! What tracing costs per stanza: the same load (alice sends bob N chat
//! messages over loopback, in-process server) with OTLP off, at sample
//! ratio 0.01 and at 1.0, exporting to an in-process OTLP collector. Prints
//! wall time and process CPU per message, medians of 3 runs, one process.
//!
//! Run: `cargo bench -p osprey-gateway --bench otlp_cost` (N: OSPREY_BENCH_N).

mod common;
use common::median;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};

#[derive(Clone, Default)]
struct Sink(std::sync::Arc<std::sync::atomic::AtomicU64>);

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let n: usize = req
            .into_inner()
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        self.0
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

async fn run_once(n: usize) -> (f64, f64) {
    let b = common::server().await;
    let r = common::load(&b, n).await;
    b.running.shutdown().await;
    r
}

fn main() {
    let n: usize = std::env::var("OSPREY_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sink = Sink::default();
        let svc = TraceServiceServer::new(sink.clone());
        tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
                .await;
        });
        let otlp = osprey::config::OtlpConfig {
            endpoint: format!("http://{addr}"),
            ..Default::default()
        };
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        let (otel, layer) = osprey::otel::Otel::start(&otlp).unwrap();
        tracing_subscriber::registry().with(layer).init();
        println!("{n} messages alice → bob per run, median of 3 runs; µs per message (server and clients in one process)");
        println!("{:<22} {:>12} {:>12} {:>14}", "mode", "wall µs/msg", "CPU µs/msg", "spans exported");
        let mut base = None;
        for (name, on, ratio) in [("otlp off", false, 0.0), ("otlp ratio 0.01", true, 0.01), ("otlp ratio 1.0", true, 1.0), ("otlp off (again)", false, 0.0)] {
            osprey::otel::set_sampling(on, ratio);
            let before = sink.0.load(std::sync::atomic::Ordering::Relaxed);
            let mut walls = Vec::new();
            let mut cpus = Vec::new();
            for _ in 0..3 {
                let (w, c) = run_once(n).await;
                walls.push(w);
                cpus.push(c);
            }
            tokio::time::sleep(std::time::Duration::from_secs(6)).await;
            let exported = sink.0.load(std::sync::atomic::Ordering::Relaxed) - before;
            let (w, c) = (median(walls), median(cpus));
            let base_c = *base.get_or_insert(c);
            println!("{name:<22} {w:>12.2} {c:>12.2} {exported:>14}   CPU ×{:.2}", c / base_c);
        }
        let _ = tokio::task::spawn_blocking(move || otel.shutdown()).await;
    });
}
