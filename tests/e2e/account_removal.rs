//! `osprey account remove` leaves no row of the account in any table: the
//! account uses every module that stores something (roster and
//! subscription requests, offline messages, blocking, private XML, vCard,
//! PEP, MAM archive and preferences, last activity), then is removed; every
//! table with `host` and `username` columns is read back, on both backends.

use crate::both_backends;
use crate::harness::{Backend, Options, Server};
use crate::raw::{subscribe_both, Raw};

const PW: &str = "pw";

async fn iq_ok(c: &mut Raw, id: &str, body: &str) {
    let r = c
        .iq(id, &format!("<iq type='set' id='{id}'>{body}</iq>"))
        .await;
    assert_eq!(r.typ(), "result", "{id}: {}", r.raw);
}

async fn everything_removed(b: Backend) {
    let s = Server::start(Options::plaintext(b));
    for u in ["alice", "bob", "carol"] {
        s.register(&format!("{u}@localhost"), PW);
    }
    let mut a = Raw::login(s.c2s, "alice", PW, "a").await;
    let mut bob = Raw::login(s.c2s, "bob", PW, "b").await;
    a.send("<presence/>").await;
    bob.send("<presence/>").await;
    subscribe_both(&mut a, "alice@localhost", &mut bob, "bob@localhost").await;
    iq_ok(
        &mut a,
        "p",
        "<query xmlns='jabber:iq:private'><n xmlns='urn:n'>x</n></query>",
    )
    .await;
    iq_ok(&mut a, "v", "<vCard xmlns='vcard-temp'><FN>A</FN></vCard>").await;
    iq_ok(
        &mut a,
        "pep",
        "<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='http://jabber.org/protocol/nick'>\
         <item><nick xmlns='http://jabber.org/protocol/nick'>al</nick></item></publish></pubsub>",
    )
    .await;
    iq_ok(
        &mut a,
        "bl",
        "<block xmlns='urn:xmpp:blocking'><item jid='mallory@localhost'/></block>",
    )
    .await;
    iq_ok(
        &mut a,
        "mp",
        "<prefs xmlns='urn:xmpp:mam:2' default='always'/>",
    )
    .await;
    a.send("<message to='bob@localhost/b' type='chat'><body>hi</body></message>")
        .await;
    bob.take("hi", |x| x.body() == Some("hi")).await;
    a.send("</stream:stream>").await;
    a.read_to_close().await;
    // While alice is away: a message kept offline, a subscription request.
    bob.send("<message to='alice@localhost' type='chat'><body>later</body></message>")
        .await;
    let mut carol = Raw::login(s.c2s, "carol", PW, "c").await;
    carol
        .send("<presence to='alice@localhost' type='subscribe'/>")
        .await;
    bob.settle().await;
    carol.settle().await;

    let before = s.rows_everywhere("alice").await;
    for table in [
        "accounts",
        "roster_items",
        "subscription_requests",
        "offline_messages",
        "blocklist",
        "private_storage",
        "last_activity",
        "vcards",
        "pep_nodes",
        "pep_items",
        "mam_messages",
        "mam_prefs",
    ] {
        let n = before.iter().find(|(t, _)| t == table).map(|r| r.1);
        assert!(
            n.unwrap_or(0) > 0,
            "alice has no row in {table}: {before:?}"
        );
    }
    let bob_before: i64 = s.rows_everywhere("bob").await.iter().map(|r| r.1).sum();

    let out = s.cli(&["account", "remove", "alice@localhost"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let left: Vec<_> = s
        .rows_everywhere("alice")
        .await
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect();
    assert!(left.is_empty(), "rows left after removal: {left:?}");
    let bob_after: i64 = s.rows_everywhere("bob").await.iter().map(|r| r.1).sum();
    // Bob keeps his own rows; only his roster item for alice may go with
    // her (it is his, so it stays).
    assert_eq!(bob_after, bob_before, "bob's rows changed");
}
both_backends!(account_remove_leaves_no_row_anywhere, everything_removed);
