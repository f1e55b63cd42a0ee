//! Sessions: a sortable, filterable table; the selected one's details, and
//! the kick and trace actions. On a narrow terminal the columns the detail
//! box repeats (priority, TLS, transport, then the address) go first.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{HighlightSpacing, Table, TableState};
use ratatui::Frame;

use super::{block_line, panel, Columns};
use crate::fit::{best, Col, Parts, Step};
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
    let cells: Vec<[String; 10]> = rows
        .iter()
        .map(|r| {
            [
                r.bare.clone(),
                r.resource.clone(),
                r.address.clone(),
                // A detached session has no transport until it is resumed.
                if r.is_detached() {
                    "detached".to_string()
                } else {
                    r.transport.clone()
                },
                if r.tls { "yes" } else { "no" }.to_string(),
                age(r.connected_seconds as f64),
                count(r.stanzas_in as f64),
                count(r.stanzas_out as f64),
                bytes(r.queued_bytes as f64),
                if r.available {
                    r.priority.to_string()
                } else {
                    "unavail".into()
                },
            ]
        })
        .collect();
    let column = |i: usize| cells.iter().map(|r| r[i].clone()).collect::<Vec<_>>();
    let mut jid = Col::text(&format!("JID{}", arrow(SortKey::Jid)), 18, 12, &column(0));
    // One very long JID does not push the other columns out: it is cut,
    // and takes whatever room is left.
    jid.flex = true;
    jid.want = jid.want.min(30);
    let cols = [
        jid,
        Col::text("resource", 12, 8, &column(1)),
        Col::text("address", 21, 10, &column(2)),
        Col::text("transport", 9, 9, &column(3)),
        Col::text("TLS", 3, 3, &column(4)),
        Col::number(
            &format!("connected{}", arrow(SortKey::Connected)),
            9,
            &column(5),
        ),
        Col::number(&format!("in{}", arrow(SortKey::In)), 6, &column(6)),
        Col::number(&format!("out{}", arrow(SortKey::Out)), 6, &column(7)),
        Col::number(&format!("queue{}", arrow(SortKey::Queue)), 7, &column(8)),
        Col::number("prio", 4, &column(9)),
    ];
    // What the detail box below repeats goes first; numbers stay.
    let steps = [
        Step::Drop(9),
        Step::Drop(4),
        Step::Drop(3),
        Step::Shrink(1),
        Step::Shrink(2),
        Step::Drop(2),
        Step::Shrink(0),
        Step::Drop(1),
    ];
    // Two columns for the selection mark, always reserved.
    let avail = table_area.width.saturating_sub(4) as usize;
    let layout = Columns::new(&cols, avail, &steps);
    let body: Vec<_> = cells
        .into_iter()
        .map(|r| layout.row(r.into_iter().map(Span::raw).collect()))
        .collect();
    let mut state = TableState::default();
    state.select(
        v.selected
            .as_ref()
            .and_then(|s| rows.iter().position(|r| &r.jid == s)),
    );
    let filter = super::filter_label(&v.filter, app.editing == Some(Editing::SessionsFilter))
        .map(|f| format!(" {f}"))
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
    let room = table_area.width.saturating_sub(2) as usize;
    let title = Parts::new()
        .keep(format!(" Sessions: {} shown of {}", rows.len(), total))
        .opt(1, format!(" · sort {}", v.sort.title()))
        .shrink(filter)
        .keep(" ")
        .line(room);
    let table = Table::new(body, layout.constraints())
        .header(layout.header())
        .row_highlight_style(Style::default().bg(Color::DarkGray).fg(Color::White))
        .highlight_symbol("▶ ")
        .highlight_spacing(HighlightSpacing::Always)
        .block(block_line(title, table_area));
    f.render_stateful_widget(table, table_area, &mut state);

    let w = detail_area.width.saturating_sub(2) as usize;
    let dim = Style::default().fg(Color::DarkGray);
    let detail = match app.selected_session() {
        None if app.sessions.is_empty() => vec![Line::from("no sessions")],
        None => vec![Line::from("no session matches the filter")],
        Some(r) => {
            let mut lines = vec![
                Parts::new()
                    .shrink(Span::raw(r.jid.clone()).bold())
                    .keep(format!("   session {}", r.session_id))
                    .line(w),
                Parts::new()
                    .keep("from ")
                    .shrink(r.address.clone())
                    .keep(" on listener ")
                    .shrink(r.listener.clone())
                    .opt(
                        1,
                        format!(" ({}{})", r.transport, if r.tls { ", TLS" } else { "" }),
                    )
                    .line(w),
                Parts::new()
                    .keep(format!("connected {}", age(r.connected_seconds as f64)))
                    .keep(" · presence ")
                    .keep(if r.available {
                        format!("available, priority {}", r.priority)
                    } else {
                        "unavailable".into()
                    })
                    .line(w),
                {
                    let stanzas = format!(
                        "stanzas in {} · out {} · queued {}",
                        r.stanzas_in,
                        r.stanzas_out,
                        bytes(r.queued_bytes as f64)
                    );
                    let detached = |why: &str| {
                        if r.is_detached() {
                            Line::from(format!("{stanzas} · detached{why}"))
                        } else {
                            Line::from(stanzas.clone())
                        }
                    };
                    best(
                        w,
                        [
                            detached(": connection lost, waiting for a resume (XEP-0198)"),
                            detached(""),
                        ],
                    )
                },
            ];
            match &v.confirm_kick {
                Some(jid) => lines.push(Line::from(Span::styled(
                    format!("Kick {jid}? y = yes, any other key = no"),
                    Style::default().fg(Color::Black).bg(Color::Yellow),
                ))),
                None => lines.push(Line::from(Span::styled(
                    "k kick · t trace · / filter · s sort · r reverse · ↑↓ select",
                    dim,
                ))),
            }
            lines
        }
    };
    panel(f, detail_area, " Selected ", detail);
}
