//! Sessions: a sortable, filterable table; the selected one's details, and
//! the kick and trace actions.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, TableState};
use ratatui::Frame;

use crate::format::{age, bytes, count};
use crate::state::{App, Editing, SortKey};

pub fn draw(f: &mut Frame, area: Rect, app: &App) {
    let v = &app.sessions_view;
    let rows = app.visible_sessions();
    let [table_area, detail_area] =
        Layout::vertical([Constraint::Min(5), Constraint::Length(7)]).areas(area);

    let arrow = |k: SortKey| {
        if v.sort == k {
            if v.descending {
                " ▲"
            } else {
                " ▼"
            }
        } else {
            ""
        }
    };
    let header = Row::new(vec![
        Cell::from(format!("JID{}", arrow(SortKey::Jid))),
        Cell::from("resource"),
        Cell::from("address"),
        Cell::from("transport"),
        Cell::from("TLS"),
        Cell::from(format!("connected{}", arrow(SortKey::Connected))),
        Cell::from(format!("in{}", arrow(SortKey::In))),
        Cell::from(format!("out{}", arrow(SortKey::Out))),
        Cell::from(format!("queue{}", arrow(SortKey::Queue))),
        Cell::from("prio"),
    ])
    .style(Style::default().add_modifier(Modifier::BOLD));
    let body: Vec<Row> = rows
        .iter()
        .map(|r| {
            Row::new(vec![
                Cell::from(r.bare.clone()),
                Cell::from(r.resource.clone()),
                Cell::from(r.address.clone()),
                // A detached session has no transport until it is resumed.
                Cell::from(if r.is_detached() {
                    "detached".to_string()
                } else {
                    r.transport.clone()
                }),
                Cell::from(if r.tls { "yes" } else { "no" }),
                Cell::from(age(r.connected_seconds as f64)),
                Cell::from(count(r.stanzas_in as f64)),
                Cell::from(count(r.stanzas_out as f64)),
                Cell::from(bytes(r.queued_bytes as f64)),
                Cell::from(if r.available {
                    r.priority.to_string()
                } else {
                    "unavail".into()
                }),
            ])
        })
        .collect();
    let mut state = TableState::default();
    state.select(
        v.selected
            .as_ref()
            .and_then(|s| rows.iter().position(|r| &r.jid == s)),
    );
    let filter = super::filter_label(&v.filter, app.editing == Some(Editing::SessionsFilter))
        .map(|f| format!(" {f} "))
        .unwrap_or_default();
    // The gateway sends at most a page: the node's count comes from the
    // snapshot.
    let total = app
        .snapshot
        .as_ref()
        .and_then(|s| s.live.get("sessions"))
        .map(|n| *n as usize)
        .unwrap_or(0)
        .max(app.sessions.len());
    let title = format!(
        " Sessions: {} shown of {} · sort {}{} ",
        rows.len(),
        total,
        v.sort.title(),
        filter
    );
    let table = Table::new(
        body,
        [
            Constraint::Min(18),
            Constraint::Length(12),
            Constraint::Length(22),
            Constraint::Length(9),
            Constraint::Length(4),
            Constraint::Length(12),
            Constraint::Length(7),
            Constraint::Length(7),
            Constraint::Length(9),
            Constraint::Length(7),
        ],
    )
    .header(header)
    .row_highlight_style(Style::default().bg(Color::DarkGray).fg(Color::White))
    .highlight_symbol("▶ ")
    .block(Block::bordered().title(title));
    f.render_stateful_widget(table, table_area, &mut state);

    let detail = match app.selected_session() {
        None if app.sessions.is_empty() => vec![Line::from("no sessions")],
        None => vec![Line::from("no session matches the filter")],
        Some(r) => {
            let mut lines = vec![
                Line::from(vec![
                    Span::raw(r.jid.clone()).bold(),
                    Span::raw(format!("   session {}", r.session_id)),
                ]),
                Line::from(format!(
                    "from {} on listener {} ({}{}) · connected {} · presence {}",
                    r.address,
                    r.listener,
                    r.transport,
                    if r.tls { ", TLS" } else { "" },
                    age(r.connected_seconds as f64),
                    if r.available {
                        format!("available, priority {}", r.priority)
                    } else {
                        "unavailable".into()
                    }
                )),
                Line::from(format!(
                    "stanzas in {} · out {} · queued {}{}",
                    r.stanzas_in,
                    r.stanzas_out,
                    bytes(r.queued_bytes as f64),
                    if r.is_detached() {
                        " · detached: connection lost, waiting for a resume (XEP-0198)"
                    } else {
                        ""
                    }
                )),
            ];
            match &v.confirm_kick {
                Some(jid) => lines.push(Line::from(Span::styled(
                    format!("Kick {jid}? y = yes, any other key = no"),
                    Style::default().fg(Color::Black).bg(Color::Yellow),
                ))),
                None => lines.push(Line::from(Span::styled(
                    "k kick · t trace · / filter · s sort · r reverse · ↑↓ select",
                    Style::default().fg(Color::DarkGray),
                ))),
            }
            lines
        }
    };
    f.render_widget(
        Paragraph::new(detail).block(Block::bordered().title(" Selected ")),
        detail_area,
    );
}
