//! Smaller modules and module configuration: XEP-0092 software version,
//! XEP-0237 roster versioning, and `[modules.*]` sections that do not exist
//! or have unknown keys (the server refuses to start, naming them).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::both_backends;
use crate::harness::{osprey_bin, Backend, Options, Server, TOKEN};
use crate::raw::{Raw, Xml};

const PW: &str = "pw";
const ROSTER: &str = "jabber:iq:roster";
const VERSION: &str = "jabber:iq:version";
const ROSTERVER: &str = "urn:xmpp:features:rosterver";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn software_version_is_osprey_and_the_server_version() {
    let s = Server::start(Options {
        extra: "[modules.version]\n".into(),
        ..Options::plaintext(Backend::Sqlite)
    });
    s.register("alice@localhost", PW);
    let mut c = Raw::login(s.c2s, "alice", PW, "r").await;
    let r = c
        .iq(
            "v1",
            &format!("<iq type='get' id='v1' to='localhost'><query xmlns='{VERSION}'/></iq>"),
        )
        .await;
    assert_eq!(r.typ(), "result", "{}", r.raw);
    assert_eq!(r.from(), "localhost", "{}", r.raw);
    let q = r
        .child("query", VERSION)
        .unwrap_or_else(|| panic!("no query: {}", r.raw));
    let text = |name: &str| {
        q.children
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.text.clone())
    };
    assert_eq!(text("name").as_deref(), Some("Osprey"), "{}", r.raw);
    let status: serde_json::Value = serde_json::from_str(
        &crate::http::get(s.http, "/api/status", Some(TOKEN))
            .await
            .body,
    )
    .expect("status JSON");
    let version = status["version"].as_str().expect("status version");
    assert!(!version.is_empty());
    assert_eq!(text("version").as_deref(), Some(version), "{}", r.raw);
    assert!(
        c.disco_features().await.iter().any(|f| f == VERSION),
        "disco#info lacks {VERSION}"
    );
}

/// A roster query result's or push's `<query/>`.
fn roster_query(x: &Xml) -> &Xml {
    x.child("query", ROSTER)
        .unwrap_or_else(|| panic!("no roster query: {}", x.raw))
}

fn ver(x: &Xml) -> String {
    roster_query(x)
        .attr("ver")
        .unwrap_or_else(|| panic!("no ver on the roster query: {}", x.raw))
        .to_string()
}

fn roster_jids(x: &Xml) -> Vec<String> {
    let mut v: Vec<String> = roster_query(x)
        .children_named("item", ROSTER)
        .filter_map(|i| i.attr("jid").map(str::to_string))
        .collect();
    v.sort();
    v
}

async fn roster_get(c: &mut Raw, id: &str, ver: &str) -> Xml {
    let r = c
        .iq(
            id,
            &format!("<iq type='get' id='{id}'><query xmlns='{ROSTER}' ver='{ver}'/></iq>"),
        )
        .await;
    assert_eq!(r.typ(), "result", "{}", r.raw);
    r
}

/// Adds `jid` to the roster; returns the push this resource gets.
async fn roster_add(c: &mut Raw, id: &str, jid: &str) -> Xml {
    let r = c
        .iq(
            id,
            &format!(
                "<iq type='set' id='{id}'><query xmlns='{ROSTER}'><item jid='{jid}'/></query></iq>"
            ),
        )
        .await;
    assert_eq!(r.typ(), "result", "{}", r.raw);
    let j = jid.to_string();
    let push = c
        .take(&format!("the roster push for {jid}"), move |x| {
            x.is_iq()
                && x.typ() == "set"
                && x.child("query", ROSTER)
                    .is_some_and(|q| q.children.iter().any(|i| i.attr("jid") == Some(&j)))
        })
        .await;
    c.send(&format!("<iq type='result' id='{}'/>", push.id()))
        .await;
    push
}

async fn roster_versioning(b: Backend) {
    let mut s = Server::start(Options {
        extra: "[modules.roster]\nversioning = true\n".into(),
        ..Options::plaintext(b)
    });
    s.register("alice@localhost", PW);
    let mut c = Raw::connect(s.c2s).await;
    let features = c.authenticate("alice", PW).await;
    assert!(
        features.child("ver", ROSTERVER).is_some(),
        "post-auth features lack <ver xmlns='{ROSTERVER}'/>: {}",
        features.raw
    );
    c.bind("r").await;

    // Empty roster: a version all the same.
    let r0 = roster_get(&mut c, "g0", "").await;
    let v0 = ver(&r0);
    assert!(roster_jids(&r0).is_empty(), "{}", r0.raw);

    // Each change is pushed with a new version.
    let p1 = roster_add(&mut c, "s1", "bob@localhost").await;
    let v1 = ver(&p1);
    assert_ne!(v1, v0, "a change must change the version");
    let r1 = roster_get(&mut c, "g1", "").await;
    assert_eq!(ver(&r1), v1, "{}", r1.raw);
    assert_eq!(roster_jids(&r1), ["bob@localhost"]);
    let p2 = roster_add(&mut c, "s2", "carol@localhost").await;
    let v2 = ver(&p2);
    assert!(v2 != v1 && v2 != v0, "versions {v0} {v1} {v2}");

    // Up to date: an empty result, no query (RFC 6121 §2.6.3).
    let r = roster_get(&mut c, "g2", &v2).await;
    assert!(
        r.children.is_empty(),
        "current version: want an empty result, got {}",
        r.raw
    );
    // An older version: the whole roster, with the current version.
    let r = roster_get(&mut c, "g3", &v1).await;
    assert_eq!(ver(&r), v2, "{}", r.raw);
    assert_eq!(roster_jids(&r), ["bob@localhost", "carol@localhost"]);

    // The version is stored: still current after a restart.
    drop(c);
    let status = s.terminate();
    assert!(status.success(), "{status}");
    s.restart();
    let mut c = Raw::login(s.c2s, "alice", PW, "again").await;
    let r = roster_get(&mut c, "g4", &v2).await;
    assert!(
        r.children.is_empty(),
        "after a restart the version must still be current: {}",
        r.raw
    );
    let r = roster_get(&mut c, "g5", "").await;
    assert_eq!(ver(&r), v2, "{}", r.raw);
    assert_eq!(roster_jids(&r), ["bob@localhost", "carol@localhost"]);
}
both_backends!(roster_versions_empty_result_when_current, roster_versioning);

/// Every module with the keys it documents: the server starts and serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_module_section_is_accepted() {
    let s = Server::start(Options {
        extra: "[modules.stream_management]\n\
                resume_timeout = 300\n\
                max_resume_timeout = 600\n\
                [modules.csi]\n\
                [modules.carbons]\n\
                [modules.blocking]\n\
                [modules.private]\n\
                max_bytes = 65536\n\
                max_items = 100\n\
                [modules.vcard]\n\
                max_bytes = 65536\n\
                [modules.version]\n\
                [modules.roster]\n\
                versioning = true\n"
            .into(),
        ..Options::plaintext(Backend::Sqlite)
    });
    s.register("alice@localhost", PW);
    let mut c = Raw::login(s.c2s, "alice", PW, "r").await;
    let features = c.disco_features().await;
    for f in [
        "urn:xmpp:carbons:2",
        "urn:xmpp:blocking",
        "jabber:iq:version",
    ] {
        assert!(
            features.iter().any(|x| x == f),
            "{f} missing from {features:?}"
        );
    }
}

/// Runs `osprey serve` on `toml`; it must exit (within 30 s) with a
/// configuration error. Returns stderr.
fn refused(name: &str, toml: &str) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(name);
    let toml = toml.replace("DIR", &dir.path().display().to_string());
    std::fs::write(&path, toml).expect("write config");
    let mut child = Command::new(osprey_bin())
        .arg("--config")
        .arg(&path)
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start osprey");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("osprey started with {name}: it should have refused the configuration");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("read stderr");
    // Configuration errors exit 2, like the others (see cli.rs).
    assert_eq!(status.code(), Some(2), "{name}: {status}: {err}");
    assert!(err.contains(name), "the file is named: {err}");
    err
}

const BASE: &str = r#"[general]
hosts = ["localhost"]
data_dir = "DIR"

[[listen.c2s]]
address = "127.0.0.1"
port = 0
tls.mode = "none"
allow_plain_auth_without_tls = true

[[listen.http]]
address = "127.0.0.1"
port = 0
handlers = ["metrics"]

[storage]
url = "sqlite://DIR/osprey.db"

[modules.csi]
"#;

#[test]
fn unknown_module_or_module_key_is_refused_at_start() {
    let err = refused("modules-a.toml", &format!("{BASE}\n[modules.nope]\n"));
    assert!(err.contains("nope"), "the unknown module is named: {err}");

    let err = refused(
        "modules-b.toml",
        &format!("{BASE}\n[modules.stream_management]\nresume_timeout = 5\nbogus_key = 1\n"),
    );
    assert!(err.contains("bogus_key"), "the unknown key is named: {err}");

    let err = refused(
        "modules-c.toml",
        &format!("{BASE}\n[modules.roster]\nversioning = true\nversionning = true\n"),
    );
    assert!(
        err.contains("versionning"),
        "the unknown key is named: {err}"
    );
}

/// The per-user quota of offline storage (XEP-0160 with XEP-0013's limit):
/// beyond it a message bounces with `resource-constraint`, counted in
/// `limit_hit`; what was kept arrives at the next login.
async fn offline_quota(b: Backend) {
    let s = Server::start(Options {
        general_extra: "max_offline_messages = 2\n".into(),
        ..Options::plaintext(b)
    });
    s.register("alice@localhost", PW);
    s.register("bob@localhost", PW);
    let mut bob = Raw::login(s.c2s, "bob", PW, "b").await;
    for i in 1..=3 {
        bob.send(&format!(
            "<message to='alice@localhost' type='chat' id='o{i}'><body>b{i}</body></message>"
        ))
        .await;
    }
    let bounce = bob
        .take("the bounce of the third", |x| {
            x.is_message() && x.typ() == "error"
        })
        .await;
    assert_eq!(bounce.id(), "o3", "{}", bounce.raw);
    assert_eq!(bounce.refusal().0, "resource-constraint", "{}", bounce.raw);
    assert_eq!(
        bounce
            .child("error", "jabber:client")
            .and_then(|e| e.attr("type")),
        Some("wait")
    );
    let metrics = crate::http::get(s.http, "/metrics", None).await.body;
    assert!(metrics.contains("limit_hit_total{limit=\"offline_full\"} 1\n"));
    let mut alice = Raw::login(s.c2s, "alice", PW, "a").await;
    alice.send("<presence/>").await;
    for body in ["b1", "b2"] {
        alice
            .take(body, |x| x.is_message() && x.body() == Some(body))
            .await;
    }
    alice
        .absent(Duration::from_millis(300), "a third offline message", |x| {
            x.body() == Some("b3")
        })
        .await;
}
both_backends!(
    offline_quota_bounces_with_resource_constraint,
    offline_quota
);
