//! XEP-0198 stream management (`urn:xmpp:sm:3`): the feature, enabling,
//! acks, resumption after a TCP connection dies, and what becomes of a
//! detached session that nobody resumes.

use std::time::{Duration, Instant};

use crate::both_backends;
use crate::harness::{Backend, Options, Server};
use crate::raw::{Raw, Xml, NS_STANZA_ERRORS, NS_STREAMS};

const SM: &str = "urn:xmpp:sm:3";
const PW: &str = "pw";

/// A plaintext server with stream management configured by `sm` (TOML
/// lines of `[modules.stream_management]`) and `users` registered.
fn server(b: Backend, sm: &str, users: &[&str]) -> Server {
    let s = Server::start(Options {
        extra: format!("[modules.stream_management]\n{sm}\n"),
        ..Options::plaintext(b)
    });
    for u in users {
        s.register(&format!("{u}@localhost"), PW);
    }
    s
}

/// The client's side of stream management on one stream (or on the streams
/// of one resumed session): it counts the stanzas it handled (received since
/// `<enabled/>`) and sent (since `<enable/>`), and answers the server's
/// `<r/>`. Elements are read strictly in stream order, so `handled` is
/// exactly what the client has seen.
struct Sm {
    c: Raw,
    handled: u32,
    sent: u32,
}

impl Sm {
    fn new(c: Raw) -> Sm {
        Sm {
            c,
            handled: 0,
            sent: 0,
        }
    }

    /// `<enable resume='true'/>` plus `attrs`; returns `<enabled/>`.
    async fn enable(&mut self, attrs: &str) -> Xml {
        self.c
            .send(&format!("<enable xmlns='{SM}' resume='true'{attrs}/>"))
            .await;
        self.handled = 0;
        self.sent = 0;
        let x = self.next().await;
        assert!(x.is("enabled", SM), "expected <enabled/>, got {}", x.raw);
        x
    }

    /// The next element in stream order. Stanzas count as handled; the
    /// server's `<r/>` is answered and skipped.
    async fn next(&mut self) -> Xml {
        loop {
            let x = self.c.next_el().await;
            if x.is("r", SM) {
                let a = format!("<a xmlns='{SM}' h='{}'/>", self.handled);
                self.c.send(&a).await;
                continue;
            }
            if x.is_stanza() {
                self.handled += 1;
            }
            return x;
        }
    }

    /// The next stanza (the server's `<a/>` are skipped; anything else,
    /// such as a stream error, fails the test).
    async fn next_stanza(&mut self) -> Xml {
        loop {
            let x = self.next().await;
            if x.is_stanza() {
                return x;
            }
            assert!(x.is("a", SM), "expected a stanza, got {}", x.raw);
        }
    }

    /// Sends one stanza (counted).
    async fn send(&mut self, stanza: &str) {
        self.c.send(stanza).await;
        self.sent += 1;
    }

    /// A ping round trip; returns the other stanzas handled on the way.
    async fn ping(&mut self, id: &str) -> Vec<Xml> {
        self.send(&format!(
            "<iq type='get' id='{id}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"
        ))
        .await;
        let mut others = Vec::new();
        loop {
            let x = self.next_stanza().await;
            if x.is_iq() && x.id() == id {
                assert_eq!(x.typ(), "result", "{}", x.raw);
                return others;
            }
            others.push(x);
        }
    }

    /// Sends `<r/>` and returns the `h` of the server's `<a/>` (stanzas
    /// received on the way are handled and dropped).
    async fn ack(&mut self) -> u32 {
        self.c.send(&format!("<r xmlns='{SM}'/>")).await;
        loop {
            let x = self.next().await;
            if x.is("a", SM) {
                return x
                    .attr("h")
                    .and_then(|h| h.parse().ok())
                    .unwrap_or_else(|| panic!("<a/> without a numeric h: {}", x.raw));
            }
            assert!(x.is_stanza(), "expected <a/>, got {}", x.raw);
        }
    }
}

/// A logged-in resource with resumable stream management enabled and
/// initial presence sent (and its echo handled); its drop resets the TCP
/// connection. Returns it with the SM-ID.
async fn resumable(s: &Server, user: &str, resource: &str) -> (Sm, String) {
    let mut c = Sm::new(Raw::login_abortable(s.c2s, user, PW, resource).await);
    let enabled = c.enable("").await;
    let id = enabled
        .attr("id")
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| panic!("<enabled/> without an id: {}", enabled.raw))
        .to_string();
    c.send("<presence/>").await;
    c.ping("ready").await;
    (c, id)
}

/// A new connection of `user`: authenticated, then `<resume/>` of `previd`
/// with `h`. Returns the connection and the server's answer.
async fn try_resume(s: &Server, user: &str, previd: &str, h: u32) -> (Raw, Xml) {
    let mut c = Raw::connect_abortable(s.c2s).await;
    let features = c.authenticate(user, PW).await;
    assert!(
        features.child("sm", SM).is_some(),
        "no <sm/> feature: {}",
        features.raw
    );
    c.send(&format!("<resume xmlns='{SM}' previd='{previd}' h='{h}'/>"))
        .await;
    let answer = c.next_el().await;
    (c, answer)
}

/// `<failed xmlns='urn:xmpp:sm:3'><item-not-found xmlns=stanzas/></failed>`.
fn assert_item_not_found(answer: &Xml) {
    assert!(
        answer.is("failed", SM),
        "expected <failed/>, got {}",
        answer.raw
    );
    assert!(
        answer.child("item-not-found", NS_STANZA_ERRORS).is_some(),
        "expected <item-not-found/> in {}",
        answer.raw
    );
}

/// A chat message numbered `n` from bob.
fn numbered(x: &Xml) -> Option<u32> {
    if !x.is_message() || x.typ() != "chat" || !x.from().starts_with("bob@localhost/") {
        return None;
    }
    x.body()?.parse().ok()
}

async fn send_numbered(from: &mut Raw, to: &str, range: std::ops::Range<u32>) {
    let mut batch = String::new();
    for i in range {
        batch.push_str(&format!(
            "<message to='{to}' type='chat' id='n{i}'><body>{i}</body></message>"
        ));
    }
    from.send(&batch).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sm_feature_after_auth_and_enable_needs_bind() {
    let s = server(Backend::Sqlite, "", &["alice"]);
    let mut c = Raw::connect(s.c2s).await;
    let features = c.authenticate("alice", PW).await;
    assert!(
        features.child("sm", SM).is_some(),
        "post-auth features lack <sm xmlns='{SM}'/>: {}",
        features.raw
    );
    // XEP-0198 §3: enabling before resource binding is an unexpected request,
    // and the stream goes on.
    c.send(&format!("<enable xmlns='{SM}' resume='true'/>"))
        .await;
    let early = c.next_el().await;
    assert!(early.is("failed", SM), "enable before bind: {}", early.raw);
    assert!(
        early
            .child("unexpected-request", NS_STANZA_ERRORS)
            .is_some(),
        "{}",
        early.raw
    );
    assert_eq!(c.bind("r").await, "alice@localhost/r");
    let mut c = Sm::new(c);
    c.enable("").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enabled_has_id_resume_and_max() {
    let s = server(
        Backend::Sqlite,
        "resume_timeout = 300\nmax_resume_timeout = 600",
        &["alice"],
    );
    let mut a = Sm::new(Raw::login(s.c2s, "alice", PW, "one").await);
    let e1 = a.enable("").await;
    let id1 = e1.attr("id").unwrap_or("").to_string();
    assert!(!id1.is_empty(), "no id: {}", e1.raw);
    assert!(
        matches!(e1.attr("resume"), Some("true" | "1")),
        "resume: {}",
        e1.raw
    );
    let max: u64 = e1
        .attr("max")
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("no numeric max: {}", e1.raw));
    assert!((1..=600).contains(&max), "max {max}: {}", e1.raw);
    // A client asking for more than the cap gets the cap at most.
    let mut b = Sm::new(Raw::login(s.c2s, "alice", PW, "two").await);
    let e2 = b.enable(" max='100000'").await;
    let max2: u64 = e2
        .attr("max")
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("no numeric max: {}", e2.raw));
    assert!(
        (1..=600).contains(&max2),
        "max {max2} above the cap: {}",
        e2.raw
    );
    // SM-IDs are never shared between sessions.
    assert_ne!(e2.attr("id"), Some(id1.as_str()), "{}", e2.raw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_count_handled_stanzas_not_nonzas() {
    let s = server(Backend::Sqlite, "", &["alice"]);
    let mut a = Sm::new(Raw::login(s.c2s, "alice", PW, "r").await);
    a.enable("").await;
    for i in 0..3 {
        a.send(&format!(
            "<iq type='get' id='p{i}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"
        ))
        .await;
    }
    assert_eq!(a.ack().await, 3, "three pings handled");
    // Presence and messages count too; the client's own <a/> and <r/> do not.
    a.send("<presence/>").await;
    a.send("<message to='alice@localhost/r' type='chat' id='self'><body>me</body></message>")
        .await;
    let h = a.handled;
    a.c.send(&format!("<a xmlns='{SM}' h='{h}'/>")).await;
    assert_eq!(a.ack().await, 5, "3 pings + presence + message");
    assert_eq!(a.ack().await, 5, "a second <r/> is not a stanza");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_above_the_sent_count_is_a_stream_error() {
    let s = server(Backend::Sqlite, "", &["alice"]);
    let mut a = Sm::new(Raw::login(s.c2s, "alice", PW, "r").await);
    a.enable("").await;
    a.ping("p1").await;
    // An honest ack is fine...
    a.c.send(&format!("<a xmlns='{SM}' h='{}'/>", a.handled))
        .await;
    a.ping("p2").await;
    let sent_by_server = a.handled;
    assert_eq!(sent_by_server, 2, "two ping results");
    // ...one for stanzas never sent is not (XEP-0198 §4).
    let too_high = sent_by_server + 5;
    a.c.send(&format!("<a xmlns='{SM}' h='{too_high}'/>")).await;
    let out = a.c.read_to_close().await;
    let els = Xml::all(&out);
    let err = els
        .iter()
        .find(|x| x.is("error", NS_STREAMS))
        .unwrap_or_else(|| panic!("no stream error: {out}"));
    assert_eq!(
        err.stream_error_condition(),
        Some("undefined-condition"),
        "{}",
        err.raw
    );
    let detail = err
        .child("handled-count-too-high", SM)
        .unwrap_or_else(|| panic!("no <handled-count-too-high/>: {}", err.raw));
    assert_eq!(detail.attr("h"), Some(too_high.to_string().as_str()));
    assert_eq!(
        detail.attr("send-count"),
        Some(sent_by_server.to_string().as_str())
    );
    assert!(
        els.last().is_some_and(|x| x.is_stream_end()),
        "stream not closed: {out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_after_tcp_drop_delivers_every_message_once_in_order() {
    let s = server(Backend::Sqlite, "", &["alice", "bob"]);
    let (mut alice, id) = resumable(&s, "alice", "phone").await;
    let mut bob = Raw::login(s.c2s, "bob", PW, "desk").await;
    send_numbered(&mut bob, "alice@localhost/phone", 0..80).await;
    // Alice reads up to 30; then her connection dies with the rest in flight
    // (received by her kernel or not, but never handled).
    let mut bodies = Vec::new();
    while bodies.last().is_none_or(|n| *n < 30) {
        let x = alice.next_stanza().await;
        if let Some(n) = numbered(&x) {
            bodies.push(n);
        }
    }
    let (handled, sent) = (alice.handled, alice.sent);
    drop(alice);
    // More arrive while she is away.
    send_numbered(&mut bob, "alice@localhost/phone", 80..100).await;
    bob.settle().await;

    let (c, answer) = try_resume(&s, "alice", &id, handled).await;
    assert!(
        answer.is("resumed", SM),
        "expected <resumed/>, got {}",
        answer.raw
    );
    assert_eq!(answer.attr("previd"), Some(id.as_str()), "{}", answer.raw);
    assert_eq!(
        answer.attr("h"),
        Some(sent.to_string().as_str()),
        "the server handled all {sent} stanzas alice sent: {}",
        answer.raw
    );
    let mut alice = Sm { c, handled, sent };
    while bodies.len() < 100 {
        let x = alice.next_stanza().await;
        if let Some(n) = numbered(&x) {
            assert_eq!(x.to(), "alice@localhost/phone", "{}", x.raw);
            bodies.push(n);
        }
    }
    assert_eq!(
        bodies,
        (0..100).collect::<Vec<_>>(),
        "each message exactly once, in order"
    );
    alice
        .c
        .absent(Duration::from_millis(700), "duplicate message", |x| {
            numbered(x).is_some()
        })
        .await;
    // She is still alice/phone to the others.
    alice
        .send("<message to='bob@localhost/desk' type='chat' id='back'><body>back</body></message>")
        .await;
    let m = bob
        .take("alice's message after resumption", |x| {
            x.is_message() && x.body() == Some("back")
        })
        .await;
    assert_eq!(m.from(), "alice@localhost/phone", "{}", m.raw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_a_session_whose_stream_is_open_takes_it_over() {
    let s = server(Backend::Sqlite, "", &["alice", "bob"]);
    let (first, id) = resumable(&s, "alice", "phone").await;
    let (handled, sent) = (first.handled, first.sent);
    drop(first);
    let (c, answer) = try_resume(&s, "alice", &id, handled).await;
    assert!(answer.is("resumed", SM), "{}", answer.raw);
    let mut second = Sm { c, handled, sent };
    second.ping("on-second").await;
    // XEP-0198 §5: resuming while the server still has a stream for the
    // session open moves the session; the old stream gets <conflict/>.
    let (c, answer) = try_resume(&s, "alice", &id, second.handled).await;
    assert!(
        answer.is("resumed", SM),
        "resumption while the session's stream is open: {}",
        answer.raw
    );
    assert_eq!(answer.attr("previd"), Some(id.as_str()));
    assert_eq!(
        answer.attr("h"),
        Some(second.sent.to_string().as_str()),
        "{}",
        answer.raw
    );
    let out = second.c.read_to_close().await;
    let err = Xml::all(&out)
        .into_iter()
        .find(|x| x.is("error", NS_STREAMS))
        .unwrap_or_else(|| panic!("old stream closed without a stream error: {out}"));
    assert_eq!(
        err.stream_error_condition(),
        Some("conflict"),
        "{}",
        err.raw
    );
    // The session lives on the third stream.
    let mut third = Sm {
        c,
        handled: second.handled,
        sent: second.sent,
    };
    let mut bob = Raw::login(s.c2s, "bob", PW, "desk").await;
    bob.send("<message to='alice@localhost/phone' type='chat' id='x'><body>7</body></message>")
        .await;
    loop {
        let m = third.next_stanza().await;
        if let Some(n) = numbered(&m) {
            assert_eq!(n, 7, "{}", m.raw);
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_of_unknown_or_ended_session_fails_and_bind_still_works() {
    let s = server(Backend::Sqlite, "", &["alice"]);
    // Never issued.
    let (mut c, answer) = try_resume(&s, "alice", "no-such-sm-id", 0).await;
    assert_item_not_found(&answer);
    // XEP-0198 §5: after <failed/> the client may bind on the same stream.
    assert_eq!(
        c.bind("after-unknown").await,
        "alice@localhost/after-unknown"
    );

    // A session that ended with </stream:stream> is over, not resumable.
    let mut a = Sm::new(Raw::login(s.c2s, "alice", PW, "clean").await);
    let enabled = a.enable("").await;
    let id = enabled.attr("id").unwrap_or("").to_string();
    a.c.send("</stream:stream>").await;
    a.c.read_to_close().await;
    let (mut c, answer) = try_resume(&s, "alice", &id, a.handled).await;
    assert_item_not_found(&answer);
    assert_eq!(c.bind("after-ended").await, "alice@localhost/after-ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_account_cannot_resume_a_session() {
    let s = server(Backend::Sqlite, "", &["alice", "bob"]);
    let (alice, id) = resumable(&s, "alice", "phone").await;
    let (handled, sent) = (alice.handled, alice.sent);
    drop(alice);
    let (mut c, answer) = try_resume(&s, "bob", &id, handled).await;
    assert!(
        answer.is("failed", SM),
        "bob resumed alice's session: {}",
        answer.raw
    );
    assert_eq!(c.bind("b").await, "bob@localhost/b");
    // Bob's attempt did not end alice's session.
    let (_c, answer) = try_resume(&s, "alice", &id, handled).await;
    assert!(answer.is("resumed", SM), "{}", answer.raw);
    assert_eq!(answer.attr("h"), Some(sent.to_string().as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_refused_after_the_timeout() {
    let s = server(Backend::Sqlite, "resume_timeout = 2", &["alice"]);
    let (alice, id) = resumable(&s, "alice", "phone").await;
    let handled = alice.handled;
    drop(alice);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (mut c, answer) = try_resume(&s, "alice", &id, handled).await;
    assert_item_not_found(&answer);
    assert_eq!(c.bind("phone").await, "alice@localhost/phone");
}

async fn unacked_go_offline(b: Backend) {
    let s = server(b, "resume_timeout = 2", &["alice", "bob"]);
    let (alice, _id) = resumable(&s, "alice", "phone").await;
    drop(alice);
    // Bob writes to the bare JID: the detached session is still alice's
    // available resource, so the messages wait in its queue.
    let mut bob = Raw::login(s.c2s, "bob", PW, "desk").await;
    send_numbered(&mut bob, "alice@localhost", 0..5).await;
    bob.settle().await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    // Nobody resumed: what was never acked is kept offline.
    let mut alice = Raw::login(s.c2s, "alice", PW, "laptop").await;
    alice.send("<presence/>").await;
    for i in 0..5 {
        let m = alice
            .take(&format!("offline message {i}"), |x| numbered(x).is_some())
            .await;
        assert_eq!(numbered(&m), Some(i), "order: {}", m.raw);
        let delay = m
            .child("delay", "urn:xmpp:delay")
            .unwrap_or_else(|| panic!("no XEP-0203 delay: {}", m.raw));
        assert!(
            delay.attr("stamp").is_some_and(|s| !s.is_empty()),
            "{}",
            m.raw
        );
    }
    alice
        .absent(Duration::from_secs(1), "message delivered twice", |x| {
            numbered(x).is_some()
        })
        .await;
}
both_backends!(
    unacked_stanzas_go_offline_after_the_timeout,
    unacked_go_offline
);

/// The state of `jid` in `GET /api/sessions`, if listed.
async fn api_state(s: &Server, jid: &str) -> Option<String> {
    let e = crate::http::session_info(s.http, jid).await?;
    Some(e["state"].as_str().unwrap_or("").to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detached_session_is_listed_as_detached() {
    let s = server(Backend::Sqlite, "", &["alice", "bob"]);
    let (alice, _id) = resumable(&s, "alice", "phone").await;
    let _bob = Raw::login(s.c2s, "bob", PW, "desk").await;
    assert_eq!(
        api_state(&s, "alice@localhost/phone").await.as_deref(),
        Some("active")
    );
    drop(alice);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let state = api_state(&s, "alice@localhost/phone").await;
        if state.as_deref() == Some("detached") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "alice's session is {state:?}, not detached"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        api_state(&s, "bob@localhost/desk").await.as_deref(),
        Some("active")
    );
}

/// In a cluster, a detached session stays on its node: a `<resume/>` at
/// another node fails cleanly (`item-not-found`, and bind still works
/// there), and what waited unacknowledged in the detached session goes
/// offline at its timeout, for the next login on any node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_at_another_cluster_node_fails_and_unacked_go_offline() {
    use crate::cluster::{node_with, wait_remote};
    let nats = crate::harness::Nats::start();
    let db = crate::harness::SharedDb::new();
    let sm = "[modules.stream_management]\nresume_timeout = 2\n";
    let n1 = node_with(&nats, &db, "n1", sm);
    let n2 = node_with(&nats, &db, "n2", sm);
    n1.register("alice@localhost", PW);
    n1.register("bob@localhost", PW);
    let (alice, id) = resumable(&n1, "alice", "phone").await;
    wait_remote(&n2, 1).await;
    drop(alice);
    let mut bob = Raw::login(n2.c2s, "bob", PW, "desk").await;
    send_numbered(&mut bob, "alice@localhost", 0..5).await;
    bob.settle().await;
    let (_c, answer) = try_resume(&n2, "alice", &id, 0).await;
    assert_item_not_found(&answer);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut alice = Raw::login(n2.c2s, "alice", PW, "laptop").await;
    alice.send("<presence/>").await;
    for i in 0..5 {
        let m = alice
            .take(&format!("offline message {i}"), |x| numbered(x).is_some())
            .await;
        assert_eq!(numbered(&m), Some(i), "order: {}", m.raw);
    }
}
