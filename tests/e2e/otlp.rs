//! OTLP traces received by a collector built from the official
//! OpenTelemetry protobufs (opentelemetry-proto + tonic): one message, one
//! trace, from the sender's stanza through routing to the receiver's
//! delivery; an offline message's trace holds the storage query; errors
//! mark spans; a collector that is down loses spans, counted, and the
//! gateway keeps serving.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span;

use crate::harness::{Backend, Options, Server};
use crate::http::get;
use crate::raw::Raw;

#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Span>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut all = self.spans.lock().expect("spans");
        for rs in req.into_inner().resource_spans {
            for ss in rs.scope_spans {
                all.extend(ss.spans);
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl Collector {
    async fn start() -> (Collector, std::net::SocketAddr) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let c = Collector::default();
        let svc = TraceServiceServer::new(c.clone());
        tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
                .await;
        });
        (c, addr)
    }

    fn spans(&self) -> Vec<Span> {
        self.spans.lock().expect("spans").clone()
    }

    async fn wait_for(&self, what: &str, cond: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let spans = self.spans();
            if cond(&spans) {
                return spans;
            }
            assert!(
                Instant::now() < deadline,
                "{what}; have {:#?}",
                names(&spans)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn names(spans: &[Span]) -> Vec<String> {
    spans
        .iter()
        .map(|s| format!("{} {}", s.name, attrs(s)))
        .collect()
}

fn attr(s: &Span, key: &str) -> Option<String> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    s.attributes.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            Value::StringValue(v) => Some(v.clone()),
            Value::IntValue(v) => Some(v.to_string()),
            Value::BoolValue(v) => Some(v.to_string()),
            other => Some(format!("{other:?}")),
        }
    })
}

fn attrs(s: &Span) -> String {
    s.attributes
        .iter()
        .map(|kv| kv.key.clone())
        .collect::<Vec<_>>()
        .join(",")
}

fn server(endpoint: &str) -> Server {
    let s = Server::start(Options {
        extra: format!("[instrumentation.otlp]\nendpoint = \"{endpoint}\"\nsample_ratio = 1.0\n"),
        // Export every 200 ms instead of the SDK's 5 s.
        env: vec![("OTEL_BSP_SCHEDULE_DELAY".into(), "200".into())],
        ..Options::plaintext(Backend::Sqlite)
    });
    for u in ["alice", "bob", "carol"] {
        s.register(&format!("{u}@localhost"), "pw");
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_message_one_trace() {
    let (collector, addr) = Collector::start().await;
    let s = server(&format!("http://{addr}"));
    let mut alice = Raw::login(s.c2s, "alice", "pw", "a").await;
    let mut bob = Raw::login(s.c2s, "bob", "pw", "b").await;
    alice
        .send("<message to='bob@localhost/b' type='chat' id='t1'><body>traced</body></message>")
        .await;
    bob.expect("id='t1'").await;

    let spans = collector
        .wait_for("a delivery span", |s| {
            s.iter().any(|x| x.name == "c2s.deliver")
        })
        .await;
    let deliver = spans.iter().find(|s| s.name == "c2s.deliver").unwrap();
    let trace: Vec<&Span> = spans
        .iter()
        .filter(|s| s.trace_id == deliver.trace_id)
        .collect();
    let stanza = trace
        .iter()
        .find(|s| s.name == "c2s.stanza")
        .expect("the sender's stanza span");
    let route = trace
        .iter()
        .find(|s| s.name == "router.route")
        .expect("the routing span");
    assert!(
        stanza.parent_span_id.is_empty(),
        "a stanza starts its trace"
    );
    assert_eq!(
        route.parent_span_id, stanza.span_id,
        "routing is the stanza's child"
    );
    assert_eq!(
        deliver.parent_span_id, route.span_id,
        "bob's delivery joins alice's trace"
    );
    assert_eq!(attr(stanza, "stanza.kind").as_deref(), Some("message"));
    // Kinds (OTLP SpanKind: 2 server, 4 producer, 5 consumer) and no noise.
    assert_eq!((stanza.kind, route.kind, deliver.kind), (2, 4, 5));
    assert_eq!(
        attr(deliver, "messaging.operation.type").as_deref(),
        Some("receive")
    );
    for sp in [*stanza, *route, deliver] {
        let keys = attrs(sp);
        assert!(
            !["busy_ns", "idle_ns", "code.", "thread."]
                .iter()
                .any(|n| keys.contains(n)),
            "{}: {keys}",
            sp.name
        );
    }
    assert_eq!(attr(route, "outcome").as_deref(), Some("delivered"));
    assert_eq!(attr(deliver, "to").as_deref(), Some("bob@localhost/b"));
    // The stanza links to alice's session span (exported when she leaves).
    assert_eq!(stanza.links.len(), 1);

    // An offline message's trace holds the storage query.
    alice
        .send("<message to='carol@localhost' type='chat' id='t2'><body>later</body></message>")
        .await;
    let spans = collector
        .wait_for("an offline store span", |s| {
            s.iter().any(|x| {
                x.name == "storage.query"
                    && attr(x, "db.operation.name").as_deref() == Some("offline_store")
            })
        })
        .await;
    let store = spans
        .iter()
        .find(|x| {
            x.name == "storage.query"
                && attr(x, "db.operation.name").as_deref() == Some("offline_store")
        })
        .unwrap();
    let route = spans
        .iter()
        .find(|x| x.span_id == store.parent_span_id)
        .expect("the store's parent");
    assert_eq!(route.name, "router.route");
    assert_eq!(attr(route, "outcome").as_deref(), Some("offline_stored"));
    assert_eq!(store.kind, 3, "a storage query is a client span");
    assert_eq!(attr(store, "db.system.name").as_deref(), Some("sqlite"));

    // Errors mark their span.
    alice
        .send("<message to='nobody@localhost' type='chat' id='t3'><body>?</body></message>")
        .await;
    alice.expect("id='t3'").await;
    let spans = collector
        .wait_for("a failed routing span", |s| {
            s.iter().any(|x| {
                x.name == "router.route" && attr(x, "outcome").as_deref() == Some("bounced")
            })
        })
        .await;
    let failed = spans
        .iter()
        .find(|x| x.name == "router.route" && attr(x, "outcome").as_deref() == Some("bounced"))
        .unwrap();
    let status = failed.status.as_ref().expect("a status");
    assert_eq!(status.code, 2, "ERROR");
    assert_eq!(status.message, "service-unavailable");

    // The session span, with the JID as an attribute (never a metric label).
    alice.send("</stream:stream>").await;
    alice.read_to_close().await;
    let spans = collector
        .wait_for("alice's session span", |s| {
            s.iter().any(|x| {
                x.name == "c2s.session" && attr(x, "jid").as_deref() == Some("alice@localhost/a")
            })
        })
        .await;
    let session = spans
        .iter()
        .find(|x| x.name == "c2s.session" && attr(x, "jid").as_deref() == Some("alice@localhost/a"))
        .unwrap();
    assert_eq!(attr(session, "host").as_deref(), Some("localhost"));
    let stanza = spans.iter().find(|s| s.name == "c2s.stanza").unwrap();
    assert_eq!(stanza.links[0].span_id, session.span_id);
    let metrics = get(s.http, "/metrics", None).await.body;
    assert!(!metrics.contains("alice@localhost"), "a JID in metrics");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_down_is_counted_and_serving_goes_on() {
    let closed = crate::harness::free_port();
    let mut s = server(&format!("http://127.0.0.1:{closed}"));
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let mut c = Raw::login(s.c2s, "alice", "pw", "x").await;
        c.send("<iq type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
            .await;
        c.expect("id='p'").await;
        let m = get(s.http, "/metrics", None).await.body;
        let dropped = m
            .lines()
            .find(|l| l.starts_with("instrumentation_dropped_lines_total{handler=\"otlp\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0);
        if dropped > 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no dropped spans counted:\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    s.assert_alive();
    let warnings = s.log().matches("OTLP export failed").count();
    assert!(
        (1..=3).contains(&warnings),
        "{warnings} warnings: logged once per interval"
    );
}

/// OTLP/HTTP (protobuf over POST /v1/traces), decoded with the same
/// official message types.
async fn http_collector() -> (Collector, std::net::SocketAddr) {
    use http_body_util::BodyExt;
    use prost::Message;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let c = Collector::default();
    let store = c.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let store = store.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let store = store.clone();
                        async move {
                            let path = req.uri().path().to_string();
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            if path == "/v1/traces" {
                                if let Ok(r) = ExportTraceServiceRequest::decode(body) {
                                    let mut all = store.spans.lock().expect("spans");
                                    for rs in r.resource_spans {
                                        for ss in rs.scope_spans {
                                            all.extend(ss.spans);
                                        }
                                    }
                                }
                            }
                            let reply = ExportTraceServiceResponse {
                                partial_success: None,
                            }
                            .encode_to_vec();
                            let mut resp = hyper::Response::new(http_body_util::Full::new(
                                bytes::Bytes::from(reply),
                            ));
                            resp.headers_mut().insert(
                                "content-type",
                                hyper::header::HeaderValue::from_static("application/x-protobuf"),
                            );
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    (c, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_protocol_exports_too() {
    let (collector, addr) = http_collector().await;
    let s = Server::start(Options {
        extra: format!(
            "[instrumentation.otlp]\nendpoint = \"http://{addr}\"\nprotocol = \"http\"\n"
        ),
        env: vec![("OTEL_BSP_SCHEDULE_DELAY".into(), "200".into())],
        ..Options::plaintext(Backend::Sqlite)
    });
    s.register("alice@localhost", "pw");
    let mut alice = Raw::login(s.c2s, "alice", "pw", "a").await;
    alice
        .send("<iq type='get' id='h1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    alice.expect("id='h1'").await;
    let spans = collector
        .wait_for("a handler span over HTTP", |s| {
            s.iter().any(|x| x.name == "module.handler")
        })
        .await;
    let handler = spans.iter().find(|x| x.name == "module.handler").unwrap();
    assert_eq!(attr(handler, "module").as_deref(), Some("ping"));
}
