//! Checks that need more than a type: ranges, combinations, names.

use std::collections::HashSet;

use super::Config;

/// The first problem found: (key path, message).
pub(super) fn check(c: &Config) -> Result<(), (String, String)> {
    let err = |k: &str, m: String| Err((k.to_string(), m));
    if c.general.hosts.is_empty() {
        return err("general.hosts", "at least one host is needed".into());
    }
    for (i, h) in c.general.hosts.iter().enumerate() {
        if !is_domain(h) {
            return err(
                &format!("general.hosts[{i}]"),
                format!("{h:?} is not a valid domain name"),
            );
        }
    }
    if c.auth.scram_iterations < 4096 {
        return err(
            "auth.scram_iterations",
            format!("{} is below the minimum of 4096", c.auth.scram_iterations),
        );
    }
    for (k, set) in [
        (
            "throttle_after_failures",
            c.auth.throttle_after_failures.is_some(),
        ),
        ("throttle_max_delay", c.auth.throttle_max_delay.is_some()),
    ] {
        if set {
            return err(
                &format!("auth.{k}"),
                "replaced by [auth.throttle.address] and [auth.throttle.account] \
                 (after_failures, window, first_delay, max_delay): see docs/config.md"
                    .into(),
            );
        }
    }
    for (scope, t) in [
        ("address", &c.auth.throttle.address),
        ("account", &c.auth.throttle.account),
    ] {
        let key = |k: &str| format!("auth.throttle.{scope}.{k}");
        if !(1..=1000).contains(&t.after_failures) {
            return err(&key("after_failures"), "must be between 1 and 1000".into());
        }
        if !(1..=86_400).contains(&t.window) {
            return err(&key("window"), "must be between 1 and 86400 seconds".into());
        }
        if !(t.max_delay.is_finite() && (0.001..=60.0).contains(&t.max_delay)) {
            return err(
                &key("max_delay"),
                "must be between 0.001 and 60 seconds".into(),
            );
        }
        if !(t.first_delay.is_finite() && (0.001..=t.max_delay).contains(&t.first_delay)) {
            return err(
                &key("first_delay"),
                "must be between 0.001 seconds and max_delay".into(),
            );
        }
    }
    if c.instrumentation.probe_interval == 0 {
        return err(
            "instrumentation.probe_interval",
            "must be at least 1 second".into(),
        );
    }
    if c.storage.max_connections == 0 {
        return err("storage.max_connections", "must be at least 1".into());
    }
    let url = &c.storage.url;
    if !(url.starts_with("sqlite:")
        || url.starts_with("postgres://")
        || url.starts_with("postgresql://"))
    {
        return err(
            "storage.url",
            format!("{url:?}: expected sqlite://PATH or postgres://USER@HOST/DB"),
        );
    }
    if let Some(cl) = &c.cluster {
        // A subject token: no dots, wildcards or spaces.
        let token = |v: &str| {
            !v.is_empty()
                && v.chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
        };
        if !token(&cl.node) {
            return err(
                "cluster.node",
                format!("{:?}: letters, digits, '-' and '_' only", cl.node),
            );
        }
        if !token(&cl.name) {
            return err(
                "cluster.name",
                format!("{:?}: letters, digits, '-' and '_' only", cl.name),
            );
        }
        if cl.nats.is_empty() {
            return err("cluster.nats", "at least one NATS server URL".into());
        }
        if let Some(bad) = cl
            .nats
            .iter()
            .find(|u| !(u.starts_with("nats://") || u.starts_with("tls://")))
        {
            return err(
                "cluster.nats",
                format!("{bad:?}: expected nats://HOST:PORT or tls://HOST:PORT"),
            );
        }
        if cl.heartbeat == 0 {
            return err("cluster.heartbeat", "must be at least 1 second".into());
        }
        if cl.node_timeout <= cl.heartbeat {
            return err(
                "cluster.node_timeout",
                "must be longer than cluster.heartbeat".into(),
            );
        }
        if cl.queue == 0 {
            return err("cluster.queue", "must be at least 1".into());
        }
        if url.starts_with("sqlite:") {
            return err(
                "storage.url",
                "a cluster shares its database: use postgres://, not SQLite".into(),
            );
        }
    }
    if let Some(o) = &c.instrumentation.otlp {
        if !(0.0..=1.0).contains(&o.sample_ratio) {
            return err(
                "instrumentation.otlp.sample_ratio",
                "must be between 0.0 and 1.0".into(),
            );
        }
        if !(o.endpoint.starts_with("http://") || o.endpoint.starts_with("https://")) {
            return err(
                "instrumentation.otlp.endpoint",
                format!("{:?}: expected http://HOST:PORT", o.endpoint),
            );
        }
        if o.service_name.is_empty() {
            return err(
                "instrumentation.otlp.service_name",
                "must not be empty".into(),
            );
        }
    }
    for (i, g) in c.instrumentation.graphite.iter().enumerate() {
        let key = format!("instrumentation.graphite[{i}]");
        if g.interval == 0 {
            return err(
                &format!("{key}.interval"),
                "must be at least 1 second".into(),
            );
        }
        if g.connect_timeout == 0 {
            return err(
                &format!("{key}.connect_timeout"),
                "must be at least 1 second".into(),
            );
        }
        if g.buffer_lines == 0 {
            return err(&format!("{key}.buffer_lines"), "must be at least 1".into());
        }
        if g.host.is_empty() || g.port == 0 {
            return err(
                &format!("{key}.host"),
                "a receiver needs a host and a port".into(),
            );
        }
        let legal = |s: &str| {
            s.split('.').all(|p| {
                !p.is_empty()
                    && p.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            })
        };
        if !legal(&g.prefix) {
            return err(
                &format!("{key}.prefix"),
                format!("{:?} is not a Graphite path", g.prefix),
            );
        }
    }
    let mut bound = HashSet::new();
    for (i, l) in c.listen.c2s.iter().enumerate() {
        let key = format!("listen.c2s[{i}]");
        if l.tls.certfile.is_some() != l.tls.keyfile.is_some() {
            return err(
                &format!("{key}.tls"),
                "certfile and keyfile go together".into(),
            );
        }
        if l.max_stanza_size < 1024 {
            return err(
                &format!("{key}.max_stanza_size"),
                "must be at least 1024".into(),
            );
        }
        if l.max_stanza_size_pre_auth < 512 || l.max_stanza_size_pre_auth > l.max_stanza_size {
            return err(
                &format!("{key}.max_stanza_size_pre_auth"),
                "must be between 512 and max_stanza_size".into(),
            );
        }
        if l.max_queue_bytes < l.max_stanza_size {
            return err(
                &format!("{key}.max_queue_bytes"),
                "must be at least max_stanza_size".into(),
            );
        }
        if l.port != 0 && !bound.insert((l.address, l.port)) {
            return err(
                &format!("{key}.port"),
                format!("{}:{} is used twice", l.address, l.port),
            );
        }
        if l.shaper != "none" && !c.shaper.contains_key(&l.shaper) {
            return err(
                &format!("{key}.shaper"),
                format!("no [shaper.{}] is defined", l.shaper),
            );
        }
        for (k, v) in [
            ("negotiation_timeout", l.negotiation_timeout),
            ("pre_auth_idle_timeout", l.pre_auth_idle_timeout),
        ] {
            if v == 0 {
                return err(&format!("{key}.{k}"), "must be at least 1 second".into());
            }
        }
        if l.max_connections_per_address == 0 {
            return err(
                &format!("{key}.max_connections_per_address"),
                "must be at least 1".into(),
            );
        }
        let x = &l.xml;
        for (k, v, min) in [
            ("max_depth", x.max_depth, 2),
            ("max_attributes", x.max_attributes, 8),
            ("max_namespaces", x.max_namespaces, 2),
            ("max_namespaces_per_stanza", x.max_namespaces_per_stanza, 2),
            ("max_name_length", x.max_name_length, 32),
            ("max_attribute_length", x.max_attribute_length, 1024),
        ] {
            if v < min {
                return err(&format!("{key}.xml.{k}"), format!("must be at least {min}"));
            }
        }
    }
    for (name, s) in &c.shaper {
        if s.max_rate == 0 {
            return err(
                &format!("shaper.{name}.max_rate"),
                "must be at least 1 byte per second".into(),
            );
        }
    }
    for (i, h) in c.host_config.iter().enumerate() {
        let key = format!("host_config[{i}]");
        if !c.general.hosts.contains(&h.host.to_lowercase()) {
            return err(
                &format!("{key}.host"),
                format!("{:?} is not one of general.hosts", h.host),
            );
        }
        if let Some(s) = &h.shaper {
            if s != "none" && !c.shaper.contains_key(s) {
                return err(
                    &format!("{key}.shaper"),
                    format!("no [shaper.{s}] is defined"),
                );
            }
        }
    }
    for (i, l) in c.listen.http.iter().enumerate() {
        let key = format!("listen.http[{i}]");
        if l.handlers.is_empty() {
            return err(
                &format!("{key}.handlers"),
                "a listener needs at least one handler".into(),
            );
        }
        if l.max_connections == 0 {
            return err(
                &format!("{key}.max_connections"),
                "must be at least 1".into(),
            );
        }
        for (name, secs) in [
            ("header_read_timeout", l.header_read_timeout),
            ("idle_timeout", l.idle_timeout),
        ] {
            if secs == 0 {
                return err(&format!("{key}.{name}"), "must be at least 1 second".into());
            }
        }
        if l.port != 0 && !bound.insert((l.address, l.port)) {
            return err(
                &format!("{key}.port"),
                format!("{}:{} is used twice", l.address, l.port),
            );
        }
    }
    Ok(())
}

fn is_domain(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '-' || c == '_')
        })
}
