//! XEP-0313 message archives over raw XMPP: 500 messages exchanged, then
//! paged through in order from a new resource with RSM (`first`, `last`,
//! `complete`), each result's id the stanza-id the recipient saw; a later
//! page sees new messages; a preference of `never` keeps nothing; the page
//! cap; the module's events in /metrics; disco; the module turned off; and
//! removing the account removes its archive.

use crate::both_backends;
use crate::harness::{Backend, Options, Server};
use crate::raw::{Raw, Xml};

const MAM: &str = "urn:xmpp:mam:2";
const RSM: &str = "http://jabber.org/protocol/rsm";
const SID: &str = "urn:xmpp:sid:0";
const PW: &str = "pw";
const TOTAL: usize = 500;

/// A page: its results (id, body) and the `<fin/>`.
struct Page {
    items: Vec<(String, String)>,
    fin: Xml,
}

impl Page {
    fn rsm(&self, name: &str) -> Option<String> {
        self.fin
            .child("set", RSM)
            .and_then(|s| s.child(name, RSM))
            .map(|x| x.text.clone())
    }

    fn complete(&self) -> bool {
        self.fin.attr("complete") == Some("true")
    }
}

async fn page(c: &mut Raw, id: &str, form: &str, rsm: &str) -> Page {
    c.send(&format!(
        "<iq type='set' id='{id}'><query xmlns='{MAM}' queryid='{id}'>{form}\
         <set xmlns='{RSM}'>{rsm}</set></query></iq>"
    ))
    .await;
    let answer = c
        .take(&format!("the answer to {id}"), |x| {
            x.is_iq() && x.id() == id
        })
        .await;
    assert_eq!(answer.typ(), "result", "{}", answer.raw);
    let fin = answer.child("fin", MAM).expect("fin").clone();
    // The results came before the answer, in order.
    let mut items = Vec::new();
    while let Some(m) = c.take_buffered_now(|x| {
        x.is_message()
            && x.child("result", MAM)
                .is_some_and(|r| r.attr("queryid") == Some(id))
    }) {
        let r = m.child("result", MAM).expect("result");
        let fwd = r
            .child("forwarded", "urn:xmpp:forward:0")
            .expect("forwarded");
        assert!(fwd.child("delay", "urn:xmpp:delay").is_some(), "{}", m.raw);
        let inner = fwd.child("message", "jabber:client").expect("message");
        items.push((
            r.attr("id").unwrap_or_default().to_string(),
            inner.body().unwrap_or_default().to_string(),
        ));
    }
    Page { items, fin }
}

fn stanza_id(m: &Xml, by: &str) -> Option<String> {
    m.children_named("stanza-id", SID)
        .find(|s| s.attr("by") == Some(by))
        .and_then(|s| s.attr("id"))
        .map(str::to_string)
}

async fn round_trip(b: Backend) {
    let s = Server::start(Options::plaintext(b));
    s.register("alice@localhost", PW);
    s.register("bob@localhost", PW);
    let mut alice = Raw::login(s.c2s, "alice", PW, "a1").await;
    let mut bob = Raw::login(s.c2s, "bob", PW, "b").await;

    // Alternating, each delivered before the next is sent: one order.
    let mut alice_ids = Vec::new();
    for i in 0..TOTAL {
        let body = format!("m{i}");
        let (from, to, to_jid) = if i % 2 == 0 {
            (&mut alice, &mut bob, "bob@localhost/b")
        } else {
            (&mut bob, &mut alice, "alice@localhost/a1")
        };
        from.send(&format!(
            "<message to='{to_jid}' type='chat'><body>{body}</body></message>"
        ))
        .await;
        let got = to
            .take(&body, |x| x.is_message() && x.body() == Some(&body))
            .await;
        let by = crate::raw::bare(to_jid);
        let sid = stanza_id(&got, by).unwrap_or_else(|| panic!("no stanza-id: {}", got.raw));
        if i % 2 == 1 {
            alice_ids.push((sid, body));
        }
    }
    drop(alice);

    // A new resource pages through all 500, oldest first.
    let mut alice = Raw::login(s.c2s, "alice", PW, "a2").await;
    let mut all = Vec::new();
    let mut after = String::new();
    let mut pages = 0;
    loop {
        let rsm = if after.is_empty() {
            "<max>120</max>".to_string()
        } else {
            format!("<max>120</max><after>{after}</after>")
        };
        let p = page(&mut alice, &format!("p{pages}"), "", &rsm).await;
        pages += 1;
        assert_eq!(
            p.rsm("first").as_deref(),
            p.items.first().map(|i| i.0.as_str())
        );
        assert_eq!(
            p.rsm("last").as_deref(),
            p.items.last().map(|i| i.0.as_str())
        );
        let done = p.complete();
        assert_eq!(
            done,
            all.len() + p.items.len() == TOTAL,
            "complete only on the last page"
        );
        let last = p.rsm("last");
        all.extend(p.items);
        if done {
            break;
        }
        after = last.expect("last");
        assert!(pages < 10, "too many pages");
    }
    assert_eq!(pages, 5);
    let bodies: Vec<_> = all.iter().map(|(_, b)| b.clone()).collect();
    let want: Vec<_> = (0..TOTAL).map(|i| format!("m{i}")).collect();
    assert_eq!(bodies, want, "alice's archive in order");
    // The messages alice received carry the id her archive has for them.
    for (sid, body) in &alice_ids {
        assert!(all.contains(&(sid.clone(), body.clone())), "{body}: {sid}");
    }
    assert_eq!(s.user_rows("mam_messages", "alice").await, TOTAL as i64);

    // New messages: a query after the last page sees them.
    let last = all.last().expect("last").0.clone();
    for i in 0..3 {
        bob.send(&format!(
            "<message to='alice@localhost' type='chat'><body>new{i}</body></message>"
        ))
        .await;
    }
    // Bob's messages are routed (and queued to the archive) before this.
    bob.settle().await;
    let p = page(&mut alice, "new", "", &format!("<after>{last}</after>")).await;
    let bodies: Vec<_> = p.items.iter().map(|(_, b)| b.as_str()).collect();
    assert_eq!(bodies, ["new0", "new1", "new2"]);
    assert!(p.complete());

    // The last page, backwards, with a `with` filter.
    let form = "<x xmlns='jabber:x:data' type='submit'>\
                <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field>\
                <field var='with'><value>bob@localhost</value></field></x>";
    let p = page(&mut alice, "back", form, "<max>2</max><before/>").await;
    let bodies: Vec<_> = p.items.iter().map(|(_, b)| b.as_str()).collect();
    assert_eq!(bodies, ["new1", "new2"]);
    assert!(!p.complete());

    // Archiving off by preference: nothing is stored, nothing stamped.
    let r = alice
        .iq(
            "prefs",
            &format!("<iq type='set' id='prefs'><prefs xmlns='{MAM}' default='never'/></iq>"),
        )
        .await;
    assert_eq!(r.typ(), "result", "{}", r.raw);
    let before = s.user_rows("mam_messages", "alice").await;
    bob.send("<message to='alice@localhost/a2' type='chat'><body>unkept</body></message>")
        .await;
    let got = alice
        .take("unkept", |x| x.is_message() && x.body() == Some("unkept"))
        .await;
    assert_eq!(stanza_id(&got, "alice@localhost"), None, "{}", got.raw);
    let p = page(&mut alice, "after-off", "", "<max>10</max><before/>").await;
    assert!(!p.items.iter().any(|(_, b)| b == "unkept"));
    assert_eq!(s.user_rows("mam_messages", "alice").await, before);

    // The page cap (250 by default), counted.
    let p = page(&mut alice, "big", "", "<max>100000</max>").await;
    assert_eq!(p.items.len(), 250);
    let metrics = crate::http::get(s.http, "/metrics", None).await.body;
    for want in [
        "limit_hit_total{limit=\"mam_page\"} 1\n",
        "module_data_total{module=\"mam\",operation=\"stored\"}",
        "module_data_total{module=\"mam\",operation=\"queried\"}",
        "module_data_rows_total{module=\"mam\",operation=\"queried\"}",
        "module_data_seconds_bucket{module=\"mam\",operation=\"queried\"",
        "module_handler_total{module=\"mam\",operation=\"stamp\"}",
        "storage_query_total{backend=",
    ] {
        assert!(metrics.contains(want), "{want} missing from /metrics");
    }

    // Disco on the account; removal takes the archive and the preferences.
    let r = alice
        .iq(
            "disco",
            "<iq type='get' id='disco' to='alice@localhost'>\
             <query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
        )
        .await;
    for f in [MAM, "urn:xmpp:mam:2#extended", SID] {
        assert!(r.raw.contains(&format!("var='{f}'")), "{f}: {}", r.raw);
    }
    drop(alice);
    let bob_rows = s.user_rows("mam_messages", "bob").await;
    assert!(bob_rows > 0);
    let out = s.cli(&["account", "remove", "alice@localhost"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(s.user_rows("mam_messages", "alice").await, 0);
    assert_eq!(s.user_rows("mam_prefs", "alice").await, 0);
    assert_eq!(s.user_rows("mam_messages", "bob").await, bob_rows);
}
both_backends!(
    mam_500_messages_paged_in_order_prefs_and_removal,
    round_trip
);

async fn off(b: Backend) {
    let s = Server::start(Options {
        extra: "[modules.mam]\nenabled = false\n".into(),
        ..Options::plaintext(b)
    });
    s.register("alice@localhost", PW);
    s.register("bob@localhost", PW);
    let mut alice = Raw::login(s.c2s, "alice", PW, "a").await;
    let mut bob = Raw::login(s.c2s, "bob", PW, "b").await;
    bob.send("<message to='alice@localhost/a' type='chat'><body>hi</body></message>")
        .await;
    let got = alice
        .take("hi", |x| x.is_message() && x.body() == Some("hi"))
        .await;
    assert!(!got.raw.contains(SID), "{}", got.raw);
    let r = alice
        .iq(
            "q",
            &format!("<iq type='set' id='q'><query xmlns='{MAM}'/></iq>"),
        )
        .await;
    assert_eq!(r.refusal().0, "service-unavailable", "{}", r.raw);
    let r = alice
        .iq(
            "disco",
            "<iq type='get' id='disco' to='alice@localhost'>\
             <query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
        )
        .await;
    assert!(!r.raw.contains(MAM), "{}", r.raw);
    assert_eq!(s.user_rows("mam_messages", "alice").await, 0);
}
both_backends!(mam_disabled_is_service_unavailable, off);
