//! XEP-0280 message carbons (`urn:xmpp:carbons:2`): a user's resources that
//! enabled carbons get copies of the chats their other resources send and
//! receive; private messages, disabled and never-enabled resources get none.

use std::time::Duration;

use crate::harness::{Backend, Options, Server};
use crate::raw::{Raw, Xml, NS_CLIENT};

const CARBONS: &str = "urn:xmpp:carbons:2";
const FORWARD: &str = "urn:xmpp:forward:0";
const PW: &str = "pw";

fn server() -> Server {
    let s = Server::start(Options {
        extra: "[modules.carbons]\n".into(),
        ..Options::plaintext(Backend::Sqlite)
    });
    s.register("alice@localhost", PW);
    s.register("bob@localhost", PW);
    s
}

/// Logged in and available.
async fn online(s: &Server, user: &str, resource: &str) -> Raw {
    let mut c = Raw::login(s.c2s, user, PW, resource).await;
    c.send("<presence/>").await;
    c
}

/// alice/a1, alice/a2 (both with carbons enabled), alice/a3 (never
/// enabled) and bob/b, all available and quiet.
async fn setup(s: &Server) -> (Raw, Raw, Raw, Raw) {
    let mut a1 = online(s, "alice", "a1").await;
    let mut a2 = online(s, "alice", "a2").await;
    let mut a3 = online(s, "alice", "a3").await;
    let mut bob = online(s, "bob", "b").await;
    for c in [&mut a1, &mut a2] {
        let r = c
            .iq(
                "carbons-on",
                &format!("<iq type='set' id='carbons-on'><enable xmlns='{CARBONS}'/></iq>"),
            )
            .await;
        assert_eq!(r.typ(), "result", "enable: {}", r.raw);
    }
    for c in [&mut a1, &mut a2, &mut a3, &mut bob] {
        c.settle().await;
    }
    (a1, a2, a3, bob)
}

fn is_carbon(x: &Xml) -> bool {
    x.is_message() && (x.child("received", CARBONS).is_some() || x.child("sent", CARBONS).is_some())
}

/// The message forwarded in a `kind` (`received` or `sent`) carbon, after
/// checking the wrapper: from the user's bare JID to the resource `to`.
fn forwarded<'a>(carbon: &'a Xml, kind: &str, to: &str) -> &'a Xml {
    assert_eq!(
        carbon.from(),
        "alice@localhost",
        "a carbon comes from the user's bare JID: {}",
        carbon.raw
    );
    assert_eq!(carbon.to(), to, "{}", carbon.raw);
    carbon
        .child(kind, CARBONS)
        .and_then(|k| k.child("forwarded", FORWARD))
        .and_then(|f| f.child("message", NS_CLIENT))
        .unwrap_or_else(|| panic!("no <{kind}><forwarded><message/>: {}", carbon.raw))
}

fn chat(to: &str, id: &str, body: &str) -> String {
    format!("<message to='{to}' type='chat' id='{id}'><body>{body}</body></message>")
}

/// A chat marked private (XEP-0280 §6) and not to be copied (XEP-0334).
fn private_chat(to: &str, id: &str, body: &str) -> String {
    format!(
        "<message to='{to}' type='chat' id='{id}'><body>{body}</body>\
         <private xmlns='{CARBONS}'/><no-copy xmlns='urn:xmpp:hints'/></message>"
    )
}

/// The message with `body` (not a carbon).
async fn direct(c: &mut Raw, body: &str) -> Xml {
    let want = body.to_string();
    c.take(&format!("the message {body:?}"), move |x| {
        x.is_message() && !is_carbon(x) && x.body() == Some(want.as_str())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enabled_resources_get_received_and_sent_copies() {
    let s = server();
    let (mut a1, mut a2, mut a3, mut bob) = setup(&s).await;
    assert!(
        a1.disco_features().await.iter().any(|f| f == CARBONS),
        "disco#info lacks {CARBONS}"
    );

    // bob -> alice/a1: a1 gets it, a2 a <received/> copy.
    bob.send(&chat("alice@localhost/a1", "in1", "hello a1"))
        .await;
    let m = direct(&mut a1, "hello a1").await;
    assert_eq!(m.from(), "bob@localhost/b", "{}", m.raw);
    let c = a2.take("a received carbon", is_carbon).await;
    let inner = forwarded(&c, "received", "alice@localhost/a2");
    assert_eq!(inner.from(), "bob@localhost/b", "{}", c.raw);
    assert_eq!(inner.to(), "alice@localhost/a1", "{}", c.raw);
    assert_eq!(inner.body(), Some("hello a1"), "{}", c.raw);

    // alice/a1 -> bob: bob gets it, a2 a <sent/> copy.
    a1.send(&chat("bob@localhost/b", "out1", "hello bob")).await;
    let m = direct(&mut bob, "hello bob").await;
    assert_eq!(m.from(), "alice@localhost/a1", "{}", m.raw);
    let c = a2.take("a sent carbon", is_carbon).await;
    let inner = forwarded(&c, "sent", "alice@localhost/a2");
    assert_eq!(inner.from(), "alice@localhost/a1", "{}", c.raw);
    assert_eq!(inner.to(), "bob@localhost/b", "{}", c.raw);
    assert_eq!(inner.body(), Some("hello bob"), "{}", c.raw);

    // Nobody gets a copy of what it sent or received itself, and a resource
    // that never enabled carbons gets none at all.
    a1.absent(Duration::from_millis(500), "carbon at a1", is_carbon)
        .await;
    a3.absent(
        Duration::from_millis(200),
        "carbon at a3 (never enabled)",
        |x| is_carbon(x) || x.is_message(),
    )
    .await;
    a2.absent(Duration::from_millis(200), "a second carbon", is_carbon)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_messages_and_disabled_resources_get_no_copies() {
    let s = server();
    let (mut a1, mut a2, _a3, mut bob) = setup(&s).await;

    // Outgoing: the private one is delivered but not copied; a2's next
    // carbon is the public message sent after it.
    a1.send(&private_chat("bob@localhost/b", "p-out", "secret out"))
        .await;
    a1.send(&chat("bob@localhost/b", "out2", "public out"))
        .await;
    direct(&mut bob, "secret out").await;
    direct(&mut bob, "public out").await;
    let c = a2.take("the carbon of the public message", is_carbon).await;
    assert_eq!(
        forwarded(&c, "sent", "alice@localhost/a2").body(),
        Some("public out"),
        "the private message was copied: {}",
        c.raw
    );

    // Incoming, likewise.
    bob.send(&private_chat("alice@localhost/a1", "p-in", "secret in"))
        .await;
    bob.send(&chat("alice@localhost/a1", "in2", "public in"))
        .await;
    direct(&mut a1, "secret in").await;
    direct(&mut a1, "public in").await;
    let c = a2.take("the carbon of the public message", is_carbon).await;
    assert_eq!(
        forwarded(&c, "received", "alice@localhost/a2").body(),
        Some("public in"),
        "the private message was copied: {}",
        c.raw
    );

    // After <disable/>, a2 gets no copies either way.
    let r = a2
        .iq(
            "carbons-off",
            &format!("<iq type='set' id='carbons-off'><disable xmlns='{CARBONS}'/></iq>"),
        )
        .await;
    assert_eq!(r.typ(), "result", "disable: {}", r.raw);
    assert!(r.child("error", NS_CLIENT).is_none(), "{}", r.raw);
    bob.send(&chat("alice@localhost/a1", "in3", "after disable in"))
        .await;
    a1.send(&chat("bob@localhost/b", "out3", "after disable out"))
        .await;
    direct(&mut a1, "after disable in").await;
    direct(&mut bob, "after disable out").await;
    // A message straight to a2 comes after anything routed before it.
    bob.send(&chat("alice@localhost/a2", "ctl", "to a2 directly"))
        .await;
    direct(&mut a2, "to a2 directly").await;
    a2.absent(
        Duration::from_millis(500),
        "carbon after disable",
        is_carbon,
    )
    .await;
    // Nothing above was refused.
    a1.absent(Duration::from_millis(100), "an error", |x| {
        x.typ() == "error"
    })
    .await;
}
