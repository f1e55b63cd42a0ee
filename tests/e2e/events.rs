//! The instrumentation seen from inside: an in-process server with a
//! recording handler; each scripted action must emit the expected events
//! with the expected values, and by the end every declared event must have
//! been emitted (MongooseIM's instrument_helper habit).

use std::path::Path;
use std::time::Duration;

use osprey::config::Config;
use osprey_instrument::recording::RecordingHandler;

use crate::raw::Raw;

const UNREACHABLE: &[(&str, &str)] = &[
    // A single node emits no cluster event: they are asserted on real
    // clusters in tests/e2e/cluster.rs (the dashboard test reads them from
    // /metrics through Prometheus; the SIGKILL test, cluster_node_down).
    ("cluster_node_down", "cluster only"),
    ("cluster_stanza_out", "cluster only"),
    ("cluster_stanza_in", "cluster only"),
    ("cluster_sync", "cluster only"),
    ("cluster_replaced", "cluster only"),
    ("cluster", "cluster only"),
];

async fn start(rec: &RecordingHandler, dir: &Path) -> osprey::server::Running {
    let text = format!(
        r#"[general]
hosts = ["localhost"]
data_dir = "{dir}"
[[listen.c2s]]
address = "127.0.0.1"
port = 0
tls.mode = "none"
allow_plain_auth_without_tls = true
max_stanza_size = 4096
max_stanza_size_pre_auth = 1024
max_queue_bytes = 8192
shaper = "none"
[[listen.c2s]]
address = "127.0.0.1"
port = 0
tls.mode = "direct"
[[listen.http]]
address = "127.0.0.1"
port = 0
[auth.throttle.account]
after_failures = 1
first_delay = 0.05
max_delay = 1
[instrumentation]
probe_interval = 1
[instrumentation.prometheus]
[[instrumentation.graphite]]
port = {closed}
interval = 1
connect_timeout = 1
buffer_lines = 1
"#,
        dir = dir.display(),
        closed = crate::harness::free_port(),
    );
    let config = Config::parse(&text, &dir.join("osprey.toml")).expect("config");
    let running = osprey::server::start(config, vec![Box::new(rec.clone())])
        .await
        .expect("start");
    for u in ["alice", "bob", "carol", "dave", "erin"] {
        let creds = osprey::sasl::account_credentials("pw", 4096).unwrap();
        running
            .ctx
            .storage
            .create_account("localhost", u, &creds)
            .await
            .unwrap();
    }
    running
}

/// Waits until `cond` holds on the records (events are emitted by other tasks).
async fn eventually(rec: &RecordingHandler, what: &str, cond: impl Fn(&RecordingHandler) -> bool) {
    for _ in 0..200 {
        if cond(rec) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let names: Vec<_> = rec
        .records()
        .iter()
        .map(|r| format!("{} {:?}", r.event, r.labels))
        .collect();
    panic!("{what}: not seen; records: {names:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_action_emits_its_events_and_every_event_is_emitted() {
    let dir = tempfile::tempdir().unwrap();
    let rec = RecordingHandler::new();
    let running = start(&rec, dir.path()).await;
    let plain: std::net::SocketAddr = running.listeners.c2s[0].parse().unwrap();
    let direct: std::net::SocketAddr = running.listeners.c2s[1].parse().unwrap();

    // Login.
    let mut alice = Raw::login(plain, "alice", "pw", "a").await;
    eventually(&rec, "successful PLAIN auth", |r| {
        r.sum(
            "c2s_auth",
            &[
                ("mechanism", "plain"),
                ("outcome", "success"),
                ("reason", "none"),
            ],
            "count",
        ) == 1.0
    })
    .await;
    assert_eq!(
        rec.sum("c2s_session_open", &[("host", "localhost")], "count"),
        1.0
    );
    assert!(rec.sum("c2s_connection_accepted", &[], "count") >= 1.0);
    assert!(rec.sum("c2s_data_in", &[("transport", "tcp")], "bytes") > 100.0);

    // Failed login, then a throttled one.
    let mut bad = Raw::connect(plain).await;
    bad.open().await;
    for _ in 0..2 {
        bad.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNlAHdyb25n</auth>").await;
        bad.expect("</failure>").await;
    }
    assert_eq!(
        rec.sum(
            "c2s_auth",
            &[("outcome", "failure"), ("reason", "not_authorized")],
            "count"
        ),
        2.0
    );
    eventually(&rec, "login throttled", |r| {
        r.sum("c2s_login_throttled", &[("scope", "account")], "count") >= 1.0
    })
    .await;
    assert!(rec.sum("c2s_login_throttled", &[("scope", "account")], "seconds") > 0.0);
    assert!(rec.sum("limit_hit", &[("limit", "auth_attempts")], "count") >= 1.0);

    // A message to an online user: routed and delivered; sizes measured.
    let mut bob = Raw::login(plain, "bob", "pw", "b").await;
    let msg = "<message to='bob@localhost/b' type='chat' id='m1'><body>hi</body></message>";
    alice.send(msg).await;
    bob.expect("id='m1'").await;
    eventually(&rec, "message routed", |r| {
        r.sum(
            "router_routed",
            &[("kind", "message"), ("outcome", "delivered")],
            "count",
        ) == 1.0
    })
    .await;
    let ins = rec.find("xmpp_element_in", &[("kind", "message")]);
    assert_eq!(ins.len(), 1);
    assert_eq!(ins[0].value("bytes"), Some(msg.len() as f64));
    assert!(rec.sum("xmpp_element_out", &[("kind", "message")], "count") >= 1.0);

    // A message to an offline user: stored, through storage.
    alice
        .send("<message to='carol@localhost' type='chat' id='m2'><body>later</body></message>")
        .await;
    eventually(&rec, "offline store", |r| {
        r.sum("router_routed", &[("outcome", "offline_stored")], "count") == 1.0
    })
    .await;
    assert_eq!(
        rec.sum(
            "module_handler",
            &[("module", "offline"), ("operation", "store")],
            "count"
        ),
        1.0
    );
    assert!(
        rec.sum(
            "storage_query",
            &[("operation", "offline_store"), ("outcome", "ok")],
            "count"
        ) >= 1.0
    );

    // Roster set and get, subscription.
    alice.send("<iq type='set' id='r1'><query xmlns='jabber:iq:roster'><item jid='bob@localhost' name='Bob'/></query></iq>").await;
    alice.expect("id='r1'").await;
    alice
        .send("<iq type='get' id='r2'><query xmlns='jabber:iq:roster'/></iq>")
        .await;
    alice.expect("</iq>").await;
    assert_eq!(
        rec.sum(
            "module_handler",
            &[("module", "roster"), ("operation", "set")],
            "count"
        ),
        1.0
    );
    assert_eq!(
        rec.sum(
            "module_handler",
            &[("module", "roster"), ("operation", "get")],
            "count"
        ),
        1.0
    );
    assert!(
        rec.sum(
            "module_handler",
            &[("module", "roster"), ("operation", "push")],
            "count"
        ) >= 1.0
    );
    alice
        .send("<presence to='bob@localhost' type='subscribe'/>")
        .await;
    eventually(&rec, "subscription handled", |r| {
        r.sum(
            "module_handler",
            &[("module", "presence"), ("operation", "subscribe")],
            "count",
        ) == 1.0
    })
    .await;
    alice.send("<presence/>").await;
    alice.send("<presence to='bob@localhost/b'/>").await;
    eventually(&rec, "presence broadcast", |r| {
        r.sum(
            "module_handler",
            &[("module", "presence"), ("operation", "broadcast")],
            "count",
        ) == 1.0
    })
    .await;
    eventually(&rec, "directed presence", |r| {
        r.sum("router_routed", &[("kind", "presence")], "count") >= 1.0
    })
    .await;
    alice.send("<iq type='get' id='d1' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>").await;
    alice.expect("id='d1'").await;
    alice
        .send("<iq type='get' id='p1' to='bob@localhost/b'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    bob.expect("id='p1'").await;

    // Carol logs in and gets her offline message delivered.
    let mut carol = Raw::login(plain, "carol", "pw", "c").await;
    carol.send("<presence/>").await;
    carol.expect("id='m2'").await;
    eventually(&rec, "offline deliver", |r| {
        r.sum(
            "module_handler",
            &[("module", "offline"), ("operation", "deliver")],
            "count",
        ) >= 1.0
    })
    .await;

    // A stanza error (unknown user) and a replaced session.
    alice
        .send("<message to='nobody@localhost' id='x1'><body>?</body></message>")
        .await;
    alice.expect("id='x1'").await;
    eventually(&rec, "stanza error", |r| {
        r.sum(
            "xmpp_stanza_error",
            &[("condition", "service-unavailable")],
            "count",
        ) == 1.0
    })
    .await;
    let _carol2 = Raw::login(plain, "carol", "pw", "c").await;
    carol.read_to_close().await;
    eventually(&rec, "replaced", |r| {
        r.sum("c2s_session_replaced", &[], "count") == 1.0
    })
    .await;
    eventually(&rec, "close reason replaced", |r| {
        r.sum("c2s_session_close", &[("reason", "replaced")], "count") == 1.0
    })
    .await;

    // Bad input: a stream error and a limit.
    let mut evil = Raw::connect(plain).await;
    evil.open().await;
    let _ = evil.try_send(b"<message><body>x</bdy></message>").await;
    evil.read_to_close().await;
    eventually(&rec, "stream error", |r| {
        r.sum(
            "xmpp_stream_error",
            &[("condition", "not-well-formed")],
            "count",
        ) == 1.0
    })
    .await;
    let mut big = Raw::connect(plain).await;
    big.open().await;
    let _ = big
        .try_send(format!("<message><body>{}</body></message>", "x".repeat(2000)).as_bytes())
        .await;
    big.read_to_close().await;
    eventually(&rec, "limit", |r| {
        r.sum("limit_hit", &[("limit", "stanza_too_large")], "count") == 1.0
    })
    .await;

    // A slow consumer: dave stops reading while bob floods him.
    let mut dave = Raw::login(plain, "dave", "pw", "d").await;
    dave.send("<presence/>").await;
    let body = "y".repeat(3000);
    for i in 0..2000 {
        let m = format!(
            "<message to='dave@localhost/d' type='chat' id='s{i}'><body>{body}</body></message>"
        );
        if bob.try_send(m.as_bytes()).await.is_err() {
            break;
        }
        if rec.sum("limit_hit", &[("limit", "slow_consumer")], "count") > 0.0 {
            break;
        }
    }
    eventually(&rec, "slow consumer", |r| {
        r.sum("limit_hit", &[("limit", "slow_consumer")], "count") >= 1.0
    })
    .await;
    drop(dave);

    // Direct TLS: one good handshake, one rejected.
    let mut tls = Raw::connect_tls(direct).await;
    tls.open().await;
    let mut junk = Raw::connect(direct).await;
    let _ = junk.try_send(b"this is not TLS\r\n\r\n").await;
    let _ = junk.read_to_close().await;
    eventually(&rec, "TLS rejected", |r| {
        r.sum(
            "c2s_connection_rejected",
            &[("reason", "tls_handshake")],
            "count",
        ) >= 1.0
    })
    .await;
    assert!(rec.sum("c2s_tls_established", &[("method", "direct")], "count") >= 1.0);

    // Stream management (XEP-0198): enable, an ack, a dropped connection, a
    // resume, and a resume of an id nobody has.
    let mut erin = Raw::login_abortable(plain, "erin", "pw", "e").await;
    erin.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
        .await;
    let enabled = erin.expect("/>").await;
    let id = enabled
        .split("id='")
        .nth(1)
        .and_then(|r| r.split('\'').next())
        .expect("an SM id")
        .to_string();
    erin.send("<iq type='get' id='smp'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    erin.expect("id='smp'").await;
    erin.send("<a xmlns='urn:xmpp:sm:3' h='1'/>").await;
    eventually(&rec, "sm enabled and acked", |r| {
        r.sum("sm_enabled", &[("mode", "resume")], "count") == 1.0
            && r.sum("sm_ack", &[], "count") >= 1.0
    })
    .await;
    drop(erin);
    eventually(&rec, "sm detached", |r| {
        r.sum("sm_detached", &[], "count") == 1.0
    })
    .await;
    let mut again = Raw::connect(plain).await;
    again.authenticate("erin", "pw").await;
    again
        .send(&format!(
            "<resume xmlns='urn:xmpp:sm:3' previd='{id}' h='1'/>"
        ))
        .await;
    again.expect("<resumed").await;
    // The XEP modules: carbons, blocking (and its per-stanza check), CSI.
    again
        .send("<iq type='set' id='cb'><enable xmlns='urn:xmpp:carbons:2'/></iq>")
        .await;
    again.expect("id='cb'").await;
    again
        .send("<iq type='set' id='bl'><block xmlns='urn:xmpp:blocking'><item jid='mallory@localhost'/></block></iq>")
        .await;
    again.expect("id='bl'").await;
    again
        .send("<message to='bob@localhost' type='chat' id='eb'><body>hi</body></message>")
        .await;
    again.send("<inactive xmlns='urn:xmpp:csi:0'/>").await;
    again.send("<active xmlns='urn:xmpp:csi:0'/>").await;
    eventually(&rec, "module handlers of the XEP modules", |r| {
        [
            ("carbons", "set"),
            ("blocking", "set"),
            ("blocking", "check"),
            ("csi", "state"),
        ]
        .iter()
        .all(|(m, o)| {
            r.sum(
                "module_handler",
                &[("module", m), ("operation", o)],
                "count",
            ) >= 1.0
        })
    })
    .await;
    let mut stranger = Raw::connect(plain).await;
    stranger.authenticate("erin", "pw").await;
    stranger
        .send("<resume xmlns='urn:xmpp:sm:3' previd='nobody' h='0'/>")
        .await;
    stranger.expect("item-not-found").await;
    eventually(&rec, "sm resumed and failed", |r| {
        r.sum("sm_resumed", &[], "count") == 1.0
            && r.sum("sm_failed", &[("reason", "item_not_found")], "count") == 1.0
    })
    .await;

    // Disconnect: session closed with its duration.
    alice.send("</stream:stream>").await;
    alice.read_to_close().await;
    eventually(&rec, "session close", |r| {
        r.sum("c2s_session_close", &[("reason", "peer_closed")], "count") >= 1.0
    })
    .await;
    let closes = rec.find("c2s_session_close", &[("reason", "peer_closed")]);
    assert!(closes[0].value("duration_seconds").unwrap() > 0.0);
    eventually(&rec, "connection closed", |r| {
        r.sum("c2s_connection_closed", &[], "count") >= 1.0
    })
    .await;

    // An admin operation: counted by operation and outcome, with its target.
    let status = osprey::admin::server::status(&running.ctx).await.unwrap();
    assert_eq!(status.hosts, ["localhost"]);
    let err = osprey::admin::accounts::remove(&running.ctx, "nobody@localhost").await;
    assert_eq!(err.unwrap_err().wire_name(), "not_found");
    assert_eq!(
        rec.sum(
            "admin_operation",
            &[("operation", "server_status"), ("outcome", "ok")],
            "count"
        ),
        1.0
    );
    assert_eq!(
        rec.sum(
            "admin_operation",
            &[("operation", "account_remove"), ("outcome", "not_found")],
            "count"
        ),
        1.0
    );

    // Probes run every second.
    eventually(&rec, "probes", |r| {
        [
            "sm_sessions",
            "runtime",
            "storage_pool",
            "tls_certificate",
            "process",
        ]
        .iter()
        .all(|p| !r.find(p, &[]).is_empty())
    })
    .await;
    eventually(&rec, "graphite drops counted", |r| {
        r.sum(
            "instrumentation_dropped",
            &[("handler", "graphite")],
            "lines",
        ) > 0.0
    })
    .await;
    let cert = rec.find("tls_certificate", &[]);
    let expires = cert[0].value("expiry_timestamp_seconds").unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let days = (expires - now) / 86_400.0;
    assert!((360.0..=365.0).contains(&days), "{days}");

    // Declared vs emitted.
    let emitted = running.ctx.instr.registry.emitted();
    let missing: Vec<_> = emitted
        .iter()
        .filter(|(name, e)| !e && !UNREACHABLE.iter().any(|(u, _)| u == name))
        .map(|(n, _)| *n)
        .collect();
    assert!(
        missing.is_empty(),
        "declared but never emitted: {missing:?}"
    );

    // The same values reach Prometheus.
    let prom = running.ctx.instr.registry.prometheus().unwrap().text();
    let delivered = rec.sum(
        "router_routed",
        &[("kind", "message"), ("outcome", "delivered")],
        "count",
    );
    let line = format!("router_routed_total{{kind=\"message\",outcome=\"delivered\"}} {delivered}");
    assert!(prom.lines().any(|l| l == line), "{line} not in:\n{prom}");
    running.shutdown().await;
}
