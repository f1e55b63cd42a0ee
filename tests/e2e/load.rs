//! The load generator (benches/loadgen) against the real binary: a short
//! run of each scenario with a few users, checking what the reports mean
//! (everyone logged in, every message delivered, sessions held, RSS
//! read). No timing is asserted: CI machines are too noisy for that.

use std::time::Duration;

use osprey_loadgen::report::Outcome;
use osprey_loadgen::{run, Mech, Report, Scenario, ScenarioConfig, TlsMode};

use crate::harness::{Backend, Options, Server};

fn config(s: &Server, scenario: Scenario) -> ScenarioConfig {
    let mut c = ScenarioConfig::new(scenario);
    c.label = "e2e".into();
    c.host = s.c2s.ip().to_string();
    c.port = s.c2s.port();
    c.server_pids = vec![s.pid()];
    c.concurrency = 4;
    c.grace = Duration::from_secs(10);
    c
}

async fn go(c: &ScenarioConfig) -> Report {
    let r = run(c).await.expect("the run itself");
    eprintln!("{r}");
    assert!(r.errors.is_empty(), "failures: {:?}", r.errors);
    let server = r.server.as_ref().expect("server usage (a PID was given)");
    assert!(server.rss_after_bytes > 0 && server.rss_before_bytes > 0);
    assert!(server.cpu_seconds >= 0.0);
    // The JSON a script reads says the same (floats may differ in the
    // last bit after a round trip; the counts may not).
    let back = Report::from_json(&r.to_json()).expect("json");
    assert_eq!((back.scenario, &back.errors), (r.scenario, &r.errors));
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenarios_on_plaintext() {
    let mut s = Server::start(Options::plaintext(Backend::Sqlite));
    let out = s.populate(20);
    assert!(
        out.contains("created 20 accounts user1..user20@localhost (0 already existed)"),
        "{out}"
    );
    // Existing accounts are skipped, not an error.
    let out = s.populate(24);
    assert!(
        out.contains("created 4 accounts user1..user24@localhost (20 already existed)"),
        "{out}"
    );

    for (mech, users) in [
        (Mech::ScramSha256, 20),
        (Mech::ScramSha1, 6),
        (Mech::Plain, 6),
    ] {
        let mut c = config(&s, Scenario::Login);
        c.users = users;
        c.mech = mech;
        let r = go(&c).await;
        let Outcome::Login(l) = &r.result else {
            panic!("not a login result")
        };
        assert_eq!(
            (l.attempted, l.ok, l.failed),
            (users as u64, users as u64, 0),
            "{mech:?}"
        );
        assert_eq!(l.latency.count, users as u64);
        assert!(l.logins_per_s > 0.0 && l.cpu_s_per_1k.is_some());
    }

    // Logging in for a while, cycling over the accounts (a new resource
    // each pass): every attempt succeeds.
    let mut c = config(&s, Scenario::Login);
    c.users = 5;
    c.login_for = Some(Duration::from_millis(500));
    let r = go(&c).await;
    let Outcome::Login(l) = &r.result else {
        panic!("not a login result")
    };
    assert!(
        l.attempted >= 1 && l.ok == l.attempted && l.failed == 0,
        "{l:?}"
    );

    // A wrong password is a counted failure, not a failed run.
    let mut c = config(&s, Scenario::Login);
    c.users = 2;
    c.password = "wrong".into();
    let r = run(&c).await.expect("run");
    let Outcome::Login(l) = &r.result else {
        panic!("not a login result")
    };
    assert_eq!((l.ok, l.failed), (0, 2));
    assert_eq!(
        r.errors.get("auth: not-authorized"),
        Some(&2),
        "{:?}",
        r.errors
    );

    let mut c = config(&s, Scenario::Idle);
    c.users = 10;
    c.duration = Duration::from_secs(1);
    let r = go(&c).await;
    let Outcome::Idle(i) = &r.result else {
        panic!("not an idle result")
    };
    assert_eq!((i.target, i.online, i.failed), (10, 10, 0));
    assert!(i.rss_per_session_bytes.is_some() && i.cpu_s_per_s_idle.is_some());

    // Maximum rate, then a target rate.
    for rate in [0.0, 200.0] {
        let mut c = config(&s, Scenario::Chat);
        c.pairs = 5;
        c.rate = rate;
        c.duration = Duration::from_secs(2);
        let r = go(&c).await;
        let Outcome::Chat(m) = &r.result else {
            panic!("not a chat result")
        };
        assert!(m.sent > 0, "nothing sent at rate {rate}");
        assert_eq!(m.delivered, m.sent, "rate {rate}");
        assert_eq!((m.lost, m.errors, m.login_failed), (0, 0, 0));
        assert_eq!(m.latency.count, m.delivered);
        assert!(m.cpu_s_per_1k.is_some());
    }

    // Twice: the first run adds the roster items, the second finds them.
    for added in [40, 0] {
        let mut c = config(&s, Scenario::Mixed);
        c.users = 10;
        c.contacts = 4;
        c.duration = Duration::from_secs(3);
        c.ramp = Some(Duration::from_millis(500));
        c.interval = Duration::from_millis(200);
        let r = go(&c).await;
        let Outcome::Mixed(m) = &r.result else {
            panic!("not a mixed result")
        };
        assert_eq!(
            (m.users, m.online, m.login_failed, m.dropped),
            (10, 10, 0, 0)
        );
        assert_eq!(m.roster_items_added, added);
        assert!(m.sent > 0);
        assert_eq!(m.delivered, m.sent);
        assert_eq!((m.lost, m.errors), (0, 0));
    }
    s.assert_alive();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_and_idle_over_starttls() {
    let s = Server::start(Options::new(Backend::Sqlite));
    s.populate(6);
    let mut c = config(&s, Scenario::Login);
    c.users = 6;
    c.tls = TlsMode::Starttls;
    c.mech = Mech::Plain;
    let r = go(&c).await;
    let Outcome::Login(l) = &r.result else {
        panic!("not a login result")
    };
    assert_eq!((l.ok, l.failed), (6, 0));

    let mut c = config(&s, Scenario::Idle);
    c.users = 6;
    c.tls = TlsMode::Starttls;
    c.duration = Duration::from_millis(500);
    let r = go(&c).await;
    let Outcome::Idle(i) = &r.result else {
        panic!("not an idle result")
    };
    assert_eq!((i.online, i.failed), (6, 0));

    // Without TLS this listener (starttls_required) refuses to authenticate.
    let mut c = config(&s, Scenario::Login);
    c.users = 1;
    let r = run(&c).await.expect("run");
    let Outcome::Login(l) = &r.result else {
        panic!("not a login result")
    };
    assert_eq!(l.failed, 1);
}
