//! A cluster of three real Osprey processes on one machine: one NATS
//! server started here (`nats-server`), one PostgreSQL database shared by
//! the nodes. Users on different nodes chat and see each other's presence;
//! 10,000 messages cross nodes with none lost and each sender's order
//! kept; a node killed with SIGKILL is noticed (its users' contacts get
//! unavailable presence) and messages for its users go offline.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Backend, Nats, Options, Server, SharedDb, TOKEN};
use crate::raw::{subscribe_both, Raw};

const PW: &str = "pw";

pub(crate) fn node(nats: &Nats, db: &SharedDb, name: &str) -> Server {
    node_with(nats, db, name, "")
}

/// A node with more configuration (`extra`: other sections).
pub(crate) fn node_with(nats: &Nats, db: &SharedDb, name: &str, extra: &str) -> Server {
    Server::start(Options {
        shared_pg: Some(db.0.clone()),
        // While bob reconnects, alice's messages wait offline: more than
        // the default 1000 at full speed.
        general_extra: "max_offline_messages = 1000000\n".into(),
        extra: format!(
            "[cluster]\nnode = \"{name}\"\nnats = [\"{}\"]\nheartbeat = 1\nnode_timeout = 3\n{extra}",
            nats.url()
        ),
        ..Options::plaintext(Backend::Postgres)
    })
}

/// `DELETE path` on a node's admin API; it must succeed. Its JSON reply.
async fn admin_delete(s: &Server, path: &str) -> Value {
    let r = crate::http::request(s.http, "DELETE", path, Some(TOKEN), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    serde_json::from_str(&r.body).expect("json")
}

/// Stanzas `s` placed again because a node had not acknowledged them.
async fn replaced_stanzas(s: &Server) -> f64 {
    let metrics = crate::http::get(s.http, "/metrics", None).await.body;
    crate::metrics::sample(&metrics, "cluster_replaced_stanzas_total").unwrap_or(0.0)
}

async fn cluster_status(s: &Server) -> Value {
    let r = crate::http::get(s.http, "/api/cluster", Some(TOKEN)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    serde_json::from_str(&r.body).expect("json")
}

/// Waits until `s` knows `n` sessions on other nodes.
pub(crate) async fn wait_remote(s: &Server, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let st = cluster_status(s).await;
        if st["remote_sessions"].as_u64() == Some(n) {
            return;
        }
        assert!(Instant::now() < deadline, "remote sessions never {n}: {st}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Nodes n1 and n2; alice online on n1, bob on n2, n1 knowing bob's session.
pub(crate) async fn two_nodes(nats: &Nats, db: &SharedDb) -> (Server, Server, Raw, Raw) {
    two_nodes_with(nats, db, "").await
}

/// [`two_nodes`] with more configuration on both.
async fn two_nodes_with(nats: &Nats, db: &SharedDb, extra: &str) -> (Server, Server, Raw, Raw) {
    let n1 = node_with(nats, db, "n1", extra);
    let n2 = node_with(nats, db, "n2", extra);
    n1.register("alice@localhost", PW);
    n1.register("bob@localhost", PW);
    let alice = online(&n1, "alice", "a").await;
    let bob = online(&n2, "bob", "b").await;
    wait_remote(&n1, 1).await;
    (n1, n2, alice, bob)
}

async fn online(s: &Server, user: &str, res: &str) -> Raw {
    let mut c = Raw::login(s.c2s, user, PW, res).await;
    c.send("<presence/>").await;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_chat_presence_and_status() {
    let nats = Nats::start();
    let db = SharedDb::new();
    let n1 = node(&nats, &db, "n1");
    let n2 = node(&nats, &db, "n2");
    let n3 = node(&nats, &db, "n3");
    for u in ["alice", "bob", "carol"] {
        n1.register(&format!("{u}@localhost"), PW);
    }
    let mut alice = online(&n1, "alice", "a").await;
    let mut bob = online(&n2, "bob", "b").await;
    let mut carol = online(&n3, "carol", "c").await;
    wait_remote(&n1, 2).await;
    wait_remote(&n2, 2).await;

    // Subscriptions and presence across nodes.
    subscribe_both(&mut alice, "alice@localhost", &mut bob, "bob@localhost").await;
    bob.send("<presence><show>away</show></presence>").await;
    let p = alice
        .take("bob's away", |x| {
            x.is_presence() && x.from() == "bob@localhost/b" && x.show() == "away"
        })
        .await;
    assert_eq!(p.to(), "alice@localhost", "{}", p.raw);

    // Messages both ways, to full and bare JIDs.
    alice
        .send("<message to='bob@localhost/b' type='chat'><body>hi bob</body></message>")
        .await;
    bob.take("hi bob", |x| x.body() == Some("hi bob")).await;
    bob.send("<message to='alice@localhost' type='chat'><body>hi alice</body></message>")
        .await;
    let m = alice
        .take("hi alice", |x| x.body() == Some("hi alice"))
        .await;
    assert_eq!(m.from(), "bob@localhost/b");
    carol
        .send("<message to='alice@localhost/a' type='chat'><body>from n3</body></message>")
        .await;
    alice.take("from n3", |x| x.body() == Some("from n3")).await;

    // The same full JID on another node: the newer session wins.
    let mut bob2 = online(&n3, "bob", "b").await;
    let out = bob.read_to_close().await;
    assert!(out.contains("<conflict"), "{out}");
    bob2.settle().await;

    // Status from every node.
    let st = cluster_status(&n2).await;
    assert_eq!(st["node"], "n2");
    assert_eq!(st["nats"], "connected");
    let names: Vec<&str> = st["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter_map(|n| n["node"].as_str())
        .collect();
    assert_eq!(names, ["n1", "n2", "n3"], "{st}");
    // n1 got stanzas from n2 and n3 (bob's and carol's): their lag is known.
    let st = cluster_status(&n1).await;
    for n in st["nodes"].as_array().expect("nodes") {
        let name = n["node"].as_str().unwrap_or("?");
        if name == "n1" {
            assert!(n["transit_ms"].is_null(), "{st}");
        } else {
            assert!(n["transit_ms"].as_f64().is_some_and(|ms| ms >= 0.0), "{st}");
        }
        assert!(n["unacked"].as_u64().is_some(), "{st}");
    }

    // `osprey cluster status`: the same, as an operator reads it.
    let out = n1.cli(&["cluster", "status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("node n1  cluster osprey  nats connected"),
        "{text}"
    );
    let header = text.lines().nth(1).unwrap_or_default();
    for col in [
        "NODE",
        "ADDRESS",
        "ALIVE",
        "HEARTBEAT",
        "SESSIONS",
        "LAG",
        "UNACKED",
    ] {
        assert!(header.contains(col), "{text}");
    }
    let row = |node: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(node))
            .unwrap_or_else(|| panic!("no row for {node}: {text}"))
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let n1_row = row("n1");
    assert_eq!(n1_row[2], "yes", "{text}");
    assert_eq!(n1_row[5], "-", "no lag to itself: {text}");
    let n2_row = row("n2");
    assert_eq!(n2_row[2], "yes", "{text}");
    assert!(n2_row[5].ends_with("ms"), "n2's lag: {text}");

    // Every session of the cluster, with its node, from n1's replica
    // (bob's newer session on n3 replaced the one on n2).
    let expected = [
        ("alice@localhost/a", "n1"),
        ("bob@localhost/b", "n3"),
        ("carol@localhost/c", "n3"),
    ];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = crate::http::get(n1.http, "/api/cluster/sessions", Some(TOKEN)).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let v: Value = serde_json::from_str(&r.body).expect("json");
        let got: Vec<(String, String)> = v["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|s| {
                (
                    s["jid"].as_str().unwrap_or("").into(),
                    s["node"].as_str().unwrap_or("").into(),
                )
            })
            .collect();
        let want: Vec<(String, String)> = expected
            .iter()
            .map(|(j, n)| (j.to_string(), n.to_string()))
            .collect();
        if got == want {
            assert_eq!(v["total"], 3, "{v}");
            break;
        }
        assert!(Instant::now() < deadline, "cluster sessions: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = crate::http::get(
        n1.http,
        "/api/cluster/sessions?filter=N3&limit=1",
        Some(TOKEN),
    )
    .await;
    let v: Value = serde_json::from_str(&r.body).expect("json");
    assert_eq!(v["total"], 2, "{v}");
    assert_eq!(v["items"][0]["jid"], "bob@localhost/b", "{v}");
    assert_eq!(v["items"].as_array().map(Vec::len), Some(1), "{v}");
    let out = n1.cli(&["cluster", "sessions", "--filter", "carol"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let row: Vec<&str> = text
        .lines()
        .find(|l| l.starts_with("carol@localhost/c"))
        .unwrap_or_else(|| panic!("no carol: {text}"))
        .split_whitespace()
        .collect();
    assert_eq!(row[1], "n3", "{text}");
    assert_eq!(row[3], "available", "{text}");
    assert!(text.contains("1 of 1 sessions"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_messages_across_nodes_in_order() {
    let nats = Nats::start();
    let db = SharedDb::new();
    let (_n1, _n2, mut alice, mut bob) = two_nodes(&nats, &db).await;
    const N: usize = 10_000;
    let sender = tokio::spawn(async move {
        let mut batch = String::new();
        for i in 0..N {
            batch.push_str(&format!(
                "<message to='bob@localhost/b' type='chat'><body>{i}</body></message>"
            ));
            if batch.len() > 16_000 {
                alice.send(&batch).await;
                batch.clear();
            }
        }
        alice.send(&batch).await;
        alice
    });
    let mut next = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while next < N {
        assert!(Instant::now() < deadline, "only {next} of {N} arrived");
        let m = bob
            .take(&format!("message {next}"), |x| x.is_message())
            .await;
        let got: usize = m.body().and_then(|b| b.parse().ok()).expect("a number");
        assert_eq!(got, next, "out of order");
        next += 1;
    }
    let _alice = sender.await.expect("sender");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_is_noticed_and_its_users_messages_go_offline() {
    let nats = Nats::start();
    let db = SharedDb::new();
    let (n1, mut n2, mut alice, mut bob) = two_nodes(&nats, &db).await;
    subscribe_both(&mut alice, "alice@localhost", &mut bob, "bob@localhost").await;

    let killed = Instant::now();
    n2.kill();
    let p = alice
        .take("bob's unavailable presence", |x| {
            x.is_presence() && x.from() == "bob@localhost/b" && x.typ() == "unavailable"
        })
        .await;
    let noticed = killed.elapsed();
    assert!(
        noticed < Duration::from_secs(10),
        "noticed after {noticed:?}: {}",
        p.raw
    );
    assert_eq!(cluster_status(&n1).await["remote_sessions"], 0);
    let metrics = crate::http::get(n1.http, "/metrics", None).await.body;
    assert!(
        metrics.contains("cluster_node_down_total 1\n"),
        "cluster_node_down not counted"
    );

    // Bob is gone: a message to him is kept offline, and arrives at his
    // next login on the surviving node.
    alice
        .send("<message to='bob@localhost' type='chat' id='off'><body>while away</body></message>")
        .await;
    alice.settle().await;
    let mut bob = online(&n1, "bob", "b2").await;
    bob.take("the offline message", |x| x.body() == Some("while away"))
        .await;
}

/// NATS goes away and comes back on its own port: both nodes reconnect by
/// themselves, resynchronise their registries, and messages cross again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_restart_recovers_by_itself() {
    let mut nats = Nats::start();
    let db = SharedDb::new();
    let (n1, n2, mut alice, mut bob) = two_nodes(&nats, &db).await;
    alice
        .send("<message to='bob@localhost/b' type='chat'><body>before</body></message>")
        .await;
    bob.take("before", |x| x.body() == Some("before")).await;

    nats.stop();
    tokio::time::sleep(Duration::from_millis(500)).await;
    nats.restart();
    // Both nodes back on NATS, each knowing the other's session.
    let deadline = Instant::now() + Duration::from_secs(20);
    for s in [&n1, &n2] {
        loop {
            let st = cluster_status(s).await;
            if st["nats"] == "connected" && st["remote_sessions"] == 1 {
                break;
            }
            assert!(Instant::now() < deadline, "not recovered: {st}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    for i in 0..100 {
        alice
            .send(&format!(
                "<message to='bob@localhost/b' type='chat'><body>after{i}</body></message>"
            ))
            .await;
    }
    for i in 0..100 {
        let want = format!("after{i}");
        bob.take(&want, |x| x.body() == Some(want.as_str())).await;
    }
}

/// Logs in on the first node of `nodes` that takes the login (a node may
/// be restarting), with initial presence.
async fn login_any(
    nodes: &std::sync::Arc<std::sync::Mutex<Vec<std::net::SocketAddr>>>,
    user: &'static str,
    res: &'static str,
) -> Raw {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let addrs = nodes.lock().expect("nodes").clone();
        for a in addrs {
            let attempt = tokio::spawn(async move {
                let mut c = Raw::login(a, user, PW, res).await;
                c.send("<presence/>").await;
                c
            });
            if let Ok(c) = attempt.await {
                return c;
            }
        }
        assert!(Instant::now() < deadline, "{user}: no node took the login");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every node restarted in turn (SIGTERM, start again) while alice sends
/// to bob without pause. Alice counts a message as accepted once a ping
/// sent after it is answered, and sends again what was not accepted when
/// her node went away; both reconnect to a node that is up. Every accepted
/// message reaches bob (live, or kept offline and delivered at his next
/// login). Order is not asserted here: at a failover, messages kept
/// offline from bob's old session arrive at his next login after ones
/// already delivered live to the new one (a batch sent again may also
/// arrive twice); the in-order check is the steady-state test above.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_load_loses_nothing() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let nats = Nats::start();
    let db = SharedDb::new();
    let mut nodes = vec![
        node(&nats, &db, "n1"),
        node(&nats, &db, "n2"),
        node(&nats, &db, "n3"),
    ];
    nodes[0].register("alice@localhost", PW);
    nodes[0].register("bob@localhost", PW);
    let addrs = Arc::new(Mutex::new(nodes.iter().map(|n| n.c2s).collect::<Vec<_>>()));
    // Alice on n1, bob on n2 (the list is tried in order from each one's).
    let alice_addrs = addrs.clone();
    let bob_addrs = Arc::new(Mutex::new(vec![nodes[1].c2s, nodes[2].c2s, nodes[0].c2s]));
    let mut bob = login_any(&bob_addrs, "bob", "b").await;
    wait_remote(&nodes[0], 1).await;
    let done = Arc::new(AtomicBool::new(false));

    let sender_done = done.clone();
    let sender = tokio::spawn(async move {
        let mut alice = login_any(&alice_addrs, "alice", "a").await;
        let mut accepted = 0usize;
        let mut batch_no = 0usize;
        while !sender_done.load(Ordering::Relaxed) {
            batch_no += 1;
            let mut out = String::new();
            for i in accepted..accepted + 20 {
                out.push_str(&format!(
                    "<message to='bob@localhost' type='chat'><body>{i}</body></message>"
                ));
            }
            out.push_str(&format!(
                "<iq type='get' id='ok{batch_no}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"
            ));
            let id = format!("ok{batch_no}");
            let sent = alice.try_send(out.as_bytes()).await.is_ok();
            let acked = sent
                && matches!(
                    alice
                        .take_or_closed(Duration::from_secs(5), |x| x.is_iq() && x.id() == id)
                        .await,
                    Ok(Some(_))
                );
            // A message refused (an error came back) was not accepted.
            let refused = alice
                .discard_buffered()
                .iter()
                .any(|x| x.is_message() && x.typ() == "error");
            assert!(!refused, "a message was refused");
            if acked {
                accepted += 20;
            } else {
                // Her node went away: the batch is sent again elsewhere.
                alice = login_any(&alice_addrs, "alice", "a").await;
            }
        }
        accepted
    });

    // The rolling restart: each node in turn, while alice sends.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in [2usize, 1, 0] {
        let code = nodes[i].terminate();
        assert!(code.success(), "node {i} exit: {code:?}");
        nodes[i].restart();
        let c2s = nodes[i].c2s;
        addrs.lock().expect("addrs")[i] = c2s;
        let at = [1usize, 2, 0].iter().position(|&k| k == i).expect("index");
        bob_addrs.lock().expect("addrs")[at] = c2s;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    done.store(true, Ordering::Relaxed);
    let accepted = sender.await.expect("sender");
    assert!(accepted >= 100, "only {accepted} accepted");

    // Bob reads until every accepted message arrived; after each drop of
    // his connection he logs in again (what waited offline comes then).
    let mut seen = vec![false; accepted + 20];
    let mut missing = accepted;
    let deadline = Instant::now() + Duration::from_secs(60);
    while missing > 0 {
        if Instant::now() > deadline {
            let gaps: Vec<usize> = (0..accepted).filter(|&n| !seen[n]).collect();
            let runs: Vec<String> = gaps
                .chunk_by(|a, b| b == &(a + 1))
                .map(|r| format!("{}-{}", r[0], r[r.len() - 1]))
                .collect();
            // Diagnosis: what a fresh login gets from offline storage.
            let mut fresh = login_any(&bob_addrs, "bob", "diag").await;
            let mut offline = 0;
            while let Ok(Some(m)) = fresh
                .take_or_closed(Duration::from_secs(2), |x| x.is_message())
                .await
            {
                if m.body()
                    .and_then(|b| b.parse::<usize>().ok())
                    .is_some_and(|n| n < accepted && !seen[n])
                {
                    offline += 1;
                }
            }
            let st: Vec<Value> = {
                let mut v = Vec::new();
                for n in &nodes {
                    v.push(cluster_status(n).await);
                }
                v
            };
            panic!("{missing} of {accepted} accepted messages never arrived: {runs:?}; {offline} of them came from offline storage at a fresh login; status: {st:?}");
        }
        match bob
            .take_or_closed(Duration::from_secs(3), |x| x.is_message())
            .await
        {
            Ok(Some(m)) => {
                let Some(n) = m.body().and_then(|b| b.parse::<usize>().ok()) else {
                    continue;
                };
                if n < seen.len() && !seen[n] {
                    seen[n] = true;
                    if n < accepted {
                        missing -= 1;
                    }
                }
            }
            Ok(None) => {}
            Err(()) => {
                bob = login_any(&bob_addrs, "bob", "b").await;
            }
        }
    }
}

/// The cluster dashboard, proven: two nodes with traffic between them, a
/// real Prometheus scraping both, every panel query returns data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_dashboard_has_data_on_real_prometheus() {
    use crate::dashboards::{check_panels, Prometheus, CLUSTER_DASHBOARD};
    let nats = Nats::start();
    let db = SharedDb::new();
    let (n1, n2, mut alice, mut bob) = two_nodes(&nats, &db).await;
    let prom = Prometheus::start(&[n1.http, n2.http]).await;
    for i in 0..20 {
        let body = format!("m{i}");
        alice
            .send(&format!(
                "<message to='bob@localhost/b' type='chat'><body>{body}</body></message>"
            ))
            .await;
        bob.take(&body, |x| x.body() == Some(body.as_str())).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Two more scrapes after the traffic.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (checked, failures) = check_panels(&prom, &[CLUSTER_DASHBOARD], &[n1.http, n2.http]).await;
    assert!(checked >= 9, "only {checked} expressions");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Alice sends bob numbered messages, 20 at a time, each batch followed
/// by a ping: a batch counts as accepted once the ping is answered with no
/// error for any of them. Until `stop`; returns how many were accepted.
async fn send_to_bob_until(
    mut alice: Raw,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> usize {
    let mut accepted = 0usize;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        send_accepted(&mut alice, accepted, 20, "").await;
        accepted += 20;
    }
    accepted
}

/// Alice sends messages `first..first + n` to bob (each with `extra`
/// after its body) and a ping behind them; once the ping is answered, all
/// were accepted (none came back as an error).
async fn send_accepted(alice: &mut Raw, first: usize, n: usize, extra: &str) {
    let mut out = String::new();
    for i in first..first + n {
        out.push_str(&format!(
            "<message to='bob@localhost' type='chat'><body>{i}</body>{extra}</message>"
        ));
    }
    let id = format!("b{first}");
    out.push_str(&format!(
        "<iq type='get' id='{id}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"
    ));
    alice.send(&out).await;
    alice.take(&id, |x| x.is_iq() && x.id() == id).await;
    let refused = alice
        .discard_buffered()
        .iter()
        .any(|x| x.is_message() && x.typ() == "error");
    assert!(!refused, "a message was refused");
}

/// Input unshaped (no byte shaper, no stanza rate), so that the socket
/// buffers fill in a second or two.
const UNSHAPED: &str =
    "\n[[host_config]]\nhost = \"localhost\"\nshaper = \"none\"\nmax_stanza_rate = 0\n";

/// Alice sends to bob, who reads nothing, `n` messages a write (each with
/// `extra`), until his node `n2` queues more than `bytes` for him (the
/// socket buffers, 4 MB here, fill first). Returns how many were accepted
/// and the bytes queued.
async fn fill_bobs_queue(
    alice: &mut Raw,
    n2: &Server,
    n: usize,
    extra: &str,
    bytes: u64,
) -> (usize, u64) {
    let mut accepted = 0;
    let mut queued = 0;
    for _ in 0..400 {
        send_accepted(alice, accepted, n, extra).await;
        accepted += n;
        // (It drops when the writer takes a batch, which then blocks.)
        queued = queued_bytes(n2, "bob@localhost/b").await;
        if queued > bytes {
            return (accepted, queued);
        }
    }
    panic!("n2 never queued {bytes} bytes for bob: {queued}");
}

/// Per number that alice's messages carry in their body: how often it
/// reached bob.
type Seen = std::collections::HashMap<usize, usize>;

fn tally(seen: &mut Seen, m: &crate::raw::Xml) {
    if let Some(n) = m.body().and_then(|b| b.parse::<usize>().ok()) {
        *seen.entry(n).or_default() += 1;
    }
}

/// Bob reads until every message of `0..accepted` has arrived, his stream
/// ends, or 30 s pass (long after the flow stopped: the offline flush can
/// pause under load, so no fixed quiet spell ends it).
async fn read_until_all(bob: &mut Raw, accepted: usize, seen: &mut Seen) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while (0..accepted).any(|n| !seen.contains_key(&n)) && Instant::now() < deadline {
        match bob
            .take_or_closed(Duration::from_millis(500), |x| x.is_message())
            .await
        {
            Ok(Some(m)) => tally(seen, &m),
            Ok(None) => {}
            Err(()) => break,
        }
    }
}

/// The messages of `0..accepted` that never arrived.
fn missing(seen: &Seen, accepted: usize) -> Vec<usize> {
    (0..accepted).filter(|n| !seen.contains_key(n)).collect()
}

/// A node SIGKILLed while alice sends to bob on it without pause: every
/// message alice had accepted (a later ping answered, no error back)
/// reaches bob, live before the kill or, after it, from offline storage at
/// his next login on the surviving node. The sending node keeps what the
/// dead node had not acknowledged and places it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_load_loses_no_accepted_message() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let nats = Nats::start();
    let db = SharedDb::new();
    let (n1, mut n2, alice, mut bob) = two_nodes(&nats, &db).await;
    let stop = Arc::new(AtomicBool::new(false));
    let sender = tokio::spawn(send_to_bob_until(alice, stop.clone()));
    let mut seen = Seen::new();
    // Bob reads live for a while, then his node dies under him.
    let until = Instant::now() + Duration::from_millis(700);
    while Instant::now() < until {
        if let Ok(Some(m)) = bob
            .take_or_closed(Duration::from_millis(100), |x| x.is_message())
            .await
        {
            tally(&mut seen, &m);
        }
    }
    n2.kill();
    // Alice keeps sending while n1 notices (node_timeout 3 s), then a bit.
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, Ordering::Relaxed);
    let accepted = sender.await.expect("sender");
    // What n2 wrote to bob's connection before it died counts as
    // delivered: read to the end (bytes written just before the kill are
    // still in the sockets, unread).
    for m in crate::raw::Xml::all(&bob.read_to_close().await) {
        tally(&mut seen, &m);
    }
    let live = seen.len();
    let mut bob = online(&n1, "bob", "again").await;
    read_until_all(&mut bob, accepted, &mut seen).await;
    eprintln!(
        "accepted {accepted}, live {live}, total seen {}",
        seen.len()
    );
    // What the dead node had not acknowledged was placed again, and counted.
    let replaced = replaced_stanzas(&n1).await;
    assert!(replaced > 0.0, "no stanza placed again after the kill");
    let missing = missing(&seen, accepted);
    assert!(
        missing.is_empty(),
        "{} of {accepted} accepted messages lost ({live} arrived live): first {:?}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
}

/// Bytes queued for `jid` on its node, read from its sessions API.
async fn queued_bytes(s: &Server, jid: &str) -> u64 {
    crate::http::session_info(s.http, jid)
        .await
        .and_then(|e| e["queued_bytes"].as_u64())
        .unwrap_or(0)
}

/// Stanzas `s` sent to `node` that it has not acknowledged (its
/// `/api/cluster` line; `node` is listed from `s`'s next heartbeat on).
async fn unacked_for(s: &Server, node: &str) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let st = cluster_status(s).await;
        let unacked = st["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .find(|n| n["node"] == node)
            .and_then(|n| n["unacked"].as_u64());
        match unacked {
            Some(u) => return u,
            None if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            None => panic!("{node} not listed: {st}"),
        }
    }
}

/// Bob stops reading; his node is killed while it still holds alice's
/// messages for him, queued and unwritten. A node acknowledges a stanza
/// only once it is written out or kept, so alice's node still holds these
/// (its `unacked` for n2 stays above zero past the acknowledgement tick)
/// and places them again when n2 is found dead: every accepted message
/// reaches bob, from his old connection's last bytes or offline. Bob's
/// stalled session meanwhile holds back nobody else's acknowledgements.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_killed_node_held_unwritten_is_placed_again() {
    let nats = Nats::start();
    let db = SharedDb::new();
    let (n1, mut n2, mut alice, mut bob) = two_nodes_with(&nats, &db, UNSHAPED).await;
    let pad = format!("<x xmlns='urn:osprey:pad'>{}</x>", "x".repeat(4000));
    // Well within n2's 1 MB cap per session.
    let (accepted, queued) = fill_bobs_queue(&mut alice, &n2, 20, &pad, 256 * 1024).await;
    // Past the acknowledgement tick, alice's node still holds what n2 has
    // not written.
    tokio::time::sleep(Duration::from_millis(500)).await;
    // (n2's row is listed from n1's next heartbeat on.)
    let unacked = unacked_for(&n1, "n2").await;
    assert!(
        unacked > 0,
        "n1 holds nothing for n2 although n2 queues {queued} bytes"
    );

    // Bob's stalled session holds back nobody else's acknowledgements:
    // carol, on n2 too, gets 200 messages and n1 holds none of them.
    n1.register("carol@localhost", PW);
    let mut carol = online(&n2, "carol", "c").await;
    wait_remote(&n1, 2).await;
    for i in 0..10 {
        let mut out = String::new();
        for j in 0..20 {
            out.push_str(&format!(
                "<message to='carol@localhost/c' type='chat'><body>c{}</body></message>",
                i * 20 + j
            ));
        }
        alice.send(&out).await;
    }
    for n in 0..200 {
        let body = format!("c{n}");
        carol
            .take(&body, |x| x.is_message() && x.body() == Some(body.as_str()))
            .await;
    }
    // Held past `STUCK` (1 s), bob's are named as exceptions and the rest
    // is acknowledged.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = unacked_for(&n1, "n2").await;
    assert!(
        after <= unacked,
        "n1 holds {after} stanzas for n2 after carol got hers (bob's: {unacked})"
    );

    n2.kill();
    // What had reached bob's socket arrives as the kernel flushes it.
    let mut seen = Seen::new();
    for m in crate::raw::Xml::all(&bob.read_to_close().await) {
        tally(&mut seen, &m);
    }
    let live = seen.len();
    // n1 finds n2 dead (node_timeout) and places again what it held.
    let deadline = Instant::now() + Duration::from_secs(20);
    while replaced_stanzas(&n1).await == 0.0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(replaced_stanzas(&n1).await > 0.0, "nothing placed again");
    let mut bob = online(&n1, "bob", "again").await;
    read_until_all(&mut bob, accepted, &mut seen).await;
    eprintln!(
        "accepted {accepted}, queued {queued} bytes, unacked {unacked}, live {live}, total seen {}",
        seen.len()
    );
    let missing = missing(&seen, accepted);
    assert!(
        missing.is_empty(),
        "{} of {accepted} accepted messages lost ({live} reached bob's socket, {unacked} unacknowledged): first {:?}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
}

/// More than 1,024 of alice's messages held by bob's stalled session on
/// n2: the oldest are acknowledged anyway, so n1 keeps at most 1,024 of
/// them (no stalled session makes it hold everything after), and n2
/// counts what it gave up as `limit_hit{limit="cluster_held"}`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_1024_held_stanzas_the_oldest_are_acknowledged_and_counted() {
    let nats = Nats::start();
    let db = SharedDb::new();
    let (n1, n2, mut alice, _bob) = two_nodes_with(&nats, &db, UNSHAPED).await;
    // Small messages, many per write: n2 queues well over 1,024 for bob
    // (about 110 bytes each).
    let (_, queued) = fill_bobs_queue(&mut alice, &n2, 500, "", 300 * 1024).await;
    // Once held past a second, the oldest are given up on (the tick).
    let deadline = Instant::now() + Duration::from_secs(10);
    let held = loop {
        let metrics = crate::http::get(n2.http, "/metrics", None).await.body;
        let held = crate::metrics::sample(&metrics, "limit_hit_total{limit=\"cluster_held\"}")
            .unwrap_or(0.0);
        if held > 0.0 || Instant::now() > deadline {
            break held;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        held > 0.0,
        "nothing given up although n2 queues {queued} bytes"
    );
    // (The acknowledgement is on its way to n1.)
    let deadline = Instant::now() + Duration::from_secs(5);
    let unacked = loop {
        let unacked = unacked_for(&n1, "n2").await;
        if unacked <= 1024 || Instant::now() > deadline {
            break unacked;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("queued {queued} bytes, given up {held}, unacked {unacked}");
    assert!(
        (1..=1024).contains(&unacked),
        "n1 holds {unacked} stanzas for n2 ({held} given up)"
    );
}

/// A node that leaves (SIGTERM) while alice's messages for bob, whose
/// session is on it, are crossing: bob's connection closes with
/// `<system-shutdown/>`, what was on its way is stored offline, and the
/// leaving node's `Down` acknowledges what it handled, so alice's node
/// places nothing again. At bob's next login (on alice's node) every
/// accepted message has arrived exactly once: none lost, none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_leaving_mid_stream_loses_and_repeats_nothing() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let nats = Nats::start();
    let db = SharedDb::new();
    let (n1, n2, alice, mut bob) = two_nodes(&nats, &db).await;
    let stop = Arc::new(AtomicBool::new(false));
    let sender = tokio::spawn(send_to_bob_until(alice, stop.clone()));
    let mut seen = Seen::new();
    let until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < until {
        if let Ok(Some(m)) = bob
            .take_or_closed(Duration::from_millis(100), |x| x.is_message())
            .await
        {
            tally(&mut seen, &m);
        }
    }
    // n2 leaves while the stream goes on; bob reads until his stream ends.
    let leaving = tokio::task::spawn_blocking(move || {
        let mut n2 = n2;
        let code = n2.terminate();
        (n2, code)
    });
    loop {
        match bob
            .take_or_closed(Duration::from_secs(10), |x| x.is_message())
            .await
        {
            Ok(Some(m)) => tally(&mut seen, &m),
            Ok(None) => panic!("bob's stream did not end after SIGTERM"),
            Err(()) => break,
        }
    }
    while let Some(m) = bob.take_buffered_now(|x| x.is_message()) {
        tally(&mut seen, &m);
    }
    let (_n2, code) = leaving.await.expect("terminate");
    assert!(code.success(), "n2 exit: {code:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let accepted = sender.await.expect("sender");
    let live: usize = seen.values().sum();

    let mut bob = online(&n1, "bob", "again").await;
    read_until_all(&mut bob, accepted, &mut seen).await;
    // A second copy would come right behind: listen a little longer.
    while let Ok(Some(m)) = bob
        .take_or_closed(Duration::from_millis(700), |x| x.is_message())
        .await
    {
        tally(&mut seen, &m);
    }
    let replaced = replaced_stanzas(&n1).await;
    eprintln!("accepted {accepted}, {live} before the leave and live, replaced {replaced}");
    assert!(accepted >= 100, "only {accepted} accepted");
    let missing = missing(&seen, accepted);
    let twice: Vec<usize> = (0..accepted)
        .filter(|n| seen.get(n).is_some_and(|c| *c > 1))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {accepted} lost: first {:?}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
    assert!(
        twice.is_empty(),
        "{} of {accepted} arrived twice: first {:?}",
        twice.len(),
        &twice[..twice.len().min(20)]
    );
    assert_eq!(
        replaced, 0.0,
        "the leaving node's Down acknowledged everything"
    );
}

/// An administrator on n1 kicks bob, whose session is on n2: the kick
/// crosses over NATS with its condition, text and application element,
/// and bob sees the same stream error as a kick on his own node. Then
/// his account is removed through n1, and his new session on n2 closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_kick_on_one_node_closes_a_session_on_another() {
    let nats = Nats::start();
    let db = SharedDb::new();
    let (n1, n2, _alice, mut bob) = two_nodes(&nats, &db).await;
    let v = admin_delete(&n1, "/api/sessions/bob@localhost/b?reason=maintenance").await;
    assert_eq!(v["kicked"], 1, "{v}");
    let out = bob.read_to_close().await;
    assert!(out.contains("<undefined-condition"), "{out}");
    assert!(
        out.contains("kicked by an administrator: maintenance"),
        "{out}"
    );
    assert!(
        out.contains("<kicked xmlns='urn:osprey:admin:0'/>"),
        "{out}"
    );
    // n1's registry loses bob's session once n2 says it is gone.
    wait_remote(&n1, 0).await;

    // Back on n2; his account is removed through n1: the session on n2
    // closes as ejabberd's `unregister` closes it.
    let mut bob = online(&n2, "bob", "b").await;
    wait_remote(&n1, 1).await;
    admin_delete(&n1, "/api/accounts/bob@localhost").await;
    let out = bob.read_to_close().await;
    assert!(out.contains("<not-authorized"), "{out}");
    assert!(out.contains("the account was removed"), "{out}");
    wait_remote(&n1, 0).await;
}

/// Unreadable input on a node's NATS subject (not JSON, a batch whose
/// length runs past its end, a batch cut in a frame's middle after a good
/// frame): each is dropped and counted as `cluster_stanza_in` dropped, the
/// good frame before the damage is delivered, and the node goes on
/// routing between nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_input_from_nats_is_dropped_and_counted() {
    let nats = Nats::start();
    let db = SharedDb::new();
    let (_n1, mut n2, mut alice, mut bob) = two_nodes(&nats, &db).await;
    let client = async_nats::connect(nats.url()).await.expect("nats");
    let good = format!(
        "{}\n<message to='bob@localhost/b' from='alice@localhost/a' type='chat'><body>framed</body></message>",
        serde_json::json!({"t": "deliver", "id": 0, "full": "bob@localhost/b"})
    );
    let mut cut = format!("#{}\n{good}", good.len()).into_bytes();
    cut.extend_from_slice(b"50\n{\"t\":");
    for payload in [b"not json at all".to_vec(), b"#99\nabc".to_vec(), cut] {
        client
            .publish("osprey.node.n2", payload.into())
            .await
            .expect("publish");
    }
    client.flush().await.expect("flush");
    let m = bob
        .take("the good frame", |x| x.body() == Some("framed"))
        .await;
    assert_eq!(m.from(), "alice@localhost/a");
    let series = "cluster_stanza_in_total{outcome=\"dropped\"}";
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = crate::http::get(n2.http, "/metrics", None).await.body;
        if crate::metrics::sample(&metrics, series) == Some(3.0) {
            break;
        }
        assert!(Instant::now() < deadline, "dropped never 3: {metrics}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    n2.assert_alive();
    alice
        .send("<message to='bob@localhost/b' type='chat'><body>still</body></message>")
        .await;
    bob.take("still routed", |x| x.body() == Some("still"))
        .await;
    // A close whose application element is not well-formed: the session
    // closes with the condition and text, without the broken element.
    let id = crate::http::session_info(n2.http, "bob@localhost/b")
        .await
        .and_then(|e| e["session_id"].as_u64())
        .expect("bob's session");
    let close = serde_json::json!({
        "t": "close", "id": id, "condition": "policy-violation",
        "text": "a <test>", "app": "<broken"
    });
    client
        .publish("osprey.node.n2", format!("{close}\n").into_bytes().into())
        .await
        .expect("publish");
    client.flush().await.expect("flush");
    let out = bob.read_to_close().await;
    assert!(out.contains("<policy-violation"), "{out}");
    assert!(out.contains("a &lt;test&gt;"), "{out}");
    assert!(!out.contains("<broken"), "{out}");
}
