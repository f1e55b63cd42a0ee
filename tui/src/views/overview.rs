//! The Overview: is the gateway healthy and what is it doing, on one
//! screen.

use osprey_instrument::snapshot::{Kind, Snapshot};
use ratatui::layout::{Constraint, Layout, Margin, Rect};
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Sparkline};
use ratatui::Frame;

use crate::format::{age, bytes, count, latency, rate};
use crate::state::{in_key, out_key, App};

pub fn draw(f: &mut Frame, area: Rect, app: &App) {
    let Some(s) = app.snapshot.as_deref() else {
        f.render_widget(
            Paragraph::new("waiting for the first snapshot…").block(Block::bordered()),
            area,
        );
        return;
    };
    let [top, stanzas, middle, bottom] = Layout::vertical([
        Constraint::Length(7),
        Constraint::Min(5),
        Constraint::Length(9),
        Constraint::Length(7),
    ])
    .areas(area);
    let [sessions, conns] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(top);
    draw_sessions(f, sessions, app, s);
    draw_connections(f, conns, s);
    draw_stanzas(f, stanzas, app, s);
    let [routing, auth, errors] = Layout::horizontal([
        Constraint::Percentage(34),
        Constraint::Percentage(33),
        Constraint::Percentage(33),
    ])
    .areas(middle);
    draw_routing(f, routing, s);
    draw_auth(f, auth, s);
    draw_errors(f, errors, s);
    let [storage, process, tls] = Layout::horizontal([
        Constraint::Percentage(34),
        Constraint::Percentage(33),
        Constraint::Percentage(33),
    ])
    .areas(bottom);
    draw_storage(f, storage, s);
    draw_process(f, process, app, s);
    draw_tls(f, tls, s);
}

fn label<'a>(s: impl Into<std::borrow::Cow<'a, str>>) -> Span<'a> {
    Span::styled(s, Style::default().fg(Color::DarkGray))
}

fn draw_sessions(f: &mut Frame, area: Rect, app: &App, s: &Snapshot) {
    let block = Block::bordered().title(" Sessions ");
    let inner = block.inner(area);
    f.render_widget(block, area);
    let n = s.live.get("sessions").copied().unwrap_or(0.0);
    let users = s.live.get("users").copied().unwrap_or(0.0);
    let opened = s.rate("c2s_session_open", "count", &[]);
    let closed = s.rate("c2s_session_close", "count", &[]);
    let [line, spark] = Layout::vertical([Constraint::Length(2), Constraint::Min(1)]).areas(inner);
    f.render_widget(
        Paragraph::new(vec![
            Line::from(vec![
                Span::styled(format!("{} sessions", count(n)), Style::default().bold()),
                label(format!("  {} users", count(users))),
            ]),
            Line::from(vec![
                label("opened "),
                Span::raw(rate(Some(opened))),
                label("  closed "),
                Span::raw(rate(Some(closed))),
            ]),
        ]),
        line,
    );
    let data = app.history.last("sessions", spark.width as usize);
    f.render_widget(Sparkline::default().data(&data).style(Color::Cyan), spark);
}

fn draw_connections(f: &mut Frame, area: Rect, s: &Snapshot) {
    let mut lines = vec![Line::from(label(
        "listener            open   accepted    closed  rejected",
    ))];
    let mut listeners: Vec<&str> = s
        .event("c2s_connections")
        .filter_map(|x| x.labels.get("listener").map(String::as_str))
        .collect();
    listeners.dedup();
    for l in listeners {
        let m = [("listener", l)];
        lines.push(Line::from(format!(
            "{:<18} {:>5} {:>10} {:>9} {:>9}",
            l,
            count(s.total("c2s_connections", "open", &m)),
            rate(Some(s.rate("c2s_connection_accepted", "count", &m))),
            rate(Some(s.rate("c2s_connection_closed", "count", &m))),
            rate(Some(s.rate("c2s_connection_rejected", "count", &m))),
        )));
    }
    let tls = s.rate("c2s_tls_established", "count", &[]);
    lines.push(Line::from(vec![
        label("TLS handshakes "),
        Span::raw(rate(Some(tls))),
        label("   bytes in "),
        Span::raw(format!("{}/s", bytes(s.rate("c2s_data_in", "bytes", &[])))),
        label(" out "),
        Span::raw(format!("{}/s", bytes(s.rate("c2s_data_out", "bytes", &[])))),
    ]));
    f.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" Connections ")),
        area,
    );
}

fn draw_stanzas(f: &mut Frame, area: Rect, app: &App, s: &Snapshot) {
    let block = Block::bordered().title(" Stanzas per second (in ▸ out) ");
    let inner = block.inner(area);
    f.render_widget(block, area);
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
        f.render_widget(Paragraph::new(text), t);
        let (gin, gout) = (gin.inner(Margin::new(1, 0)), gout.inner(Margin::new(1, 0)));
        let din = app.history.last(in_key(kind), gin.width as usize);
        let dout = app.history.last(out_key(kind), gout.width as usize);
        let spark = |d| Sparkline::default().data(d).max(max);
        f.render_widget(spark(&din).style(Color::Green), gin);
        f.render_widget(spark(&dout).style(Color::Blue), gout);
    }
}

/// The p50/p99 of one histogram series (the busiest one matching).
fn quantiles(
    s: &Snapshot,
    event: &str,
    key: &str,
    m: &[(&str, &str)],
) -> (Option<f64>, Option<f64>) {
    s.event(event)
        .filter(|x| {
            x.key == key
                && x.kind == Kind::Histogram
                && m.iter()
                    .all(|(k, v)| x.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .max_by(|a, b| a.rate.unwrap_or(0.0).total_cmp(&b.rate.unwrap_or(0.0)))
        .map(|x| (x.p50, x.p99))
        .unwrap_or((None, None))
}

fn draw_routing(f: &mut Frame, area: Rect, s: &Snapshot) {
    let (p50, p99) = quantiles(
        s,
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
        Line::from(vec![
            label("message p50 "),
            Span::raw(latency(p50)),
            label("  p99 "),
            Span::raw(latency(p99)),
        ]),
    ];
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
            lines.push(Line::from(format!(
                "{:<15}{:>9} {:>8}",
                outcome,
                rate(Some(s.rate("router_routed", "count", &m))),
                count(total)
            )));
        }
    }
    f.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" Routing ")),
        area,
    );
}

fn draw_auth(f: &mut Frame, area: Rect, s: &Snapshot) {
    let ok = [("outcome", "success")];
    let bad = [("outcome", "failure")];
    let mut lines = vec![
        Line::from(vec![
            label("success "),
            Span::styled(
                format!("{:>9}", rate(Some(s.rate("c2s_auth", "count", &ok)))),
                Style::default().fg(Color::Green),
            ),
            label(format!(
                "  total {}",
                count(s.total("c2s_auth", "count", &ok))
            )),
        ]),
        Line::from(vec![
            label("failure "),
            Span::styled(
                format!("{:>9}", rate(Some(s.rate("c2s_auth", "count", &bad)))),
                Style::default().fg(Color::Red),
            ),
            label(format!(
                "  total {}",
                count(s.total("c2s_auth", "count", &bad))
            )),
        ]),
    ];
    let (p50, p99) = quantiles(s, "c2s_auth", "seconds", &ok);
    lines.push(Line::from(vec![
        label("login p50 "),
        Span::raw(latency(p50)),
        label("  p99 "),
        Span::raw(latency(p99)),
    ]));
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
    for (r, v) in reasons.into_iter().take(3) {
        lines.push(Line::from(format!("  {r:<22}{:>6}", count(v))));
    }
    f.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" Authentication ")),
        area,
    );
}

fn draw_errors(f: &mut Frame, area: Rect, s: &Snapshot) {
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
        rows.iter()
            .map(|(n, total, r)| {
                Line::from(format!("{n:<26}{:>7} {:>8}", count(*total), rate(Some(*r))))
            })
            .collect()
    };
    f.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" Errors (total, rate) ")),
        area,
    );
}

fn draw_storage(f: &mut Frame, area: Rect, s: &Snapshot) {
    let backend = s
        .event("storage_query")
        .find_map(|x| x.labels.get("backend").cloned())
        .unwrap_or_else(|| "–".into());
    let errors = s.total("storage_query", "count", &[("outcome", "error")]);
    let mut lines = vec![Line::from(vec![
        label("queries "),
        Span::styled(
            rate(Some(s.rate("storage_query", "count", &[]))),
            Style::default().bold(),
        ),
        label(format!("  {backend}  errors {}", count(errors))),
    ])];
    lines.push(Line::from(label("operation         rate   p50 / p99")));
    // The busiest operations with their latency.
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
    for x in ops.into_iter().take(4) {
        lines.push(Line::from(format!(
            "{:<14}{:>8} {:>7} / {:<7}",
            x.labels.get("operation").map(String::as_str).unwrap_or("?"),
            rate(x.rate),
            latency(x.p50),
            latency(x.p99),
        )));
    }
    f.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" Storage ")),
        area,
    );
}

fn draw_process(f: &mut Frame, area: Rect, app: &App, s: &Snapshot) {
    let block = Block::bordered().title(" Process ");
    let inner = block.inner(area);
    f.render_widget(block, area);
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
        Line::from(vec![
            label("RSS "),
            Span::raw(bytes(rss)),
            label("  CPU "),
            Span::raw(cpu),
        ]),
        Line::from(vec![
            label("fds "),
            Span::raw(count(s.total("process", "open_fds", &[]))),
            label("  threads "),
            Span::raw(count(s.total("process", "threads", &[]))),
            label("  tasks "),
            Span::raw(count(s.total("runtime", "tasks", &[]))),
        ]),
        Line::from(vec![label("uptime "), Span::raw(age(s.uptime_seconds))]),
    ];
    let [t, g] = Layout::vertical([Constraint::Length(3), Constraint::Min(1)]).areas(inner);
    f.render_widget(Paragraph::new(lines), t);
    let data = app.history.last("cpu", g.width as usize);
    f.render_widget(Sparkline::default().data(&data).style(Color::Magenta), g);
}

fn draw_tls(f: &mut Frame, area: Rect, s: &Snapshot) {
    let mut lines = Vec::new();
    // The probe reports the expiry time; days left are counted from the
    // snapshot's time.
    let now = s.time_ms as f64 / 1000.0;
    for x in s
        .event("tls_certificate")
        .filter(|x| x.key == "expiry_timestamp_seconds")
    {
        let l = x.labels.get("listener").map(String::as_str).unwrap_or("?");
        let days = ((x.value - now) / 86_400.0).floor();
        let color = if days < 7.0 {
            Color::Red
        } else if days < 30.0 {
            Color::Yellow
        } else {
            Color::Green
        };
        lines.push(Line::from(vec![
            Span::raw(format!("{l:<18}")),
            Span::styled(format!("{days:.0} days left"), Style::default().fg(color)),
        ]));
    }
    if lines.is_empty() {
        lines.push(Line::from(label("no TLS listener (or not probed yet)")));
    }
    f.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" TLS certificates ")),
        area,
    );
}
