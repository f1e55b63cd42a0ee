//! Events: the instrumentation catalogue with each event's live rate.

use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::widgets::{Block, Cell, Row, Table};
use ratatui::Frame;

use crate::format::{count, rate};
use crate::state::{App, Editing};

pub fn draw(f: &mut Frame, area: Rect, app: &App) {
    let events = app.visible_events();
    let header = Row::new(["event", "level", "labels", "rate", "total", "meaning"])
        .style(Style::default().add_modifier(Modifier::BOLD));
    let visible = area.height.saturating_sub(3) as usize;
    let scroll = app.events_scroll.min(events.len().saturating_sub(visible));
    let rows: Vec<Row> = events
        .iter()
        .skip(scroll)
        .map(|(e, r, total)| {
            let active = r.is_some_and(|r| r > 0.0);
            let style = if active {
                Style::default().fg(Color::Green)
            } else {
                Style::default()
            };
            Row::new(vec![
                Cell::from(e.name.clone()),
                Cell::from(e.level.clone()),
                Cell::from(e.labels.join(",")),
                Cell::from(if e.probe { "probe".into() } else { rate(*r) }),
                Cell::from(count(*total)),
                Cell::from(e.help.clone()),
            ])
            .style(style)
        })
        .collect();
    let filter = super::filter_label(
        &app.events_filter,
        app.editing == Some(Editing::EventsFilter),
    )
    .map(|f| format!(" {f} "))
    .unwrap_or_default();
    let title = format!(
        " Events: {} of {}{} ",
        events.len(),
        app.catalogue.len(),
        filter
    );
    let table = Table::new(
        rows,
        [
            Constraint::Length(24),
            Constraint::Length(5),
            Constraint::Length(33),
            Constraint::Length(10),
            Constraint::Length(8),
            Constraint::Min(20),
        ],
    )
    .header(header)
    .block(Block::bordered().title(title));
    f.render_widget(table, area);
}
