//! Bad input: each case has a defined outcome (RFC 6120 stream errors, SASL
//! failures) and the server stays up for everyone else.

use std::time::Duration;

use crate::both_backends;
use crate::harness::{Backend, Options, Server};
use crate::raw::Raw;

fn plaintext(backend: Backend) -> Server {
    let s = Server::start(Options::plaintext(backend));
    s.register("alice@localhost", "alice-pw");
    s.register("bob@localhost", "bob-pw");
    s
}

/// Sends `input` after a valid header and expects the stream error `condition`.
async fn stream_error_after(server: &Server, input: &str, condition: &str) -> String {
    let mut c = Raw::connect(server.c2s).await;
    c.open().await;
    let _ = c.try_send(input.as_bytes()).await;
    let out = c.read_to_close().await;
    assert!(
        out.contains(&format!(
            "<{condition} xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
        )),
        "expected {condition}, got {out:?}"
    );
    assert!(
        out.contains("</stream:stream>"),
        "stream not closed: {out:?}"
    );
    out
}

/// The server still serves a normal login afterwards.
async fn still_serves(server: &mut Server) {
    server.assert_alive();
    let mut c = Raw::login(server.c2s, "bob", "bob-pw", "check").await;
    c.send("<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let r = c.expect("id='p1'").await;
    assert!(r.contains("<iq type='result'"), "{r}");
}

async fn malformed_xml(b: Backend) {
    let mut s = plaintext(b);
    stream_error_after(&s, "<message><body>x</bdy></message>", "not-well-formed").await;
    stream_error_after(&s, "<message to='a@localhost' to='b'/>", "not-well-formed").await;
    stream_error_after(&s, "just text", "not-well-formed").await;
    stream_error_after(
        &s,
        "<message><body>&nbsp;</body></message>",
        "not-well-formed",
    )
    .await;
    still_serves(&mut s).await;
}
both_backends!(malformed_xml_is_not_well_formed, malformed_xml);

async fn restricted(b: Backend) {
    let mut s = plaintext(b);
    let bomb = "<!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;&lol;\">]>\
                <message><body>&lol2;</body></message>";
    stream_error_after(&s, bomb, "restricted-xml").await;
    stream_error_after(&s, "<!-- a comment -->", "restricted-xml").await;
    stream_error_after(&s, "<?php echo 1; ?>", "restricted-xml").await;
    // Before the stream header, too.
    let mut c = Raw::connect(s.c2s).await;
    c.send("<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'b'>]>")
        .await;
    let out = c.read_to_close().await;
    assert!(out.contains("restricted-xml"), "{out}");
    still_serves(&mut s).await;
}
both_backends!(dtd_entities_comments_are_restricted, restricted);

async fn oversized(b: Backend) {
    let mut s = Server::start(Options {
        c2s_extra: "max_stanza_size = 10000\nmax_stanza_size_pre_auth = 4096".into(),
        ..Options::plaintext(b)
    });
    s.register("alice@localhost", "alice-pw");
    s.register("bob@localhost", "bob-pw");
    // Before authentication the smaller limit applies.
    let big = format!("<message><body>{}</body></message>", "x".repeat(5000));
    stream_error_after(&s, &big, "policy-violation").await;
    // After: 5000 bytes pass, 20000 do not.
    let mut c = Raw::login(s.c2s, "alice", "alice-pw", "r").await;
    c.send(&format!(
        "<message to='alice@localhost/r' id='m1'><body>{}</body></message>",
        "y".repeat(5000)
    ))
    .await;
    c.expect("</message>").await;
    let _ = c
        .try_send(format!("<message><body>{}</body></message>", "z".repeat(20000)).as_bytes())
        .await;
    let out = c.read_to_close().await;
    assert!(out.contains("policy-violation"), "{out}");
    still_serves(&mut s).await;
}
both_backends!(oversized_stanza_is_policy_violation, oversized);

async fn before_auth(b: Backend) {
    let mut s = plaintext(b);
    stream_error_after(
        &s,
        "<message to='bob@localhost'><body>hi</body></message>",
        "not-authorized",
    )
    .await;
    stream_error_after(
        &s,
        "<iq type='get' id='1'><query xmlns='jabber:iq:roster'/></iq>",
        "not-authorized",
    )
    .await;
    still_serves(&mut s).await;
}
both_backends!(stanza_before_auth_is_not_authorized, before_auth);

async fn bad_headers(b: Backend) {
    let mut s = plaintext(b);
    let cases = [
        ("<stream:stream to='localhost' xmlns='jabber:client' xmlns:stream='urn:wrong' version='1.0'>", "invalid-namespace"),
        ("<stream:stream to='localhost' xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>", "invalid-namespace"),
        ("<stream:stream to='localhost' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='2.0'>", "unsupported-version"),
        ("<stream:stream to='localhost' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>", "unsupported-version"),
        ("<stream:stream to='example.net' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>", "host-unknown"),
    ];
    for (header, condition) in cases {
        let mut c = Raw::connect(s.c2s).await;
        c.send(header).await;
        let out = c.read_to_close().await;
        // RFC 6120 §4.9.1.2: the server opens its stream before the error.
        assert!(out.contains("<stream:stream"), "{out}");
        assert!(
            out.contains(&format!("<{condition} ")),
            "{condition}: {out}"
        );
    }
    still_serves(&mut s).await;
}
both_backends!(bad_stream_headers, bad_headers);

async fn wrong_password(b: Backend) {
    let mut s = plaintext(b);
    let mut c = Raw::connect(s.c2s).await;
    c.open().await;
    let bad = base64_plain("alice", "wrong");
    c.send(&format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{bad}</auth>"
    ))
    .await;
    let r = c.expect("</failure>").await;
    assert!(r.contains("<not-authorized/>"), "{r}");
    // An unknown user looks exactly the same.
    let unknown = base64_plain("mallory", "x");
    c.send(&format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{unknown}</auth>"
    ))
    .await;
    let r = c.expect("</failure>").await;
    assert!(r.contains("<not-authorized/>"), "{r}");
    // The retry on the same stream succeeds.
    c.login_plain("alice", "alice-pw", "again").await;
    still_serves(&mut s).await;
}
both_backends!(wrong_password_then_retry, wrong_password);

fn base64_plain(user: &str, pw: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{pw}"))
}

async fn plain_needs_tls(b: Backend) {
    // STARTTLS required: no mechanisms before TLS, and <auth/> is refused.
    let s = Server::start(Options::new(b));
    s.register("alice@localhost", "alice-pw");
    let mut c = Raw::connect(s.c2s).await;
    let features = c.open().await;
    assert!(
        features.contains("<required/>") && !features.contains("<mechanisms"),
        "{features}"
    );
    c.send(&format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{}</auth>",
        base64_plain("alice", "alice-pw")
    ))
    .await;
    let r = c.expect("</failure>").await;
    assert!(r.contains("<encryption-required/>"), "{r}");
    // After STARTTLS, PLAIN is offered and works.
    let mut c = c.starttls().await;
    let features = c.open().await;
    assert!(
        features.contains("<mechanism>PLAIN</mechanism>"),
        "{features}"
    );
    assert!(
        features.contains("<mechanism>SCRAM-SHA-256</mechanism>"),
        "{features}"
    );
    let jid = c.login_plain("alice", "alice-pw", "tls").await;
    assert_eq!(jid, "alice@localhost/tls");

    // Optional STARTTLS without allow_plain: PLAIN is neither offered nor accepted.
    let s2 = Server::start(Options {
        tls_mode: "starttls",
        ..Options::new(b)
    });
    s2.register("alice@localhost", "alice-pw");
    let mut c = Raw::connect(s2.c2s).await;
    let features = c.open().await;
    assert!(
        !features.contains(">PLAIN<") && features.contains("SCRAM-SHA-1"),
        "{features}"
    );
    c.send(&format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{}</auth>",
        base64_plain("alice", "alice-pw")
    ))
    .await;
    let r = c.expect("</failure>").await;
    assert!(r.contains("<invalid-mechanism/>"), "{r}");
}
both_backends!(plain_auth_only_over_tls, plain_needs_tls);

async fn starttls_injection(b: Backend) {
    let s = Server::start(Options::new(b));
    s.register("alice@localhost", "alice-pw");
    let mut c = Raw::connect(s.c2s).await;
    c.open().await;
    // A man in the middle appends a command after <starttls/> in the clear:
    // it must be discarded, not run inside the TLS stream.
    c.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><stream:stream to='localhost' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")
        .await;
    c.expect("<proceed").await;
    c.expect("/>").await;
    let mut c = c.tls_upgrade().await;
    // The injected header was dropped: the server waits for ours.
    c.expect_silence(Duration::from_millis(300)).await;
    let features = c.open().await;
    assert!(features.contains("<mechanisms"), "{features}");
}
both_backends!(starttls_discards_injected_bytes, starttls_injection);

async fn slow_reader(b: Backend) {
    let s = Server::start(Options {
        c2s_extra: "max_queue_bytes = 65536\nmax_stanza_size = 16384\nshaper = \"none\"\nmax_stanza_rate = 0".into(),
        general_extra: "max_offline_messages = 5000".into(),
        ..Options::plaintext(b)
    });
    for u in ["alice", "bob", "carol"] {
        s.register(&format!("{u}@localhost"), "pw");
    }
    // Bob logs in, says he is available, then never reads again.
    let mut bob = Raw::login(s.c2s, "bob", "pw", "slow").await;
    bob.send("<presence/>").await;
    let mut alice = Raw::login(s.c2s, "alice", "pw", "fast").await;
    let mut carol = Raw::login(s.c2s, "carol", "pw", "ok").await;
    // Far more than the queue bound plus the kernel's socket buffers.
    let body = "x".repeat(8000);
    let mut sent = 0;
    for i in 0..2000 {
        let m = format!(
            "<message to='bob@localhost' type='chat' id='f{i}'><body>{body}</body></message>"
        );
        if alice.try_send(m.as_bytes()).await.is_err() {
            break;
        }
        sent += 1;
        if i % 500 == 0 {
            // Others are served meanwhile.
            alice
                .send(&format!(
                    "<message to='carol@localhost/ok' id='c{i}'><body>hi</body></message>"
                ))
                .await;
            carol.expect(&format!("id='c{i}'")).await;
        }
    }
    assert_eq!(sent, 2000, "alice was blocked");
    // Bob's session was closed for not reading; the server still serves alice.
    alice
        .send("<iq type='get' id='ping' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    alice.expect("id='ping'").await;
    let mut bob_out = String::new();
    // Drain bob: the stream ends with the policy-violation error.
    let out = bob.read_to_close().await;
    bob_out.push_str(&out);
    assert!(
        bob_out.contains("policy-violation"),
        "bob's stream ended without the error"
    );
    // Nothing accepted was lost: what bob did not get is stored offline.
    let mut bob2 = Raw::login(s.c2s, "bob", "pw", "back").await;
    bob2.send("<presence/>").await;
    bob2.expect("urn:xmpp:delay").await;
}
both_backends!(slow_reader_is_closed_and_messages_kept, slow_reader);
