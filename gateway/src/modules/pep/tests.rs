use std::time::Duration;

use crate::modules::testing::{TestServer, TestSession};

const NICK: &str = "http://jabber.org/protocol/nick";
const BOOKMARKS: &str = "urn:xmpp:bookmarks:1";

/// alice and bob subscribed both ways, through the real handshake.
async fn friends(t: &TestServer, a: &TestSession, b: &TestSession) {
    for (x, y, xname, yname) in [(a, b, "alice", "bob"), (b, a, "bob", "alice")] {
        t.send(
            x,
            &format!("<presence to='{yname}@localhost' type='subscribe'/>"),
        )
        .await;
        t.send(
            y,
            &format!("<presence to='{xname}@localhost' type='subscribed'/>"),
        )
        .await;
    }
    let _ = t.take_all(a);
    let _ = t.take_all(b);
}

/// A disco#info query listing `features` (and one identity).
fn disco_query(features: &[&str], node: Option<&str>) -> String {
    let node = node.map(|n| format!(" node='{n}'")).unwrap_or_default();
    let mut q = format!(
        "<query xmlns='http://jabber.org/protocol/disco#info'{node}><identity category='client' type='pc' name='test'/>"
    );
    for f in features {
        q.push_str(&format!("<feature var='{f}'/>"));
    }
    q.push_str("</query>");
    q
}

fn ver(features: &[&str]) -> String {
    let q = disco_query(features, None);
    let doc = roxmltree::Document::parse(&q).expect("xml");
    super::caps::sha1_ver(doc.root_element()).expect("hashable")
}

/// Sends available presence with caps for `features` and answers the
/// server's disco#info query (if it asks) with them.
async fn caps_presence(
    t: &TestServer,
    s: &TestSession,
    features: &[&str],
    answer_ver: Option<&str>,
) -> Vec<String> {
    let v = ver(features);
    t.send(
        s,
        &format!("<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='urn:test' ver='{v}'/></presence>"),
    )
    .await;
    let mut seen = Vec::new();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let got = t.take_all(s);
        let query = got
            .iter()
            .find(|x| x.contains("disco#info") && x.contains("type='get'"))
            .cloned();
        seen.extend(got);
        if let Some(q) = query {
            let id = q
                .split("id='")
                .nth(1)
                .and_then(|r| r.split('\'').next())
                .expect("id");
            assert!(q.contains(&format!("node='urn:test#{v}'")), "{q}");
            let node = format!("urn:test#{}", answer_ver.unwrap_or(&v));
            t.send(
                s,
                &format!(
                    "<iq type='result' id='{id}' to='localhost'>{}</iq>",
                    disco_query(features, Some(&node))
                ),
            )
            .await;
            for _ in 0..50 {
                tokio::time::sleep(Duration::from_millis(5)).await;
                seen.extend(t.take_all(s));
            }
            return seen;
        }
    }
    seen
}

fn publish(id: &str, node: &str, item_id: Option<&str>, payload: &str, options: &str) -> String {
    let item_id = item_id.map(|i| format!(" id='{i}'")).unwrap_or_default();
    let options = if options.is_empty() {
        String::new()
    } else {
        format!(
            "<publish-options><x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>\
             {options}</x></publish-options>"
        )
    };
    format!(
        "<iq type='set' id='{id}'><pubsub xmlns='http://jabber.org/protocol/pubsub'>\
         <publish node='{node}'><item{item_id}>{payload}</item></publish>{options}</pubsub></iq>"
    )
}

fn field(var: &str, value: &str) -> String {
    format!("<field var='{var}'><value>{value}</value></field>")
}

fn items(id: &str, to: &str, node: &str, extra: &str) -> String {
    format!(
        "<iq type='get' id='{id}' to='{to}'><pubsub xmlns='http://jabber.org/protocol/pubsub'>\
         <items node='{node}'{extra}/></pubsub></iq>"
    )
}

fn nick(n: &str) -> String {
    format!("<nick xmlns='{NICK}'>{n}</nick>")
}

#[tokio::test]
async fn publish_notifies_interested_readers_only() {
    let t = TestServer::new(&[]).await;
    let a = t.session("alice", "a").await;
    let b = t.session("bob", "b").await;
    let c = t.session("carol", "c").await;
    friends(&t, &a, &b).await;
    let notify = format!("{NICK}+notify");
    caps_presence(&t, &b, &[&notify], None).await;
    caps_presence(&t, &c, &[&notify], None).await;
    // Alice, without caps, is not interested (filtered notifications).
    t.send(&a, "<presence/>").await;
    let _ = (t.take_all(&a), t.take_all(&b), t.take_all(&c));
    let r = t
        .iq(&a, &publish("p1", NICK, Some("current"), &nick("Ali"), ""))
        .await;
    assert!(
        r.contains("type='result'") && r.contains("<item id='current'/>"),
        "{r}"
    );
    let to_bob = t.take_all(&b);
    assert!(
        to_bob.iter().any(|x| x.contains("type='headline'")
            && x.contains("from='alice@localhost'")
            && x.contains("to='bob@localhost/b'")
            && x.contains("<items node='http://jabber.org/protocol/nick'><item id='current'><nick xmlns='http://jabber.org/protocol/nick'>Ali</nick>")),
        "{to_bob:?}"
    );
    assert!(t.take_all(&c).is_empty(), "carol is no contact");
    assert!(t.take_all(&a).is_empty(), "alice did not ask");
    // Verified: the hash is cached, and a second resource of bob with the
    // same caps is not asked; it gets the last item at once.
    let pep = t.ctx.hooks.state::<super::Pep>().expect("pep on");
    assert!(pep.caps.cached(&ver(&[&notify])).is_some());
    let b2 = t.session("bob", "b2").await;
    t.send(
        &b2,
        &format!("<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='urn:test' ver='{}'/></presence>", ver(&[&notify])),
    )
    .await;
    let got = t.take_all(&b2);
    assert!(!got.iter().any(|x| x.contains("disco#info")), "{got:?}");
    assert!(
        got.iter()
            .any(|x| x.contains("type='headline'") && x.contains(">Ali</nick>")),
        "{got:?}"
    );
    // Item ids are made up when missing; the item replaces (max 1).
    let r = t.iq(&a, &publish("p2", NICK, None, &nick("Al"), "")).await;
    assert!(r.contains("<item id='"), "{r}");
    let r = t.iq(&b, &items("g", "alice@localhost", NICK, "")).await;
    assert!(
        r.contains(">Al</nick>") && !r.contains(">Ali</nick>"),
        "{r}"
    );
}

#[tokio::test]
async fn a_wrong_hash_is_not_cached() {
    let t = TestServer::new(&[]).await;
    let a = t.session("alice", "a").await;
    let b = t.session("bob", "b").await;
    friends(&t, &a, &b).await;
    let notify = format!("{NICK}+notify");
    // Bob's answer lists other features than his ver says.
    t.send(
        &b,
        "<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='urn:test' ver='bogus'/></presence>",
    )
    .await;
    let mut query = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(5)).await;
        if let Some(q) = t
            .take_all(&b)
            .into_iter()
            .find(|x| x.contains("disco#info"))
        {
            query = Some(q);
            break;
        }
    }
    let q = query.expect("a disco#info query");
    let id = q
        .split("id='")
        .nth(1)
        .and_then(|r| r.split('\'').next())
        .expect("id");
    t.send(
        &b,
        &format!(
            "<iq type='result' id='{id}' to='localhost'>{}</iq>",
            disco_query(&[&notify], None)
        ),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let pep = t.ctx.hooks.state::<super::Pep>().expect("pep on");
    assert!(pep.caps.cached("bogus").is_none());
    // Still good for bob's resource itself.
    assert!(pep.caps.interested("bob@localhost/b", NICK));
    let _ = t.take_all(&b);
    let r = t
        .iq(&a, &publish("p", NICK, Some("i"), &nick("x"), ""))
        .await;
    assert!(r.contains("type='result'"), "{r}");
    assert!(t.take_all(&b).iter().any(|x| x.contains("headline")));
}

#[tokio::test]
async fn access_models() {
    let t = TestServer::new(&[]).await;
    let a = t.session("alice", "a").await;
    let b = t.session("bob", "b").await;
    let c = t.session("carol", "c").await;
    friends(&t, &a, &b).await;
    let r = t
        .iq(&a, &publish("p1", NICK, Some("current"), &nick("Ali"), ""))
        .await;
    assert!(r.contains("type='result'"), "{r}");
    // Presence: bob yes, carol no.
    let r = t.iq(&b, &items("g1", "alice@localhost", NICK, "")).await;
    assert!(r.contains(">Ali</nick>"), "{r}");
    let r = t.iq(&c, &items("g2", "alice@localhost", NICK, "")).await;
    assert!(
        r.contains("not-authorized") && r.contains("presence-subscription-required"),
        "{r}"
    );
    // Open: anyone.
    let r = t
        .iq(
            &a,
            &publish(
                "p2",
                "urn:open",
                Some("1"),
                "<x xmlns='urn:open'/>",
                &field("pubsub#access_model", "open"),
            ),
        )
        .await;
    assert!(r.contains("type='result'"), "{r}");
    let r = t
        .iq(&c, &items("g3", "alice@localhost", "urn:open", ""))
        .await;
    assert!(
        r.contains("<item id='1'><x xmlns='urn:open'/></item>"),
        "{r}"
    );
    // Whitelist (bookmarks): the owner only.
    let opts = [
        field("pubsub#persist_items", "true"),
        field("pubsub#max_items", "max"),
        field("pubsub#send_last_published_item", "never"),
        field("pubsub#access_model", "whitelist"),
    ]
    .concat();
    let conf = format!(
        "<conference xmlns='{BOOKMARKS}' name='R' autojoin='true'><nick>al</nick></conference>"
    );
    for room in ["r1@muc.localhost", "r2@muc.localhost"] {
        let r = t
            .iq(&a, &publish("pb", BOOKMARKS, Some(room), &conf, &opts))
            .await;
        assert!(r.contains("type='result'"), "{r}");
    }
    let r = t
        .iq(&b, &items("g4", "alice@localhost", BOOKMARKS, ""))
        .await;
    assert!(
        r.contains("not-allowed") && r.contains("closed-node"),
        "{r}"
    );
    let r = t
        .iq(&a, &items("g5", "alice@localhost", BOOKMARKS, ""))
        .await;
    assert!(
        r.contains("id='r1@muc.localhost'") && r.contains("id='r2@muc.localhost'"),
        "{r}"
    );
    let r = t.iq(&a, &format!(
        "<iq type='get' id='g6'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='{BOOKMARKS}'><item id='r2@muc.localhost'/></items></pubsub></iq>"
    )).await;
    assert!(
        r.contains("id='r2@muc.localhost'") && !r.contains("r1@"),
        "{r}"
    );
    let r = t
        .iq(
            &a,
            &items("g7", "alice@localhost", BOOKMARKS, " max_items='1'"),
        )
        .await;
    assert!(
        r.contains("id='r2@muc.localhost'") && !r.contains("r1@"),
        "{r}"
    );
    // Only the owner publishes; no such node; no such account.
    let r = t
        .iq(
            &b,
            &publish("p3", NICK, None, &nick("x"), "").replace("<iq ", "<iq to='alice@localhost' "),
        )
        .await;
    assert!(r.contains("forbidden"), "{r}");
    let r = t
        .iq(&b, &items("g8", "alice@localhost", "urn:none", ""))
        .await;
    assert!(r.contains("item-not-found"), "{r}");
    let r = t.iq(&b, &items("g9", "nobody@localhost", NICK, "")).await;
    assert!(r.contains("service-unavailable"), "{r}");
}

#[tokio::test]
async fn preconditions_and_configure() {
    let t = TestServer::new(&[]).await;
    let a = t.session("alice", "a").await;
    let r = t
        .iq(
            &a,
            &publish("p1", "urn:n", Some("1"), "<x xmlns='urn:n'/>", ""),
        )
        .await;
    assert!(r.contains("type='result'"), "{r}");
    let wl = field("pubsub#access_model", "whitelist");
    let r = t
        .iq(
            &a,
            &publish("p2", "urn:n", Some("2"), "<x xmlns='urn:n'/>", &wl),
        )
        .await;
    assert!(
        r.contains("conflict") && r.contains("precondition-not-met"),
        "{r}"
    );
    // What Conversations does next: configure, then publish again.
    let r = t
        .iq(&a, "<iq type='get' id='c1'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure node='urn:n'/></pubsub></iq>")
        .await;
    assert!(
        r.contains("var='pubsub#access_model'") && r.contains("<value>presence</value>"),
        "{r}"
    );
    let r = t
        .iq(&a, &format!(
            "<iq type='set' id='c2'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure node='urn:n'>\
             <x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#node_config</value></field>\
             {wl}{}</x></configure></pubsub></iq>", field("pubsub#max_items", "2")))
        .await;
    assert!(r.contains("type='result'"), "{r}");
    for i in 2..5 {
        let r = t
            .iq(
                &a,
                &publish(
                    &format!("p{i}"),
                    "urn:n",
                    Some(&i.to_string()),
                    "<x xmlns='urn:n'/>",
                    &wl,
                ),
            )
            .await;
        assert!(r.contains("type='result'"), "{r}");
    }
    let r = t.iq(&a, &items("g", "alice@localhost", "urn:n", "")).await;
    assert!(
        r.contains("id='3'") && r.contains("id='4'") && !r.contains("id='2'"),
        "{r}"
    );
    // Create: a second time is a conflict; delete.
    let create = "<iq type='set' id='k1'><pubsub xmlns='http://jabber.org/protocol/pubsub'><create node='urn:k'/></pubsub></iq>";
    let r = t.iq(&a, create).await;
    assert!(r.contains("type='result'"), "{r}");
    let r = t.iq(&a, &create.replace("k1", "k2")).await;
    assert!(r.contains("conflict"), "{r}");
    let del = "<iq type='set' id='d1'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><delete node='urn:k'/></pubsub></iq>";
    let r = t.iq(&a, del).await;
    assert!(r.contains("type='result'"), "{r}");
    let r = t.iq(&a, &del.replace("d1", "d2")).await;
    assert!(r.contains("item-not-found"), "{r}");
}

#[tokio::test]
async fn retract_notifies() {
    let t = TestServer::new(&[]).await;
    let a = t.session("alice", "a").await;
    let a2 = t.session("alice", "a2").await;
    let notify = format!("{BOOKMARKS}+notify");
    caps_presence(&t, &a2, &[&notify], None).await;
    let conf = format!("<conference xmlns='{BOOKMARKS}'/>");
    let opts = field("pubsub#access_model", "whitelist");
    let r = t
        .iq(&a, &publish("p", BOOKMARKS, Some("r@m"), &conf, &opts))
        .await;
    assert!(r.contains("type='result'"), "{r}");
    let got = t.take_all(&a2);
    assert!(got.iter().any(|x| x.contains("<item id='r@m'>")), "{got:?}");
    let r = t.iq(&a, &format!(
        "<iq type='set' id='x'><pubsub xmlns='http://jabber.org/protocol/pubsub'><retract node='{BOOKMARKS}' notify='true'><item id='r@m'/></retract></pubsub></iq>"
    )).await;
    assert!(r.contains("type='result'"), "{r}");
    let got = t.take_all(&a2);
    assert!(
        got.iter().any(|x| x.contains("<retract id='r@m'/>")),
        "{got:?}"
    );
    let r = t.iq(&a, &format!(
        "<iq type='set' id='y'><pubsub xmlns='http://jabber.org/protocol/pubsub'><retract node='{BOOKMARKS}'><item id='r@m'/></retract></pubsub></iq>"
    )).await;
    assert!(r.contains("item-not-found"), "{r}");
}

#[tokio::test]
async fn limits() {
    let t = TestServer::new(&[("pep", "max_item_bytes = 100\nmax_nodes = 2")]).await;
    let a = t.session("alice", "a").await;
    let big = format!("<x xmlns='urn:a'>{}</x>", "y".repeat(100));
    let r = t.iq(&a, &publish("p1", "urn:a", None, &big, "")).await;
    assert!(
        r.contains("not-acceptable") && r.contains("payload-too-big"),
        "{r}"
    );
    for n in ["urn:a", "urn:b"] {
        let r = t
            .iq(&a, &publish("p", n, None, "<x xmlns='urn:a'/>", ""))
            .await;
        assert!(r.contains("type='result'"), "{r}");
    }
    let r = t
        .iq(&a, &publish("p3", "urn:c", None, "<x xmlns='urn:a'/>", ""))
        .await;
    assert!(
        r.contains("resource-constraint") && r.contains("max-nodes-exceeded"),
        "{r}"
    );
    // No payload, two payloads.
    let r = t.iq(&a, &publish("p4", "urn:a", None, "", "")).await;
    assert!(r.contains("bad-request"), "{r}");
    let r = t
        .iq(
            &a,
            &publish(
                "p5",
                "urn:a",
                None,
                "<x xmlns='urn:a'/><y xmlns='urn:a'/>",
                "",
            ),
        )
        .await;
    assert!(r.contains("invalid-payload"), "{r}");
}

#[tokio::test]
async fn disco_advertises_pep_and_off_means_unavailable() {
    let t = TestServer::new(&[]).await;
    let a = t.session("alice", "a").await;
    let r = t.iq(&a, "<iq type='get' id='d' to='alice@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>").await;
    assert!(
        r.contains("category='pubsub'") && r.contains("type='pep'"),
        "{r}"
    );
    assert!(
        r.contains("http://jabber.org/protocol/pubsub#publish-options"),
        "{r}"
    );
    let t = TestServer::new(&[("pep", "enabled = false")]).await;
    let a = t.session("alice", "a").await;
    let r = t.iq(&a, "<iq type='get' id='d' to='alice@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>").await;
    assert!(!r.contains("pubsub"), "{r}");
    let r = t.iq(&a, &publish("p", NICK, None, &nick("x"), "")).await;
    assert!(r.contains("service-unavailable"), "{r}");
}

#[tokio::test]
async fn removing_the_account_removes_its_nodes() {
    let t = TestServer::new(&[]).await;
    let a = t.session("alice", "a").await;
    let r = t.iq(&a, &publish("p", NICK, None, &nick("x"), "")).await;
    assert!(r.contains("type='result'"), "{r}");
    let store = &t.ctx.stores.pep;
    assert_eq!(
        store
            .pep_nodes("localhost", "alice")
            .await
            .expect("nodes")
            .len(),
        1
    );
    t.ctx
        .stores
        .accounts
        .remove_account("localhost", "alice")
        .await
        .expect("remove");
    assert!(store
        .pep_nodes("localhost", "alice")
        .await
        .expect("nodes")
        .is_empty());
    assert!(store
        .pep_items("localhost", "alice", NICK, None)
        .await
        .expect("items")
        .is_empty());
}

#[test]
fn unknown_keys_are_refused() {
    crate::modules::testing::assert_unknown_key_refused("pep", "max_size = 1");
}
