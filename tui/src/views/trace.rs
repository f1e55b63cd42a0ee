//! Trace: the records of a running live trace as they arrive, with pause,
//! scroll, filter and call statistics (computed here, from the records
//! received, by the same code the gateway's `/stats` uses).

use osprey_instrument::live::{query, Kind, Record};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table};
use ratatui::Frame;

use crate::state::{App, Editing};

pub fn draw(f: &mut Frame, area: Rect, app: &App) {
    let Some(t) = &app.trace else {
        f.render_widget(
            Paragraph::new(vec![
                Line::from("No trace running."),
                Line::from(""),
                Line::from(
                    "Select a session in the Sessions view (2) and press t to trace it live.",
                ),
                Line::from(
                    "Records appear here as the session works; bodies are redacted by the gateway.",
                ),
            ])
            .block(Block::bordered().title(" Trace ")),
            area,
        );
        return;
    };
    let records = app.visible_records();
    let (list_area, stats_area) = if t.show_stats {
        let [a, b] = Layout::horizontal([Constraint::Percentage(62), Constraint::Percentage(38)])
            .areas(area);
        (a, Some(b))
    } else {
        (area, None)
    };
    let state = match (&t.stopped, t.paused) {
        (Some(reason), _) => format!("stopped: {reason}"),
        (None, true) => "PAUSED".into(),
        (None, false) => "running".into(),
    };
    let filter = super::filter_label(&t.filter, app.editing == Some(Editing::TraceFilter))
        .map(|f| format!(" · {f}"))
        .unwrap_or_default();
    let title = format!(
        " Trace {} of {} · {} · {} records{} ",
        t.id,
        t.target,
        state,
        t.records.len() as u64 + t.dropped,
        filter
    );
    let height = list_area.height.saturating_sub(3) as usize;
    // `scroll` counts rows back from the newest (records that arrived
    // while paused included), so a paused view keeps its rows.
    let end = records.len().saturating_sub(t.scroll);
    let start = end.saturating_sub(height);
    let rows: Vec<Row> = records[start..end].iter().map(|r| row(r)).collect();
    let table = Table::new(
        rows,
        [
            Constraint::Length(12),
            Constraint::Length(11),
            Constraint::Length(6),
            Constraint::Length(24),
            Constraint::Length(9),
            Constraint::Min(10),
        ],
    )
    .header(
        Row::new(["time", "task", "kind", "name", "µs", "data"])
            .style(Style::default().add_modifier(Modifier::BOLD)),
    )
    .block(Block::bordered().title(title));
    f.render_widget(table, list_area);

    if let Some(area) = stats_area {
        let owned: Vec<Record> = records.iter().map(|r| (*r).clone()).collect();
        let stats = query::call_stat(&owned, "function", "acc");
        let rows: Vec<Row> = stats
            .iter()
            .map(|s| {
                Row::new(vec![
                    Cell::from(s.key.clone()),
                    Cell::from(s.count.to_string()),
                    Cell::from(s.acc_us.to_string()),
                    Cell::from(s.own_us.to_string()),
                ])
            })
            .collect();
        f.render_widget(
            Table::new(
                rows,
                [
                    Constraint::Min(14),
                    Constraint::Length(6),
                    Constraint::Length(8),
                    Constraint::Length(8),
                ],
            )
            .header(
                Row::new(["call", "count", "acc µs", "own µs"])
                    .style(Style::default().add_modifier(Modifier::BOLD)),
            )
            .block(Block::bordered().title(" Call statistics ")),
            area,
        );
    }
}

fn row(r: &Record) -> Row<'static> {
    let color = match r.kind {
        Kind::In => Color::Green,
        Kind::Out => Color::Blue,
        Kind::Error => Color::Red,
        Kind::Call | Kind::Return => Color::Yellow,
        _ => Color::Gray,
    };
    let kind = format!("{:?}", r.kind).to_lowercase();
    Row::new(vec![
        Cell::from(clock(r.ts_us)),
        Cell::from(r.task.to_string()),
        Cell::from(Line::from(Span::styled(kind, Style::default().fg(color)))),
        Cell::from(r.name.clone()),
        Cell::from(r.duration_us.map(|d| d.to_string()).unwrap_or_default()),
        Cell::from(r.data.clone()),
    ])
}

/// `HH:MM:SS.mmm` (UTC) of a microsecond Unix timestamp.
pub fn clock(ts_us: u64) -> String {
    let ms = ts_us / 1000;
    let s = ms / 1000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        s / 3600 % 24,
        s / 60 % 60,
        s % 60,
        ms % 1000
    )
}
