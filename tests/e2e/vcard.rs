//! XEP-0054 vcard-temp: a set/get round trip across a re-login, another
//! account's vCard, the refusals (setting another's, the size limit, an
//! unknown account), disco, the module turned off, and that removing the
//! account leaves no row behind.

use crate::both_backends;
use crate::harness::{Backend, Options, Server};
use crate::raw::Raw;

const VCARD: &str = "vcard-temp";
const PW: &str = "pw";
const EMPTY: &str = "<vCard xmlns='vcard-temp'/>";
const CARD: &str = "<vCard xmlns='vcard-temp'><FN>Alice A.</FN><NICKNAME>al</NICKNAME>\
                    <PHOTO><TYPE>image/png</TYPE><BINVAL>aGVsbG8=</BINVAL></PHOTO></vCard>";

fn get(id: &str, to: Option<&str>) -> String {
    let to = to.map(|t| format!(" to='{t}'")).unwrap_or_default();
    format!("<iq type='get' id='{id}'{to}>{EMPTY}</iq>")
}

fn set(id: &str, to: Option<&str>, card: &str) -> String {
    let to = to.map(|t| format!(" to='{t}'")).unwrap_or_default();
    format!("<iq type='set' id='{id}'{to}>{card}</iq>")
}

/// A get that must succeed; returns the answer's raw text.
async fn get_ok(c: &mut Raw, id: &str, to: Option<&str>) -> String {
    let r = c.iq(id, &get(id, to)).await;
    assert_eq!(r.typ(), "result", "{}", r.raw);
    assert!(r.child("vCard", VCARD).is_some(), "{}", r.raw);
    r.raw
}

/// Rows `user@localhost` has in `vcards`.
async fn rows(s: &Server, user: &str) -> i64 {
    s.user_rows("vcards", user).await
}

async fn vcard(b: Backend) {
    let s = Server::start(Options {
        extra: "[modules.vcard]\nmax_bytes = 2000\n".into(),
        ..Options::plaintext(b)
    });
    s.register("alice@localhost", PW);
    s.register("bob@localhost", PW);
    let mut a = Raw::login(s.c2s, "alice", PW, "a1").await;

    // Nothing stored: an empty vCard.
    let r = get_ok(&mut a, "g0", None).await;
    assert!(r.contains(EMPTY), "{r}");
    assert!(a.disco_features().await.iter().any(|f| f == VCARD));

    let r = a.iq("s1", &set("s1", None, CARD)).await;
    assert_eq!(r.typ(), "result", "{}", r.raw);
    assert_eq!(rows(&s, "alice").await, 1);

    // Across a re-login (to the bare JID this time).
    drop(a);
    let mut a = Raw::login(s.c2s, "alice", PW, "a2").await;
    let r = get_ok(&mut a, "g1", Some("alice@localhost")).await;
    assert!(
        r.contains("<FN>Alice A.</FN>") && r.contains("<BINVAL>aGVsbG8=</BINVAL>"),
        "{r}"
    );

    // Bob reads alice's; his own is empty; alice reads his empty one.
    let mut bob = Raw::login(s.c2s, "bob", PW, "b").await;
    let r = get_ok(&mut bob, "bg", Some("alice@localhost")).await;
    assert!(r.contains("<NICKNAME>al</NICKNAME>"), "{r}");
    let r = get_ok(&mut bob, "bg2", None).await;
    assert!(r.contains(EMPTY), "{r}");
    let r = get_ok(&mut a, "g2", Some("bob@localhost")).await;
    assert!(r.contains(EMPTY), "{r}");
    // No such account; the server's own.
    let r = a.iq("g3", &get("g3", Some("nobody@localhost"))).await;
    assert_eq!(r.refusal().0, "service-unavailable", "{}", r.raw);
    let r = get_ok(&mut a, "g4", Some("localhost")).await;
    assert!(r.contains(EMPTY), "{r}");

    // Setting another's: forbidden, nothing changes.
    let r = bob
        .iq("bs", &set("bs", Some("alice@localhost"), EMPTY))
        .await;
    assert_eq!(r.refusal().0, "forbidden", "{}", r.raw);
    let r = get_ok(&mut a, "g5", None).await;
    assert!(r.contains("<FN>Alice A.</FN>"), "{r}");

    // The size limit (2000 bytes here), with a text saying so.
    let big = format!(
        "<vCard xmlns='vcard-temp'><FN>{}</FN></vCard>",
        "x".repeat(3000)
    );
    let r = a.iq("big", &set("big", None, &big)).await;
    let (cond, text) = r.refusal();
    assert_eq!(cond, "not-acceptable", "{}", r.raw);
    assert!(text.contains("2000"), "{}", r.raw);
    let metrics = crate::http::get(s.http, "/metrics", None).await.body;
    assert!(
        metrics.contains("limit_hit_total{limit=\"vcard_bytes\"} 1\n"),
        "vcard_bytes counted once"
    );
    for op in ["stored", "queried"] {
        let series = format!("module_data_total{{module=\"vcard\",operation=\"{op}\"}} ");
        assert!(metrics.contains(&series), "{series} missing");
    }
    let r = get_ok(&mut a, "g6", None).await;
    assert!(r.contains("<FN>Alice A.</FN>"), "{r}");

    // A set replaces the whole vCard.
    let r = a
        .iq(
            "s2",
            &set("s2", None, "<vCard xmlns='vcard-temp'><FN>New</FN></vCard>"),
        )
        .await;
    assert_eq!(r.typ(), "result", "{}", r.raw);
    let r = get_ok(&mut a, "g7", None).await;
    assert!(r.contains("<FN>New</FN>") && !r.contains("PHOTO"), "{r}");

    // Removing the account removes its row, and only its.
    let r = bob.iq("bs2", &set("bs2", None, CARD)).await;
    assert_eq!(r.typ(), "result", "{}", r.raw);
    drop(a);
    let out = s.cli(&["account", "remove", "alice@localhost"]);
    assert!(
        out.status.success(),
        "remove: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(rows(&s, "alice").await, 0);
    assert_eq!(rows(&s, "bob").await, 1);
    let r = bob.iq("bg3", &get("bg3", Some("alice@localhost"))).await;
    assert_eq!(r.refusal().0, "service-unavailable", "{}", r.raw);
}
both_backends!(vcard_round_trip_limits_and_removal, vcard);

async fn vcard_off(b: Backend) {
    let s = Server::start(Options {
        extra: "[modules.vcard]\nenabled = false\n".into(),
        ..Options::plaintext(b)
    });
    s.register("alice@localhost", PW);
    let mut a = Raw::login(s.c2s, "alice", PW, "a").await;
    let r = a.iq("s", &set("s", None, EMPTY)).await;
    assert_eq!(r.refusal().0, "service-unavailable", "{}", r.raw);
    let r = a.iq("g", &get("g", None)).await;
    assert_eq!(r.refusal().0, "service-unavailable", "{}", r.raw);
    assert!(!a.disco_features().await.iter().any(|f| f == VCARD));
    assert_eq!(rows(&s, "alice").await, 0);
}
both_backends!(vcard_disabled_is_service_unavailable, vcard_off);

/// XEP-0153: once alice stores a vCard with a photo, the presence she
/// broadcasts carries its SHA-1 for her contacts.
async fn vcard_presence_hash(b: Backend) {
    let s = Server::start(Options::plaintext(b));
    s.register("alice@localhost", PW);
    s.register("bob@localhost", PW);
    let mut a = Raw::login(s.c2s, "alice", PW, "a").await;
    let mut bob = Raw::login(s.c2s, "bob", PW, "b").await;
    a.send("<presence/>").await;
    bob.send("<presence/>").await;
    crate::raw::subscribe_both(&mut a, "alice@localhost", &mut bob, "bob@localhost").await;
    let r = a.iq("s", &set("s", None, CARD)).await;
    assert_eq!(r.typ(), "result", "{}", r.raw);
    a.send("<presence><status>with a photo</status></presence>")
        .await;
    let p = bob
        .take("alice's presence", |x| {
            x.is_presence() && x.from() == "alice@localhost/a" && x.raw.contains("with a photo")
        })
        .await;
    let photo = p
        .child("x", "vcard-temp:x:update")
        .and_then(|x| x.child("photo", "vcard-temp:x:update"))
        .unwrap_or_else(|| panic!("no photo hash: {}", p.raw));
    // SHA-1 of "hello", the photo's bytes.
    assert_eq!(photo.text, "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d");
}
both_backends!(vcard_photo_hash_in_presence, vcard_presence_hash);
