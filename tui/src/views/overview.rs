//! The Overview: is the gateway healthy and what is it doing, on one
//! screen. Every line fits its panel: words and less important numbers go
//! first when room is short, and whatever is cut ends with `…`. In a
//! cluster, a Cluster panel lists the nodes: under the top row when the
//! terminal is tall enough, else beside the Sessions panel.

use osprey_instrument::snapshot::Snapshot;
use ratatui::layout::{Constraint, Layout, Margin, Rect};
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Sparkline};
use ratatui::Frame;

use super::{block, panel};
use crate::fit::{self, best, grid, Col, Parts, Step};
use crate::format::{age, bytes, count, latency, rate};
use crate::state::{in_key, out_key, App, ClusterNode, ClusterStatus, Quantiles};

/// The stanza plots' smallest height (their borders and a row each).
const STANZAS_MIN: u16 = 5;
/// A Cluster panel under the top row: its borders and header, one node.
const CLUSTER_MIN: u16 = 4;
/// It grows with the nodes up to this (more: `… N more`), so the stanza
/// plots keep some room.
const CLUSTER_MAX: u16 = 10;

pub fn draw(f: &mut Frame, area: Rect, app: &App) {
    let Some(s) = app.snapshot.as_deref() else {
        panel(
            f,
            area,
            "",
            vec![Line::from("waiting for the first snapshot…")],
        );
        return;
    };
    let [top, stanzas, middle, bottom] = Layout::vertical([
        Constraint::Length(7),
        Constraint::Min(STANZAS_MIN),
        Constraint::Length(9),
        Constraint::Length(7),
    ])
    .areas(area);
    // In a cluster, the nodes under the top row, taken from the stanza
    // plots when they have room to spare, else beside the sessions.
    let below = app
        .cluster
        .as_ref()
        .map_or(0, |c| cluster_height(stanzas, c));
    let [nodes, stanzas] =
        Layout::vertical([Constraint::Length(below), Constraint::Min(0)]).areas(stanzas);
    match &app.cluster {
        Some(c) if below > 0 => {
            draw_top(f, top, app, s, None);
            draw_cluster(f, nodes, c, s);
        }
        beside => draw_top(f, top, app, s, beside.as_ref()),
    }
    draw_stanzas(f, stanzas, app, s);
    let [routing, auth, errors] = Layout::horizontal([
        Constraint::Percentage(34),
        Constraint::Percentage(33),
        Constraint::Percentage(33),
    ])
    .areas(middle);
    draw_routing(f, routing, app, s);
    draw_auth(f, auth, app, s);
    draw_errors(f, errors, s);
    let [storage, process, tls] = Layout::horizontal([
        Constraint::Percentage(34),
        Constraint::Percentage(33),
        Constraint::Percentage(33),
    ])
    .areas(bottom);
    draw_storage(f, storage, app, s);
    draw_process(f, process, app, s);
    draw_tls(f, tls, s);
}

fn label<'a>(s: impl Into<std::borrow::Cow<'a, str>>) -> Span<'a> {
    Span::styled(s, Style::default().fg(Color::DarkGray))
}

fn draw_sessions(f: &mut Frame, area: Rect, app: &App, s: &Snapshot) {
    let b = block(" Sessions ", area);
    let inner = b.inner(area);
    f.render_widget(b, area);
    let n = s.live.get("sessions").copied().unwrap_or(0.0);
    let users = s.live.get("users").copied().unwrap_or(0.0);
    let opened = s.rate("c2s_session_open", "count", &[]);
    let closed = s.rate("c2s_session_close", "count", &[]);
    // In a cluster, a third line: this node's view of it (the probe).
    let cluster = |key: &str| s.event("cluster").find(|x| x.key == key).map(|x| x.value);
    let in_cluster = cluster("nodes_alive").is_some();
    let rows = if in_cluster { 3 } else { 2 };
    // The lines before the plot: at 80×24 the cluster line fills the box.
    let [line, spark] =
        Layout::vertical([Constraint::Length(rows), Constraint::Min(0)]).areas(inner);
    let w = line.width as usize;
    let mut lines = vec![
        Parts::new()
            .keep(Span::styled(
                format!("{} sessions", count(n)),
                Style::default().bold(),
            ))
            .opt(1, label(format!("  {} users", count(users))))
            .line(w),
        best(
            w,
            [
                Line::from(vec![
                    label("opened "),
                    Span::raw(rate(Some(opened))),
                    label("  closed "),
                    Span::raw(rate(Some(closed))),
                ]),
                Line::from(vec![
                    label("open "),
                    Span::raw(rate(Some(opened))),
                    label(" close "),
                    Span::raw(rate(Some(closed))),
                ]),
                Line::from(vec![label("opened "), Span::raw(rate(Some(opened)))]),
            ],
        ),
    ];
    if in_cluster {
        let nats_ok = cluster("nats_connected").unwrap_or(0.0) >= 1.0;
        let across =
            s.rate("cluster_stanza_out", "count", &[]) + s.rate("cluster_stanza_in", "count", &[]);
        lines.push(
            Parts::new()
                .keep(Span::raw(format!(
                    "cluster {} nodes",
                    count(cluster("nodes_alive").unwrap_or(0.0))
                )))
                .opt(
                    1,
                    label(format!(
                        "  {} elsewhere",
                        count(cluster("sessions_remote").unwrap_or(0.0))
                    )),
                )
                .keep(Span::styled(
                    if nats_ok { "  NATS up" } else { "  NATS DOWN" },
                    Style::default().fg(if nats_ok { Color::Green } else { Color::Red }),
                ))
                .opt(2, label(format!("  across {}", rate(Some(across)))))
                .line(w),
        );
    }
    f.render_widget(Paragraph::new(lines), line);
    let data = app.history.last("sessions", spark.width as usize);
    f.render_widget(Sparkline::default().data(&data).style(Color::Cyan), spark);
}

/// The height of a Cluster panel taken from the top of the stanza plots:
/// one row per node and the header, as far as the plots keep their
/// smallest height; 0 when that leaves no room for a node's row.
fn cluster_height(stanzas: Rect, c: &ClusterStatus) -> u16 {
    let room = stanzas.height.saturating_sub(STANZAS_MIN);
    let want = (c.nodes.len() as u16).max(1).saturating_add(3);
    if room < CLUSTER_MIN {
        0
    } else {
        want.min(room).min(CLUSTER_MAX)
    }
}

/// The top row: Sessions and Connections, with the Cluster panel between
/// them when it has no room of its own.
fn draw_top(f: &mut Frame, area: Rect, app: &App, s: &Snapshot, cluster: Option<&ClusterStatus>) {
    let Some(c) = cluster else {
        let [sessions, conns] =
            Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
                .areas(area);
        draw_sessions(f, sessions, app, s);
        draw_connections(f, conns, s);
        return;
    };
    let [sessions, nodes, conns] = Layout::horizontal([
        Constraint::Percentage(34),
        Constraint::Percentage(33),
        Constraint::Percentage(33),
    ])
    .areas(area);
    draw_sessions(f, sessions, app, s);
    draw_cluster(f, nodes, c, s);
    draw_connections(f, conns, s);
}

/// How long ago a node's last heartbeat was: tenths of a second while it
/// is recent (heartbeats come every few seconds), else as an age.
fn heartbeat(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 10_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        age(ms as f64 / 1000.0)
    }
}

/// A node's uptime at the snapshot's time (the gateway's clock, like the
/// start times); `–` when it has not said when it started.
fn uptime(node: &ClusterNode, s: &Snapshot) -> String {
    if node.started_at <= 0 {
        return "–".into();
    }
    age((s.time_ms as i64 - node.started_at) as f64 / 1000.0)
}

/// One row per node, by name: the node followed marked `*`, a down node's
/// state in red. When room is short the address goes first, then the
/// uptime, then the heartbeat's age; the name is cut before the state
/// and the sessions. Nodes that do not fit are counted (`… N more`).
fn draw_cluster(f: &mut Frame, area: Rect, c: &ClusterStatus, s: &Snapshot) {
    let w = area.width.saturating_sub(2) as usize;
    let mut nodes: Vec<&ClusterNode> = c.nodes.iter().collect();
    nodes.sort_by(|a, b| a.node.cmp(&b.node));
    let up = nodes.iter().filter(|n| n.alive).count();
    let title = format!(" Cluster {} · {up}/{} up ", c.cluster, nodes.len());
    if nodes.is_empty() {
        let lines = vec![Line::from(label("no node seen yet"))];
        panel(f, area, &title, lines);
        return;
    }
    let rows: Vec<[String; 6]> = nodes
        .iter()
        .map(|n| {
            let mark = if n.node == c.node { "*" } else { " " };
            [
                format!("{mark} {}", n.node),
                if n.alive { "up" } else { "down" }.to_string(),
                count(n.sessions as f64),
                heartbeat(n.heartbeat_age_ms),
                uptime(n, s),
                n.address.clone(),
            ]
        })
        .collect();
    // A short box shows nodes rather than the header (and its columns
    // are then as wide as their values).
    let header = area.height.saturating_sub(2) as usize > nodes.len();
    let head = |h: &'static str| if header { h } else { "" };
    let column = |i: usize| rows.iter().map(|r| r[i].clone()).collect::<Vec<_>>();
    let cols = [
        Col::text(head("  node"), 10, 4, &column(0)),
        Col::text(head("state"), 5, 5, &column(1)),
        Col::number(head("sessions"), 0, &column(2)),
        Col::number(head("heartbeat"), 0, &column(3)),
        Col::number(head("uptime"), 0, &column(4)),
        Col::text(head("address"), 0, 8, &column(5)),
    ];
    let cells = rows
        .into_iter()
        .zip(&nodes)
        .map(|(r, n)| {
            let [name, state, sessions, beat, up, address] = r;
            let name = if n.node == c.node {
                Span::styled(name, Style::default().bold())
            } else {
                Span::raw(name)
            };
            let color = if n.alive { Color::Green } else { Color::Red };
            vec![
                name,
                Span::styled(state, Style::default().fg(color)),
                Span::raw(sessions),
                Span::raw(beat),
                Span::raw(up),
                Span::raw(address),
            ]
        })
        .collect();
    let steps = [Step::Drop(5), Step::Drop(4), Step::Shrink(0), Step::Drop(3)];
    panel(f, area, &title, grid(&cols, header, cells, w, &steps));
}

fn draw_connections(f: &mut Frame, area: Rect, s: &Snapshot) {
    let w = area.width.saturating_sub(2) as usize;
    let mut listeners: Vec<&str> = s
        .event("c2s_connections")
        .filter_map(|x| x.labels.get("listener").map(String::as_str))
        .collect();
    listeners.dedup();
    let rows: Vec<[String; 5]> = listeners
        .iter()
        .map(|l| {
            let m = [("listener", *l)];
            [
                l.to_string(),
                count(s.total("c2s_connections", "open", &m)),
                rate(Some(s.rate("c2s_connection_accepted", "count", &m))),
                rate(Some(s.rate("c2s_connection_closed", "count", &m))),
                rate(Some(s.rate("c2s_connection_rejected", "count", &m))),
            ]
        })
        .collect();
    let column = |i: usize| rows.iter().map(|r| r[i].clone()).collect::<Vec<_>>();
    let cols = [
        Col::text("listener", 18, 8, &column(0)),
        Col::number("open", 5, &column(1)),
        Col::number("accepted", 9, &column(2)),
        Col::number("closed", 8, &column(3)),
        Col::number("rejected", 9, &column(4)),
    ];
    let cells = rows
        .into_iter()
        .map(|r| r.into_iter().map(Span::raw).collect())
        .collect();
    // Rejections matter more than the churn.
    let steps = [Step::Shrink(0), Step::Drop(3), Step::Drop(2)];
    let mut lines = grid(&cols, true, cells, w, &steps);
    let tls = rate(Some(s.rate("c2s_tls_established", "count", &[])));
    let bin = format!("{}/s", bytes(s.rate("c2s_data_in", "bytes", &[])));
    let bout = format!("{}/s", bytes(s.rate("c2s_data_out", "bytes", &[])));
    let io = |lead: &'static str| {
        vec![
            label(lead),
            Span::raw(bin.clone()),
            label(" out "),
            Span::raw(bout.clone()),
        ]
    };
    let with = |head: Vec<Span<'static>>, tail: Vec<Span<'static>>| {
        Line::from(head.into_iter().chain(tail).collect::<Vec<_>>())
    };
    lines.push(best(
        w,
        [
            with(
                vec![label("TLS handshakes "), Span::raw(tls.clone())],
                io("   bytes in "),
            ),
            with(
                vec![label("TLS "), Span::raw(tls.clone())],
                io("  bytes in "),
            ),
            with(vec![label("TLS "), Span::raw(tls.clone())], io("  in ")),
            Line::from(vec![label("TLS handshakes "), Span::raw(tls.clone())]),
            Line::from(vec![label("TLS "), Span::raw(tls)]),
        ],
    ));
    panel(f, area, " Connections ", lines);
}

fn draw_stanzas(f: &mut Frame, area: Rect, app: &App, s: &Snapshot) {
    let b = block(" Stanzas per second (in ▸ out) ", area);
    let inner = b.inner(area);
    f.render_widget(b, area);
    // One scale for all six plots, so a trickle of iq does not look like
    // a flood of messages.
    let max = ["message", "presence", "iq"]
        .iter()
        .flat_map(|k| [in_key(k), out_key(k)])
        .flat_map(|k| app.history.last(k, usize::MAX))
        .max()
        .unwrap_or(0)
        .max(100);
    // Taller terminals get taller sparklines.
    let rows = Layout::vertical([Constraint::Ratio(1, 3); 3]).split(inner);
    for (i, kind) in ["message", "presence", "iq"].into_iter().enumerate() {
        let m = [("kind", kind)];
        // A rate is at most 8 columns ("999.9k/s"): the 32 always fit.
        let text = Line::from(vec![
            Span::raw(format!("{kind:<9}")),
            Span::styled(
                format!("{:>9}", rate(Some(s.rate("xmpp_element_in", "count", &m)))),
                Style::default().bold(),
            ),
            label(" ▸ "),
            Span::raw(format!(
                "{:>9}",
                rate(Some(s.rate("xmpp_element_out", "count", &m)))
            )),
        ]);
        let [t, gin, gout] = Layout::horizontal([
            Constraint::Length(32),
            Constraint::Percentage(50),
            Constraint::Percentage(50),
        ])
        .areas(rows[i]);
        f.render_widget(Paragraph::new(fit::fit_line(text, t.width as usize)), t);
        let (gin, gout) = (gin.inner(Margin::new(1, 0)), gout.inner(Margin::new(1, 0)));
        let din = app.history.last(in_key(kind), gin.width as usize);
        let dout = app.history.last(out_key(kind), gout.width as usize);
        let spark = |d| Sparkline::default().data(d).max(max);
        f.render_widget(spark(&din).style(Color::Green), gin);
        f.render_widget(spark(&dout).style(Color::Blue), gout);
    }
}

/// `12s ago`, `3m05s ago`: how old percentiles from an earlier window are.
fn ago(q: &Quantiles) -> Option<String> {
    (q.age_seconds >= 1.0).then(|| format!("{} ago", age(q.age_seconds)))
}

/// A latency line: `what p50 X  p99 Y`, with `(14s ago)` when the values
/// are from the last window that saw any (the last second saw none), and
/// `(none seen)` when no window did since the dashboard started. Narrower
/// variants drop `what`, then p50; the age stays.
fn latency_line(w: usize, what: &str, short: &str, q: Option<Quantiles>) -> Line<'static> {
    let (p50, p99) = q.map_or((None, None), |q| (q.p50, q.p99));
    let (p50, p99) = (latency(p50), latency(p99));
    let note: Option<String> = match &q {
        None => Some("none seen".into()),
        Some(q) => ago(q),
    };
    let stale = Style::default().fg(Color::Yellow);
    let tail = |paren: bool| -> Vec<Span<'static>> {
        match &note {
            None => vec![],
            Some(n) if paren => vec![Span::styled(format!(" ({n})"), stale)],
            Some(n) => vec![Span::styled(format!(" {n}"), stale)],
        }
    };
    let both = |lead: Option<&str>, sep: &'static str, paren: bool| {
        let mut v = Vec::new();
        if let Some(l) = lead {
            v.push(label(format!("{l} ")));
        }
        v.extend([
            label("p50 "),
            Span::raw(p50.clone()),
            label(format!("{sep}p99 ")),
            Span::raw(p99.clone()),
        ]);
        v.extend(tail(paren));
        Line::from(v)
    };
    let p99_only = |lead: Option<&str>, paren: bool| {
        let mut v = Vec::new();
        if let Some(l) = lead {
            v.push(label(format!("{l} ")));
        }
        v.extend([label("p99 "), Span::raw(p99.clone())]);
        v.extend(tail(paren));
        Line::from(v)
    };
    best(
        w,
        [
            both(Some(what), "  ", true),
            both(Some(what), " ", true),
            both(Some(short), " ", true),
            both(Some(what), " ", false),
            both(Some(short), " ", false),
            p99_only(Some(what), true),
            p99_only(Some(what), false),
            both(None, " ", false),
            p99_only(None, false),
        ],
    )
}

fn draw_routing(f: &mut Frame, area: Rect, app: &App, s: &Snapshot) {
    let w = area.width.saturating_sub(2) as usize;
    let q = app.quantiles(
        "router_routed",
        "seconds",
        &[("kind", "message"), ("outcome", "delivered")],
    );
    let mut lines = vec![
        Line::from(vec![
            label("routed    "),
            Span::styled(
                rate(Some(s.rate("router_routed", "count", &[]))),
                Style::default().bold(),
            ),
        ]),
        latency_line(w, "message", "msg", q),
    ];
    let mut rows = Vec::new();
    for outcome in [
        "delivered",
        "offline_stored",
        "bounced",
        "dropped",
        "no_route",
    ] {
        let m = [("outcome", outcome)];
        let total = s.total("router_routed", "count", &m);
        if total > 0.0 || outcome == "delivered" {
            rows.push([
                outcome.to_string(),
                rate(Some(s.rate("router_routed", "count", &m))),
                count(total),
            ]);
        }
    }
    let column = |i: usize| rows.iter().map(|r| r[i].clone()).collect::<Vec<_>>();
    let cols = [
        Col::text("", 14, 6, &column(0)),
        Col::number("", 9, &column(1)),
        Col::number("", 8, &column(2)),
    ];
    // Numbers keep their room: padding goes first, then the outcome's name.
    let cells = rows
        .into_iter()
        .map(|r| r.into_iter().map(Span::raw).collect())
        .collect();
    lines.extend(grid(&cols, false, cells, w, &[Step::Shrink(0)]));
    panel(f, area, " Routing ", lines);
}

fn draw_auth(f: &mut Frame, area: Rect, app: &App, s: &Snapshot) {
    let w = area.width.saturating_sub(2) as usize;
    let ok = [("outcome", "success")];
    let bad = [("outcome", "failure")];
    let row = |name: &'static str, m: &[(&str, &str)], color: Color| {
        (
            name,
            rate(Some(s.rate("c2s_auth", "count", m))),
            count(s.total("c2s_auth", "count", m)),
            color,
        )
    };
    let rows = [
        row("success", &ok, Color::Green),
        row("failure", &bad, Color::Red),
    ];
    let rate_w = rows.iter().map(|r| fit::width(&r.1)).max().unwrap_or(0);
    // Most detailed first: the totals labelled, then bare, then left out.
    let variant = |pad: usize, total: Option<&str>| -> Vec<Line<'static>> {
        rows.iter()
            .map(|(name, r, n, color)| {
                let mut v = vec![
                    label(format!("{name} ")),
                    Span::styled(format!("{r:>pad$}"), Style::default().fg(*color)),
                ];
                if let Some(t) = total {
                    v.push(label(format!("  {t}")));
                    v.push(Span::raw(n.clone()));
                }
                Line::from(v)
            })
            .collect()
    };
    let variants = [
        variant(9, Some("total ")),
        variant(rate_w, Some("total ")),
        variant(rate_w, Some("")),
        variant(rate_w, None),
    ];
    let fits = |v: &Vec<Line>| v.iter().all(|l| l.width() <= w);
    let mut lines = variants
        .iter()
        .find(|v| fits(v))
        .unwrap_or(&variants[3])
        .clone();
    lines.push(latency_line(
        w,
        "login",
        "login",
        app.quantiles("c2s_auth", "seconds", &ok),
    ));
    let throttled = s.total("c2s_login_throttled", "count", &[]);
    if throttled > 0.0 {
        lines.push(Line::from(format!("throttled {}", count(throttled))));
    }
    // Failures by SASL condition, most first.
    let mut reasons: Vec<(String, f64)> = Vec::new();
    for x in s.event("c2s_auth").filter(|x| x.key == "count") {
        if x.labels.get("outcome").map(String::as_str) == Some("failure") && x.value > 0.0 {
            let r = x.labels.get("reason").cloned().unwrap_or_default();
            match reasons.iter_mut().find(|(n, _)| *n == r) {
                Some((_, v)) => *v += x.value,
                None => reasons.push((r, x.value)),
            }
        }
    }
    reasons.sort_by(|a, b| b.1.total_cmp(&a.1));
    let rows: Vec<[String; 2]> = reasons
        .into_iter()
        .take(3)
        .map(|(r, v)| [format!("  {r}"), count(v)])
        .collect();
    let column = |i: usize| rows.iter().map(|r| r[i].clone()).collect::<Vec<_>>();
    let cols = [
        Col::text("", 24, 8, &column(0)),
        Col::number("", 6, &column(1)),
    ];
    let cells = rows
        .into_iter()
        .map(|r| r.into_iter().map(Span::raw).collect())
        .collect();
    lines.extend(grid(&cols, false, cells, w, &[Step::Shrink(0)]));
    panel(f, area, " Authentication ", lines);
}

fn draw_errors(f: &mut Frame, area: Rect, s: &Snapshot) {
    let w = area.width.saturating_sub(2) as usize;
    let mut rows: Vec<(String, f64, f64)> = Vec::new();
    for (event, what) in [
        ("xmpp_stream_error", "stream"),
        ("xmpp_stanza_error", "stanza"),
        ("limit_hit", "limit"),
    ] {
        for x in s.event(event).filter(|x| x.value > 0.0) {
            let cond = x
                .labels
                .get("condition")
                .or_else(|| x.labels.get("limit"))
                .cloned()
                .unwrap_or_default();
            let name = format!("{what} {cond}");
            match rows.iter_mut().find(|(n, _, _)| *n == name) {
                Some(r) => {
                    r.1 += x.value;
                    r.2 += x.rate.unwrap_or(0.0);
                }
                None => rows.push((name, x.value, x.rate.unwrap_or(0.0))),
            }
        }
    }
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    let lines: Vec<Line> = if rows.is_empty() {
        vec![Line::from(Span::styled(
            "no errors",
            Style::default().fg(Color::Green),
        ))]
    } else {
        let rows: Vec<[String; 3]> = rows
            .iter()
            .map(|(n, total, r)| [n.clone(), count(*total), rate(Some(*r))])
            .collect();
        let column = |i: usize| rows.iter().map(|r| r[i].clone()).collect::<Vec<_>>();
        let cols = [
            Col::text("", 26, 8, &column(0)),
            Col::number("", 6, &column(1)),
            Col::number("", 8, &column(2)),
        ];
        let cells = rows
            .into_iter()
            .map(|r| r.into_iter().map(Span::raw).collect())
            .collect();
        grid(&cols, false, cells, w, &[Step::Shrink(0)])
    };
    panel(f, area, " Errors (total, rate) ", lines);
}

fn draw_storage(f: &mut Frame, area: Rect, app: &App, s: &Snapshot) {
    let w = area.width.saturating_sub(2) as usize;
    let backend = s
        .event("storage_query")
        .find_map(|x| x.labels.get("backend").cloned())
        .unwrap_or_else(|| "–".into());
    let errors = s.total("storage_query", "count", &[("outcome", "error")]);
    let mut lines = vec![Parts::new()
        .keep(label("queries "))
        .keep(Span::styled(
            rate(Some(s.rate("storage_query", "count", &[]))),
            Style::default().bold(),
        ))
        .opt(1, label(format!("  {backend}")))
        .keep(label("  errors "))
        .keep(Span::raw(count(errors)))
        .line(w)];
    // The busiest operations with their latency (of the last window that
    // saw a query, with its age, when the last second saw none).
    let mut ops: Vec<_> = s
        .event("storage_query")
        .filter(|x| x.key == "seconds" && x.value > 0.0)
        .collect();
    ops.sort_by(|a, b| {
        b.rate
            .unwrap_or(0.0)
            .total_cmp(&a.rate.unwrap_or(0.0))
            .then(b.value.total_cmp(&a.value))
    });
    let rows: Vec<([String; 5], bool)> = ops
        .into_iter()
        .take(4)
        .map(|x| {
            let q = app.series_quantiles(x);
            let (p50, p99) = q.map_or((None, None), |q| (q.p50, q.p99));
            let when = q.as_ref().and_then(ago).unwrap_or_default();
            let stale = !when.is_empty();
            (
                [
                    x.labels
                        .get("operation")
                        .cloned()
                        .unwrap_or_else(|| "?".into()),
                    rate(x.rate),
                    latency(p50),
                    latency(p99),
                    when,
                ],
                stale,
            )
        })
        .collect();
    let column = |i: usize| rows.iter().map(|r| r.0[i].clone()).collect::<Vec<_>>();
    let cols = [
        Col::text("operation", 14, 8, &column(0)),
        Col::number("rate", 6, &column(1)),
        Col::number("p50", 5, &column(2)),
        Col::number("p99", 5, &column(3)),
        Col::text("", 0, 0, &column(4)),
    ];
    let cells = rows
        .into_iter()
        .map(|(r, stale)| {
            let style = if stale {
                Style::default().fg(Color::Yellow)
            } else {
                Style::default()
            };
            let [op, rate, p50, p99, when] = r;
            vec![
                Span::raw(op),
                Span::raw(rate),
                Span::styled(p50, style),
                Span::styled(p99, style),
                Span::styled(when, style),
            ]
        })
        .collect();
    // The operation's name matters more than its median.
    let steps = [Step::Drop(2), Step::Shrink(0), Step::Drop(1)];
    lines.extend(grid(&cols, true, cells, w, &steps));
    panel(f, area, " Storage ", lines);
}

fn draw_process(f: &mut Frame, area: Rect, app: &App, s: &Snapshot) {
    let b = block(" Process ", area);
    let inner = b.inner(area);
    f.render_widget(b, area);
    let w = inner.width as usize;
    let rss = s
        .live
        .get("rss_bytes")
        .copied()
        .unwrap_or_else(|| s.total("process", "resident_memory_bytes", &[]));
    let cpu = app
        .cpu_percent()
        .map(|c| format!("{c:.1}%"))
        .unwrap_or_else(|| "–".into());
    let lines = vec![
        Parts::new()
            .keep(label("RSS "))
            .keep(Span::raw(bytes(rss)))
            .keep(label("  CPU "))
            .keep(Span::raw(cpu))
            .line(w),
        {
            let fds = count(s.total("process", "open_fds", &[]));
            let threads = count(s.total("process", "threads", &[]));
            let tasks = count(s.total("runtime", "tasks", &[]));
            let line = |sep: &str, with_tasks: bool| {
                let mut v = vec![
                    label("fds "),
                    Span::raw(fds.clone()),
                    label(format!("{sep}threads ")),
                    Span::raw(threads.clone()),
                ];
                if with_tasks {
                    v.extend([label(format!("{sep}tasks ")), Span::raw(tasks.clone())]);
                }
                Line::from(v)
            };
            best(w, [line("  ", true), line(" ", true), line("  ", false)])
        },
        Line::from(vec![label("uptime "), Span::raw(age(s.uptime_seconds))]),
    ];
    // A short box keeps the numbers and drops the CPU plot.
    let plot = if inner.height > lines.len() as u16 {
        1
    } else {
        0
    };
    let [t, g] = Layout::vertical([Constraint::Length(3), Constraint::Min(plot)]).areas(inner);
    f.render_widget(Paragraph::new(fit::lines(lines, w, t.height as usize)), t);
    let data = app.history.last("cpu", g.width as usize);
    f.render_widget(Sparkline::default().data(&data).style(Color::Magenta), g);
}

fn draw_tls(f: &mut Frame, area: Rect, s: &Snapshot) {
    let w = area.width.saturating_sub(2) as usize;
    // The probe reports the expiry time; days left are counted from the
    // snapshot's time.
    let now = s.time_ms as f64 / 1000.0;
    let certs: Vec<(String, f64)> = s
        .event("tls_certificate")
        .filter(|x| x.key == "expiry_timestamp_seconds")
        .map(|x| {
            let l = x
                .labels
                .get("listener")
                .cloned()
                .unwrap_or_else(|| "?".into());
            (l, ((x.value - now) / 86_400.0).floor())
        })
        .collect();
    let lines = if certs.is_empty() {
        vec![Line::from(label("no TLS listener (or not probed yet)"))]
    } else {
        // The days stay whole: "days left" shortens to "days", then "d",
        // before the listener's name is cut.
        let variant = |unit: &str| {
            let rows: Vec<[String; 2]> = certs
                .iter()
                .map(|(l, d)| [l.clone(), format!("{d:.0}{unit}")])
                .collect();
            let column = |i: usize| rows.iter().map(|r| r[i].clone()).collect::<Vec<_>>();
            let need = column(0).iter().map(|l| fit::width(l)).max().unwrap_or(0)
                + 1
                + column(1).iter().map(|d| fit::width(d)).max().unwrap_or(0);
            let cols = [
                Col::text("", 17, 8, &column(0)),
                Col::number("", 0, &column(1)),
            ];
            let colors: Vec<Color> = certs
                .iter()
                .map(|(_, d)| {
                    if *d < 7.0 {
                        Color::Red
                    } else if *d < 30.0 {
                        Color::Yellow
                    } else {
                        Color::Green
                    }
                })
                .collect();
            let cells = rows
                .into_iter()
                .zip(colors)
                .map(|([l, d], c)| vec![Span::raw(l), Span::styled(d, Style::default().fg(c))])
                .collect();
            (need, grid(&cols, false, cells, w, &[Step::Shrink(0)]))
        };
        let mut chosen = None;
        for unit in [" days left", " days", "d"] {
            let (need, lines) = variant(unit);
            chosen = Some(lines);
            if need <= w {
                break;
            }
        }
        chosen.unwrap_or_default()
    };
    panel(f, area, " TLS certificates ", lines);
}
