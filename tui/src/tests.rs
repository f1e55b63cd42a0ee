//! Every view rendered with ratatui's `TestBackend` from fixed data, asserting
//! on the text on screen; and the captures in `docs/top.md`, kept in sync.

use std::collections::BTreeMap;
use std::time::Duration;

use osprey_instrument::live::{Kind as RecKind, Record, Task};
use osprey_instrument::snapshot::{Kind, Series, Snapshot};
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;

use crate::input::{self, Action};
use crate::state::{
    App, ClusterNode, ClusterStatus, EventInfo, Link, LogStatus, SessionRow, Tab, TraceInfo,
};

fn series(event: &str, key: &str, kind: Kind, labels: &[(&str, &str)], value: f64) -> Series {
    Series {
        event: event.into(),
        key: key.into(),
        name: format!("{event}_{key}"),
        kind,
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        value,
        rate: None,
        p50: None,
        p99: None,
    }
}

fn counter(event: &str, labels: &[(&str, &str)], total: f64, rate: f64) -> Series {
    Series {
        rate: Some(rate),
        ..series(event, "count", Kind::Counter, labels, total)
    }
}

fn histogram(
    event: &str,
    key: &str,
    labels: &[(&str, &str)],
    n: f64,
    rate: f64,
    p50: f64,
    p99: f64,
) -> Series {
    Series {
        rate: Some(rate),
        p50: Some(p50),
        p99: Some(p99),
        ..series(event, key, Kind::Histogram, labels, n)
    }
}

/// A rate that rises to `peak` at t = 29 in a saw shape (sparklines get a
/// shape to draw).
fn wave(t: u64, peak: f64) -> f64 {
    peak * ((t % 10) as f64 + 1.0 + (t as f64 / 29.0) * 9.0) / 20.0
}

/// A gateway with three sessions exchanging messages, one second after `t0`.
fn snapshot(t: u64, cpu: f64) -> Snapshot {
    let l = [("listener", "c2s_5222")];
    let mut live = BTreeMap::new();
    live.insert("sessions".to_string(), (t / 10 + 1) as f64);
    live.insert("users".to_string(), 3.0);
    live.insert("cpu_seconds".to_string(), cpu);
    live.insert("rss_bytes".to_string(), 31.5 * 1024.0 * 1024.0);
    Snapshot {
        time_ms: 1_796_155_000_000 + t * 1000,
        version: "0.1.0".into(),
        uptime_seconds: 3725.0 + t as f64,
        hosts: vec!["localhost".into()],
        handlers: vec!["prometheus".into(), "log".into(), "aggregate".into()],
        interval_seconds: 1.0,
        live,
        series: vec![
            series("c2s_connections", "open", Kind::Gauge, &l, 3.0),
            counter("c2s_connection_accepted", &l, 5.0, 0.0),
            counter(
                "c2s_connection_closed",
                &[("listener", "c2s_5222"), ("reason", "peer_closed")],
                2.0,
                0.0,
            ),
            counter(
                "c2s_tls_established",
                &[("listener", "c2s_5222"), ("method", "starttls")],
                5.0,
                0.0,
            ),
            counter("c2s_session_open", &[("host", "localhost")], 5.0, 0.0),
            counter(
                "xmpp_element_in",
                &[("kind", "message")],
                5400.0,
                wave(t, 120.0),
            ),
            counter(
                "xmpp_element_out",
                &[("kind", "message")],
                5400.0,
                wave(t + 3, 120.0),
            ),
            counter("xmpp_element_in", &[("kind", "iq")], 30.0, 0.5),
            counter("xmpp_element_out", &[("kind", "iq")], 30.0, 0.5),
            counter(
                "router_routed",
                &[("kind", "message"), ("outcome", "delivered")],
                5400.0,
                120.0,
            ),
            histogram(
                "router_routed",
                "seconds",
                &[("kind", "message"), ("outcome", "delivered")],
                5400.0,
                120.0,
                0.000021,
                0.0009,
            ),
            counter(
                "router_routed",
                &[("kind", "message"), ("outcome", "offline_stored")],
                4.0,
                0.0,
            ),
            counter(
                "c2s_auth",
                &[("outcome", "success"), ("reason", "")],
                5.0,
                0.0,
            ),
            counter(
                "c2s_auth",
                &[("outcome", "failure"), ("reason", "not-authorized")],
                2.0,
                0.0,
            ),
            histogram(
                "c2s_auth",
                "seconds",
                &[("outcome", "success"), ("reason", "")],
                5.0,
                0.0,
                0.0042,
                0.0061,
            ),
            counter(
                "xmpp_stream_error",
                &[("condition", "not-well-formed")],
                1.0,
                0.0,
            ),
            counter(
                "storage_query",
                &[
                    ("operation", "get_roster"),
                    ("outcome", "ok"),
                    ("backend", "sqlite"),
                ],
                12.0,
                0.0,
            ),
            histogram(
                "storage_query",
                "seconds",
                &[
                    ("operation", "get_roster"),
                    ("outcome", "ok"),
                    ("backend", "sqlite"),
                ],
                12.0,
                0.0,
                0.00015,
                0.0004,
            ),
            series("process", "open_fds", Kind::Gauge, &[], 24.0),
            series("process", "threads", Kind::Gauge, &[], 3.0),
            series("runtime", "tasks", Kind::Gauge, &[], 17.0),
            // Expires 89 and a half days after the snapshot.
            series(
                "tls_certificate",
                "expiry_timestamp_seconds",
                Kind::Gauge,
                &l,
                (1_796_155_000 + t) as f64 + 89.5 * 86_400.0,
            ),
        ],
    }
}

fn session(jid: &str, id: u64, port: u16, stanzas: u64) -> SessionRow {
    let (bare, resource) = jid.split_once('/').unwrap_or((jid, ""));
    SessionRow {
        jid: jid.into(),
        bare: bare.into(),
        resource: resource.into(),
        session_id: id,
        address: format!("127.0.0.1:{port}"),
        listener: "c2s_5222".into(),
        transport: "tcp".into(),
        tls: true,
        connected_seconds: 600 + id * 60,
        stanzas_in: stanzas,
        stanzas_out: stanzas / 2,
        queued_bytes: 0,
        available: true,
        priority: 0,
        state: "active".into(),
    }
}

fn record(index: u64, kind: RecKind, name: &str, data: &str, duration: Option<u64>) -> Record {
    Record {
        index,
        ts_us: 1_796_155_000_000_000 + index * 150,
        task: Task {
            kind: "c2s".into(),
            id: 2,
        },
        kind,
        name: name.into(),
        data: data.into(),
        duration_us: duration,
    }
}

/// The dashboard as the fixtures leave it.
fn app() -> App {
    let mut app = App::new("http://127.0.0.1:9091");
    app.link = Link::Up;
    for t in 0..30 {
        app.apply_snapshot(snapshot(t, 1.0 + t as f64 * 0.02));
    }
    app.apply_sessions(vec![
        session("alice@localhost/phone", 1, 50001, 2400),
        session("bob@localhost/laptop", 2, 50002, 3100),
        session("carol@localhost/desk", 3, 50003, 12),
    ]);
    // Logging up to info; xmpp_element_in raised from debug to info by
    // `[instrumentation.log] events`.
    app.catalogue = [
        ("c2s_auth", "info", "info"),
        ("router_routed", "debug", "debug"),
        ("xmpp_element_in", "info", "debug"),
        ("storage_query", "debug", "debug"),
    ]
    .iter()
    .map(|(n, level, default)| EventInfo {
        name: n.to_string(),
        help: format!("help of {n}"),
        labels: vec!["host".into()],
        level: level.to_string(),
        default_level: default.to_string(),
        overridden: level != default,
        logged: Some(*level == "info"),
        probe: false,
    })
    .collect();
    app.log = Some(LogStatus {
        level: "info".into(),
        handler: Some(true),
    });
    app.trace_started(7, "alice@localhost/phone".into());
    app.trace_record(record(
        0,
        RecKind::In,
        "message",
        "type=chat id=m1 to=bob@localhost",
        None,
    ));
    app.trace_record(record(1, RecKind::Call, "route", "", None));
    app.trace_record(record(2, RecKind::Send, "deliver", "to c2s:3", None));
    app.trace_record(record(3, RecKind::Return, "route", "", Some(42)));
    app.trace_record(record(
        4,
        RecKind::Out,
        "message",
        "type=chat id=m9 from=bob@localhost",
        None,
    ));
    app.tab = Tab::Overview;
    app
}

fn render(app: &App, width: u16, height: u16) -> String {
    let mut term = Terminal::new(TestBackend::new(width, height)).expect("test backend");
    term.draw(|f| crate::ui::draw(f, app)).expect("draw");
    let buf = term.backend().buffer();
    let mut out = String::new();
    for y in 0..buf.area.height {
        let mut line = String::new();
        for x in 0..buf.area.width {
            line.push_str(buf[(x, y)].symbol());
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn press(app: &mut App, code: KeyCode) -> Option<Action> {
    input::key(app, KeyEvent::new(code, KeyModifiers::NONE))
}

fn type_text(app: &mut App, s: &str) {
    for c in s.chars() {
        press(app, KeyCode::Char(c));
    }
}

#[test]
fn overview_shows_health_and_traffic() {
    let screen = render(&app(), 120, 40);
    for want in [
        "Osprey 0.1.0 · up 1h02m · localhost",
        "● live",
        "3 sessions",
        "c2s_5222",
        "message      114/s ▸    77.6/s",
        "message p50 21µs  p99 900µs",
        "offline_stored",
        "success",
        "not-authorized",
        "login p50 4.2ms  p99 6.1ms",
        "stream not-well-formed",
        "get_roster",
        "RSS 31.5MiB  CPU 2.0%",
        "fds 24",
        "89 days left",
    ] {
        assert!(screen.contains(want), "overview lacks {want:?}:\n{screen}");
    }
    // The session history is plotted.
    assert!(screen.contains('█'), "no sparkline:\n{screen}");
}

#[test]
fn detached_sessions_are_shown_as_such() {
    let mut app = app();
    let mut rows = vec![
        session("alice@localhost/phone", 1, 50001, 2400),
        session("bob@localhost/laptop", 2, 50002, 3100),
    ];
    rows[1].state = "detached".into();
    app.apply_sessions(rows);
    press(&mut app, KeyCode::Char('2'));
    let screen = render(&app, 140, 40);
    let bob = screen
        .lines()
        .find(|l| l.contains("bob@localhost") && l.contains("laptop"))
        .expect("bob's row");
    assert!(bob.contains("detached"), "{screen}");
    let alice = screen
        .lines()
        .find(|l| l.contains("alice@localhost") && l.contains("phone"))
        .expect("alice's row");
    assert!(
        alice.contains("tcp") && !alice.contains("detached"),
        "{screen}"
    );
}

#[test]
fn sessions_table_sorts_filters_and_kicks() {
    let mut app = app();
    press(&mut app, KeyCode::Char('2'));
    let screen = render(&app, 120, 40);
    for want in [
        "Sessions: 3 shown of 3 · sort jid",
        "alice@localhost",
        "phone",
        "127.0.0.1:50002",
        "tcp",
        "yes",
        "11m00s",
        "3100",
        "session 1",
    ] {
        assert!(screen.contains(want), "sessions lack {want:?}:\n{screen}");
    }
    let at = |s: &str, who: &str| s.find(who).unwrap_or(usize::MAX);
    assert!(at(&screen, "alice@") < at(&screen, "bob@"));
    // Sort by stanzas in: bob (3100) before alice (2400).
    press(&mut app, KeyCode::Char('s'));
    press(&mut app, KeyCode::Char('s'));
    let screen = render(&app, 120, 40);
    assert!(screen.contains("sort in"), "{screen}");
    assert!(
        at(&screen, "bob@localhost ") < at(&screen, "alice@localhost "),
        "{screen}"
    );
    // Filter down to carol; the selection follows.
    press(&mut app, KeyCode::Char('/'));
    type_text(&mut app, "carol");
    press(&mut app, KeyCode::Enter);
    let screen = render(&app, 120, 40);
    assert!(screen.contains("1 shown of 3"), "{screen}");
    assert!(!screen.contains("bob@localhost"), "{screen}");
    assert_eq!(
        app.sessions_view.selected.as_deref(),
        Some("carol@localhost/desk")
    );
    // Kick asks first; only `y` sends it.
    assert_eq!(press(&mut app, KeyCode::Char('k')), None);
    assert!(render(&app, 120, 40).contains("Kick carol@localhost/desk? y = yes"));
    assert_eq!(press(&mut app, KeyCode::Char('n')), None);
    assert_eq!(press(&mut app, KeyCode::Char('k')), None);
    assert_eq!(
        press(&mut app, KeyCode::Char('y')),
        Some(Action::Kick("carol@localhost/desk".into()))
    );
    // `t` asks for a trace of the selected session.
    assert_eq!(
        press(&mut app, KeyCode::Char('t')),
        Some(Action::Trace {
            session: 3,
            jid: "carol@localhost/desk".into()
        })
    );
}

#[test]
fn events_view_lists_the_catalogue_with_rates() {
    let mut app = app();
    press(&mut app, KeyCode::Char('3'));
    let screen = render(&app, 120, 40);
    assert!(screen.contains("Events: 4 of 4"), "{screen}");
    let line = screen
        .lines()
        .find(|l| l.contains("router_routed"))
        .unwrap_or_default();
    assert!(line.contains("120/s") && line.contains("5404"), "{line}");
    press(&mut app, KeyCode::Char('/'));
    type_text(&mut app, "auth");
    let screen = render(&app, 120, 40);
    assert!(screen.contains("Events: 1 of 4 filter: auth"), "{screen}");
    assert!(!screen.contains("router_routed"), "{screen}");
}

#[test]
fn trace_view_follows_pauses_filters_and_counts_calls() {
    let mut app = app();
    press(&mut app, KeyCode::Char('4'));
    let screen = render(&app, 120, 40);
    for want in [
        "Trace 7 of alice@localhost/phone · running · 5 records",
        "type=chat id=m1 to=bob@localhost",
        "deliver",
        "42",
    ] {
        assert!(screen.contains(want), "trace lacks {want:?}:\n{screen}");
    }
    press(&mut app, KeyCode::Char('p'));
    app.trace_record(record(5, RecKind::In, "presence", "new while paused", None));
    let screen = render(&app, 120, 40);
    assert!(screen.contains("PAUSED · 6 records"), "{screen}");
    assert!(!screen.contains("new while paused"), "{screen}");
    press(&mut app, KeyCode::End);
    assert!(render(&app, 120, 40).contains("new while paused"));
    press(&mut app, KeyCode::Char('c'));
    let screen = render(&app, 120, 40);
    let stats = screen
        .lines()
        .find(|l| l.contains("Call statistics"))
        .map(|_| ());
    assert!(stats.is_some(), "{screen}");
    assert!(
        screen
            .lines()
            .any(|l| l.contains("│route") && l.contains(" 1 ") && l.contains("42")),
        "{screen}"
    );
    press(&mut app, KeyCode::Char('c'));
    press(&mut app, KeyCode::Char('/'));
    type_text(&mut app, "m9");
    press(&mut app, KeyCode::Enter);
    let screen = render(&app, 120, 40);
    assert!(
        screen.contains("id=m9") && !screen.contains("id=m1"),
        "{screen}"
    );
    assert_eq!(
        press(&mut app, KeyCode::Char('x')),
        Some(Action::StopTrace(7))
    );
}

#[test]
fn trace_view_without_a_trace_says_how_to_start_one() {
    let mut app = App::new("http://x:1");
    app.tab = Tab::Trace;
    assert!(render(&app, 100, 30).contains("press t to trace it live"));
}

#[test]
fn help_lists_the_keys() {
    let mut app = app();
    press(&mut app, KeyCode::Char('?'));
    let screen = render(&app, 120, 40);
    assert!(screen.contains("kick the selected session"), "{screen}");
    // Any key closes it and does nothing else.
    press(&mut app, KeyCode::Char('q'));
    assert!(!app.quit && !app.help);
    press(&mut app, KeyCode::Char('q'));
    assert!(app.quit);
}

#[test]
fn ctrl_c_quits_even_while_typing() {
    let mut app = app();
    press(&mut app, KeyCode::Char('2'));
    press(&mut app, KeyCode::Char('/'));
    input::key(
        &mut app,
        KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL),
    );
    assert!(app.quit);
}

#[test]
fn too_small_terminal_gets_a_message() {
    let screen = render(&app(), 40, 10);
    let flat = screen.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(flat.contains("Terminal too small: 40×10"), "{screen}");
    assert!(flat.contains("at least 80×24"), "{screen}");
    assert!(!screen.contains('┌'), "{screen}");
}

#[test]
fn banners_say_what_is_wrong() {
    let mut app = app();
    app.link = Link::Down {
        error: "cannot reach the gateway: Connection refused (os error 111)".into(),
        retry_in: Duration::from_secs(4),
        attempt: 3,
    };
    let screen = render(&app, 120, 40);
    let flat = screen.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains("gateway unreachable at http://127.0.0.1:9091"),
        "{screen}"
    );
    assert!(flat.contains("retrying in 4s (attempt 3)"), "{screen}");
    assert!(screen.contains("✖ down"), "{screen}");
    // The last data stays on screen.
    assert!(screen.contains("3 sessions"), "{screen}");
    app.link = Link::Refused;
    let flat = render(&app, 120, 40)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(flat.contains("refused the token (HTTP 401)"), "{flat}");
}

#[test]
fn waiting_for_the_first_snapshot() {
    let app = App::new("http://127.0.0.1:9091");
    let screen = render(&app, 100, 30);
    assert!(
        screen.contains("waiting for the first snapshot"),
        "{screen}"
    );
    assert!(screen.contains("○ connecting"), "{screen}");
}

/// `docs/top.md` shows each view as rendered here (at 120×40, and the
/// Overview at 80×24 too); regenerate with
/// `OSPREY_UPDATE_DOCS=1 cargo test -p osprey-tui docs_captures`.
#[test]
fn docs_captures_are_fresh() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/top.md");
    let doc = std::fs::read_to_string(path).expect("docs/top.md");
    let mut fresh = doc.clone();
    let on = |tab: Tab| {
        let mut app = app();
        app.tab = tab;
        app
    };
    // The gateway's traces, nothing followed yet.
    let traces = || {
        let mut app = app();
        app.trace = None;
        app.tab = Tab::Trace;
        app.apply_traces(vec![
            trace_info(7, serde_json::json!({"session": 1}), true, 5),
            trace_info(6, serde_json::json!({"jid": "carol@localhost"}), true, 212),
            trace_info(5, serde_json::json!({"task": "router"}), false, 1800),
        ]);
        app
    };
    for (name, app, width, height) in [
        ("overview", on(Tab::Overview), 120, 40),
        ("overview-80x24", on(Tab::Overview), 80, 24),
        ("overview-cluster", clustered(), 120, 40),
        ("sessions", on(Tab::Sessions), 120, 40),
        ("events", on(Tab::Events), 120, 40),
        ("trace", on(Tab::Trace), 120, 40),
        ("traces", traces(), 120, 40),
    ] {
        let start = format!("<!-- capture:{name} -->\n");
        let end = "<!-- /capture -->";
        let a = fresh
            .find(&start)
            .unwrap_or_else(|| panic!("docs/top.md lacks {start:?}"))
            + start.len();
        let b = a + fresh[a..].find(end).expect("capture end marker");
        let text = format!("```text\n{}```\n", render(&app, width, height));
        fresh.replace_range(a..b, &text);
    }
    if fresh != doc {
        if std::env::var_os("OSPREY_UPDATE_DOCS").is_some() {
            std::fs::write(path, &fresh).expect("write docs/top.md");
        } else {
            panic!("docs/top.md is stale: run `OSPREY_UPDATE_DOCS=1 cargo test -p osprey-tui docs_captures`");
        }
    }
}

#[test]
fn overview_shows_input_shaping_pauses() {
    let mut app = app();
    let mut snap = snapshot(30, 1.6);
    snap.series
        .push(counter("limit_hit", &[("limit", "shaper")], 42.0, 3.0));
    snap.series
        .push(counter("limit_hit", &[("limit", "stanza_rate")], 7.0, 1.0));
    snap.series
        .push(counter("limit_hit", &[("limit", "xml_depth")], 2.0, 0.0));
    app.apply_snapshot(snap);
    let screen = render(&app, 120, 40);
    for want in ["limit shaper", "limit stanza_rate", "limit xml_depth"] {
        assert!(screen.contains(want), "overview lacks {want:?}:\n{screen}");
    }
}

/// What an operator saw on an 80×24 terminal: "success 0/s total" with
/// no number, "364 da". Every line fits; what is cut ends with `…`;
/// numbers are whole.
#[test]
fn at_80x24_nothing_is_cut_silently() {
    let mut app = app();
    // The issue's screen: the totals and the days left are whole.
    let screen = render(&app, 80, 24);
    let auth = |s: &str, what: &str| {
        s.split('│')
            .find(|cell| cell.contains(what))
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    assert!(auth(&screen, "success").ends_with("total 5"), "{screen}");
    assert!(auth(&screen, "failure").ends_with("total 2"), "{screen}");
    assert!(screen.contains("89 days"), "{screen}");
    // Big numbers, long names: labels go or are cut with `…`, numbers stay whole.
    let mut snap = snapshot(30, 1.6);
    let big = [("outcome", "success"), ("reason", "")];
    snap.series.retain(|x| {
        !(x.event == "c2s_auth" && x.key == "count")
            && x.event != "tls_certificate"
            && x.event != "xmpp_stream_error"
    });
    snap.series
        .push(counter("c2s_auth", &big, 163_456.0, 1234.0));
    snap.series.push(counter(
        "c2s_auth",
        &[("outcome", "failure"), ("reason", "not-authorized")],
        98_765.0,
        321.0,
    ));
    snap.series.push(counter(
        "xmpp_stream_error",
        &[("condition", "unsupported-stanza-type")],
        123_456.0,
        12.5,
    ));
    snap.series.push(series(
        "tls_certificate",
        "expiry_timestamp_seconds",
        Kind::Gauge,
        &[("listener", "c2s_5223_direct_tls")],
        (1_796_155_030.0) + 364.5 * 86_400.0,
    ));
    app.apply_snapshot(snap);
    let screen = render(&app, 80, 24);
    for whole in [
        "163.5k", "98.8k", "1234/s", "321/s", "123.5k", "12.5/s", "364d",
    ] {
        assert!(screen.contains(whole), "{whole:?} cut:\n{screen}");
    }
    // "days left" shortens before the listener's name is cut.
    assert!(screen.contains("c2s_5223_direct_tls 364d"), "{screen}");
    assert!(screen.contains("stream un… 123.5k 12.5/s"), "{screen}");
    // The totals lose their label before a number is cut.
    assert!(screen.contains("success 1234/s  163.5k"), "{screen}");
    // A long JID in the session table and the detail box.
    let mut rows = vec![session("alice@localhost/phone", 1, 50001, 2400)];
    rows.push(session(
        "a-very-long-user-name-indeed@conference-and-chat.example.org/the-laptop-at-home",
        2,
        50002,
        1_234_567,
    ));
    app.apply_sessions(rows);
    app.tab = Tab::Sessions;
    press(&mut app, KeyCode::Home);
    let screen = render(&app, 80, 24);
    assert!(screen.contains("1.2M"), "{screen}");
    assert!(
        screen.contains("a-very-long-user-name-indeed@conferenc… the-lap…"),
        "{screen}"
    );
    assert!(screen.contains("example.org/the-…   session 2"), "{screen}");
    assert!(screen.contains("stanzas in 1234567"), "{screen}");
    // Every line of every view is the terminal's width or less.
    for tab in Tab::ALL {
        app.tab = tab;
        let screen = render(&app, 80, 24);
        for l in screen.lines() {
            assert!(crate::fit::width(l) <= 80, "{l:?}");
        }
    }
}

#[test]
fn the_title_and_the_status_line_end_with_an_ellipsis_when_cut() {
    let mut app = app();
    app.url = "http://gateway-with-a-rather-long-host-name.internal.example.org:9091".into();
    app.notice = Some(
        "tracing a-very-long-user-name-indeed@conference-and-chat.example.org/laptop (trace 12)"
            .into(),
    );
    let screen = render(&app, 80, 24);
    let first = screen.lines().next().unwrap_or_default();
    assert!(first.contains("…") && first.ends_with("● live"), "{first}");
    assert!(first.contains("up 1h02m"), "{first}");
    let last = screen.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(" ? keys · q quit") && last.ends_with('…'),
        "{last}"
    );
}

/// `/api/events` says the level each event is logged at (its override or
/// its own) and whether it is logged now; the view shows that level and
/// marks the events not logged.
#[test]
fn events_view_shows_effective_levels_and_what_is_not_logged() {
    let json = r#"[
        {"name": "c2s_auth", "help": "h", "labels": [], "level": "info", "default_level": "info",
         "overridden": false, "logged": true, "probe": false},
        {"name": "xmpp_element_in", "help": "h", "labels": [], "level": "info", "default_level": "debug",
         "overridden": true, "logged": true, "probe": false},
        {"name": "router_routed", "help": "h", "labels": [], "level": "debug", "default_level": "debug",
         "overridden": false, "logged": false, "probe": false},
        {"name": "c2s_session_open", "help": "h", "labels": [], "level": "warn", "default_level": "info",
         "overridden": true, "logged": true, "probe": false}
    ]"#;
    let mut app = app();
    app.catalogue = serde_json::from_str(json).expect("catalogue");
    press(&mut app, KeyCode::Char('3'));
    let screen = render(&app, 80, 24);
    let row = |name: &str| {
        screen
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_default()
            .to_string()
    };
    assert!(row("xmpp_element_in").contains("info*"), "{screen}");
    assert!(row("c2s_session_open").contains("warn*"), "{screen}");
    assert!(row("router_routed").contains("debug ✗"), "{screen}");
    assert!(
        row("c2s_auth").contains(" info ") && !row("c2s_auth").contains('✗'),
        "{screen}"
    );
    assert!(screen.contains("logging up to info"), "{screen}");
    assert!(screen.contains("✗ not logged"), "{screen}");
    // Without `[instrumentation.log]` nothing is logged, and the title says why.
    app.log = Some(LogStatus {
        level: "info".into(),
        handler: Some(false),
    });
    for e in &mut app.catalogue {
        e.logged = Some(false);
    }
    let screen = render(&app, 120, 40);
    assert!(
        screen.contains("event log off (no [instrumentation.log])"),
        "{screen}"
    );
    assert!(
        screen
            .lines()
            .filter(|l| l.starts_with('│') && l.contains(" ✗ "))
            .count()
            == 4,
        "{screen}"
    );
    // An older gateway says nothing about it: no marks.
    let old: Vec<EventInfo> =
        serde_json::from_str(r#"[{"name": "c2s_auth", "level": "info"}]"#).expect("old");
    assert_eq!(old[0].logged, None);
    assert_eq!(crate::views::events::level_cell(&old[0]), "info");
}

/// Login latency with no login in the last second: the last window that
/// saw one, with its age, rather than dashes.
#[test]
fn login_latency_shows_the_last_seen_percentiles_and_their_age() {
    // No login since the dashboard started: said so.
    let mut app = App::new("http://127.0.0.1:9091");
    app.link = Link::Up;
    let without = |t: u64| {
        let mut s = snapshot(t, 1.0);
        for x in &mut s.series {
            if x.kind == Kind::Histogram && x.event == "c2s_auth" {
                x.p50 = None;
                x.p99 = None;
                x.rate = Some(0.0);
            }
        }
        s
    };
    app.apply_snapshot(without(0));
    let screen = render(&app, 120, 40);
    assert!(
        screen.contains("login p50 –  p99 – (none seen)"),
        "{screen}"
    );
    // A login at t = 1, then 14 quiet seconds.
    app.apply_snapshot(snapshot(1, 1.0));
    assert!(render(&app, 120, 40).contains("login p50 4.2ms  p99 6.1ms"));
    assert!(!render(&app, 120, 40).contains("ago"));
    for t in 2..=15 {
        app.apply_snapshot(without(t));
    }
    let screen = render(&app, 120, 40);
    assert!(
        screen.contains("login p50 4.2ms  p99 6.1ms (14s ago)"),
        "{screen}"
    );
    let q = app
        .quantiles("c2s_auth", "seconds", &[("outcome", "success")])
        .expect("seen");
    assert_eq!(
        (q.p50, q.p99, q.age_seconds),
        (Some(0.0042), Some(0.0061), 14.0)
    );
    // At 80 columns the age stays; the median goes first.
    let screen = render(&app, 80, 24);
    assert!(screen.contains("login p99 6.1ms (14s ago)"), "{screen}");
    // A new login: current values, no age.
    app.apply_snapshot(snapshot(16, 1.0));
    let screen = render(&app, 80, 24);
    assert!(screen.contains("login p50 4.2ms p99 6.1ms"), "{screen}");
    assert!(!screen.contains("ago"), "{screen}");
}

fn trace_info(id: u64, filter: serde_json::Value, running: bool, records: u64) -> TraceInfo {
    TraceInfo {
        id,
        filter,
        running,
        stop_reason: (!running).then(|| "stopped by an administrator".into()),
        records,
        limit: 100_000,
        duration_seconds: 600.0,
        started: 1_796_155_000 + 10,
    }
}

/// The trace list comes from the gateway: traces started by another
/// dashboard or `osprey trace start` are listed and can be followed.
#[test]
fn trace_view_lists_the_gateways_traces_and_follows_one() {
    let mut app = App::new("http://127.0.0.1:9091");
    app.link = Link::Up;
    app.apply_snapshot(snapshot(30, 1.0));
    app.tab = Tab::Trace;
    // Sorted: running first, newest first.
    app.apply_traces(vec![
        trace_info(1, serde_json::json!({"jid": "bob@localhost"}), false, 40),
        trace_info(2, serde_json::json!({"session": 12}), true, 3),
        trace_info(3, serde_json::json!({"jid": "carol@localhost"}), true, 7),
    ]);
    let screen = render(&app, 80, 24);
    assert!(
        screen.contains("Traces on the gateway: 2 running of 3"),
        "{screen}"
    );
    let at = |who: &str| screen.find(who).unwrap_or(usize::MAX);
    assert!(at("carol@localhost") < at("session 12"), "{screen}");
    assert!(at("session 12") < at("bob@localhost"), "{screen}");
    assert!(
        screen.contains("stopped: stopped by an administrator"),
        "{screen}"
    );
    assert!(screen.contains("20s ago"), "{screen}");
    // Enter follows the selected one (the first); ↓ then x stops the next.
    assert_eq!(
        press(&mut app, KeyCode::Enter),
        Some(Action::Follow {
            id: 3,
            target: "carol@localhost".into()
        })
    );
    press(&mut app, KeyCode::Down);
    assert_eq!(
        press(&mut app, KeyCode::Char('x')),
        Some(Action::StopTrace(2))
    );
    // A stopped trace cannot be stopped again.
    press(&mut app, KeyCode::Down);
    assert_eq!(press(&mut app, KeyCode::Char('x')), None);
    press(&mut app, KeyCode::Home);
    // The feed starts following: records of trace 3 only.
    crate::apply(
        &mut app,
        crate::feed::Update::TraceStarted {
            id: 3,
            target: "carol@localhost".into(),
        },
    );
    let rec = |i| Box::new(record(i, RecKind::In, "iq", "type=get id=r1", None));
    crate::apply(&mut app, crate::feed::Update::TraceRecord(3, rec(0)));
    crate::apply(&mut app, crate::feed::Update::TraceRecord(2, rec(1)));
    let screen = render(&app, 80, 24);
    assert!(
        screen.contains("Trace 3 of carol@localhost · running · 1 records"),
        "{screen}"
    );
    assert!(screen.contains("l all traces (2 more)"), "{screen}");
    // `l` lists them again (the followed one marked); Enter on it returns.
    press(&mut app, KeyCode::Char('l'));
    let screen = render(&app, 80, 24);
    assert!(screen.contains("running (shown)"), "{screen}");
    assert_eq!(press(&mut app, KeyCode::Enter), None);
    assert!(render(&app, 80, 24).contains("Trace 3 of carol@localhost"));
    // The list follows the gateway: a trace stopped elsewhere shows so.
    app.apply_traces(vec![trace_info(
        3,
        serde_json::json!({"jid": "carol@localhost"}),
        false,
        9,
    )]);
    press(&mut app, KeyCode::Char('l'));
    assert!(render(&app, 80, 24).contains("0 running of 1"));
}

/// `GET /api/cluster` as the gateway sends it, followed from n1: n2 up,
/// n3 down (no heartbeat for 12 s). The snapshot's time is
/// 1_796_155_029_000 ms.
fn cluster_status() -> ClusterStatus {
    let now: i64 = 1_796_155_029_000;
    let node = |name: &str, port: u16, up_s: i64, beat_ms: i64, alive: bool, sessions: u64| {
        serde_json::json!({
            "node": name,
            "address": format!("10.0.0.{port}:5222"),
            "started_at": now - up_s * 1000,
            "heartbeat_age_ms": beat_ms,
            "alive": alive,
            "sessions": sessions,
        })
    };
    serde_json::from_value(serde_json::json!({
        "node": "n1",
        "cluster": "osprey",
        "nats": "connected",
        "local_sessions": 3,
        "remote_sessions": 1,
        // In the gateway's order, not by name.
        "nodes": [
            node("n3", 3, 7200, 12_400, false, 0),
            node("n1", 1, 3725, 0, true, 3),
            node("n2", 2, 300, 400, true, 1),
        ],
    }))
    .expect("the gateway's cluster status")
}

/// The dashboard following n1 of [`cluster_status`], its snapshot with the
/// cluster probe (the Sessions panel's line).
fn clustered() -> App {
    let mut app = app();
    app.cluster = Some(cluster_status());
    let mut snap = app.snapshot.as_deref().cloned().expect("a snapshot");
    for (key, v) in [
        ("nodes_alive", 2.0),
        ("nats_connected", 1.0),
        ("sessions_remote", 1.0),
    ] {
        snap.series
            .push(series("cluster", key, Kind::Gauge, &[], v));
    }
    app.snapshot = Some(std::sync::Arc::new(snap));
    app
}

/// The screen's line that shows `what`, whitespace collapsed.
fn row_of(screen: &str, what: &str) -> String {
    screen
        .lines()
        .find(|l| l.contains(what))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

#[test]
fn cluster_panel_lists_the_nodes() {
    let mut app = app();
    crate::apply(
        &mut app,
        crate::feed::Update::Cluster(Some(Box::new(cluster_status()))),
    );
    assert_eq!(app.cluster, clustered().cluster);
    let app = clustered();
    let screen = render(&app, 120, 40);
    assert!(screen.contains("cluster 2 nodes"), "{screen}");
    assert!(screen.contains("Cluster osprey · 2/3 up"), "{screen}");
    assert!(
        row_of(&screen, "heartbeat").contains("node state sessions heartbeat uptime address"),
        "{screen}"
    );
    // By name, this node marked; a down node shown as down.
    assert_eq!(
        row_of(&screen, "* n1"),
        "│* n1 up 3 0.0s 1h02m 10.0.0.1:5222 │",
        "{screen}"
    );
    assert_eq!(
        row_of(&screen, " n2 "),
        "│ n2 up 1 0.4s 5m00s 10.0.0.2:5222 │",
        "{screen}"
    );
    assert_eq!(
        row_of(&screen, " n3 "),
        "│ n3 down 0 12s 2h00m 10.0.0.3:5222 │",
        "{screen}"
    );
    let at = |who: &str| screen.find(who).unwrap_or(usize::MAX);
    assert!(
        at("* n1") < at(" n2 ") && at(" n2 ") < at(" n3 "),
        "{screen}"
    );
    // Between the top row and the stanza plots; those still drawn.
    assert!(at("Connections") < at("Cluster"), "{screen}");
    assert!(at("Cluster") < at("Stanzas per second"), "{screen}");
    assert!(screen.contains("message      114/s"), "{screen}");
}

/// At 80×24 there is no room under the top row: the panel goes beside the
/// Sessions panel, the address and the uptime go, the states stay.
#[test]
fn cluster_panel_fits_a_small_terminal() {
    let mut app = clustered();
    let screen = render(&app, 80, 24);
    for l in screen.lines() {
        assert!(crate::fit::width(l) <= 80, "{l:?}");
    }
    assert!(screen.contains("Cluster osprey"), "{screen}");
    // The Sessions panel keeps its cluster line rather than the plot.
    assert!(screen.contains("cluster 2 nodes"), "{screen}");
    assert!(row_of(&screen, "* n1").contains("* n1 up 3"), "{screen}");
    assert!(row_of(&screen, " n3 ").contains("n3 down 0"), "{screen}");
    assert!(!screen.contains("10.0.0.1"), "{screen}");
    // The other panels keep their place.
    for want in ["3 sessions", "Connections", "Stanzas per second", "Routing"] {
        assert!(screen.contains(want), "lacks {want:?}:\n{screen}");
    }
    // Many nodes: those that do not fit are counted.
    let mut many = cluster_status();
    let extra = many.nodes[1].clone();
    for i in 4..12 {
        many.nodes.push(ClusterNode {
            node: format!("n{i:02}"),
            ..extra.clone()
        });
    }
    app.cluster = Some(many);
    let screen = render(&app, 120, 40);
    assert!(screen.contains("… "), "{screen}");
    assert!(screen.contains("more"), "{screen}");
    assert!(screen.contains("message      114/s"), "{screen}");
}

/// A gateway not in a cluster (`/api/cluster` answers 404): no panel, and
/// one that left a cluster loses it.
#[test]
fn no_cluster_panel_outside_a_cluster() {
    let mut app = app();
    for (w, h) in [(120, 40), (80, 24)] {
        let screen = render(&app, w, h);
        assert!(!screen.contains("Cluster"), "{screen}");
        assert!(!screen.contains("heartbeat"), "{screen}");
    }
    let plain = render(&app, 120, 40);
    app.cluster = Some(cluster_status());
    assert_ne!(render(&app, 120, 40), plain);
    crate::apply(&mut app, crate::feed::Update::Cluster(None));
    assert_eq!(render(&app, 120, 40), plain);
    // In a cluster, before discovery saw any node.
    app.cluster = Some(ClusterStatus {
        nodes: Vec::new(),
        ..cluster_status()
    });
    let screen = render(&app, 120, 40);
    assert!(screen.contains("Cluster osprey · 0/0 up"), "{screen}");
    assert!(screen.contains("no node seen yet"), "{screen}");
}
