//! Events: the instrumentation catalogue with each event's live rate and
//! the level it is logged at on this gateway (its configured override or
//! its own), marked `✗` when that level is not logged now.

use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::text::Span;
use ratatui::widgets::Table;
use ratatui::Frame;

use super::{block_line, Columns};
use crate::fit::{Col, Parts, Step};
use crate::format::{count, rate};
use crate::state::{App, Editing, EventInfo};

/// Marks an event not logged at the gateway's current level.
pub const NOT_LOGGED: &str = "✗";
/// Marks a level set by `[instrumentation.log] events`.
pub const OVERRIDDEN: &str = "*";

/// The level cell: `debug`, `info*` (configured), `debug ✗` (not logged).
pub fn level_cell(e: &EventInfo) -> String {
    let mut s = e.level.clone();
    if e.overridden {
        s.push_str(OVERRIDDEN);
    }
    if e.logged == Some(false) {
        s.push(' ');
        s.push_str(NOT_LOGGED);
    }
    s
}

pub fn draw(f: &mut Frame, area: Rect, app: &App) {
    let events = app.visible_events();
    let visible = area.height.saturating_sub(3) as usize;
    let scroll = app.events_scroll.min(events.len().saturating_sub(visible));
    let shown: Vec<_> = events.iter().skip(scroll).collect();
    let cells: Vec<[String; 6]> = shown
        .iter()
        .map(|(e, r, total)| {
            [
                e.name.clone(),
                level_cell(e),
                e.labels.join(","),
                if e.probe { "probe".into() } else { rate(*r) },
                count(*total),
                e.help.clone(),
            ]
        })
        .collect();
    let column = |i: usize| cells.iter().map(|r| r[i].clone()).collect::<Vec<_>>();
    let cols = [
        Col::text("event", 24, 14, &column(0)),
        Col::text("level", 5, 5, &column(1)),
        Col::text("labels", 12, 8, &column(2)),
        Col::number("rate", 7, &column(3)),
        Col::number("total", 7, &column(4)),
        Col::flex("meaning", 24),
    ];
    // The labels go before the meaning is cut short.
    let steps = [Step::Shrink(2), Step::Drop(2), Step::Shrink(0)];
    let layout = Columns::new(&cols, area.width.saturating_sub(2) as usize, &steps);
    let rows: Vec<_> = shown
        .iter()
        .zip(cells)
        .map(|((e, r, _), c)| {
            let active = r.is_some_and(|r| r > 0.0);
            let style = if active {
                Style::default().fg(Color::Green)
            } else {
                Style::default()
            };
            let level_style = if e.logged == Some(false) {
                Style::default().fg(Color::DarkGray)
            } else {
                style
            };
            let [name, level, labels, rate, total, help] = c;
            layout
                .row(vec![
                    Span::raw(name),
                    Span::styled(level, level_style),
                    Span::raw(labels),
                    Span::raw(rate),
                    Span::raw(total),
                    Span::raw(help),
                ])
                .style(style)
        })
        .collect();
    let filter = super::filter_label(
        &app.events_filter,
        app.editing == Some(Editing::EventsFilter),
    )
    .map(|f| format!(" {f}"))
    .unwrap_or_default();
    // What the marks mean, and the level now.
    let (now, legend) = match &app.log {
        Some(l) if l.handler == Some(false) => (
            " · event log off (no [instrumentation.log])".to_string(),
            format!(" · {NOT_LOGGED} not logged"),
        ),
        Some(l) => (
            format!(" · logging up to {}", l.level),
            format!(" · {NOT_LOGGED} not logged · {OVERRIDDEN} configured"),
        ),
        None => (
            String::new(),
            format!(" · {NOT_LOGGED} not logged · {OVERRIDDEN} configured"),
        ),
    };
    let title = Parts::new()
        .keep(format!(
            " Events: {} of {}",
            events.len(),
            app.catalogue.len()
        ))
        .shrink(filter)
        .opt(1, now)
        .opt(2, legend)
        .keep(" ")
        .line(area.width.saturating_sub(2) as usize);
    let table = Table::new(rows, layout.constraints())
        .header(layout.header())
        .block(block_line(title, area));
    f.render_widget(table, area);
}
