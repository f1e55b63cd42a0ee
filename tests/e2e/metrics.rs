//! /metrics checked by real tools: promtool lints it (no exception), and a
//! real Prometheus server scrapes it and answers queries with the values a
//! scripted session must have produced. The naming conventions: the build
//! info, CPU time as a counter, the certificate's expiry as a timestamp,
//! and every bounded error/close/limit series at 0 before anything
//! happens. Also: the admin API's authentication and verbs, and a clear
//! error when the metrics port is taken.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{osprey_bin, Backend, Options, Server, TOKEN};
use crate::http::{get, request};
use crate::raw::Raw;

/// A scripted session: two users, three messages, one roster set, one bad
/// login. The two sessions stay open while the returned clients live.
async fn scripted_session(s: &Server) -> (Raw, Raw) {
    let mut alice = Raw::login(s.c2s, "alice", "pw", "a").await;
    let mut bob = Raw::login(s.c2s, "bob", "pw", "b").await;
    for i in 0..3 {
        alice
            .send(&format!(
                "<message to='bob@localhost/b' type='chat' id='m{i}'><body>hi</body></message>"
            ))
            .await;
        bob.expect(&format!("id='m{i}'")).await;
    }
    alice
        .send("<iq type='set' id='r1'><query xmlns='jabber:iq:roster'><item jid='bob@localhost'/></query></iq>")
        .await;
    alice.expect("id='r1'").await;
    let mut bad = Raw::connect(s.c2s).await;
    bad.open().await;
    bad.send(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNlAHdyb25n</auth>",
    )
    .await;
    bad.expect("</failure>").await;
    (alice, bob)
}

fn server() -> Server {
    let s = Server::start(Options::plaintext(Backend::Sqlite));
    s.register("alice@localhost", "pw");
    s.register("bob@localhost", "pw");
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_metrics() {
    let s = server();
    let _clients = scripted_session(&s).await;
    // promtool lints the classic text format; Prometheus itself asks for
    // OpenMetrics, which the scrape test below covers.
    let om = request(
        s.http,
        "GET",
        "/metrics",
        None,
        Some("application/openmetrics-text; version=1.0.0"),
    )
    .await;
    assert!(
        om.headers.contains("application/openmetrics-text"),
        "{}",
        om.headers
    );
    assert!(om.body.trim_end().ends_with("# EOF"));
    {
        let r = request(s.http, "GET", "/metrics", None, None).await;
        assert_eq!(r.status, 200);
        assert!(r.body.contains("xmpp_element_in_total"), "{}", r.body);
        promtool_check(&r.body);
        assert!(
            r.headers.contains("text/plain; version=0.0.4"),
            "{}",
            r.headers
        );
    }
    let health = get(s.http, "/healthz", None).await;
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
}

/// `promtool check metrics` on the classic text format: exit 0 and not a
/// word of lint (no lint check is turned off).
fn promtool_check(text: &str) {
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is required: apt-get install prometheus");
    {
        use std::io::Write;
        let mut stdin = promtool.stdin.take().expect("stdin");
        stdin.write_all(text.as_bytes()).expect("feed promtool");
    }
    let out = promtool.wait_with_output().expect("promtool");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics ({}):\n{said}",
        out.status
    );
}

/// The value of the sample line `series` (name and labels exactly as
/// exposed), if there is one.
pub(crate) fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// A fresh gateway with a STARTTLS listener, before any client: promtool
/// accepts its /metrics as is; the build info is 1; CPU time is the
/// counter `process_cpu_seconds_total`; the certificate's expiry is a Unix
/// timestamp in the future; and every stream/stanza error condition (by
/// its RFC wire name), session and connection close reason, limit, router
/// outcome and storage operation error is already a series at 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_the_conventions_from_the_start() {
    let s = Server::start(Options::new(Backend::Sqlite));
    let listener = format!("c2s_{}", s.c2s.port());
    let expiry = format!("tls_certificate_expiry_timestamp_seconds{{listener=\"{listener}\"}}");
    // Probes run once at start: wait for their first round.
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let r = request(s.http, "GET", "/metrics", None, None).await;
        assert_eq!(r.status, 200);
        if sample(&r.body, &expiry).is_some()
            && sample(&r.body, "process_cpu_seconds_total").is_some()
        {
            break r.body;
        }
        assert!(Instant::now() < deadline, "no probe values:\n{}", r.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    promtool_check(&text);

    let build = format!(
        "osprey_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(sample(&text, &build), Some(1.0), "{text}");
    assert!(text.contains("# TYPE osprey_build_info gauge\n"), "{text}");

    assert!(
        text.contains("# TYPE process_cpu_seconds_total counter\n"),
        "{text}"
    );
    assert!(sample(&text, "process_cpu_seconds_total").is_some_and(|v| v >= 0.0));
    assert!(
        !text.contains("process_cpu_seconds ") && !text.contains("process_cpu_seconds{"),
        "CPU time only as a counter:\n{text}"
    );

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let expires = sample(&text, &expiry).unwrap();
    // The generated certificate is valid for a year.
    assert!(
        expires > now + 300.0 * 86_400.0 && expires < now + 400.0 * 86_400.0,
        "{expiry} = {expires}, now {now}"
    );
    assert!(!text.contains("days_remaining"), "{text}");

    let mut zero = Vec::new();
    for c in osprey::errors::StreamCondition::ALL {
        zero.push(format!(
            "xmpp_stream_error_total{{connection_type=\"c2s\",condition=\"{}\"}}",
            c.wire_name()
        ));
    }
    for c in osprey::errors::StanzaCondition::ALL {
        zero.push(format!(
            "xmpp_stanza_error_total{{connection_type=\"c2s\",condition=\"{}\"}}",
            c.wire_name()
        ));
    }
    use osprey::instr::bounded;
    for why in bounded::SESSION_CLOSE {
        zero.push(format!(
            "c2s_session_close_total{{host=\"localhost\",reason=\"{why}\"}}"
        ));
    }
    for why in bounded::CONNECTION_CLOSED {
        zero.push(format!(
            "c2s_connection_closed_total{{listener=\"{listener}\",reason=\"{why}\"}}"
        ));
    }
    for why in bounded::CONNECTION_REJECTED {
        zero.push(format!(
            "c2s_connection_rejected_total{{listener=\"{listener}\",reason=\"{why}\"}}"
        ));
    }
    for limit in bounded::LIMITS {
        zero.push(format!("limit_hit_total{{limit=\"{limit}\"}}"));
    }
    for (kind, outcomes) in bounded::ROUTES {
        for outcome in *outcomes {
            zero.push(format!(
                "router_routed_total{{kind=\"{kind}\",outcome=\"{outcome}\"}}"
            ));
        }
    }
    for op in osprey::storage::OPERATIONS {
        zero.push(format!(
            "storage_query_total{{backend=\"sqlite\",operation=\"{op}\",outcome=\"error\"}}"
        ));
    }
    for h in ["otlp", "graphite"] {
        zero.push(format!(
            "instrumentation_dropped_lines_total{{handler=\"{h}\"}}"
        ));
    }
    let missing: Vec<&String> = zero
        .iter()
        .filter(|series| sample(&text, series) != Some(0.0))
        .collect();
    assert!(missing.is_empty(), "not at 0: {missing:#?}\n{text}");
    // Stanza and stream conditions alike: RFC wire names, hyphenated.
    assert!(
        !text.contains("condition=\"service_unavailable\""),
        "{text}"
    );
}

/// The server process, and its data directory (removed after it).
struct Prometheus(Child, #[allow(dead_code)] tempfile::TempDir);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_the_counters() {
    let s = server();
    let _clients = scripted_session(&s).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: osprey\n    static_configs:\n      - targets: ['{}']\n",
            s.http
        ),
    )
    .unwrap();
    let port = crate::harness::free_port();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus is required: apt-get install prometheus");
    let _prom = Prometheus(child, dir);
    let api: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let query = |q: &str| {
        format!(
            "/api/v1/query?query={}",
            q.replace('{', "%7B")
                .replace('}', "%7D")
                .replace('"', "%22")
                .replace('=', "%3D")
                .replace(',', "%2C")
        )
    };
    let expect = [
        (
            "router_routed_total{kind=\"message\",outcome=\"delivered\"}",
            3.0,
        ),
        ("c2s_session_open_total{host=\"localhost\"}", 2.0),
        (
            "c2s_auth_total{outcome=\"failure\",reason=\"not_authorized\"}",
            1.0,
        ),
        (
            "module_handler_total{module=\"roster\",operation=\"set\"}",
            1.0,
        ),
        ("sm_sessions", 2.0),
    ];
    let deadline = Instant::now() + Duration::from_secs(60);
    // Prometheus takes a moment to listen (longer on a loaded machine).
    while tokio::net::TcpStream::connect(api).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "Prometheus never listened on {api}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut last = String::new();
    'outer: loop {
        assert!(
            Instant::now() < deadline,
            "Prometheus never had the values; last answer: {last}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        for (q, want) in expect {
            let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(2), async {
                Ok::<_, ()>(get(api, &query(q), None).await)
            })
            .await
            else {
                continue 'outer;
            };
            last = format!("{q}: {}", r.body);
            let v: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_default();
            let got = v["data"]["result"][0]["value"][1]
                .as_str()
                .and_then(|x| x.parse::<f64>().ok());
            if got != Some(want) {
                continue 'outer;
            }
        }
        break;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_needs_the_token_and_kicks() {
    let s = server();
    let mut alice = Raw::login(s.c2s, "alice", "pw", "phone").await;
    // No token, or a wrong one: 401, and nothing is done.
    for token in [None, Some("wrong")] {
        let r = request(
            s.http,
            "DELETE",
            "/api/sessions/alice@localhost/phone",
            token,
            None,
        )
        .await;
        assert_eq!(r.status, 401, "{}", r.body);
        assert!(
            r.headers.contains("www-authenticate: Bearer"),
            "{}",
            r.headers
        );
    }
    let sessions = get(s.http, "/api/sessions", Some(TOKEN)).await;
    assert_eq!(sessions.status, 200);
    let page: serde_json::Value = serde_json::from_str(&sessions.body).unwrap();
    assert_eq!(page["total"], 1, "{page}");
    let list = &page["items"];
    assert_eq!(list[0]["jid"], "alice@localhost/phone", "{list}");
    assert_eq!(list[0]["tls"], false);
    let status: serde_json::Value =
        serde_json::from_str(&get(s.http, "/api/status", Some(TOKEN)).await.body).unwrap();
    assert_eq!(status["sessions"], 1);
    assert_eq!(status["hosts"][0], "localhost");
    assert_eq!(status["storage"], "sqlite");
    let events: serde_json::Value =
        serde_json::from_str(&get(s.http, "/api/events", Some(TOKEN)).await.body).unwrap();
    let session_open = events
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "c2s_session_open")
        .unwrap();
    assert_eq!(session_open["emitted"], true);
    assert_eq!(session_open["metrics"][0]["name"], "c2s_session_open");
    // Kick (the JID percent-encoded as a client would).
    let r = request(
        s.http,
        "DELETE",
        "/api/sessions/alice%40localhost%2Fphone",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let out = alice.read_to_close().await;
    // A kick is not a policy violation: undefined-condition with Osprey's
    // own application condition (RFC 6120 §4.9.4), and the reason as text.
    assert!(
        out.contains("<undefined-condition")
            && out.contains("<kicked xmlns='urn:osprey:admin:0'/>")
            && out.contains("administrator"),
        "{out}"
    );
    let r = request(
        s.http,
        "DELETE",
        "/api/sessions/alice@localhost",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(r.status, 404);
    // Metrics stay open without a token; unknown paths are 404.
    assert_eq!(get(s.http, "/metrics", None).await.status, 200);
    assert_eq!(get(s.http, "/api/nothing", Some(TOKEN)).await.status, 404);
}

#[test]
fn metrics_port_taken_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("osprey.toml");
    std::fs::write(
        &config,
        format!(
            "[general]\ndata_dir = \"{}\"\n[[listen.c2s]]\naddress = \"127.0.0.1\"\nport = 0\n[[listen.http]]\naddress = \"127.0.0.1\"\nport = {port}\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let out = Command::new(osprey_bin())
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "cannot listen on 127.0.0.1:{port} (listen.http[0])"
        )),
        "{err}"
    );
    drop(taken);
}

#[test]
fn bad_instrumentation_config_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("osprey.toml");
    for (text, line, key) in [
        (
            "[instrumentation]\nprobe_interval = 15\n[instrumentation.statsd]\n",
            ":5:",
            "statsd",
        ),
        (
            "[instrumentation]\nprobe_intervall = 15\n",
            ":4:",
            "instrumentation.probe_intervall",
        ),
        (
            "[instrumentation.log]\nlevel = \"loud\"\n",
            ":4:",
            "instrumentation.log.level",
        ),
        (
            "[instrumentation.log]\nevents = { no_such_event = \"debug\" }\n",
            ":4:",
            "no_such_event",
        ),
    ] {
        std::fs::write(
            &config,
            format!("[general]\ndata_dir = \"{}\"\n{text}", dir.path().display()),
        )
        .unwrap();
        let out = Command::new(osprey_bin())
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{text}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(line), "line {line}: {err}");
        assert!(
            err.contains("osprey.toml") && err.contains(key),
            "{text} → {err}"
        );
    }
}

/// `/api/snapshot`: every series with rates, computed in the gateway from
/// its registry (what `osprey top` draws); the stream sends one at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_has_the_series_with_rates_and_needs_the_token() {
    let s = server();
    assert_eq!(get(s.http, "/api/snapshot", None).await.status, 401);
    let (_alice, _bob) = scripted_session(&s).await;
    // Rates need two samples (one a second): wait until the scripted
    // session's messages are in a snapshot.
    let deadline = Instant::now() + Duration::from_secs(20);
    let snap = loop {
        let r = get(s.http, "/api/snapshot", Some(TOKEN)).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let v: osprey_instrument::snapshot::Snapshot =
            serde_json::from_str(&r.body).expect("snapshot JSON");
        if v.total("xmpp_element_in", "count", &[("kind", "message")]) >= 3.0
            && v.interval_seconds > 0.0
        {
            break v;
        }
        assert!(Instant::now() < deadline, "no messages in {}", r.body);
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(snap.live["sessions"], 2.0);
    assert_eq!(snap.hosts, vec!["localhost".to_string()]);
    assert!(snap.live["rss_bytes"] > 1e6);
    assert_eq!(
        snap.total("c2s_auth", "count", &[("outcome", "failure")]),
        1.0
    );
    let delivered = snap
        .event("router_routed")
        .find(|x| {
            // Every (kind, outcome) exists from start: pick the messages'.
            x.key == "seconds"
                && x.labels.get("kind").map(String::as_str) == Some("message")
                && x.labels.get("outcome").map(String::as_str) == Some("delivered")
        })
        .expect("routing histogram");
    assert_eq!(delivered.value, 3.0);
    // Every counter carries a rate once the sampler has two samples.
    assert!(snap
        .series
        .iter()
        .filter(|x| x.kind == osprey_instrument::snapshot::Kind::Counter)
        .all(|x| x.rate.is_some()));
    // No JID or body in any label.
    let text = serde_json::to_string(&snap).unwrap();
    assert!(!text.contains("alice@") && !text.contains("hi<"), "{text}");
    // The stream: server-sent events, the current snapshot first.
    let mut tcp = tokio::net::TcpStream::connect(s.http).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tcp.write_all(
        format!(
            "GET /api/snapshot/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut got = String::new();
    let mut buf = [0u8; 65536];
    while !got.contains("\"series\"") {
        let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf))
            .await
            .expect("a snapshot event")
            .unwrap();
        assert!(n > 0, "stream closed: {got}");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(got.contains("text/event-stream"), "{got}");
    assert!(got.contains("event: snapshot\ndata: {"), "{got}");
}

/// `/api/sessions?limit=&filter=`: one page of a big node, as `osprey top`
/// asks for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_list_pages_and_filters() {
    let s = server();
    let _alice = Raw::login(s.c2s, "alice", "pw", "a").await;
    let _bob = Raw::login(s.c2s, "bob", "pw", "b").await;
    let list = |path: &'static str| {
        let http = s.http;
        async move {
            let r = get(http, path, Some(TOKEN)).await;
            assert_eq!(r.status, 200, "{}", r.body);
            let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
            v["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x["jid"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        list("/api/sessions").await,
        ["alice@localhost/a", "bob@localhost/b"]
    );
    assert_eq!(list("/api/sessions?limit=1").await, ["alice@localhost/a"]);
    // The next page, and the total of the whole list with any page.
    assert_eq!(
        list("/api/sessions?limit=1&offset=1").await,
        ["bob@localhost/b"]
    );
    let page: serde_json::Value = serde_json::from_str(
        &get(s.http, "/api/sessions?limit=1&offset=1", Some(TOKEN))
            .await
            .body,
    )
    .unwrap();
    assert_eq!(
        (page["total"].as_u64(), page["offset"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(list("/api/sessions?filter=BOB").await, ["bob@localhost/b"]);
    assert_eq!(
        list("/api/sessions?filter=127.0.0.1&limit=5").await.len(),
        2
    );
    assert!(list("/api/sessions?filter=carol").await.is_empty());
    let bad = get(s.http, "/api/sessions?limit=many", Some(TOKEN)).await;
    assert_eq!(bad.status, 400, "{}", bad.body);
}
