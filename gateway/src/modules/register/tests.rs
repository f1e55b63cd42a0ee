use super::settings::Net;
use crate::hooks::{FeaturesCx, PreAuthIqCx};
use crate::modules::testing::{TestServer, TestSession};
use crate::xml::Element;

const ON: &str = "enabled = true\nrequire_tls = false";

/// A pre-authentication IQ from `ip` as c2s hands it over: the answer
/// as `Ok(child)` or the error condition.
async fn pre(t: &TestServer, xml: &str, ip: &str, tls: bool) -> Result<String, String> {
    let el = Element::parse(xml).expect("iq");
    let cx = PreAuthIqCx {
        ctx: &t.ctx,
        el: &el,
        payload: el.first_child().expect("payload"),
        set: el.attr("type") == Some("set"),
        host: "localhost",
        peer: std::net::SocketAddr::new(ip.parse().expect("ip"), 5000),
        tls,
    };
    match t.ctx.hooks.run_pre_auth_iq(&cx).await {
        None => Err("no handler".into()),
        Some(Ok(child)) => Ok(child.map(|c| c.to_string()).unwrap_or_default()),
        Some(Err(e)) => Err(e.condition.wire_name().to_string()),
    }
}

fn create(user: &str, pw: &str) -> String {
    format!(
        "<iq type='set' id='c'><query xmlns='jabber:iq:register'>\
         <username>{user}</username><password>{pw}</password></query></iq>"
    )
}

const FORM: &str = "<iq type='get' id='f'><query xmlns='jabber:iq:register'/></iq>";

/// The register stream feature, if offered.
fn features(t: &TestServer, tls: bool, authenticated: bool) -> String {
    let cx = FeaturesCx {
        ctx: &t.ctx,
        host: "localhost",
        authenticated,
        tls,
    };
    t.ctx
        .hooks
        .run_features(&cx)
        .iter()
        .map(|e| e.to_string())
        .filter(|e| e.contains("iq-register"))
        .collect()
}

async fn creds(t: &TestServer, user: &str) -> Option<String> {
    t.ctx
        .stores
        .accounts
        .get_credentials("localhost", user)
        .await
        .expect("get")
        .map(|c| c.scram_sha256)
}

#[tokio::test]
async fn form_create_conflict_and_interval() {
    let t = TestServer::new(&[("register", &format!("{ON}\ninstructions = 'Hi'"))]).await;
    let r = pre(&t, FORM, "192.0.2.1", false).await.expect("form");
    assert!(
        r.contains("<query xmlns='jabber:iq:register'>")
            && r.contains("<instructions>Hi</instructions>")
            && r.contains("<username/>")
            && r.contains("<password/>"),
        "{r}"
    );
    assert_eq!(
        pre(&t, &create("Alice", "pw"), "192.0.2.1", false).await,
        Ok(String::new())
    );
    // Nodeprep'd; SCRAM keys stored.
    assert!(creds(&t, "alice").await.is_some_and(|c| !c.is_empty()));
    assert!(t
        .ctx
        .stores
        .accounts
        .account_exists("localhost", "alice")
        .await
        .expect("exists"));
    // Exists: conflict, before the interval is looked at.
    let r = pre(&t, &create("alice", "pw2"), "192.0.2.1", false).await;
    assert_eq!(r, Err("conflict".into()));
    // The same address again: wait.
    let r = pre(&t, &create("bob", "pw"), "192.0.2.1", false).await;
    assert_eq!(r, Err("resource-constraint".into()));
    assert!(creds(&t, "bob").await.is_none());
    // Another address may.
    let r = pre(&t, &create("bob", "pw"), "192.0.2.2", false).await;
    assert_eq!(r, Ok(String::new()));
    // A refused creation does not take the address's slot.
    let r = pre(&t, &create("bob", "pw"), "192.0.2.3", false).await;
    assert_eq!(r, Err("conflict".into()));
    let r = pre(&t, &create("carol", "pw"), "192.0.2.3", false).await;
    assert_eq!(r, Ok(String::new()));
    assert!(t
        .ctx
        .hooks
        .server_features()
        .contains(&"jabber:iq:register"));
}

#[tokio::test]
async fn bad_input_is_not_acceptable() {
    let t = TestServer::new(&[("register", &format!("{ON}\ninterval_per_address = 0"))]).await;
    for xml in [
        create("", "pw"),
        create("a@b", "pw"),
        create("a b", "pw"),
        create("alice", ""),
        "<iq type='set' id='c'><query xmlns='jabber:iq:register'><username>x</username></query></iq>".into(),
        "<iq type='set' id='c'><query xmlns='jabber:iq:register'><password>x</password></query></iq>".into(),
    ] {
        assert_eq!(pre(&t, &xml, "192.0.2.1", false).await, Err("not-acceptable".into()), "{xml}");
    }
    let r = pre(
        &t,
        "<iq type='set' id='c'><query xmlns='jabber:iq:register'><remove/></query></iq>",
        "192.0.2.1",
        false,
    )
    .await;
    assert_eq!(r, Err("not-authorized".into()));
    let r = pre(
        &t,
        "<iq type='get' id='c'><query xmlns='jabber:iq:register'><x/></query></iq>",
        "192.0.2.1",
        false,
    )
    .await;
    assert!(r.is_ok());
    // No interval: two from one address.
    assert_eq!(
        pre(&t, &create("a1", "pw"), "192.0.2.1", false).await,
        Ok(String::new())
    );
    assert_eq!(
        pre(&t, &create("a2", "pw"), "192.0.2.1", false).await,
        Ok(String::new())
    );
}

#[tokio::test]
async fn tls_required_by_default() {
    let t = TestServer::new(&[("register", "enabled = true")]).await;
    assert_eq!(
        pre(&t, FORM, "192.0.2.1", false).await,
        Err("policy-violation".into())
    );
    let r = pre(&t, &create("alice", "pw"), "192.0.2.1", false).await;
    assert_eq!(r, Err("policy-violation".into()));
    assert!(pre(&t, FORM, "192.0.2.1", true).await.is_ok());
    assert_eq!(
        pre(&t, &create("alice", "pw"), "192.0.2.1", true).await,
        Ok(String::new())
    );
    // The stream feature: only with TLS, only before authentication.
    assert_eq!(features(&t, false, false), "");
    assert_eq!(
        features(&t, true, false),
        "<register xmlns='http://jabber.org/features/iq-register'/>"
    );
    assert_eq!(features(&t, true, true), "");
}

#[tokio::test]
async fn policies() {
    let t = TestServer::new(&[("register", &format!("{ON}\npolicy = 'denied'"))]).await;
    assert_eq!(
        pre(&t, FORM, "192.0.2.1", true).await,
        Err("not-allowed".into())
    );
    let r = pre(&t, &create("alice", "pw"), "192.0.2.1", true).await;
    assert_eq!(r, Err("not-allowed".into()));
    assert_eq!(features(&t, true, false), "");
    // Existing accounts may still change their password.
    let a = t.session("bob", "b").await;
    let r = t
        .iq(
            &a,
            "<iq type='set' id='p'><query xmlns='jabber:iq:register'>\
             <username>bob</username><password>new</password></query></iq>",
        )
        .await;
    assert!(r.contains("type='result'"), "{r}");

    let t = TestServer::new(&[(
        "register",
        &format!("{ON}\npolicy = 'allow_list'\nallow_from = ['10.0.0.0/8', '::1']"),
    )])
    .await;
    let r = pre(&t, &create("alice", "pw"), "127.0.0.1", true).await;
    assert_eq!(r, Err("not-allowed".into()));
    assert_eq!(
        pre(&t, &create("alice", "pw"), "10.1.2.3", true).await,
        Ok(String::new())
    );
    assert_eq!(
        pre(&t, &create("bob", "pw"), "::1", true).await,
        Ok(String::new())
    );
    assert!(features(&t, false, false).contains("iq-register"));
}

#[tokio::test]
async fn off_by_default() {
    let t = TestServer::new(&[]).await;
    let a = t.session("alice", "a").await;
    let r = t
        .iq(
            &a,
            "<iq type='get' id='g'><query xmlns='jabber:iq:register'/></iq>",
        )
        .await;
    assert!(r.contains("service-unavailable"), "{r}");
    assert!(!t.ctx.hooks.has_pre_auth_iq("jabber:iq:register"));
    assert!(!t
        .ctx
        .hooks
        .server_features()
        .contains(&"jabber:iq:register"));
    assert_eq!(
        pre(&t, FORM, "192.0.2.1", true).await,
        Err("no handler".into())
    );
    assert_eq!(features(&t, true, false), "");
    // Its settings are checked all the same.
    let text = "[general]\nhosts = ['localhost']\n[modules.register]\npolicy = 'open'\n";
    let err = crate::config::Config::parse(text, std::path::Path::new("t.toml"))
        .expect_err("a bad value is refused");
    assert_eq!(err.key, "modules.register.policy", "{err:?}");
}

async fn get(t: &TestServer, s: &TestSession) -> String {
    t.iq(
        s,
        "<iq type='get' id='g'><query xmlns='jabber:iq:register'/></iq>",
    )
    .await
}

fn change(id: &str, user: &str, pw: &str) -> String {
    format!(
        "<iq type='set' id='{id}' to='localhost'><query xmlns='jabber:iq:register'>\
         <username>{user}</username><password>{pw}</password></query></iq>"
    )
}

const REMOVE: &str =
    "<iq type='set' id='rm'><query xmlns='jabber:iq:register'><remove/></query></iq>";

#[tokio::test]
async fn registered_password_change_and_remove() {
    let t = TestServer::new(&[("register", ON)]).await;
    let a = t.session("alice", "a").await;
    let r = get(&t, &a).await;
    assert!(
        r.contains("<registered/>") && r.contains("<username>alice</username>"),
        "{r}"
    );
    let before = creds(&t, "alice").await;
    let r = t.iq(&a, &change("p1", "alice", "new")).await;
    assert!(r.contains("type='result'"), "{r}");
    let after = creds(&t, "alice").await;
    assert!(after.is_some_and(|c| !c.is_empty()) && creds(&t, "alice").await != before);
    let r = t.iq(&a, &change("p2", "bob", "new")).await;
    assert!(r.contains("forbidden"), "{r}");
    let r = t
        .iq(
            &a,
            "<iq type='set' id='p3'><query xmlns='jabber:iq:register'><password>x</password></query></iq>",
        )
        .await;
    assert!(r.contains("bad-request"), "{r}");
    let r = t.iq(&a, &change("p4", "alice", "")).await;
    assert!(r.contains("not-acceptable"), "{r}");
    let r = t
        .iq(
            &a,
            "<iq type='get' id='o' to='bob@localhost'><query xmlns='jabber:iq:register'/></iq>",
        )
        .await;
    assert!(r.contains("forbidden"), "{r}");

    // Remove: the result, then the session is closed; the rows a
    // closing session writes are swept when it has left.
    let a2 = t.session("alice", "a2").await;
    let r = t.iq(&a, REMOVE).await;
    assert!(r.contains("type='result'"), "{r}");
    assert!(creds(&t, "alice").await.is_none());
    t.close(a).await;
    t.close(a2).await;
    let last = t
        .ctx
        .stores
        .last
        .last_activity_get("localhost", "alice")
        .await
        .expect("last");
    assert!(last.is_none(), "{last:?}");
    assert!(creds(&t, "alice").await.is_none());
}

#[tokio::test]
async fn change_and_remove_can_be_refused() {
    let t = TestServer::new(&[(
        "register",
        &format!("{ON}\nallow_password_change = false\nallow_remove = false"),
    )])
    .await;
    let a = t.session("alice", "a").await;
    let r = t.iq(&a, &change("p", "alice", "new")).await;
    assert!(r.contains("not-allowed"), "{r}");
    let r = t.iq(&a, REMOVE).await;
    assert!(r.contains("not-allowed"), "{r}");
    assert!(creds(&t, "alice").await.is_some());
}

#[test]
fn unknown_keys_are_refused() {
    crate::modules::testing::assert_unknown_key_refused("register", "interval = 1");
}

#[test]
fn bad_values_are_refused() {
    for (setting, key) in [
        ("policy = 'open'", "policy"),
        ("allow_from = ['10.0.0.0/33']", "allow_from"),
        ("allow_from = ['localhost']", "allow_from"),
        ("policy = 'allow_list'", "allow_from"),
        (
            "interval_per_address = '10 parsecs'",
            "interval_per_address",
        ),
        ("interval_per_address = -1", "interval_per_address"),
        ("require_tls = 'yes'", "require_tls"),
    ] {
        let text = format!(
            "[general]\nhosts = ['localhost']\n[modules.register]\nenabled = true\n{setting}\n"
        );
        let err =
            crate::config::Config::parse(&text, std::path::Path::new("t.toml")).expect_err(setting);
        assert_eq!(err.key, format!("modules.register.{key}"), "{err:?}");
    }
    for ok in ["600", "'600s'", "'10m'", "'1h'", "0"] {
        let text = format!(
            "[general]\nhosts = ['localhost']\n[modules.register]\ninterval_per_address = {ok}\n"
        );
        crate::config::Config::parse(&text, std::path::Path::new("t.toml")).expect(ok);
    }
}

#[test]
fn networks() {
    let n = Net::parse("10.0.0.0/8").expect("net");
    assert!(n.contains("10.255.0.1".parse().expect("ip")));
    assert!(!n.contains("11.0.0.1".parse().expect("ip")));
    // IPv4-mapped IPv6 is the IPv4 address.
    assert!(n.contains("::ffff:10.1.1.1".parse().expect("ip")));
    let one = Net::parse("127.0.0.1").expect("net");
    assert!(one.contains("127.0.0.1".parse().expect("ip")));
    assert!(!one.contains("127.0.0.2".parse().expect("ip")));
    let all = Net::parse("0.0.0.0/0").expect("net");
    assert!(all.contains("203.0.113.9".parse().expect("ip")));
    assert!(!all.contains("::1".parse().expect("ip")));
    let v6 = Net::parse("2001:db8::/32").expect("net");
    assert!(v6.contains("2001:db8:1::5".parse().expect("ip")));
    assert!(!v6.contains("2001:db9::5".parse().expect("ip")));
    assert!(Net::parse("::1/128")
        .expect("net")
        .contains("::1".parse().expect("ip")));
    for bad in ["::1/129", "1.2.3.4/33", "1.2.3/8", "x", "1.2.3.4/a"] {
        assert!(Net::parse(bad).is_err(), "{bad}");
    }
}
