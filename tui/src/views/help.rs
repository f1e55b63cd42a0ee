//! The `?` overlay: every key.

use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::Clear;
use ratatui::Frame;

pub const KEYS: &[(&str, &str)] = &[
    ("1 2 3 4 / Tab", "Overview, Sessions, Events, Trace"),
    ("?", "this help (any key closes it)"),
    ("q, Ctrl-C", "quit"),
    ("↑ ↓ PgUp PgDn", "select (Sessions), scroll (Events, Trace)"),
    ("/", "filter the table (Enter keeps, Esc clears)"),
    ("s / r", "Sessions: next sort column / reverse"),
    ("k", "Sessions: kick the selected session (asks first)"),
    ("t", "Sessions: trace the selected session live"),
    ("Enter", "Trace list: follow the selected trace"),
    ("l", "Trace: list the gateway's traces (from anyone)"),
    ("p", "Trace: pause / resume the view"),
    ("c", "Trace: call statistics"),
    ("x", "Trace: stop the trace (the selected one in the list)"),
    ("End", "Trace: back to the newest record"),
];

pub fn draw(f: &mut Frame, area: Rect) {
    let [v] = Layout::vertical([Constraint::Length(KEYS.len() as u16 + 4)])
        .flex(Flex::Center)
        .areas(area);
    let [r] = Layout::horizontal([Constraint::Length(72)])
        .flex(Flex::Center)
        .areas(v);
    let mut lines = vec![Line::from("")];
    lines.extend(
        KEYS.iter()
            .map(|(k, what)| Line::from(format!("  {k:<16}{what}"))),
    );
    f.render_widget(Clear, r);
    super::panel(f, r, " Keys ", lines);
}
