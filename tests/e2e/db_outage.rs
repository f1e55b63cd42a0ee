//! A database that goes away: the gateway stays up, says so (`/healthz`
//! 503, a stanza error instead of silence for what needs storage), keeps
//! routing between online sessions, and recovers by itself. Done on the
//! test's own PostgreSQL database (connections refused and cut), so the
//! server other tests use is untouched.

use std::time::{Duration, Instant};

use crate::harness::{psql, Backend, Options, Server};
use crate::http::get;
use crate::raw::Raw;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_degrades_and_recovers() {
    let mut s = Server::start(Options::plaintext(Backend::Postgres));
    for u in ["alice", "bob", "carol"] {
        s.register(&format!("{u}@localhost"), "pw");
    }
    let db = s.pg_database().expect("a PostgreSQL database").to_string();
    let mut alice = Raw::login(s.c2s, "alice", "pw", "a").await;
    let mut bob = Raw::login(s.c2s, "bob", "pw", "b").await;

    // The database goes away: no new connections, the open ones cut.
    psql(&format!("ALTER DATABASE {db} ALLOW_CONNECTIONS false"));
    psql(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}'"
    ));
    let health = get(s.http, "/healthz", None).await;
    assert_eq!(health.status, 503, "{}", health.body);

    // Online sessions still reach each other.
    alice
        .send("<message to='bob@localhost/b' type='chat' id='live'><body>hi</body></message>")
        .await;
    bob.expect("id='live'").await;
    // What needs storage fails visibly: a message for offline carol comes
    // back as an error instead of vanishing.
    alice
        .send("<message to='carol@localhost' type='chat' id='off1'><body>later</body></message>")
        .await;
    let bounce = alice.expect("id='off1'").await;
    let rest = alice.expect("</message>").await;
    assert!(
        format!("{bounce}{rest}").contains("type='error'"),
        "{bounce}{rest}"
    );
    s.assert_alive();

    // It comes back: the gateway recovers with no restart.
    psql(&format!("ALTER DATABASE {db} ALLOW_CONNECTIONS true"));
    let t = Instant::now();
    loop {
        if get(s.http, "/healthz", None).await.status == 200 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "storage did not recover"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    alice
        .send("<message to='carol@localhost' type='chat' id='off2'><body>kept</body></message>")
        .await;
    alice
        .send("<iq type='get' id='sync' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let out = alice.expect("id='sync'").await;
    assert!(!out.contains("type='error'"), "{out}");
    let mut carol = Raw::login(s.c2s, "carol", "pw", "c").await;
    carol.send("<presence/>").await;
    let got = carol.expect("id='off2'").await;
    assert!(
        !got.contains("off1"),
        "the bounced message was also stored: {got}"
    );
}
