//! XEP-0191 blocking command (`urn:xmpp:blocking`): the blocklist, pushes to
//! the resources that asked for it, what a block stops in each direction,
//! unblocking one and all, and a blocklist that survives a restart.

use std::time::Duration;

use crate::both_backends;
use crate::harness::{Backend, Options, Server};
use crate::raw::{bare, subscribe_both, Raw, Xml, NS_CLIENT};

const BLOCKING: &str = "urn:xmpp:blocking";
const BLOCKING_ERRORS: &str = "urn:xmpp:blocking:errors";
const PW: &str = "pw";
const ALICE: &str = "alice@localhost";
const BOB: &str = "bob@localhost";
/// How long "nothing arrives" is watched.
const QUIET: Duration = Duration::from_millis(700);

/// Logged in and available.
async fn online(s: &Server, user: &str, resource: &str) -> Raw {
    let mut c = Raw::login(s.c2s, user, PW, resource).await;
    c.send("<presence/>").await;
    c
}

/// The JIDs of the `<item/>` children of `el`, sorted.
fn items(el: &Xml) -> Vec<String> {
    let mut v: Vec<String> = el
        .children_named("item", BLOCKING)
        .filter_map(|i| i.attr("jid").map(str::to_string))
        .collect();
    v.sort();
    v
}

/// The blocklist, as the server returns it (this resource now gets pushes).
async fn blocklist(c: &mut Raw, id: &str) -> Vec<String> {
    let r = c
        .iq(
            id,
            &format!("<iq type='get' id='{id}'><blocklist xmlns='{BLOCKING}'/></iq>"),
        )
        .await;
    assert_eq!(r.typ(), "result", "{}", r.raw);
    let list = r
        .child("blocklist", BLOCKING)
        .unwrap_or_else(|| panic!("no <blocklist/> in the result: {}", r.raw));
    items(list)
}

/// Sends `<block/>` or `<unblock/>` (`kind`) with these items; returns the
/// answer.
async fn command(c: &mut Raw, id: &str, kind: &str, jids: &[&str]) -> Xml {
    let body: String = jids.iter().map(|j| format!("<item jid='{j}'/>")).collect();
    let payload = if body.is_empty() {
        format!("<{kind} xmlns='{BLOCKING}'/>")
    } else {
        format!("<{kind} xmlns='{BLOCKING}'>{body}</{kind}>")
    };
    c.iq(id, &format!("<iq type='set' id='{id}'>{payload}</iq>"))
        .await
}

/// Like [`command`], and the answer must be an empty result.
async fn command_ok(c: &mut Raw, id: &str, kind: &str, jids: &[&str]) {
    let r = command(c, id, kind, jids).await;
    assert_eq!(r.typ(), "result", "{kind} {jids:?}: {}", r.raw);
}

fn is_push(x: &Xml, kind: &str) -> bool {
    x.is_iq() && x.typ() == "set" && x.child(kind, BLOCKING).is_some()
}

/// The next `kind` push at `c` (answered with a result); returns its items.
async fn push(c: &mut Raw, kind: &str) -> Vec<String> {
    let k = kind.to_string();
    let x = c
        .take(&format!("a {kind} push"), move |x| is_push(x, &k))
        .await;
    assert!(
        x.from().is_empty() || x.from() == ALICE,
        "a push comes from the account itself: {}",
        x.raw
    );
    c.send(&format!("<iq type='result' id='{}'/>", x.id()))
        .await;
    items(x.child(kind, BLOCKING).expect("checked"))
}

/// The stanza error `x` carries: its type and defined condition.
fn error_of(x: &Xml) -> (String, String) {
    assert_eq!(x.typ(), "error", "{}", x.raw);
    let e = x
        .child("error", NS_CLIENT)
        .unwrap_or_else(|| panic!("no <error/>: {}", x.raw));
    (
        e.attr("type").unwrap_or("").to_string(),
        x.error_condition().unwrap_or("").to_string(),
    )
}

/// bob's message to `to` is refused as XEP-0191 §3.2 says (the user's
/// server returns service-unavailable), and alice's `resources` get nothing.
async fn bob_is_refused(bob: &mut Raw, to: &str, id: &str) {
    bob.send(&format!(
        "<message to='{to}' type='chat' id='{id}'><body>blocked?</body></message>"
    ))
    .await;
    let i = id.to_string();
    let err = bob
        .take(&format!("the error for message {id}"), move |x| {
            x.is_message() && x.id() == i
        })
        .await;
    assert_eq!(error_of(&err).1, "service-unavailable", "{}", err.raw);
    assert_eq!(
        err.from(),
        to,
        "the error comes from the addressee: {}",
        err.raw
    );
}

/// A ping round trip (nothing received is dropped).
async fn sync(c: &mut Raw, id: &str) {
    let r = c
        .iq(
            id,
            &format!("<iq type='get' id='{id}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"),
        )
        .await;
    assert_eq!(r.typ(), "result", "{}", r.raw);
}

/// Nothing from bob reached this resource of alice's.
async fn nothing_from_bob(c: &mut Raw) {
    c.absent(QUIET, "a stanza from blocked bob", |x| {
        bare(x.from()) == BOB
    })
    .await;
}

async fn blocking(b: Backend) {
    let mut s = Server::start(Options {
        extra: "[modules.blocking]\n".into(),
        ..Options::plaintext(b)
    });
    s.register(ALICE, PW);
    s.register(BOB, PW);
    let mut a1 = online(&s, "alice", "a1").await;
    let mut a2 = online(&s, "alice", "a2").await;
    let mut a3 = online(&s, "alice", "a3").await;
    let mut bob = online(&s, "bob", "b").await;
    subscribe_both(&mut a1, ALICE, &mut bob, BOB).await;
    a2.settle().await;
    a3.settle().await;

    assert!(
        a1.disco_features().await.iter().any(|f| f == BLOCKING),
        "disco#info lacks {BLOCKING}"
    );
    // a1 and a2 ask for the blocklist (and so get pushes); a3 never does.
    assert!(blocklist(&mut a1, "bl1").await.is_empty());
    assert!(blocklist(&mut a2, "bl2").await.is_empty());

    // A <block/> without items is a bad request (§3.3).
    let r = command(&mut a1, "b0", "block", &[]).await;
    assert_eq!(error_of(&r).1, "bad-request", "{}", r.raw);

    command_ok(&mut a1, "b1", "block", &[BOB]).await;
    assert_eq!(push(&mut a1, "block").await, [BOB]);
    assert_eq!(push(&mut a2, "block").await, [BOB]);
    a3.absent(
        QUIET,
        "a block push at a resource that never asked for the list",
        |x| is_push(x, "block"),
    )
    .await;

    // Bob, a subscriber, now sees every resource of alice's go offline.
    let mut gone = Vec::new();
    for _ in 0..3 {
        let p = bob
            .take("alice's unavailable presence", |x| {
                x.is_presence() && x.typ() == "unavailable" && bare(x.from()) == ALICE
            })
            .await;
        gone.push(p.from().to_string());
    }
    gone.sort();
    assert_eq!(
        gone,
        [
            "alice@localhost/a1",
            "alice@localhost/a2",
            "alice@localhost/a3"
        ]
    );

    // Inbound from bob: messages and IQs bounce with service-unavailable,
    // presence is dropped silently (§3.2).
    bob_is_refused(&mut bob, ALICE, "mb1").await;
    bob_is_refused(&mut bob, "alice@localhost/a1", "mb2").await;
    let r = bob
        .iq(
            "ib1",
            "<iq type='get' id='ib1' to='alice@localhost/a1'><ping xmlns='urn:xmpp:ping'/></iq>",
        )
        .await;
    assert_eq!(error_of(&r).1, "service-unavailable", "{}", r.raw);
    bob.send("<presence><show>away</show></presence>").await;
    bob.send("<presence to='alice@localhost' type='probe'/>")
        .await;
    sync(&mut bob, "after-presence").await;
    for c in [&mut a1, &mut a2, &mut a3] {
        nothing_from_bob(c).await;
    }

    // Outbound to bob: a message is refused with not-acceptable + <blocked/>,
    // presence broadcasts do not reach him.
    a1.send("<message to='bob@localhost' type='chat' id='mo1'><body>out</body></message>")
        .await;
    let err = a1
        .take("the error for alice's message to bob", |x| {
            x.is_message() && x.id() == "mo1"
        })
        .await;
    assert_eq!(
        error_of(&err),
        ("cancel".to_string(), "not-acceptable".to_string()),
        "{}",
        err.raw
    );
    assert!(
        err.child("error", NS_CLIENT)
            .and_then(|e| e.child("blocked", BLOCKING_ERRORS))
            .is_some(),
        "no <blocked xmlns='{BLOCKING_ERRORS}'/>: {}",
        err.raw
    );
    a1.send("<presence><show>dnd</show></presence>").await;
    a1.settle().await;
    bob.absent(QUIET, "a stanza from alice while she blocks bob", |x| {
        bare(x.from()) == ALICE
    })
    .await;
    assert_eq!(blocklist(&mut a1, "bl3").await, [BOB]);

    // The blocklist is stored: after a restart it is there and enforced.
    drop((a1, a2, a3, bob));
    let status = s.terminate();
    assert!(status.success(), "{status}");
    s.restart();
    let mut a1 = online(&s, "alice", "a1").await;
    a1.settle().await;
    let mut bob = online(&s, "bob", "b").await;
    // Bob's presence went out (and his probe of alice): nothing of it may
    // reach alice, and she must not answer.
    sync(&mut bob, "after-restart").await;
    assert_eq!(blocklist(&mut a1, "bl4").await, [BOB]);
    bob_is_refused(&mut bob, ALICE, "mb3").await;
    bob.absent(QUIET, "alice's presence while she blocks bob", |x| {
        x.is_presence() && bare(x.from()) == ALICE
    })
    .await;
    nothing_from_bob(&mut a1).await;

    // Unblock: pushed, bob gets alice's current presence (§3.4), and
    // stanzas flow both ways again.
    command_ok(&mut a1, "u1", "unblock", &[BOB]).await;
    assert_eq!(push(&mut a1, "unblock").await, [BOB]);
    bob.take("alice's presence after unblocking", |x| {
        x.is_presence() && x.typ().is_empty() && x.from() == "alice@localhost/a1"
    })
    .await;
    bob.send(
        "<message to='alice@localhost/a1' type='chat' id='ok1'><body>hi again</body></message>",
    )
    .await;
    let m = a1
        .take("bob's message after unblocking", |x| {
            x.is_message() && x.body() == Some("hi again")
        })
        .await;
    assert_eq!(m.from(), "bob@localhost/b", "{}", m.raw);
    a1.send("<message to='bob@localhost/b' type='chat' id='ok2'><body>hi bob</body></message>")
        .await;
    bob.take("alice's message after unblocking", |x| {
        x.is_message() && x.body() == Some("hi bob")
    })
    .await;
    assert!(blocklist(&mut a1, "bl5").await.is_empty());

    // Several at once, then unblock all (§3.5): an empty <unblock/>.
    let carol = "carol@localhost";
    command_ok(&mut a1, "b2", "block", &[BOB, carol]).await;
    assert_eq!(push(&mut a1, "block").await, [BOB, carol]);
    assert_eq!(blocklist(&mut a1, "bl6").await, [BOB, carol]);
    bob_is_refused(&mut bob, "alice@localhost/a1", "mb4").await;
    command_ok(&mut a1, "u2", "unblock", &[]).await;
    assert!(
        push(&mut a1, "unblock").await.is_empty(),
        "an unblock-all push has no items"
    );
    assert!(blocklist(&mut a1, "bl7").await.is_empty());
    bob.send("<message to='alice@localhost/a1' type='chat' id='ok3'><body>free</body></message>")
        .await;
    a1.take("bob's message after unblock-all", |x| {
        x.is_message() && x.body() == Some("free")
    })
    .await;
}
both_backends!(block_unblock_and_restart, blocking);
