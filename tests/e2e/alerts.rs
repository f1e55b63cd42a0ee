//! The Prometheus alerting rules (dashboards/alerts.yml), proven: promtool
//! checks them and runs their unit tests (dashboards/alerts.test.yml), every
//! rule carries what an on-call engineer needs, the compose stack loads
//! them, and every metric they read is exposed by a real gateway.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Backend, Options, Server};
use crate::http::get;
use crate::raw::Raw;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const PROMTOOL_REQUIRED: &str = "promtool is required: apt-get install prometheus";

/// Metrics being renamed in a separate change: (new name, old name). Until
/// it lands the gateway exposes the old name only; either is accepted then.
const RENAMED: [(&str, &str); 2] = [
    (
        "tls_certificate_expiry_timestamp_seconds",
        "tls_certificate_days_remaining",
    ),
    ("process_cpu_seconds_total", "process_cpu_seconds"),
];

/// Series Prometheus makes itself, not the gateway.
const SYNTHETIC: [&str; 1] = ["up"];

/// Series created at their first event, not at start.
const FIRST_EVENT: [&str; 1] = ["c2s_auth_total"];

/// Runs promtool; a missing promtool fails the test.
fn promtool(args: &[&str]) -> (bool, String) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(ROOT)
        .output()
        .unwrap_or_else(|e| panic!("{PROMTOOL_REQUIRED} ({e})"));
    let text = format!(
        "promtool {}:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A YAML file as JSON (python3-yaml, as in dashboards.rs).
fn yaml(path: &str) -> Value {
    let out = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
            &format!("{ROOT}/{path}"),
        ])
        .output()
        .expect("python3 with python3-yaml is required");
    assert!(
        out.status.success(),
        "{path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every alerting rule of the `osprey` group.
fn rules() -> Vec<Value> {
    let doc = yaml("dashboards/alerts.yml");
    let groups = doc["groups"].as_array().expect("groups");
    let group = groups
        .iter()
        .find(|g| g["name"] == "osprey")
        .expect("group osprey");
    group["rules"].as_array().expect("rules").clone()
}

#[test]
fn promtool_checks_the_rules_and_runs_their_unit_tests() {
    let (ok, text) = promtool(&["check", "rules", "dashboards/alerts.yml"]);
    assert!(ok, "{text}");
    let (ok, text) = promtool(&["test", "rules", "dashboards/alerts.test.yml"]);
    assert!(ok, "{text}");
}

#[test]
fn every_alert_is_documented_and_unit_tested() {
    let rules = rules();
    assert!(rules.len() >= 8, "only {} rules", rules.len());
    let tests = yaml("dashboards/alerts.test.yml");
    let cases: Vec<&Value> = tests["tests"]
        .as_array()
        .expect("tests")
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_array().into_iter().flatten())
        .collect();
    let readme = std::fs::read_to_string(format!("{ROOT}/dashboards/README.md"))
        .expect("dashboards/README.md");
    let mut names = BTreeSet::new();
    for r in &rules {
        let name = r["alert"].as_str().expect("only alerting rules");
        assert!(names.insert(name), "{name} defined twice");
        assert!(
            ["critical", "warning", "info"]
                .contains(&r["labels"]["severity"].as_str().unwrap_or("")),
            "{name}: severity label"
        );
        for a in ["summary", "description", "runbook"] {
            let text = r["annotations"][a].as_str().unwrap_or("");
            assert!(!text.trim().is_empty(), "{name}: {a} annotation");
            assert!(!text.contains('\n'), "{name}: {a} is one line");
        }
        let fires = cases.iter().any(|c| {
            c["alertname"] == name && c["exp_alerts"].as_array().is_some_and(|a| !a.is_empty())
        });
        let silent = cases.iter().any(|c| {
            c["alertname"] == name && c["exp_alerts"].as_array().is_none_or(|a| a.is_empty())
        });
        assert!(
            fires && silent,
            "{name}: alerts.test.yml must show it firing and staying silent"
        );
        assert!(
            readme.contains(name),
            "{name} is not documented in dashboards/README.md"
        );
    }
}

#[test]
fn the_compose_stack_loads_the_rules() {
    let prom = yaml("compose/prometheus.yml");
    let files: Vec<&str> = prom["rule_files"]
        .as_array()
        .expect("rule_files in compose/prometheus.yml")
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert_eq!(files, ["../dashboards/alerts.yml"]);
    // Relative rule files resolve against the configuration's directory:
    // compose/ here, /etc/prometheus in the container.
    let compose = yaml("compose/docker-compose.yml");
    let service = &compose["services"]["prometheus"];
    let config_path = service["command"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .find_map(|a| a.strip_prefix("--config.file="))
        .expect("--config.file");
    let config_dir = std::path::Path::new(config_path).parent().unwrap();
    let in_container = normalize(&config_dir.join(files[0]));
    let mounts: Vec<&str> = service["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let want = format!("../dashboards/alerts.yml:{}", in_container.display());
    assert!(
        mounts.iter().any(|m| m.starts_with(&want)),
        "the prometheus service must mount {want}: {mounts:?}"
    );
    // And promtool, reading the file from the repository, finds them.
    let (ok, text) = promtool(&["check", "config", "compose/prometheus.yml"]);
    assert!(ok, "{text}");
    assert!(text.contains("1 rule files found"), "{text}");
}

/// `a/b/../c` → `a/c` (no file system access: the path is the container's).
fn normalize(p: &std::path::Path) -> std::path::PathBuf {
    let mut out = std::path::PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

/// Operators and aggregations: never a metric name here.
const KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "offset",
    "bool",
    "inf",
    "nan",
    "atan2",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
];

/// One vector selector of an expression: `name{label op "value", ...}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Selector {
    name: String,
    /// (label, operator, value) with `=`, `!=`, `=~`, `!~`.
    matchers: Vec<(String, String, String)>,
}

/// Reads a quoted string starting at `b[i]` (the quote); returns it and the
/// index after the closing quote.
fn quoted(expr: &str, i: usize) -> (String, usize) {
    let b = expr.as_bytes();
    let q = b[i];
    let mut j = i + 1;
    let mut out = String::new();
    while j < b.len() && b[j] != q {
        if b[j] == b'\\' && j + 1 < b.len() {
            j += 1;
        }
        out.push(b[j] as char);
        j += 1;
    }
    (out, j + 1)
}

/// The matchers between `{` at `b[i]` and its `}`; returns them and the
/// index after the `}`.
fn matchers(expr: &str, mut i: usize) -> (Vec<(String, String, String)>, usize) {
    let b = expr.as_bytes();
    let mut out = Vec::new();
    i += 1;
    loop {
        while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b',') {
            i += 1;
        }
        if i >= b.len() || b[i] == b'}' {
            return (out, i + 1);
        }
        let start = i;
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
            i += 1;
        }
        let label = expr[start..i].to_string();
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let op_start = i;
        while i < b.len() && matches!(b[i], b'=' | b'!' | b'~') {
            i += 1;
        }
        let op = expr[op_start..i].to_string();
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        assert!(
            i < b.len() && matches!(b[i], b'"' | b'\'' | b'`'),
            "cannot read the matchers of {expr}"
        );
        let (value, next) = quoted(expr, i);
        i = next;
        out.push((label, op, value));
    }
}

/// The vector selectors of a PromQL expression: identifiers outside label
/// matchers, ranges and strings that are neither functions, operators nor
/// the label lists of `by`/`without`/`on`/`ignoring`/`group_*`.
fn selectors(expr: &str) -> BTreeSet<Selector> {
    let b = expr.as_bytes();
    let mut found = BTreeSet::new();
    let mut i = 0;
    let mut label_list_next = false;
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' | b'`' => i = quoted(expr, i).1,
            // A range or subquery, or matchers without a name.
            b'[' => {
                while i < b.len() && b[i] != b']' {
                    i += 1;
                }
                i += 1;
            }
            b'{' => i = matchers(expr, i).1,
            b'(' if label_list_next => {
                while i < b.len() && b[i] != b')' {
                    i += 1;
                }
                i += 1;
                label_list_next = false;
            }
            b'0'..=b'9' | b'.' => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b':' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':')
                {
                    i += 1;
                }
                let word = &expr[start..i];
                let lower = word.to_ascii_lowercase();
                let rest = expr[i..].trim_start();
                if [
                    "by",
                    "without",
                    "on",
                    "ignoring",
                    "group_left",
                    "group_right",
                ]
                .contains(&lower.as_str())
                {
                    label_list_next = true;
                } else if rest.starts_with('(') || KEYWORDS.contains(&lower.as_str()) {
                    // A function call or an operator.
                } else {
                    let mut sel = Selector {
                        name: word.to_string(),
                        matchers: Vec::new(),
                    };
                    if rest.starts_with('{') {
                        let brace = expr.len() - rest.len();
                        let (m, next) = matchers(expr, brace);
                        sel.matchers = m;
                        i = next;
                    }
                    found.insert(sel);
                }
            }
            _ => i += 1,
        }
    }
    found
}

#[test]
fn selectors_are_read_from_expressions() {
    let got = selectors(
        "sum by (instance, le) (rate(a_seconds_bucket{x=\"y{\", z=~'o_.*'}[5m])) / on (instance) group_left b_total \
         unless c offset 10m > 0.5 and min by (l) (d) - time() < 14 * 86400 or up{job=\"osprey\"} == 0",
    );
    let sel = |name: &str, m: &[(&str, &str, &str)]| Selector {
        name: name.into(),
        matchers: m
            .iter()
            .map(|(l, o, v)| (l.to_string(), o.to_string(), v.to_string()))
            .collect(),
    };
    let want: BTreeSet<Selector> = [
        sel("a_seconds_bucket", &[("x", "=", "y{"), ("z", "=~", "o_.*")]),
        sel("b_total", &[]),
        sel("c", &[]),
        sel("d", &[]),
        sel("up", &[("job", "=", "osprey")]),
    ]
    .into_iter()
    .collect();
    assert_eq!(got, want);
}

/// The sample lines of /metrics as (name, labels).
fn samples(metrics: &str) -> Vec<(&str, Vec<(String, String)>)> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let end = l.find(['{', ' ']).unwrap_or(l.len());
            let name = &l[..end];
            let labels = if l[end..].starts_with('{') {
                matchers(l, end)
                    .0
                    .into_iter()
                    .map(|(k, _, v)| (k, v))
                    .collect()
            } else {
                Vec::new()
            };
            (name, labels)
        })
        .collect()
}

/// A series of the scrape matches the selector (under `name`). Regular
/// expressions are checked when they are a literal prefix and `.*`,
/// otherwise only the label's presence is.
fn selected(metrics: &str, sel: &Selector, name: &str) -> bool {
    samples(metrics).iter().any(|(n, labels)| {
        *n == name
            && sel.matchers.iter().all(|(l, op, v)| {
                let value = labels.iter().find(|(k, _)| k == l).map(|(_, v)| v.as_str());
                match (op.as_str(), value) {
                    ("=", got) => got.unwrap_or("") == v,
                    ("=~", Some(got)) => match v.strip_suffix(".*") {
                        Some(prefix) if !prefix.contains(['.', '*', '|', '(', '[', '+', '?']) => {
                            got.starts_with(prefix)
                        }
                        _ => true,
                    },
                    ("=~", None) => false,
                    _ => true,
                }
            })
    })
}

/// What a selector misses in a scrape, allowing the old name of a renamed
/// metric (with a note) until the rename lands.
fn missing(metrics: &str, sels: &BTreeSet<Selector>) -> Vec<String> {
    sels.iter()
        .filter(|sel| {
            if selected(metrics, sel, &sel.name) {
                return false;
            }
            match RENAMED.iter().find(|(new, _)| *new == sel.name) {
                Some((new, old)) if selected(metrics, sel, old) => {
                    eprintln!(
                        "note: dashboards/alerts.yml reads {new}; this gateway still exposes the \
                         old name {old}: accepted until the rename lands"
                    );
                    false
                }
                _ => true,
            }
        })
        .map(|sel| format!("{sel:?}"))
        .collect()
}

/// Scrapes until `done` holds or 30 s pass (the deadline only bounds a
/// failure: probes run every second), and returns the last scrape.
async fn scrape_until(s: &Server, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let body = get(s.http, "/metrics", None).await.body;
        if done(&body) || Instant::now() > deadline {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_series_the_alerts_select_is_exposed_by_the_gateway() {
    let mut all = BTreeSet::new();
    for r in rules() {
        let expr = r["expr"].as_str().expect("expr");
        let found = selectors(expr);
        assert!(!found.is_empty(), "{}: no metric in {expr}", r["alert"]);
        all.extend(
            found
                .into_iter()
                .filter(|s| !SYNTHETIC.contains(&s.name.as_str())),
        );
    }
    let names: BTreeSet<&str> = all.iter().map(|s| s.name.as_str()).collect();
    for m in [
        "c2s_auth_total",
        "storage_query_total",
        "tls_certificate_expiry_timestamp_seconds",
        "cluster_unacked",
    ] {
        assert!(names.contains(m), "{m} not found in the alerts: {names:?}");
    }
    // The cluster's series exist only on nodes with [cluster]: read from one.
    let (clustered, all): (BTreeSet<Selector>, BTreeSet<Selector>) = all
        .into_iter()
        .partition(|s| s.name.starts_with("cluster_"));
    {
        let nats = crate::harness::Nats::start();
        let db = crate::harness::SharedDb::new();
        let n1 = crate::cluster::node(&nats, &db, "n1");
        let metrics = scrape_until(&n1, |m| missing(m, &clustered).is_empty()).await;
        let lacking = missing(&metrics, &clustered);
        assert!(
            lacking.is_empty(),
            "cluster series selected by dashboards/alerts.yml that a fresh cluster node \
             does not expose: {lacking:?}\n/metrics:\n{metrics}"
        );
    }

    // STARTTLS, as in production, so the certificate probe has a listener.
    let s = Server::start(Options::new(Backend::Sqlite));
    // Before anything happens, every series but the authentication outcomes
    // (labelled by mechanism and SASL reason, created at the first attempt)
    // exists at 0: the "increase() > 0" alerts see the first event.
    let at_start: BTreeSet<Selector> = all
        .iter()
        .filter(|s| !FIRST_EVENT.contains(&s.name.as_str()))
        .cloned()
        .collect();
    let metrics = scrape_until(&s, |m| missing(m, &at_start).is_empty()).await;
    let lacking = missing(&metrics, &at_start);
    assert!(
        lacking.is_empty(),
        "series selected by dashboards/alerts.yml that a fresh gateway does not expose: \
         {lacking:?}\n/metrics:\n{metrics}"
    );

    // A login (auth success), a closed session, a failed login.
    s.register("alice@localhost", "pw");
    let mut alice = Raw::login_starttls(s.c2s, "alice", "pw", "a").await;
    alice.send("</stream:stream>").await;
    alice.read_to_close().await;
    let bad = Raw::failed_login_starttls(s.c2s).await;
    let metrics = scrape_until(&s, |m| missing(m, &all).is_empty()).await;
    let lacking = missing(&metrics, &all);
    assert!(
        lacking.is_empty(),
        "series selected by dashboards/alerts.yml that the gateway does not expose: \
         {lacking:?}\n/metrics:\n{metrics}"
    );
    drop(bad);
}
