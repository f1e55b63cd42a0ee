//! XEP-0352 client state indication (`urn:xmpp:csi:0`): while a client says
//! it is inactive, presence updates wait (only the latest per contact is
//! kept) until something important, a message, goes out or it turns active.

use std::time::Duration;

use crate::harness::{Backend, Options, Server};
use crate::raw::{subscribe_both, Raw, Xml};

const CSI: &str = "urn:xmpp:csi:0";
const PW: &str = "pw";

fn from_bob(x: &Xml) -> bool {
    x.from() == "bob@localhost/b"
}

/// A ping round trip: alice's session has handled what she sent before.
async fn sync(c: &mut Raw, id: &str) {
    let r = c
        .iq(
            id,
            &format!("<iq type='get' id='{id}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"),
        )
        .await;
    assert_eq!(r.typ(), "result", "{}", r.raw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inactive_client_gets_only_the_latest_presence_before_a_message() {
    let s = Server::start(Options {
        extra: "[modules.csi]\n".into(),
        ..Options::plaintext(Backend::Sqlite)
    });
    s.register("alice@localhost", PW);
    s.register("bob@localhost", PW);

    let mut alice = Raw::connect(s.c2s).await;
    let features = alice.authenticate("alice", PW).await;
    assert!(
        features.child("csi", CSI).is_some(),
        "post-auth features lack <csi xmlns='{CSI}'/>: {}",
        features.raw
    );
    alice.bind("a").await;
    alice.send("<presence/>").await;
    let mut bob = Raw::login(s.c2s, "bob", PW, "b").await;
    bob.send("<presence/>").await;
    subscribe_both(&mut alice, "alice@localhost", &mut bob, "bob@localhost").await;

    // Inactive: bob's two presence changes are held back.
    alice.send(&format!("<inactive xmlns='{CSI}'/>")).await;
    sync(&mut alice, "inactive1").await;
    bob.send("<presence><show>away</show></presence>").await;
    bob.send("<presence><show>dnd</show></presence>").await;
    bob.settle().await;
    alice
        .absent(Duration::from_secs(1), "stanza while inactive", |_| true)
        .await;

    // A message is important: the held presence goes first (only the
    // latest, dnd; away was superseded), then the message.
    bob.send(
        "<message to='alice@localhost/a' type='chat' id='wake'><body>wake up</body></message>",
    )
    .await;
    let first = alice.next_el().await;
    assert!(
        first.is_presence() && from_bob(&first),
        "expected bob's presence first, got {}",
        first.raw
    );
    assert_eq!(
        first.show(),
        "dnd",
        "only the latest presence: {}",
        first.raw
    );
    let second = alice.next_el().await;
    assert!(
        second.is_message() && second.body() == Some("wake up"),
        "expected bob's message second, got {}",
        second.raw
    );
    alice
        .absent(Duration::from_millis(500), "the superseded presence", |x| {
            x.is_presence()
        })
        .await;

    // Inactive again; <active/> delivers what was held at once.
    alice.send(&format!("<inactive xmlns='{CSI}'/>")).await;
    sync(&mut alice, "inactive2").await;
    bob.send("<presence><show>xa</show></presence>").await;
    bob.settle().await;
    alice
        .absent(Duration::from_millis(700), "presence while inactive", |x| {
            x.is_presence()
        })
        .await;
    alice.send(&format!("<active xmlns='{CSI}'/>")).await;
    let p = alice
        .take_within(Duration::from_secs(2), |x| x.is_presence() && from_bob(x))
        .await
        .expect("the held presence right after <active/>");
    assert_eq!(p.show(), "xa", "{}", p.raw);

    // Active: presence flows as it comes.
    bob.send("<presence><show>chat</show></presence>").await;
    let p = alice
        .take_within(Duration::from_secs(2), |x| x.is_presence() && from_bob(x))
        .await
        .expect("bob's presence while active");
    assert_eq!(p.show(), "chat", "{}", p.raw);
}
