//! XEP-0202 entity time and XEP-0012 last activity: the server's time and
//! uptime, a contact's last logout (kept across a restart, on both
//! backends), who may ask, and `[modules.last] enabled = false`.

use std::time::{Duration, Instant};

use crate::both_backends;
use crate::harness::{Backend, Options, Server};
use crate::raw::{subscribe_both, Raw, Xml};

const PW: &str = "pw";
const TIME: &str = "urn:xmpp:time";
const LAST: &str = "jabber:iq:last";

fn time_iq(id: &str, to: &str) -> String {
    format!("<iq type='get' id='{id}' to='{to}'><time xmlns='{TIME}'/></iq>")
}

fn last_iq(id: &str, to: &str) -> String {
    format!("<iq type='get' id='{id}' to='{to}'><query xmlns='{LAST}'/></iq>")
}

/// The `seconds` and text of a last activity result.
fn last_of(r: &Xml) -> (u64, String) {
    assert_eq!(r.typ(), "result", "{}", r.raw);
    let q = r
        .child("query", LAST)
        .unwrap_or_else(|| panic!("no last activity query: {}", r.raw));
    let secs = q
        .attr("seconds")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no seconds: {}", r.raw));
    (secs, q.text.clone())
}

fn condition(r: &Xml) -> String {
    assert_eq!(r.typ(), "error", "{}", r.raw);
    r.error_condition().unwrap_or_default().to_string()
}

/// Seconds since the epoch of an XEP-0082 UTC time `YYYY-MM-DDThh:mm:ssZ`.
fn epoch_of(utc: &str) -> Option<i64> {
    let b = utc.as_bytes();
    if b.len() != 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[19] != b'Z' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| utc.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (hh, mm, ss) = (n(11..13)?, n(14..16)?, n(17..19)?);
    // Days from civil (H. Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

fn now_epoch() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

async fn time_and_last(backend: Backend) {
    let mut s = Server::start(Options::plaintext(backend));
    for u in ["alice", "bob", "carol"] {
        s.register(&format!("{u}@localhost"), PW);
    }
    let mut alice = Raw::login(s.c2s, "alice", PW, "a").await;

    // XEP-0202: the server's time, in UTC.
    let r = alice.iq("t1", &time_iq("t1", "localhost")).await;
    assert_eq!(r.typ(), "result", "{}", r.raw);
    assert_eq!(r.from(), "localhost", "{}", r.raw);
    let t = r
        .child("time", TIME)
        .unwrap_or_else(|| panic!("no time: {}", r.raw));
    let field = |name: &str| {
        t.children
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.text.clone())
            .unwrap_or_else(|| panic!("no {name}: {}", r.raw))
    };
    assert_eq!(field("tzo"), "+00:00", "{}", r.raw);
    let utc = field("utc");
    let at = epoch_of(&utc).unwrap_or_else(|| panic!("not XEP-0082 UTC: {utc}"));
    assert!((at - now_epoch()).abs() < 60, "{utc} is not now");

    // Both features are in disco#info.
    let features = alice.disco_features().await;
    for f in [TIME, LAST] {
        assert!(features.iter().any(|x| x == f), "disco#info lacks {f}");
    }

    // XEP-0012 to the server: its uptime.
    let (up, _) = last_of(&alice.iq("l1", &last_iq("l1", "localhost")).await);
    assert!(up < 600, "uptime {up}");

    // Bob's last activity: alice is subscribed to him, carol is not.
    let mut bob = Raw::login(s.c2s, "bob", PW, "b").await;
    alice.send("<presence/>").await;
    bob.send("<presence/>").await;
    subscribe_both(&mut alice, "alice@localhost", &mut bob, "bob@localhost").await;
    let (secs, _) = last_of(&alice.iq("l2", &last_iq("l2", "bob@localhost")).await);
    assert_eq!(secs, 0, "bob is online");
    bob.send("<presence type='unavailable'><status>Gone fishing</status></presence>")
        .await;
    bob.settle().await;
    drop(bob);
    // The session closes when the server sees the connection go.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut n = 0;
    let (secs, status) = loop {
        n += 1;
        let id = format!("wait{n}");
        let r = alice.iq(&id, &last_iq(&id, "bob@localhost")).await;
        // Between bob's session leaving the registry and its close being
        // written, bob is neither online nor logged out: the module answers
        // service-unavailable then, as for an account never logged out.
        if r.typ() == "error" && Instant::now() < deadline {
            assert_eq!(condition(&r), "service-unavailable", "{}", r.raw);
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let (secs, status) = last_of(&r);
        if !status.is_empty() || Instant::now() > deadline {
            break (secs, status);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status, "Gone fishing");
    assert!(secs < 30, "{secs}");

    let mut carol = Raw::login(s.c2s, "carol", PW, "c").await;
    let r = carol.iq("c1", &last_iq("c1", "bob@localhost")).await;
    assert_eq!(condition(&r), "forbidden", "{}", r.raw);
    let r = carol.iq("c2", &last_iq("c2", "nobody@localhost")).await;
    assert_eq!(condition(&r), "service-unavailable", "{}", r.raw);
    // To a full JID: routed to that client, not answered by the server.
    carol.send(&time_iq("c3", "alice@localhost/a")).await;
    let asked = alice
        .take("carol's time request", |x| x.is_iq() && x.id() == "c3")
        .await;
    assert_eq!(asked.typ(), "get", "{}", asked.raw);
    assert_eq!(asked.from(), "carol@localhost/c", "{}", asked.raw);
    drop(carol);

    // Stored: after a restart bob's logout and status are still there.
    drop(alice);
    let status = s.terminate();
    assert!(status.success(), "{status}");
    s.restart();
    let mut alice = Raw::login(s.c2s, "alice", PW, "a").await;
    let (secs, status) = last_of(&alice.iq("l3", &last_iq("l3", "bob@localhost")).await);
    assert_eq!(status, "Gone fishing");
    assert!(secs < 60, "{secs}");
}
both_backends!(time_and_last_activity_stored_and_restricted, time_and_last);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_disabled_answers_service_unavailable_and_leaves_disco() {
    let s = Server::start(Options {
        extra: "[modules.last]\nenabled = false\n".into(),
        ..Options::plaintext(Backend::Sqlite)
    });
    s.register("alice@localhost", PW);
    let mut alice = Raw::login(s.c2s, "alice", PW, "a").await;
    let r = alice.iq("l1", &last_iq("l1", "localhost")).await;
    assert_eq!(condition(&r), "service-unavailable", "{}", r.raw);
    let features = alice.disco_features().await;
    assert!(!features.iter().any(|f| f == LAST), "{features:?}");
    assert!(features.iter().any(|f| f == TIME), "{features:?}");
}
