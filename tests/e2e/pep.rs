//! XEP-0163 Personal Eventing Protocol over raw XMPP: a nick (XEP-0172)
//! and avatar metadata (XEP-0084) notified to a contact whose entity
//! capabilities (XEP-0115, answered to the server's disco#info query) ask
//! for them, and not to a stranger; presence and open access; XEP-0402
//! bookmarks (whitelist, max items) readable by the owner only and
//! notified to her other resource; retract notifications; the item size
//! limit in /metrics; the last items on a new resource's presence (caps
//! cached: no second query); and no row left after account removal.

use std::time::Duration;

use base64::Engine;
use sha1::{Digest, Sha1};

use crate::both_backends;
use crate::harness::{Backend, Options, Server};
use crate::raw::{subscribe_both, Raw, Xml, NS_DISCO_INFO};

const PW: &str = "pw";
const PUBSUB: &str = "http://jabber.org/protocol/pubsub";
const EVENT: &str = "http://jabber.org/protocol/pubsub#event";
const NICK: &str = "http://jabber.org/protocol/nick";
const AVATAR_META: &str = "urn:xmpp:avatar:metadata";
const BOOKMARKS: &str = "urn:xmpp:bookmarks:1";
const CAPS_NODE: &str = "https://osprey.test/raw";

/// XEP-0115 §5.1 for one identity (client/pc, named "raw") and `features`.
fn ver(features: &[&str]) -> String {
    let mut f: Vec<&str> = features.to_vec();
    f.sort_unstable();
    let mut s = String::from("client/pc//raw<");
    for x in f {
        s.push_str(x);
        s.push('<');
    }
    base64::engine::general_purpose::STANDARD.encode(Sha1::digest(s.as_bytes()))
}

fn caps_presence(features: &[&str]) -> String {
    format!(
        "<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='{CAPS_NODE}' ver='{}'/></presence>",
        ver(features)
    )
}

fn is_disco_query(x: &Xml) -> bool {
    x.is_iq() && x.typ() == "get" && x.child("query", NS_DISCO_INFO).is_some()
}

/// Sends available presence with caps and answers the server's
/// disco#info query for them (unless the server knows them: `queried` false).
async fn announce(c: &mut Raw, features: &[&str], queried: bool) {
    c.send(&caps_presence(features)).await;
    if !queried {
        c.absent(
            Duration::from_millis(300),
            "a disco#info query",
            is_disco_query,
        )
        .await;
        c.settle().await;
        return;
    }
    let q = c
        .take("the server's disco#info query", is_disco_query)
        .await;
    let node = q
        .child("query", NS_DISCO_INFO)
        .and_then(|q| q.attr("node"))
        .unwrap_or_default()
        .to_string();
    assert_eq!(node, format!("{CAPS_NODE}#{}", ver(features)), "{}", q.raw);
    let mut answer = format!(
        "<iq type='result' id='{}' to='{}'><query xmlns='{NS_DISCO_INFO}' node='{node}'>\
         <identity category='client' type='pc' name='raw'/>",
        q.id(),
        q.from()
    );
    for f in features {
        answer.push_str(&format!("<feature var='{f}'/>"));
    }
    answer.push_str("</query></iq>");
    c.send(&answer).await;
    c.settle().await;
}

fn publish(id: &str, node: &str, item: &str, payload: &str, options: &str) -> String {
    let options = if options.is_empty() {
        String::new()
    } else {
        format!(
            "<publish-options><x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE' type='hidden'><value>{PUBSUB}#publish-options</value></field>\
             {options}</x></publish-options>"
        )
    };
    format!(
        "<iq type='set' id='{id}'><pubsub xmlns='{PUBSUB}'><publish node='{node}'>\
         <item id='{item}'>{payload}</item></publish>{options}</pubsub></iq>"
    )
}

fn items(id: &str, owner: &str, node: &str) -> String {
    format!(
        "<iq type='get' id='{id}' to='{owner}'><pubsub xmlns='{PUBSUB}'><items node='{node}'/></pubsub></iq>"
    )
}

fn field(var: &str, value: &str) -> String {
    format!("<field var='{var}'><value>{value}</value></field>")
}

/// An event notification about `node` (from alice) carrying `needle`.
fn event_about<'a>(node: &'a str, needle: &'a str) -> impl Fn(&Xml) -> bool + 'a {
    move |x: &Xml| {
        x.is_message()
            && x.typ() == "headline"
            && x.from() == "alice@localhost"
            && x.find("items", EVENT)
                .is_some_and(|i| i.attr("node") == Some(node))
            && x.raw.contains(needle)
    }
}

async fn pep(b: Backend) {
    let s = Server::start(Options {
        extra: "[modules.pep]\nmax_item_bytes = 2000\n".into(),
        ..Options::plaintext(b)
    });
    for u in ["alice", "bob", "carol"] {
        s.register(&format!("{u}@localhost"), PW);
    }
    let mut a = Raw::login(s.c2s, "alice", PW, "a1").await;
    let mut bob = Raw::login(s.c2s, "bob", PW, "b1").await;
    let mut carol = Raw::login(s.c2s, "carol", PW, "c1").await;

    // The account is a PEP service.
    let r = a
        .iq(
            "d",
            &format!(
                "<iq type='get' id='d' to='alice@localhost'><query xmlns='{NS_DISCO_INFO}'/></iq>"
            ),
        )
        .await;
    let q = r.child("query", NS_DISCO_INFO).expect("query");
    assert!(
        q.children_named("identity", NS_DISCO_INFO)
            .any(|i| i.attr("category") == Some("pubsub") && i.attr("type") == Some("pep")),
        "{}",
        r.raw
    );
    for f in [
        "publish",
        "publish-options",
        "auto-create",
        "filtered-notifications",
    ] {
        assert!(r.raw.contains(&format!("{PUBSUB}#{f}")), "{f}: {}", r.raw);
    }

    let nick_notify = format!("{NICK}+notify");
    let meta_notify = format!("{AVATAR_META}+notify");
    let bookmarks_notify = format!("{BOOKMARKS}+notify");
    let bob_features = [
        NS_DISCO_INFO,
        "http://jabber.org/protocol/caps",
        &nick_notify,
        &meta_notify,
    ];
    // Available first (a subscription request waits for that), with caps.
    a.send("<presence/>").await;
    announce(&mut bob, &bob_features, true).await;
    // The same caps: known already, carol is not asked.
    announce(&mut carol, &bob_features, false).await;
    subscribe_both(&mut a, "alice@localhost", &mut bob, "bob@localhost").await;
    // Alice's second resource wants her bookmarks.
    let mut a2 = Raw::login(s.c2s, "alice", PW, "a2").await;
    announce(&mut a2, &[NS_DISCO_INFO, &bookmarks_notify], true).await;
    for c in [&mut a, &mut bob, &mut carol] {
        c.settle().await;
    }

    // A nick and avatar metadata: bob is told, carol is not.
    let r = a
        .iq(
            "p1",
            &publish(
                "p1",
                NICK,
                "current",
                &format!("<nick xmlns='{NICK}'>Ali</nick>"),
                "",
            ),
        )
        .await;
    assert_eq!(r.typ(), "result", "{}", r.raw);
    bob.take("alice's nick", event_about(NICK, ">Ali</nick>"))
        .await;
    let meta = format!(
        "<metadata xmlns='{AVATAR_META}'><info bytes='5' id='aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d' \
         height='1' width='1' type='image/png'/></metadata>"
    );
    let r = a
        .iq(
            "p2",
            &publish(
                "p2",
                AVATAR_META,
                "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d",
                &meta,
                "",
            ),
        )
        .await;
    assert_eq!(r.typ(), "result", "{}", r.raw);
    bob.take(
        "alice's avatar metadata",
        event_about(AVATAR_META, "image/png"),
    )
    .await;
    carol
        .absent(Duration::from_millis(300), "an event for a stranger", |x| {
            x.is_message()
        })
        .await;
    // Presence access: carol may not read; an open node she may.
    let r = carol.iq("c1", &items("c1", "alice@localhost", NICK)).await;
    assert_eq!(r.refusal().0, "not-authorized", "{}", r.raw);
    let r = bob.iq("b1", &items("b1", "alice@localhost", NICK)).await;
    assert!(r.raw.contains(">Ali</nick>"), "{}", r.raw);
    let r = a
        .iq(
            "p3",
            &publish(
                "p3",
                "urn:example:open",
                "1",
                "<x xmlns='urn:example:open'>hi</x>",
                &field("pubsub#access_model", "open"),
            ),
        )
        .await;
    assert_eq!(r.typ(), "result", "{}", r.raw);
    let r = carol
        .iq("c2", &items("c2", "alice@localhost", "urn:example:open"))
        .await;
    assert!(r.raw.contains(">hi</x>"), "{}", r.raw);

    // XEP-0402 bookmarks: whitelist, max items; the other resource is told.
    let opts = [
        field("pubsub#persist_items", "true"),
        field("pubsub#max_items", "max"),
        field("pubsub#send_last_published_item", "never"),
        field("pubsub#access_model", "whitelist"),
    ]
    .concat();
    for (i, room) in ["one@muc.localhost", "two@muc.localhost"]
        .iter()
        .enumerate()
    {
        let conf = format!(
            "<conference xmlns='{BOOKMARKS}' name='Room {i}' autojoin='true'><nick>ali</nick></conference>"
        );
        let id = format!("bm{i}");
        let r = a
            .iq(&id, &publish(&id, BOOKMARKS, room, &conf, &opts))
            .await;
        assert_eq!(r.typ(), "result", "{}", r.raw);
        a2.take("a bookmark", |x| {
            x.is_message() && x.raw.contains(&format!("<item id='{room}'>"))
        })
        .await;
    }
    let r = a.iq("bg", &items("bg", "alice@localhost", BOOKMARKS)).await;
    let got = r.find("items", PUBSUB).expect("items");
    assert_eq!(got.children_named("item", PUBSUB).count(), 2, "{}", r.raw);
    let r = bob
        .iq("bb", &items("bb", "alice@localhost", BOOKMARKS))
        .await;
    assert_eq!(r.refusal().0, "not-allowed", "{}", r.raw);
    bob.absent(Duration::from_millis(300), "a bookmark event", |x| {
        x.raw.contains(BOOKMARKS)
    })
    .await;
    // Another access model for the bookmarks: refused as a precondition.
    let r = a
        .iq(
            "bx",
            &publish(
                "bx",
                BOOKMARKS,
                "x@muc.localhost",
                &format!("<conference xmlns='{BOOKMARKS}'/>"),
                &field("pubsub#access_model", "presence"),
            ),
        )
        .await;
    assert_eq!(r.refusal().0, "conflict", "{}", r.raw);
    assert!(r.raw.contains("precondition-not-met"), "{}", r.raw);

    // Retract with notify.
    let r = a
        .iq(
            "rt",
            &format!(
                "<iq type='set' id='rt'><pubsub xmlns='{PUBSUB}'><retract node='{BOOKMARKS}' notify='true'>\
                 <item id='one@muc.localhost'/></retract></pubsub></iq>"
            ),
        )
        .await;
    assert_eq!(r.typ(), "result", "{}", r.raw);
    a2.take("the retraction", |x| {
        x.is_message()
            && x.find("retract", EVENT)
                .is_some_and(|r| r.attr("id") == Some("one@muc.localhost"))
    })
    .await;

    // The size limit.
    let big = format!("<nick xmlns='{NICK}'>{}</nick>", "x".repeat(3000));
    let r = a
        .iq("big", &publish("big", NICK, "current", &big, ""))
        .await;
    assert_eq!(r.refusal().0, "not-acceptable", "{}", r.raw);
    assert!(r.raw.contains("payload-too-big"), "{}", r.raw);
    let metrics = crate::http::get(s.http, "/metrics", None).await.body;
    assert!(
        metrics.contains("limit_hit_total{limit=\"pep_item_bytes\"} 1\n"),
        "pep_item_bytes counted once"
    );
    // Publishes, reads and retractions, with their items.
    for op in ["stored", "queried", "removed"] {
        for metric in ["module_data_total", "module_data_rows_total"] {
            let series = format!("{metric}{{module=\"pep\",operation=\"{op}\"}} ");
            assert!(metrics.contains(&series), "{series} missing");
        }
    }

    // Bob's new resource, same caps: no query (cached), the last items at once.
    let mut b2 = Raw::login(s.c2s, "bob", PW, "b2").await;
    b2.send(&caps_presence(&bob_features)).await;
    b2.take("the last nick", event_about(NICK, ">Ali</nick>"))
        .await;
    b2.take(
        "the last avatar metadata",
        event_about(AVATAR_META, "image/png"),
    )
    .await;
    b2.absent(
        Duration::from_millis(300),
        "a disco#info query",
        is_disco_query,
    )
    .await;

    // Removing the account removes its nodes and items.
    assert!(s.user_rows("pep_nodes", "alice").await >= 3);
    assert!(s.user_rows("pep_items", "alice").await >= 3);
    drop(a);
    drop(a2);
    let out = s.cli(&["account", "remove", "alice@localhost"]);
    assert!(
        out.status.success(),
        "remove: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(s.user_rows("pep_nodes", "alice").await, 0);
    assert_eq!(s.user_rows("pep_items", "alice").await, 0);
}
both_backends!(pep_notify_access_bookmarks_limits_and_removal, pep);

async fn pep_off(b: Backend) {
    let s = Server::start(Options {
        extra: "[modules.pep]\nenabled = false\n".into(),
        ..Options::plaintext(b)
    });
    s.register("alice@localhost", PW);
    let mut a = Raw::login(s.c2s, "alice", PW, "a").await;
    let r = a
        .iq(
            "p",
            &publish(
                "p",
                NICK,
                "current",
                &format!("<nick xmlns='{NICK}'>A</nick>"),
                "",
            ),
        )
        .await;
    assert_eq!(r.refusal().0, "service-unavailable", "{}", r.raw);
    let r = a
        .iq(
            "d",
            &format!(
                "<iq type='get' id='d' to='alice@localhost'><query xmlns='{NS_DISCO_INFO}'/></iq>"
            ),
        )
        .await;
    assert!(!r.raw.contains(PUBSUB), "{}", r.raw);
    assert_eq!(s.user_rows("pep_nodes", "alice").await, 0);
}
both_backends!(pep_disabled_is_service_unavailable, pep_off);
