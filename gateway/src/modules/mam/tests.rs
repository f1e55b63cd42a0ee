use crate::modules::testing::{assert_unknown_key_refused, TestServer, TestSession};

async fn chat(t: &TestServer, from: &TestSession, to: &str, body: &str) {
    t.send(
        from,
        &format!("<message to='{to}' type='chat'><body>{body}</body></message>"),
    )
    .await;
}

/// A query's result messages and its IQ answer.
async fn query(t: &TestServer, s: &TestSession, id: &str, inner: &str) -> (Vec<String>, String) {
    t.send(
        s,
        &format!("<iq type='set' id='{id}'><query xmlns='urn:xmpp:mam:2' queryid='q-{id}'>{inner}</query></iq>"),
    )
    .await;
    let all = t.take_all(s);
    let results = all
        .iter()
        .filter(|x| x.contains("<result xmlns='urn:xmpp:mam:2'"))
        .cloned()
        .collect();
    let answer = all
        .into_iter()
        .find(|x| x.contains(&format!("id='{id}'")) && x.starts_with("<iq"))
        .unwrap_or_else(|| panic!("no answer to {id}"));
    (results, answer)
}

/// A session that sent its initial presence (so messages reach it).
async fn online(t: &TestServer, user: &str, resource: &str) -> TestSession {
    let s = t.session(user, resource).await;
    t.send(&s, "<presence/>").await;
    let _ = t.take_all(&s);
    s
}

fn rsm(inner: &str) -> String {
    format!("<set xmlns='http://jabber.org/protocol/rsm'>{inner}</set>")
}

fn between<'a>(s: &'a str, open: &str, close: &str) -> &'a str {
    let a = s.find(open).map(|i| i + open.len()).unwrap_or(0);
    let b = s[a..].find(close).map(|i| a + i).unwrap_or(a);
    &s[a..b]
}

#[tokio::test]
async fn both_ends_archive_and_the_recipient_copy_is_stamped() {
    let t = TestServer::new(&[]).await;
    let a = t.session("alice", "a").await;
    let b = online(&t, "bob", "b").await;
    chat(&t, &a, "bob@localhost", "one").await;
    let got = t.take_all(&b);
    let msg = got.iter().find(|x| x.contains("one")).expect("delivered");
    assert!(
        msg.contains("<stanza-id xmlns='urn:xmpp:sid:0' by='bob@localhost' id='"),
        "{msg}"
    );
    let sid = between(msg, "by='bob@localhost' id='", "'").to_string();
    let (results, fin) = query(&t, &b, "q1", "").await;
    assert_eq!(results.len(), 1, "{results:?}");
    assert!(
        results[0].contains(&format!("id='{sid}'")),
        "{}",
        results[0]
    );
    assert!(results[0].contains("queryid='q-q1'"));
    assert!(results[0]
        .contains("<forwarded xmlns='urn:xmpp:forward:0'><delay xmlns='urn:xmpp:delay' stamp='"));
    assert!(
        results[0].contains("<message xmlns='jabber:client'"),
        "{}",
        results[0]
    );
    assert!(
        fin.contains("complete='true'") && fin.contains(&format!("<first>{sid}</first>")),
        "{fin}"
    );
    let (results, _) = query(&t, &a, "q2", "").await;
    assert_eq!(results.len(), 1, "alice keeps her sent copy: {results:?}");
}

#[tokio::test]
async fn a_forged_stanza_id_is_replaced() {
    let t = TestServer::new(&[]).await;
    let a = t.session("alice", "a").await;
    let b = online(&t, "bob", "b").await;
    t.send(
        &a,
        "<message to='bob@localhost' type='chat'><body>x</body>\
         <stanza-id xmlns='urn:xmpp:sid:0' by='bob@localhost' id='forged'/></message>",
    )
    .await;
    let got = t.take_all(&b).join("");
    assert!(!got.contains("forged"), "{got}");
    assert_eq!(got.matches("urn:xmpp:sid:0").count(), 1, "{got}");
}

#[tokio::test]
async fn paging_with_rsm_forwards_and_backwards() {
    let t = TestServer::new(&[]).await;
    let a = t.session("alice", "a").await;
    let b = online(&t, "bob", "b").await;
    for i in 0..7 {
        chat(&t, &a, "bob@localhost", &format!("m{i}")).await;
    }
    let _ = t.take_all(&b);
    let (r, fin) = query(&t, &b, "p1", &rsm("<max>3</max>")).await;
    assert_eq!(r.len(), 3);
    assert!(r[0].contains("m0") && r[2].contains("m2"));
    assert!(!fin.contains("complete"), "{fin}");
    let last = between(&fin, "<last>", "</last>").to_string();
    let (r, _) = query(
        &t,
        &b,
        "p2",
        &rsm(&format!("<max>3</max><after>{last}</after>")),
    )
    .await;
    assert!(r[0].contains("m3") && r[2].contains("m5"));
    let (r, fin) = query(&t, &b, "p3", &rsm("<max>3</max><before/>")).await;
    assert_eq!(r.len(), 3);
    assert!(r[0].contains("m4") && r[2].contains("m6"), "{r:?}");
    assert!(!fin.contains("complete"), "{fin}");
    let first = between(&fin, "<first>", "</first>").to_string();
    let (r, fin) = query(
        &t,
        &b,
        "p4",
        &rsm(&format!("<max>10</max><before>{first}</before>")),
    )
    .await;
    assert_eq!(r.len(), 4);
    assert!(r[0].contains("m0") && r[3].contains("m3"));
    assert!(fin.contains("complete='true'"), "{fin}");
    // An unknown id, and index paging.
    let (_, e) = query(&t, &b, "p5", &rsm("<after>12345</after>")).await;
    assert!(e.contains("item-not-found"), "{e}");
    let (_, e) = query(&t, &b, "p6", &rsm("<index>2</index>")).await;
    assert!(e.contains("feature-not-implemented"), "{e}");
}

#[tokio::test]
async fn with_filter_and_unknown_fields() {
    let t = TestServer::new(&[]).await;
    let a = t.session("alice", "a").await;
    let b = online(&t, "bob", "b").await;
    let c = t.session("carol", "c").await;
    chat(&t, &a, "bob@localhost", "from-alice").await;
    chat(&t, &c, "bob@localhost", "from-carol").await;
    let form = |fields: &str| {
        format!(
            "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>\
             <value>urn:xmpp:mam:2</value></field>{fields}</x>"
        )
    };
    let (r, _) = query(
        &t,
        &b,
        "w1",
        &form("<field var='with'><value>carol@localhost</value></field>"),
    )
    .await;
    assert_eq!(r.len(), 1);
    assert!(r[0].contains("from-carol"));
    let (r, _) = query(
        &t,
        &b,
        "w2",
        &form("<field var='start'><value>2100-01-01T00:00:00Z</value></field>"),
    )
    .await;
    assert!(r.is_empty());
    let (r, _) = query(
        &t,
        &b,
        "w3",
        &form("<field var='end'><value>2100-01-01T00:00:00Z</value></field>"),
    )
    .await;
    assert_eq!(r.len(), 2);
    let (_, e) = query(
        &t,
        &b,
        "w4",
        &form("<field var='fulltext'><value>x</value></field>"),
    )
    .await;
    assert!(e.contains("bad-request"), "{e}");
}

#[tokio::test]
async fn preferences_decide_what_is_kept() {
    let t = TestServer::new(&[]).await;
    let a = t.session("alice", "a").await;
    let b = online(&t, "bob", "b").await;
    let r = t
        .iq(
            &b,
            "<iq type='get' id='g'><prefs xmlns='urn:xmpp:mam:2'/></iq>",
        )
        .await;
    assert!(r.contains("default='always'"), "{r}");
    let r = t
        .iq(
            &b,
            "<iq type='set' id='s'><prefs xmlns='urn:xmpp:mam:2' default='never'>\
             <always><jid>carol@localhost</jid></always><never/></prefs></iq>",
        )
        .await;
    assert!(
        r.contains("default='never'") && r.contains("<jid>carol@localhost</jid>"),
        "{r}"
    );
    chat(&t, &a, "bob@localhost", "not kept").await;
    let got = t.take_all(&b).join("");
    assert!(
        !got.contains("urn:xmpp:sid:0"),
        "no stanza-id when not archived: {got}"
    );
    let (r, _) = query(&t, &b, "q", "").await;
    assert!(r.is_empty(), "{r:?}");
    // Alice's own archive still keeps her side.
    let (r, _) = query(&t, &a, "qa", "").await;
    assert_eq!(r.len(), 1);
    let r = t
        .iq(
            &b,
            "<iq type='set' id='bad'><prefs xmlns='urn:xmpp:mam:2' default='sometimes'/></iq>",
        )
        .await;
    assert!(r.contains("bad-request"), "{r}");
}

#[tokio::test]
async fn hints_and_types_not_archived() {
    let t = TestServer::new(&[]).await;
    let a = t.session("alice", "a").await;
    let b = online(&t, "bob", "b").await;
    t.send(
        &a,
        "<message to='bob@localhost' type='chat'><body>x</body><no-store xmlns='urn:xmpp:hints'/></message>",
    )
    .await;
    t.send(
        &a,
        "<message to='bob@localhost' type='headline'><body>x</body></message>",
    )
    .await;
    t.send(&a, "<message to='bob@localhost' type='chat'><active xmlns='http://jabber.org/protocol/chatstates'/></message>").await;
    let (r, _) = query(&t, &b, "q", "").await;
    assert!(r.is_empty(), "{r:?}");
}

#[tokio::test]
async fn disco_form_and_others_archives() {
    let t = TestServer::new(&[]).await;
    let a = t.session("alice", "a").await;
    let r = t
        .iq(
            &a,
            "<iq type='get' id='f'><query xmlns='urn:xmpp:mam:2'/></iq>",
        )
        .await;
    assert!(
        r.contains("var='with'") && r.contains("var='after-id'"),
        "{r}"
    );
    let r = t
        .iq(
            &a,
            "<iq type='set' id='o' to='bob@localhost'><query xmlns='urn:xmpp:mam:2'/></iq>",
        )
        .await;
    assert!(r.contains("forbidden"), "{r}");
    let r = t
        .iq(
            &a,
            "<iq type='get' id='d' to='alice@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
        )
        .await;
    assert!(
        r.contains("urn:xmpp:mam:2") && r.contains("urn:xmpp:sid:0"),
        "{r}"
    );
}

#[tokio::test]
async fn module_off_answers_service_unavailable() {
    let t = TestServer::new(&[("mam", "enabled = false")]).await;
    let a = t.session("alice", "a").await;
    let r = t
        .iq(
            &a,
            "<iq type='set' id='q'><query xmlns='urn:xmpp:mam:2'/></iq>",
        )
        .await;
    assert!(r.contains("service-unavailable"), "{r}");
    let r = t
        .iq(
            &a,
            "<iq type='get' id='d' to='alice@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
        )
        .await;
    assert!(!r.contains("urn:xmpp:mam"), "{r}");
}

#[tokio::test]
async fn page_size_is_capped() {
    let t = TestServer::new(&[("mam", "max_page_size = 2\ndefault_page_size = 2")]).await;
    let a = t.session("alice", "a").await;
    for i in 0..3 {
        chat(&t, &a, "alice@localhost", &format!("n{i}")).await;
    }
    let _ = t.take_all(&a);
    let (r, fin) = query(&t, &a, "c", &rsm("<max>100</max>")).await;
    assert_eq!(r.len(), 2);
    assert!(!fin.contains("complete"));
}

#[test]
fn settings_are_checked() {
    assert_unknown_key_refused("mam", "colour = 1");
    let text = "[general]\nhosts = ['localhost']\n[modules.mam]\ndefault_page_size = 500\n";
    let err =
        crate::config::Config::parse(text, std::path::Path::new("t.toml")).expect_err("refused");
    assert_eq!(err.key, "modules.mam.default_page_size");
    let text = "[general]\nhosts = ['localhost']\n[modules.mam]\ndefault = 'sometimes'\n";
    let err =
        crate::config::Config::parse(text, std::path::Path::new("t.toml")).expect_err("refused");
    assert_eq!(err.key, "modules.mam.default");
}
