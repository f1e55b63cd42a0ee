use std::path::Path;

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("/etc/osprey.toml"))
}

fn err(text: &str) -> ConfigError {
    parse(text).expect_err("must be refused")
}

#[test]
fn empty_file_has_defaults_and_no_handlers() {
    let c = parse("").unwrap();
    assert_eq!(c.general.hosts, ["localhost"]);
    assert_eq!(c.listen.c2s.len(), 1);
    assert_eq!(c.listen.c2s[0].port, 5222);
    assert_eq!(c.listen.c2s[0].tls.mode, TlsMode::StarttlsRequired);
    assert_eq!(c.listen.http[0].port, 9091);
    assert_eq!(c.listen.http[0].address.to_string(), "127.0.0.1");
    assert_eq!(c.storage.url, "sqlite://data/osprey.db");
    assert!(c.instrumentation.prometheus.is_none() && c.instrumentation.log.is_none());
}

#[test]
fn no_file_turns_handlers_on() {
    let c = Config::default_for_no_file();
    assert!(c.instrumentation.prometheus.is_some() && c.instrumentation.log.is_some());
    assert!(c.source.is_none());
}

#[test]
fn full_example_loads() {
    let text = include_str!("../../osprey.example.toml");
    let c = parse(text).unwrap();
    assert_eq!(c.listen.c2s[0].max_stanza_size, 262_144);
    assert!(c.instrumentation.prometheus.is_some());
    assert_eq!(
        c.instrumentation
            .log
            .as_ref()
            .unwrap()
            .events
            .get("xmpp_element_in"),
        Some(&Level::Debug)
    );
}

#[test]
fn data_dir_drives_the_sqlite_default_and_empty_c2s_means_none() {
    let c = parse("listen.c2s = []\n[general]\ndata_dir = \"/var/lib/osprey\"\n").unwrap();
    assert_eq!(c.storage.url, "sqlite:///var/lib/osprey/osprey.db");
    assert!(c.listen.c2s.is_empty());
}

#[test]
fn unknown_keys_name_line_and_key() {
    let e = err("[general]\nhosts = [\"a.org\"]\nhostz = 1\n");
    assert_eq!((e.line, e.key.as_str()), (Some(3), "general.hostz"), "{e}");
    let e = err("[general]\n\n[[listen.c2s]]\nport = 5222\ntls.modee = \"none\"\n");
    assert_eq!(e.line, Some(5), "{e}");
    assert!(
        e.key.contains("listen.c2s[0].tls") && e.key.ends_with("modee"),
        "{e}"
    );
    let e = err("[nonsense]\n");
    assert_eq!(e.line, Some(1), "{e}");
    let e = err("[instrumentation.statsd]\n");
    assert!(e.to_string().contains("statsd"), "{e}");
}

#[test]
fn bad_values_name_line_and_key() {
    let e = err("[[listen.c2s]]\nport = 5222\n\n[[listen.c2s]]\nport = \"x\"\n");
    assert_eq!(
        (e.line, e.key.as_str()),
        (Some(5), "listen.c2s[1].port"),
        "{e}"
    );
    let e = err("[[listen.c2s]]\ntls.mode = \"tsl\"\n");
    assert_eq!(e.line, Some(2), "{e}");
    assert!(e.message.contains("starttls_required"), "{e}");
    let e = err("[storage]\nurl = 42\n");
    assert_eq!((e.line, e.key.as_str()), (Some(2), "storage.url"), "{e}");
    let shown = e.to_string();
    assert!(
        shown.starts_with("config error: /etc/osprey.toml:2:"),
        "{shown}"
    );
}

#[test]
fn validation_errors_are_located() {
    let e = err("[general]\nhosts = []\n");
    assert_eq!((e.line, e.key.as_str()), (Some(2), "general.hosts"), "{e}");
    let e = err("[auth]\n\nscram_iterations = 100\n");
    assert_eq!(
        (e.line, e.key.as_str()),
        (Some(3), "auth.scram_iterations"),
        "{e}"
    );
    let e = err("[[listen.c2s]]\nport = 1\n[[listen.c2s]]\nport = 2\ntls.certfile = \"c.pem\"\n");
    assert_eq!(e.key, "listen.c2s[1].tls", "{e}");
    assert_eq!(e.line, Some(5), "{e}");
    let e = err("[[listen.c2s]]\nport = 5222\n[[listen.c2s]]\nport = 5222\n");
    assert_eq!(
        (e.line, e.key.as_str()),
        (Some(4), "listen.c2s[1].port"),
        "{e}"
    );
    let e = err("[general]\nhosts = [\"bad host\"]\n");
    assert_eq!(e.line, Some(2), "{e}");
    let e = err("[storage]\nurl = \"mysql://x\"\n");
    assert_eq!(e.line, Some(2), "{e}");
}

#[test]
fn otlp_and_graphite_sections() {
    let c = parse("[instrumentation.otlp]\nsample_ratio = 0.01\n[[instrumentation.graphite]]\nport = 2003\n[[instrumentation.graphite]]\nhost = \"carbon\"\nenv_prefix = \"SITE\"\n").unwrap();
    let o = c.instrumentation.otlp.unwrap();
    assert_eq!(
        (o.endpoint.as_str(), o.protocol, o.sample_ratio),
        ("http://127.0.0.1:4317", OtlpProtocol::Grpc, 0.01)
    );
    assert_eq!(c.instrumentation.graphite.len(), 2);
    assert_eq!(
        c.instrumentation.graphite[1].env_prefix.as_deref(),
        Some("SITE")
    );
    assert_eq!(c.instrumentation.graphite[0].interval, 60);
    let e = err("[instrumentation.otlp]\nsample_ratio = 1.5\n");
    assert_eq!(
        (e.line, e.key.as_str()),
        (Some(2), "instrumentation.otlp.sample_ratio"),
        "{e}"
    );
    let e = err("[instrumentation.otlp]\nendpoint = \"127.0.0.1:4317\"\n");
    assert_eq!(e.key, "instrumentation.otlp.endpoint", "{e}");
    let e = err("[instrumentation.otlp]\nprotocol = \"udp\"\n");
    assert_eq!(e.line, Some(2), "{e}");
    let e = err(
        "[[instrumentation.graphite]]\nport = 2003\n[[instrumentation.graphite]]\ninterval = 0\n",
    );
    assert_eq!(
        (e.line, e.key.as_str()),
        (Some(4), "instrumentation.graphite[1].interval"),
        "{e}"
    );
    let e = err("[[instrumentation.graphite]]\nprefix = \"a..b\"\n");
    assert_eq!(e.key, "instrumentation.graphite[0].prefix", "{e}");
    let e = err("[[instrumentation.graphite]]\nbuffer_lines = 0\n");
    assert_eq!(e.key, "instrumentation.graphite[0].buffer_lines", "{e}");
}

#[test]
fn http_listener_limits() {
    let c = parse("").unwrap();
    let h = &c.listen.http[0];
    assert_eq!(
        (h.max_connections, h.header_read_timeout, h.idle_timeout),
        (256, 10, 60)
    );
    let text = include_str!("../../osprey.example.toml");
    let h = &parse(text).unwrap().listen.http[0];
    assert_eq!(
        (h.max_connections, h.header_read_timeout, h.idle_timeout),
        (256, 10, 60),
        "the example shows the defaults"
    );
    let docs = include_str!("../../../docs/config.md");
    let section = docs.split("## `[[listen.http]]`").nth(1).unwrap();
    let section = section.split("\n## ").next().unwrap();
    for key in ["max_connections", "header_read_timeout", "idle_timeout"] {
        assert!(
            section.contains(&format!("| `{key}` |")),
            "{key} is documented"
        );
    }
    let c =
        parse("[[listen.http]]\nmax_connections = 2\nheader_read_timeout = 1\nidle_timeout = 3\n")
            .unwrap();
    let h = &c.listen.http[0];
    assert_eq!(
        (h.max_connections, h.header_read_timeout, h.idle_timeout),
        (2, 1, 3)
    );
    for (text, key) in [
        (
            "[[listen.http]]\nmax_connections = 0\n",
            "listen.http[0].max_connections",
        ),
        (
            "[[listen.http]]\nheader_read_timeout = 0\n",
            "listen.http[0].header_read_timeout",
        ),
        (
            "[[listen.http]]\nidle_timeout = 0\n",
            "listen.http[0].idle_timeout",
        ),
    ] {
        let e = err(text);
        assert_eq!((e.line, e.key.as_str()), (Some(2), key), "{e}");
    }
}

#[test]
fn syntax_error_has_a_line() {
    let e = err("[general]\nhosts = [\"a\"\n");
    assert!(e.line.is_some(), "{e}");
}

#[test]
fn missing_file_is_named() {
    let e = Config::load(Path::new("/nonexistent/osprey.toml")).unwrap_err();
    assert!(e.to_string().contains("/nonexistent/osprey.toml"), "{e}");
}

#[test]
fn limits_and_shapers_are_checked() {
    let e = err("[[listen.c2s]]\nport = 1\nshaper = \"turbo\"\n");
    assert_eq!(
        (e.line, e.key.as_str()),
        (Some(3), "listen.c2s[0].shaper"),
        "{e}"
    );
    assert!(e.message.contains("[shaper.turbo]"), "{e}");
    let e = err("[[listen.c2s]]\nport = 1\nxml.max_depth = 1\n");
    assert_eq!(
        (e.line, e.key.as_str()),
        (Some(3), "listen.c2s[0].xml.max_depth"),
        "{e}"
    );
    let e = err("[[listen.c2s]]\nport = 1\nxml = { max_depht = 3 }\n");
    assert_eq!(e.line, Some(3), "{e}");
    let e = err("[shaper.slow]\nmax_rate = 0\n");
    assert_eq!(
        (e.line, e.key.as_str()),
        (Some(2), "shaper.slow.max_rate"),
        "{e}"
    );
    let e = err("[[host_config]]\nhost = \"elsewhere.example\"\n");
    assert_eq!(
        (e.line, e.key.as_str()),
        (Some(2), "host_config[0].host"),
        "{e}"
    );
    let e = err("[[listen.c2s]]\nport = 1\nnegotiation_timeout = 0\n");
    assert_eq!(e.key, "listen.c2s[0].negotiation_timeout", "{e}");
}

#[test]
fn login_throttle_settings() {
    let c = parse("").unwrap();
    let (addr, acct) = (&c.auth.throttle.address, &c.auth.throttle.account);
    assert_eq!(
        (
            addr.after_failures,
            addr.window,
            addr.first_delay,
            addr.max_delay
        ),
        (10, 300, 0.5, 5.0)
    );
    assert_eq!(
        (
            acct.after_failures,
            acct.window,
            acct.first_delay,
            acct.max_delay
        ),
        (5, 300, 0.5, 5.0)
    );
    let example = parse(include_str!("../../osprey.example.toml")).unwrap();
    assert_eq!(
        (example.auth.throttle.address, example.auth.throttle.account),
        (*addr, *acct),
        "the example shows the defaults"
    );
    let docs = include_str!("../../../docs/config.md");
    for key in ["after_failures", "window", "first_delay", "max_delay"] {
        assert!(
            docs.contains(&format!("| `{key}` |")),
            "{key} is documented"
        );
    }
    // A scope's missing keys take that scope's defaults; integers are seconds too.
    let c = parse("[auth.throttle.account]\nmax_delay = 2\n[auth.throttle.address]\nwindow = 60\n")
        .unwrap();
    assert_eq!(c.auth.throttle.account.max_delay, 2.0);
    assert_eq!(c.auth.throttle.account.after_failures, 5);
    assert_eq!(
        (
            c.auth.throttle.address.window,
            c.auth.throttle.address.after_failures
        ),
        (60, 10)
    );
    for (text, line, key) in [
        (
            "[auth.throttle.address]\n\nafter_failures = 0\n",
            3,
            "auth.throttle.address.after_failures",
        ),
        (
            "[auth.throttle.account]\nwindow = 0\n",
            2,
            "auth.throttle.account.window",
        ),
        (
            "[auth.throttle.account]\nmax_delay = 120\n",
            2,
            "auth.throttle.account.max_delay",
        ),
        (
            "[auth.throttle.address]\nfirst_delay = 3\nmax_delay = 2\n",
            2,
            "auth.throttle.address.first_delay",
        ),
        (
            "[auth.throttle.address]\nfirst_delay = \"1s\"\n",
            2,
            "auth.throttle.address.first_delay",
        ),
        (
            "[auth]\nscram_iterations = 4096\nthrottle_after_failures = 3\n",
            3,
            "auth.throttle_after_failures",
        ),
    ] {
        let e = err(text);
        assert_eq!((e.line, e.key.as_str()), (Some(line), key), "{e}");
    }
    let e = err("[auth]\nthrottle_max_delay = 5\n");
    assert!(e.message.contains("[auth.throttle.account]"), "{e}");
    let e = err("[auth.throttle.account]\nafter_failure = 3\n");
    assert_eq!(e.line, Some(2), "{e}");
    assert!(e.key.ends_with("after_failure"), "{e}");
    let e = err("[auth.throttle.user]\n");
    assert!(e.to_string().contains("user"), "{e}");
}
