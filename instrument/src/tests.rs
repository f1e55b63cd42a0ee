use std::collections::HashMap;

use crate::recording::RecordingHandler;
use crate::*;

static ELEMENT_IN: EventSpec = EventSpec {
    name: "xmpp_element_in",
    help: "An element was received.",
    labels: &["connection_type", "kind"],
    metrics: &[
        Metric {
            key: "count",
            kind: MetricType::Counter,
            help: "Elements.",
        },
        Metric {
            key: "bytes",
            kind: MetricType::Histogram(Buckets::Bytes),
            help: "Size.",
        },
    ],
    level: Level::Debug,
    probe: false,
};

static OPEN: EventSpec = EventSpec {
    name: "connections",
    help: "Connections.",
    labels: &["listener"],
    metrics: &[Metric {
        key: "open",
        kind: MetricType::UpDownCounter,
        help: "Open now.",
    }],
    level: Level::Info,
    probe: false,
};

static SESSIONS: EventSpec = EventSpec {
    name: "sm_sessions",
    help: "Sessions.",
    labels: &[],
    metrics: &[Metric {
        key: "count",
        kind: MetricType::Gauge,
        help: "Sessions now.",
    }],
    level: Level::Debug,
    probe: true,
};

static NOT_REGISTERED: EventSpec = EventSpec {
    name: "stray",
    help: "",
    labels: &[],
    metrics: &[],
    level: Level::Info,
    probe: false,
};

static CATALOGUE: Catalogue = &[&ELEMENT_IN, &OPEN, &SESSIONS];

/// The value of one sample line in text output, e.g. `foo_total{a="b"}`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn prometheus_counts_gauges_and_histograms() {
    let reg = Registry::with_prometheus(CATALOGUE, Vec::new());
    let msg = reg.resolve(&ELEMENT_IN, &["c2s", "message"]);
    for size in [100.0, 300.0, 5000.0] {
        msg.emit(&[("count", 1.0), ("bytes", size)], &Meta::NONE);
    }
    let open = reg.resolve(&OPEN, &["c2s_5222"]);
    open.emit(&[("open", 1.0)], &Meta::NONE);
    open.emit(&[("open", 1.0)], &Meta::NONE);
    open.emit(&[("open", -1.0)], &Meta::NONE);
    reg.emit(&SESSIONS, &[], &[("count", 7.0)], &Meta::NONE);
    reg.emit(&SESSIONS, &[], &[("count", 5.0)], &Meta::NONE);
    let text = reg.prometheus().unwrap().openmetrics();
    let labels = "{connection_type=\"c2s\",kind=\"message\"}";
    assert_eq!(
        sample(&text, &format!("xmpp_element_in_total{labels}")),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, &format!("xmpp_element_in_bytes_count{labels}")),
        Some(3.0)
    );
    assert_eq!(
        sample(&text, &format!("xmpp_element_in_bytes_sum{labels}")),
        Some(5400.0)
    );
    let le1024 =
        "xmpp_element_in_bytes_bucket{le=\"1024.0\",connection_type=\"c2s\",kind=\"message\"}";
    assert_eq!(sample(&text, le1024), Some(2.0), "{text}");
    assert_eq!(
        sample(&text, "connections_open{listener=\"c2s_5222\"}"),
        Some(1.0)
    );
    assert_eq!(sample(&text, "sm_sessions"), Some(5.0));
    assert!(text.contains("# TYPE xmpp_element_in counter"));
    assert!(text.trim_end().ends_with("# EOF"));
    let classic = reg.prometheus().unwrap().text();
    assert!(!classic.contains("# EOF"));
    assert_eq!(
        sample(&classic, &format!("xmpp_element_in_total{labels}")),
        Some(3.0),
        "{classic}"
    );
}

#[test]
fn recording_handler_sees_labels_measurements_and_meta() {
    let rec = RecordingHandler::new();
    let reg = Registry::new(CATALOGUE, vec![Box::new(rec.clone())]);
    let h = reg.resolve(&ELEMENT_IN, &["c2s", "iq"]);
    let jid = "alice@localhost";
    h.emit(
        &[("count", 1.0), ("bytes", 42.0)],
        &Meta::new(&[("jid", &jid)]),
    );
    h.emit(&[("count", 1.0), ("bytes", 8.0)], &Meta::NONE);
    assert_eq!(rec.find("xmpp_element_in", &[("kind", "iq")]).len(), 2);
    assert_eq!(rec.sum("xmpp_element_in", &[("kind", "iq")], "bytes"), 50.0);
    assert!(rec
        .find("xmpp_element_in", &[("kind", "message")])
        .is_empty());
    assert_eq!(
        rec.records()[0].meta,
        [("jid", "alice@localhost".to_string())]
    );
    rec.clear();
    assert!(rec.records().is_empty());
}

#[test]
fn emitted_tracks_each_event() {
    let reg = Registry::disabled(CATALOGUE);
    let h = reg.resolve(&OPEN, &["x"]);
    assert!(!h.is_enabled(), "no handlers");
    h.emit(&[("open", 1.0)], &Meta::NONE);
    let emitted: HashMap<_, _> = reg.emitted().into_iter().collect();
    assert!(emitted["connections"]);
    assert!(!emitted["xmpp_element_in"]);
}

#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "not in the catalogue")]
fn unregistered_event_fails_in_debug() {
    let reg = Registry::disabled(CATALOGUE);
    reg.resolve(&NOT_REGISTERED, &[]);
}

#[test]
#[cfg(debug_assertions)]
#[should_panic]
fn wrong_label_arity_fails_in_debug() {
    let reg = Registry::disabled(CATALOGUE);
    reg.resolve(&ELEMENT_IN, &["c2s"]);
}

#[test]
fn catalogue_validation() {
    static DUP: Catalogue = &[&OPEN, &OPEN];
    assert!(spec::validate(DUP).unwrap_err().contains("twice"));
    static BAD: EventSpec = EventSpec {
        name: "Bad-Name",
        help: "",
        labels: &[],
        metrics: &[],
        level: Level::Info,
        probe: false,
    };
    static BADCAT: Catalogue = &[&BAD];
    assert!(spec::validate(BADCAT).is_err());
    assert!(spec::validate(CATALOGUE).is_ok());
}

struct Panicker;
impl Handler for Panicker {
    fn name(&self) -> &'static str {
        "panicker"
    }
    fn wants(&self, _: &EventSpec) -> bool {
        true
    }
    fn resolve(&self, _: &'static EventSpec, _: &[&str]) -> Option<Box<dyn ResolvedHandler>> {
        Some(Box::new(Panicker))
    }
}
impl ResolvedHandler for Panicker {
    fn handle(&self, _: &[(&'static str, f64)], _: &Meta<'_>) {
        panic!("handler bug");
    }
}

#[test]
fn a_panicking_handler_is_isolated() {
    let rec = RecordingHandler::new();
    let reg = Registry::new(CATALOGUE, vec![Box::new(Panicker), Box::new(rec.clone())]);
    let h = reg.resolve(&OPEN, &["x"]);
    h.emit(&[("open", 1.0)], &Meta::NONE);
    h.emit(&[("open", 1.0)], &Meta::NONE);
    assert_eq!(rec.records().len(), 2, "the other handler still runs");
    assert_eq!(reg.handler_panics(), 1, "disabled after the first panic");
}

#[test]
fn log_handler_filters_by_level() {
    let log = log::LogHandler::new(
        Level::Info,
        HashMap::from([("xmpp_element_in".to_string(), Level::Warn)]),
    );
    // Every event is taken: the level is checked per emission, against a
    // maximum that can change at run time.
    assert!(log.wants(&ELEMENT_IN) && log.wants(&OPEN) && log.wants(&SESSIONS));
    assert_eq!(log::max_level(), Level::Info);
    log::set_max_level(Level::Debug);
    assert_eq!(log::max_level(), Level::Debug);
    log::set_max_level(Level::Info);
    // Emitting through it with no subscriber does nothing and does not fail.
    let reg = Registry::new(CATALOGUE, vec![Box::new(log)]);
    reg.resolve(&OPEN, &["x"])
        .emit(&[("open", 1.0)], &Meta::NONE);
}

struct Sessions;
impl probe::Probe for Sessions {
    fn spec(&self) -> &'static EventSpec {
        &SESSIONS
    }
    fn sample(&self, out: &mut Vec<probe::Sample>) {
        out.push(probe::Sample {
            labels: vec![],
            measurements: vec![("count", 3.0)],
        });
    }
}
struct Broken;
impl probe::Probe for Broken {
    fn spec(&self) -> &'static EventSpec {
        &SESSIONS
    }
    fn sample(&self, _: &mut Vec<probe::Sample>) {
        panic!("probe bug")
    }
}

#[tokio::test]
async fn probes_run_and_survive_a_panicking_one() {
    let rec = RecordingHandler::new();
    let reg = Registry::new(CATALOGUE, vec![Box::new(rec.clone())]);
    let task = probe::spawn_probes(
        reg.clone(),
        std::time::Duration::from_millis(20),
        vec![Box::new(Broken), Box::new(Sessions)],
    );
    // Wait for two rounds rather than a fixed time: a panic with
    // RUST_BACKTRACE set can take longer than the interval in debug.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while rec.find("sm_sessions", &[]).len() < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    task.abort();
    let n = rec.find("sm_sessions", &[]).len();
    assert!(n >= 2, "ran {n} times");
    assert!(rec
        .find("sm_sessions", &[])
        .iter()
        .all(|r| r.value("count") == Some(3.0)));
}

#[test]
fn process_probe_reads_proc() {
    let mut out = Vec::new();
    probe::Probe::sample(&probe::process::ProcessProbe::new(), &mut out);
    let m: HashMap<_, _> = out[0].measurements.iter().copied().collect();
    assert!(m["resident_memory_bytes"] > 1_000_000.0);
    assert!(m["open_fds"] >= 3.0);
    assert!(m.contains_key("cpu_seconds"));
}

#[test]
fn metric_names_follow_the_rule() {
    assert_eq!(
        ELEMENT_IN.metric_name(&ELEMENT_IN.metrics[0]),
        "xmpp_element_in"
    );
    assert_eq!(
        ELEMENT_IN.metric_name(&ELEMENT_IN.metrics[1]),
        "xmpp_element_in_bytes"
    );
}
