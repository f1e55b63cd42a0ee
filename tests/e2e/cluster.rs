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

fn node(nats: &Nats, db: &SharedDb, name: &str) -> Server {
    Server::start(Options {
        shared_pg: Some(db.0.clone()),
        extra: format!(
            "[cluster]\nnode = \"{name}\"\nnats = [\"{}\"]\nheartbeat = 1\nnode_timeout = 3\n",
            nats.url()
        ),
        ..Options::plaintext(Backend::Postgres)
    })
}

async fn cluster_status(s: &Server) -> Value {
    let r = crate::http::get(s.http, "/api/cluster", Some(TOKEN)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    serde_json::from_str(&r.body).expect("json")
}

/// Waits until `s` knows `n` sessions on other nodes.
async fn wait_remote(s: &Server, n: u64) {
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_messages_across_nodes_in_order() {
    let nats = Nats::start();
    let db = SharedDb::new();
    let n1 = node(&nats, &db, "n1");
    let n2 = node(&nats, &db, "n2");
    n1.register("alice@localhost", PW);
    n1.register("bob@localhost", PW);
    let mut alice = online(&n1, "alice", "a").await;
    let mut bob = online(&n2, "bob", "b").await;
    wait_remote(&n1, 1).await;
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
    let n1 = node(&nats, &db, "n1");
    let mut n2 = node(&nats, &db, "n2");
    n1.register("alice@localhost", PW);
    n1.register("bob@localhost", PW);
    let mut alice = online(&n1, "alice", "a").await;
    let mut bob = online(&n2, "bob", "b").await;
    wait_remote(&n1, 1).await;
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
    let n1 = node(&nats, &db, "n1");
    let n2 = node(&nats, &db, "n2");
    n1.register("alice@localhost", PW);
    n1.register("bob@localhost", PW);
    let mut alice = online(&n1, "alice", "a").await;
    let mut bob = online(&n2, "bob", "b").await;
    wait_remote(&n1, 1).await;
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
