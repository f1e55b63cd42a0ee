//! XEP-0077 in-band registration over raw XMPP: the form and the stream
//! feature before authentication, creating an account, `conflict`, the
//! per-address interval (counted in `limit_hit`), logging in with the new
//! account, a password change, `<remove/>` (the stream is closed, the login
//! fails, no row of the account is left in any table); the policies
//! (`denied`, `allow_list`), `require_tls` (only after STARTTLS), and the
//! module off (its default).

use std::time::Duration;

use base64::Engine;

use crate::both_backends;
use crate::harness::{Backend, Options, Server};
use crate::raw::{Raw, Xml};

const NS: &str = "jabber:iq:register";
const FEATURE: &str = "<register xmlns='http://jabber.org/features/iq-register'/>";
const FORM: &str = "<iq type='get' id='form'><query xmlns='jabber:iq:register'/></iq>";
const REMOVE: &str =
    "<iq type='set' id='rm'><query xmlns='jabber:iq:register'><remove/></query></iq>";

fn create(id: &str, user: &str, pw: &str) -> String {
    format!(
        "<iq type='set' id='{id}'><query xmlns='jabber:iq:register'>\
         <username>{user}</username><password>{pw}</password></query></iq>"
    )
}

fn change(id: &str, user: &str, pw: &str) -> String {
    format!(
        "<iq type='set' id='{id}' to='localhost'><query xmlns='jabber:iq:register'>\
         <username>{user}</username><password>{pw}</password></query></iq>"
    )
}

/// A fresh plaintext connection with its stream open: (client, features).
async fn open(s: &Server) -> (Raw, String) {
    let mut c = Raw::connect(s.c2s).await;
    let features = c.open().await;
    (c, features)
}

/// A PLAIN login on a fresh connection: whether it succeeded.
async fn login_ok(s: &Server, user: &str, pw: &str) -> bool {
    let (mut c, _) = open(s).await;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{pw}"));
    c.send(&format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>"
    ))
    .await;
    let x = c
        .take("the SASL outcome", |x| {
            x.is("success", "urn:ietf:params:xml:ns:xmpp-sasl")
                || x.is("failure", "urn:ietf:params:xml:ns:xmpp-sasl")
        })
        .await;
    x.is("success", "urn:ietf:params:xml:ns:xmpp-sasl")
}

async fn metrics(s: &Server) -> String {
    crate::http::get(s.http, "/metrics", None).await.body
}

async fn flow(b: Backend) {
    let s = Server::start(Options {
        extra: "[modules.register]\nenabled = true\nrequire_tls = false\n".into(),
        ..Options::plaintext(b)
    });
    s.register("bob@localhost", "bob-pw");

    // Before authentication: the feature and the form.
    let (mut c, features) = open(&s).await;
    assert!(features.contains(FEATURE), "{features}");
    let r = c.iq("form", FORM).await;
    assert_eq!(r.typ(), "result", "{}", r.raw);
    let q = r.child("query", NS).expect("query");
    for f in ["instructions", "username", "password"] {
        assert!(q.child(f, NS).is_some(), "{f} in {}", r.raw);
    }

    // Create; again: conflict; another from this address: wait.
    let r = c.iq("c1", &create("c1", "alice", "pw1")).await;
    assert_eq!(r.typ(), "result", "{}", r.raw);
    assert_eq!(s.user_rows("accounts", "alice").await, 1);
    let r = c.iq("c2", &create("c2", "alice", "other")).await;
    assert_eq!(r.refusal().0, "conflict", "{}", r.raw);
    let r = c.iq("c3", &create("c3", "carol", "pw")).await;
    let (cond, text) = r.refusal();
    assert_eq!(cond, "resource-constraint", "{}", r.raw);
    assert!(text.contains("600"), "{}", r.raw);
    assert_eq!(s.user_rows("accounts", "carol").await, 0);
    assert!(
        metrics(&s)
            .await
            .contains("limit_hit_total{limit=\"registration_rate\"} 1\n"),
        "registration_rate counted once"
    );
    // Bad input.
    let r = c.iq("c4", &create("c4", "a b", "pw")).await;
    assert_eq!(r.refusal().0, "not-acceptable", "{}", r.raw);
    let r = c.iq("c5", &create("c5", "dave", "")).await;
    assert_eq!(r.refusal().0, "not-acceptable", "{}", r.raw);

    // Log in on the same stream with the new account.
    let jid = c.login_plain("alice", "pw1", "a1").await;
    assert_eq!(jid, "alice@localhost/a1");
    assert!(c.disco_features().await.iter().any(|f| f == NS));
    let r = c
        .iq(
            "g",
            "<iq type='get' id='g'><query xmlns='jabber:iq:register'/></iq>",
        )
        .await;
    assert_eq!(r.typ(), "result", "{}", r.raw);
    let q = r.child("query", NS).expect("query");
    assert!(q.child("registered", NS).is_some(), "{}", r.raw);
    assert!(r.raw.contains("<username>alice</username>"), "{}", r.raw);

    // Password change: another's is forbidden; the own one works.
    let r = c.iq("p0", &change("p0", "bob", "x")).await;
    assert_eq!(r.refusal().0, "forbidden", "{}", r.raw);
    let r = c.iq("p1", &change("p1", "alice", "pw2")).await;
    assert_eq!(r.typ(), "result", "{}", r.raw);
    assert!(
        !login_ok(&s, "alice", "pw1").await,
        "the old password still works"
    );
    let mut a2 = Raw::login(s.c2s, "alice", "pw2", "a2").await;

    // Rows in other modules' tables: a vCard, a roster item, private XML.
    let r = a2
        .iq(
            "v",
            "<iq type='set' id='v'><vCard xmlns='vcard-temp'><FN>A</FN></vCard></iq>",
        )
        .await;
    assert_eq!(r.typ(), "result", "{}", r.raw);
    let r = a2
        .iq(
            "ro",
            "<iq type='set' id='ro'><query xmlns='jabber:iq:roster'>\
             <item jid='bob@localhost'/></query></iq>",
        )
        .await;
    assert_eq!(r.typ(), "result", "{}", r.raw);
    let r = a2
        .iq(
            "pr",
            "<iq type='set' id='pr'><query xmlns='jabber:iq:private'>\
             <x xmlns='a:b'>1</x></query></iq>",
        )
        .await;
    assert_eq!(r.typ(), "result", "{}", r.raw);
    let before: i64 = s.rows_everywhere("alice").await.iter().map(|r| r.1).sum();
    assert!(before >= 4, "rows before the removal: {before}");

    // Remove: the answer, then both streams are closed.
    c.send(REMOVE).await;
    let out = c.read_to_close().await;
    let result = Xml::all(&out)
        .into_iter()
        .find(|x| x.is_iq() && x.id() == "rm")
        .unwrap_or_else(|| panic!("no answer to the removal: {out}"));
    assert_eq!(result.typ(), "result", "{out}");
    let end = Xml::stream_error_in(&out);
    assert_eq!(
        end.stream_error_condition(),
        Some("not-authorized"),
        "{out}"
    );
    assert!(out.contains("the account was removed"), "{out}");
    let out = a2.read_to_close().await;
    assert!(out.contains("not-authorized"), "{out}");
    assert!(
        !login_ok(&s, "alice", "pw2").await,
        "login after the removal"
    );
    // No row left anywhere (what the closing sessions wrote is swept once
    // the last one has left).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let rows = s.rows_everywhere("alice").await;
        if rows.iter().all(|r| r.1 == 0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "rows left: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Bob's are untouched.
    assert_eq!(s.user_rows("accounts", "bob").await, 1);
    assert!(login_ok(&s, "bob", "bob-pw").await);
    let m = metrics(&s).await;
    for op in ["stored", "password", "removed"] {
        assert!(
            m.contains(&format!(
                "module_data_count_total{{module=\"register\",operation=\"{op}\"}} 1"
            )) || m.contains(&format!(
                "module_data_total{{module=\"register\",operation=\"{op}\"}} 1"
            )),
            "module_data {op}: {}",
            m.lines()
                .filter(|l| l.contains("module_data"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}
both_backends!(register_create_login_change_remove, flow);

async fn policies(b: Backend) {
    // Denied: no feature, no account.
    let s = Server::start(Options {
        extra: "[modules.register]\nenabled = true\npolicy = \"denied\"\nrequire_tls = false\n"
            .into(),
        ..Options::plaintext(b)
    });
    let (mut c, features) = open(&s).await;
    assert!(!features.contains("iq-register"), "{features}");
    let r = c.iq("c", &create("c", "alice", "pw")).await;
    assert_eq!(r.refusal().0, "not-allowed", "{}", r.raw);
    assert_eq!(s.user_rows("accounts", "alice").await, 0);
    drop(c);
    drop(s);

    // An allow list without this address (127.0.0.1).
    let s = Server::start(Options {
        extra: "[modules.register]\nenabled = true\npolicy = \"allow_list\"\n\
                allow_from = [\"10.0.0.0/8\", \"::1/128\"]\nrequire_tls = false\n"
            .into(),
        ..Options::plaintext(b)
    });
    let (mut c, _) = open(&s).await;
    let r = c.iq("c", &create("c", "alice", "pw")).await;
    assert_eq!(r.refusal().0, "not-allowed", "{}", r.raw);
    assert_eq!(s.user_rows("accounts", "alice").await, 0);
    drop(c);
    drop(s);

    // With it.
    let s = Server::start(Options {
        extra: "[modules.register]\nenabled = true\npolicy = \"allow_list\"\n\
                allow_from = [\"127.0.0.1/32\"]\nrequire_tls = false\n"
            .into(),
        ..Options::plaintext(b)
    });
    let (mut c, _) = open(&s).await;
    let r = c.iq("c", &create("c", "alice", "pw")).await;
    assert_eq!(r.typ(), "result", "{}", r.raw);
    assert_eq!(s.user_rows("accounts", "alice").await, 1);
}
both_backends!(register_policies_denied_and_allow_list, policies);

async fn tls(b: Backend) {
    // require_tls (the default) on a STARTTLS listener that does not
    // require it: refused in the clear, allowed after STARTTLS.
    let s = Server::start(Options {
        tls_mode: "starttls",
        extra: "[modules.register]\nenabled = true\n".into(),
        ..Options::new(b)
    });
    let (mut c, features) = open(&s).await;
    assert!(!features.contains("iq-register"), "{features}");
    let r = c.iq("c", &create("c", "alice", "pw")).await;
    let (cond, text) = r.refusal();
    assert_eq!(cond, "policy-violation", "{}", r.raw);
    assert!(text.contains("TLS"), "{}", r.raw);
    let mut c = c.starttls().await;
    let features = c.open().await;
    assert!(features.contains(FEATURE), "{features}");
    let r = c.iq("c", &create("c", "alice", "pw")).await;
    assert_eq!(r.typ(), "result", "{}", r.raw);
    drop(c);
    drop(s);

    // A listener requiring STARTTLS accepts nothing else before it.
    let s = Server::start(Options {
        extra: "[modules.register]\nenabled = true\nrequire_tls = false\n".into(),
        ..Options::new(b)
    });
    let (mut c, _) = open(&s).await;
    c.send(FORM).await;
    let out = c.read_to_close().await;
    assert!(out.contains("not-authorized"), "{out}");
}
both_backends!(register_requires_tls, tls);

async fn off(b: Backend) {
    let s = Server::start(Options::plaintext(b));
    s.register("alice@localhost", "pw");
    let (mut c, features) = open(&s).await;
    assert!(!features.contains("iq-register"), "{features}");
    // Before authentication: as any stanza, a stream error.
    c.send(FORM).await;
    let out = c.read_to_close().await;
    let end = Xml::stream_error_in(&out);
    assert_eq!(
        end.stream_error_condition(),
        Some("not-authorized"),
        "{out}"
    );
    // After: service-unavailable, and not in disco.
    let mut a = Raw::login(s.c2s, "alice", "pw", "a").await;
    let r = a
        .iq(
            "g",
            "<iq type='get' id='g'><query xmlns='jabber:iq:register'/></iq>",
        )
        .await;
    assert_eq!(r.refusal().0, "service-unavailable", "{}", r.raw);
    let r = a.iq("rm", REMOVE).await;
    assert_eq!(r.refusal().0, "service-unavailable", "{}", r.raw);
    assert!(!a.disco_features().await.iter().any(|f| f == NS));
    assert_eq!(s.user_rows("accounts", "alice").await, 1);
}
both_backends!(register_off_by_default, off);
