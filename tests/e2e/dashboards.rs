//! The Grafana dashboards, proven: their structure, and every PromQL
//! expression run by a real Prometheus scraping a real Osprey after a
//! scripted session. Also the provisioning files and the compose stack's
//! configuration, with the tools that read them.

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Backend, Options, Server};
use crate::http::get;
use crate::raw::Raw;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const DASHBOARDS: [&str; 2] = ["osprey-overview.json", "osprey-internals.json"];
/// Proven on a cluster (tests/e2e/cluster.rs), structure checked here.
pub(crate) const CLUSTER_DASHBOARD: &str = "osprey-cluster.json";

fn load(name: &str) -> Value {
    let text =
        std::fs::read_to_string(format!("{ROOT}/dashboards/{name}")).expect("dashboard file");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn panels(d: &Value) -> Vec<&Value> {
    d["panels"].as_array().expect("panels").iter().collect()
}

/// (panel title, expression)
fn expressions(d: &Value) -> Vec<(String, String)> {
    panels(d)
        .into_iter()
        .filter(|p| p["type"] != "row")
        .flat_map(|p| {
            let title = p["title"].as_str().unwrap_or("").to_string();
            p["targets"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |t| (title.clone(), t["expr"].as_str().unwrap_or("").to_string()))
        })
        .collect()
}

#[test]
fn dashboards_have_the_expected_structure() {
    for name in DASHBOARDS.into_iter().chain([CLUSTER_DASHBOARD]) {
        let d = load(name);
        assert!(d["uid"].is_string() && d["title"].is_string(), "{name}");
        assert!(
            d["schemaVersion"].as_u64().unwrap_or(0) >= 36,
            "{name}: current schema"
        );
        let vars: Vec<&str> = d["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v["name"].as_str())
            .collect();
        assert_eq!(vars, ["datasource", "instance", "host"], "{name}");
        let mut ids = HashSet::new();
        for p in panels(&d) {
            let title = p["title"].as_str().unwrap_or("?");
            assert!(
                ids.insert(p["id"].as_u64().expect("panel id")),
                "{name}: duplicate id at {title}"
            );
            let g = &p["gridPos"];
            assert!(
                g["x"].as_u64().unwrap() + g["w"].as_u64().unwrap() <= 24,
                "{name}: {title} is wider than the grid"
            );
            if p["type"] == "row" {
                continue;
            }
            assert_eq!(
                p["datasource"]["uid"], "${datasource}",
                "{name}: {title}: no hard-coded datasource"
            );
            assert!(
                !p["description"].as_str().unwrap_or("").is_empty(),
                "{name}: {title} needs a description"
            );
            // Error, close and limit series exist at 0 from start: no
            // panel is empty until something happens.
            assert!(
                !p["description"]
                    .as_str()
                    .unwrap_or("")
                    .contains("May be empty"),
                "{name}: {title}: every panel has data (pre-create its series at 0)"
            );
            assert!(
                p["fieldConfig"]["defaults"]["unit"].is_string(),
                "{name}: {title} needs a unit"
            );
            let targets = p["targets"].as_array().expect("targets");
            assert!(!targets.is_empty(), "{name}: {title} has no query");
            for t in targets {
                assert_eq!(t["datasource"]["uid"], "${datasource}", "{name}: {title}");
                let expr = t["expr"].as_str().unwrap_or("");
                assert!(
                    expr.contains("$instance"),
                    "{name}: {title}: filter by $instance: {expr}"
                );
            }
        }
        // No datasource UID anywhere but the variable.
        let text = d.to_string();
        for (i, _) in text.match_indices("\"uid\":") {
            let rest = &text[i + 6..];
            assert!(
                rest.starts_with("\"${datasource}\"")
                    || rest.starts_with(&format!("\"{}\"", d["uid"].as_str().unwrap())),
                "{name}: hard-coded uid near {}",
                &rest[..rest.len().min(40)]
            );
        }
    }
}

fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$instance", ".*")
        .replace("$host", ".*")
}

/// Metric names used in an expression (identifiers directly before `{`).
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    for (i, _) in expr.match_indices('{') {
        let head = &expr[..i];
        let start = head
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map(|p| p + 1)
            .unwrap_or(0);
        if start < i {
            names.push(head[start..].to_string());
        }
    }
    names
}

fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_query_runs_on_real_prometheus() {
    // STARTTLS required, as in production: the certificate panel has data.
    let s = Server::start(Options::new(Backend::Sqlite));
    for u in ["alice", "bob", "carol"] {
        s.register(&format!("{u}@localhost"), "pw");
    }
    // A scripted session that touches what the panels show.
    let mut alice = Raw::login_starttls(s.c2s, "alice", "pw", "a").await;
    let mut bob = Raw::login_starttls(s.c2s, "bob", "pw", "b").await;
    alice.send("<presence/>").await;
    alice
        .send("<iq type='set' id='r1'><query xmlns='jabber:iq:roster'><item jid='bob@localhost'/></query></iq>")
        .await;
    alice.expect("id='r1'").await;
    for i in 0..5 {
        alice
            .send(&format!(
                "<message to='bob@localhost/b' type='chat' id='d{i}'><body>hi</body></message>"
            ))
            .await;
        bob.expect(&format!("id='d{i}'")).await;
    }
    // Stored data (the Modules row): a vCard, a PEP item, a MAM page.
    alice
        .send("<iq type='set' id='v1'><vCard xmlns='vcard-temp'><FN>Alice</FN></vCard></iq>")
        .await;
    alice.expect("id='v1'").await;
    alice
        .send(
            "<iq type='set' id='n1'><pubsub xmlns='http://jabber.org/protocol/pubsub'>\
             <publish node='http://jabber.org/protocol/nick'><item>\
             <nick xmlns='http://jabber.org/protocol/nick'>al</nick></item></publish></pubsub></iq>",
        )
        .await;
    alice.expect("id='n1'").await;
    alice
        .send("<iq type='set' id='m1'><query xmlns='urn:xmpp:mam:2'/></iq>")
        .await;
    alice.expect("id='m1'").await;
    alice
        .send("<message to='carol@localhost' type='chat' id='o1'><body>later</body></message>")
        .await;
    alice
        .send("<message to='nobody@localhost' type='chat' id='u1'><body>?</body></message>")
        .await;
    alice.expect("id='u1'").await;
    let mut carol = Raw::login_starttls(s.c2s, "carol", "pw", "c").await;
    carol.send("<presence/>").await;
    carol.expect("id='o1'").await;
    carol.send("</stream:stream>").await;
    carol.read_to_close().await;
    let mut bad = Raw::failed_login_starttls(s.c2s).await;
    let _ = bad.try_send(b"<oops></nope>").await;
    bad.read_to_close().await;

    // A real Prometheus scraping every second.
    let prom = Prometheus::start(&[s.http]).await;
    let (checked, failures) = check_panels(&prom, &DASHBOARDS, &[s.http]).await;
    assert!(checked > 30, "only {checked} expressions");
    assert!(
        failures.is_empty(),
        "{} of {checked} expressions failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    drop((alice, bob));
}

/// A real Prometheus scraping `targets` (job `osprey`) every second;
/// killed with this value.
pub(crate) struct Prometheus {
    child: std::process::Child,
    _dir: tempfile::TempDir,
    api: std::net::SocketAddr,
}

impl Prometheus {
    /// Started, and waited for until it has scraped every target four
    /// times (enough for rate() over a minute).
    pub(crate) async fn start(targets: &[std::net::SocketAddr]) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let list: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        std::fs::write(
            dir.path().join("prometheus.yml"),
            format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: osprey\n    static_configs:\n      - targets: [{}]\n", list.join(", ")),
        )
        .unwrap();
        let port = crate::harness::free_port();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}/prometheus.yml",
                dir.path().display()
            ))
            .arg(format!("--storage.tsdb.path={}/data", dir.path().display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus is required: apt-get install prometheus");
        let api: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let prom = Prometheus {
            child,
            _dir: dir,
            api,
        };
        let up = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(api).await.is_err() {
            assert!(Instant::now() < up, "Prometheus did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let v = prom.query("min(count_over_time(up[1m]))").await;
            let series = prom.query("count(up)").await;
            let n = |v: &Value| {
                v["data"]["result"][0]["value"][1]
                    .as_str()
                    .and_then(|x| x.parse::<f64>().ok())
                    .unwrap_or(0.0)
            };
            if n(&v) >= 4.0 && n(&series) >= targets.len() as f64 {
                break;
            }
            assert!(Instant::now() < deadline, "Prometheus did not scrape: {v}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        prom
    }

    pub(crate) async fn query(&self, q: &str) -> Value {
        let r = get(
            self.api,
            &format!("/api/v1/query?query={}", encode(q)),
            None,
        )
        .await;
        serde_json::from_str::<Value>(&r.body).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs every panel expression of `dashboards` on `prom`: each metric must
/// be in some target's /metrics and each query must return data. Returns
/// how many were checked and what failed.
pub(crate) async fn check_panels(
    prom: &Prometheus,
    dashboards: &[&str],
    targets: &[std::net::SocketAddr],
) -> (usize, Vec<String>) {
    let mut metrics = String::new();
    for t in targets {
        metrics.push_str(&get(*t, "/metrics", None).await.body);
    }
    let mut failures = Vec::new();
    let mut checked = 0;
    for name in dashboards {
        for (title, expr) in expressions(&load(name)) {
            checked += 1;
            for m in metric_names(&expr) {
                if !metrics.contains(&format!("{m}{{"))
                    && !metrics.lines().any(|l| l.starts_with(&format!("{m} ")))
                    && !metrics.contains(&format!("# TYPE {m} "))
                {
                    failures.push(format!("{name} / {title}: metric {m} is not in /metrics"));
                }
            }
            let v = prom.query(&substitute(&expr)).await;
            if v["status"] != "success" {
                failures.push(format!("{name} / {title}: Prometheus refused {expr}: {v}"));
                continue;
            }
            // Every panel has data: what has not happened yet is a 0.
            let empty = v["data"]["result"].as_array().is_none_or(|r| r.is_empty());
            if empty {
                failures.push(format!("{name} / {title}: no data for {expr}"));
            }
        }
    }
    (checked, failures)
}

#[test]
fn provisioning_and_compose_are_valid() {
    // promtool on the stack's Prometheus configuration.
    let out = Command::new("promtool")
        .args(["check", "config", &format!("{ROOT}/compose/prometheus.yml")])
        .output()
        .expect("promtool is required: apt-get install prometheus");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // docker-compose (Debian's) reads the compose file; no engine is needed.
    let out = Command::new("docker-compose")
        .args([
            "-f",
            &format!("{ROOT}/compose/docker-compose.yml"),
            "config",
            "-q",
        ])
        .output()
        .expect("docker-compose is required: apt-get install docker-compose");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The provisioning files parse, and the paths they and compose name exist.
    let script = r#"
import json, sys, yaml
root = sys.argv[1]
ds = yaml.safe_load(open(root + "/grafana/provisioning/datasources/prometheus.yml"))
dp = yaml.safe_load(open(root + "/grafana/provisioning/dashboards/osprey.yml"))
dc = yaml.safe_load(open(root + "/compose/docker-compose.yml"))
print(json.dumps({"ds": ds, "dp": dp, "grafana": dc["services"]["grafana"], "osprey": dc["services"]["osprey"]}))
"#;
    let out = Command::new("/usr/bin/python3")
        .args(["-c", script, ROOT])
        .output()
        .expect("python3 with python3-yaml is required");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ds = &v["ds"]["datasources"][0];
    assert_eq!(ds["type"], "prometheus");
    assert_eq!(ds["url"], "http://prometheus:9090");
    let path = v["dp"]["providers"][0]["options"]["path"].as_str().unwrap();
    let mounts: Vec<String> = v["grafana"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_string())
        .collect();
    let dash_mount = mounts
        .iter()
        .find(|m| m.contains(path))
        .unwrap_or_else(|| panic!("no mount for {path}: {mounts:?}"));
    let host_side = dash_mount.split(':').next().unwrap();
    let dir = std::path::Path::new(ROOT).join("compose").join(host_side);
    for name in DASHBOARDS {
        assert!(
            dir.join(name).exists(),
            "{} missing",
            dir.join(name).display()
        );
    }
    assert!(
        mounts
            .iter()
            .any(|m| m.starts_with("../grafana/provisioning:")),
        "{mounts:?}"
    );
    for f in [
        "Dockerfile",
        "osprey.toml",
        "prometheus.yml",
        "otel-collector.yml",
    ] {
        assert!(
            std::path::Path::new(ROOT).join("compose").join(f).exists(),
            "compose/{f}"
        );
    }
    // The image's configuration loads (`osprey events` never reads it: see
    // config_loads).
    crate::cluster_deploy::config_loads(std::path::Path::new(&format!(
        "{ROOT}/compose/osprey.toml"
    )))
    .unwrap();
    let dockerfile = std::fs::read_to_string(format!("{ROOT}/compose/Dockerfile")).unwrap();
    assert!(dockerfile.contains("USER osprey") && dockerfile.contains("HEALTHCHECK"));
}
