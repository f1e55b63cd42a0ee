//! The roster race (issue 13 item 10): two users add each other at the same
//! moment, each approving the other's request as it arrives (what
//! auto-approving clients do). Every pair must end `both`/`both` in storage,
//! with no request pending either way. Before roster updates were serialised
//! per account, concurrent read-modify-writes of one row lost updates.

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use osprey::storage::{Storage, StorageOptions, Subscription};
use tokio::sync::{Barrier, Semaphore};
use tokio::task::JoinSet;

use crate::both_backends;
use crate::harness::{Backend, Options, Server};
use crate::raw::Raw;

/// Pairs of distinct accounts.
const PAIRS: usize = 200;
const PASSWORD: &str = "race-pw";
/// Logins at once (each costs the server a PBKDF2 of the password).
const LOGINS: usize = 16;
/// Pairs racing at once: few, so that a query takes little longer than
/// alone and the delays below meet the window where updates overlap.
const BATCH: usize = 10;
/// How long a side waits for the contact's approval.
const APPROVAL: Duration = Duration::from_secs(10);

fn name(n: usize) -> String {
    format!("racer{n}")
}

/// The storage URL of the server's configuration file.
fn storage_url(s: &Server) -> String {
    let toml = std::fs::read_to_string(&s.config).expect("config file");
    toml.lines()
        .find_map(|l| l.strip_prefix("url = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("[storage] url")
        .to_string()
}

/// A logged-in, available session of `user` (initial presence processed).
async fn online(s: &Server, user: String) -> Raw {
    let mut c = Raw::login(s.c2s, &user, PASSWORD, "r").await;
    c.send("<presence/><iq type='get' id='up' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    c.expect("id='up'").await;
    c
}

/// One side of the race, after its own `subscribe` went out: approve the
/// contact's request when it arrives, wait for the contact's approval, then
/// make sure everything this session sent has been processed. Returns
/// whether the approval came.
async fn approve(c: &mut Raw, me: &str, other: &str, think: Duration) -> bool {
    let request = format!("from='{other}@localhost' to='{me}@localhost' type='subscribe'/>");
    let approved = format!("from='{other}@localhost' to='{me}@localhost' type='subscribed'/>");
    // The request is always delivered: this side has not approved it yet.
    c.expect(&request).await;
    if !think.is_zero() {
        // Finer than tokio's millisecond timer.
        tokio::task::spawn_blocking(move || std::thread::sleep(think))
            .await
            .expect("sleep");
    }
    c.send(&format!(
        "<presence type='subscribed' to='{other}@localhost'/>"
    ))
    .await;
    // Lost updates can make the server drop the approval: do not hang.
    let got = tokio::time::timeout(APPROVAL, c.expect(&approved))
        .await
        .is_ok();
    // A session's stanzas are handled in order: once this answers, its
    // `subscribed` has been fully processed.
    c.send("<iq type='get' id='done' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    c.expect("id='done'").await;
    got
}

/// Both accounts of each pair, online.
async fn online_pairs(s: &Arc<Server>, pairs: Range<usize>) -> Vec<(usize, Raw, Raw)> {
    let gate = Arc::new(Semaphore::new(LOGINS));
    let mut logins = JoinSet::new();
    for i in pairs {
        let (s, gate) = (s.clone(), gate.clone());
        logins.spawn(async move {
            let _permit = gate.acquire().await.expect("semaphore");
            let a = online(&s, name(2 * i + 1)).await;
            let b = online(&s, name(2 * i + 2)).await;
            (i, a, b)
        });
    }
    let mut out = Vec::new();
    while let Some(r) = logins.join_next().await {
        out.push(r.expect("login task"));
    }
    out
}

/// Both sides of every pair send `subscribe` at once, then approve the
/// other's. Returns how many approvals never came.
async fn race(pairs: Vec<(usize, Raw, Raw)>) -> usize {
    let go = Arc::new(Barrier::new(pairs.len()));
    let mut races = JoinSet::new();
    for (i, mut a, mut b) in pairs {
        let go = go.clone();
        races.spawn(async move {
            let (na, nb) = (name(2 * i + 1), name(2 * i + 2));
            let to_b = format!("<presence type='subscribe' to='{nb}@localhost'/>");
            let to_a = format!("<presence type='subscribe' to='{na}@localhost'/>");
            go.wait().await;
            tokio::join!(a.send(&to_b), b.send(&to_a));
            let (ta, tb) = think_times(i);
            let (ga, gb) =
                tokio::join!(approve(&mut a, &na, &nb, ta), approve(&mut b, &nb, &na, tb));
            usize::from(!ga) + usize::from(!gb)
        });
    }
    let mut unapproved = 0;
    while let Some(r) = races.join_next().await {
        unapproved += r.expect("race task");
    }
    unapproved
}

/// Real clients take varying time to answer. One side of pair `i` answers
/// at once, the other after a delay from 20 µs to 50 ms on a geometric
/// scale (whatever a query costs on this machine, some pairs land in the
/// window where the two tasks' updates of one row overlap), spread so
/// that each batch covers the whole scale.
fn think_times(i: usize) -> (Duration, Duration) {
    let k = (i * 73) % PAIRS;
    let think = Duration::from_secs_f64(20e-6 * 2500f64.powf(k as f64 / PAIRS as f64));
    if i.is_multiple_of(2) {
        (Duration::ZERO, think)
    } else {
        (think, Duration::ZERO)
    }
}

async fn mutual_add(b: Backend) {
    let started = Instant::now();
    let s = Server::start(Options::plaintext(b));
    let out = s.cli(&[
        "account",
        "populate",
        "--prefix",
        "racer",
        "--count",
        &(2 * PAIRS).to_string(),
        "--password",
        PASSWORD,
    ]);
    assert!(
        out.status.success(),
        "populate: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // In batches (one address may only hold so many connections), each
    // logged in first so that its subscribes all go out together.
    let s = Arc::new(s);
    let mut unapproved = 0;
    let mut logging_in = Duration::ZERO;
    for first in (0..PAIRS).step_by(BATCH) {
        let t = Instant::now();
        let pairs = online_pairs(&s, first..PAIRS.min(first + BATCH)).await;
        logging_in += t.elapsed();
        unapproved += race(pairs).await;
    }

    // What is stored, asked directly.
    let storage = Storage::connect(
        &storage_url(&s),
        &StorageOptions {
            max_connections: 2,
            migration_locking: true,
        },
    )
    .await
    .expect("storage");
    let mut bad = Vec::new();
    for i in 0..PAIRS {
        let (na, nb) = (name(2 * i + 1), name(2 * i + 2));
        for (me, other) in [(&na, &nb), (&nb, &na)] {
            let item = storage
                .roster_item("localhost", me, &format!("{other}@localhost"))
                .await
                .expect("roster item");
            let pending = storage
                .sub_requests("localhost", me)
                .await
                .expect("requests");
            let state = item.as_ref().map(|i| (i.subscription, i.ask));
            if state != Some((Subscription::Both, false)) || !pending.is_empty() {
                bad.push(format!(
                    "{me}: {state:?}, {} pending request(s)",
                    pending.len()
                ));
            }
        }
    }
    storage.close().await;
    eprintln!(
        "roster race on {b:?}: {PAIRS} pairs, {} inconsistent sides, {unapproved} approvals \
         never came; done after {:?}, {logging_in:?} of it logging in",
        bad.len(),
        started.elapsed()
    );
    assert!(
        bad.is_empty() && unapproved == 0,
        "{} of {} sides inconsistent ({unapproved} approvals lost), e.g. {:?}",
        bad.len(),
        2 * PAIRS,
        &bad[..bad.len().min(10)]
    );
}
both_backends!(mutual_add_ends_both_both, mutual_add);
