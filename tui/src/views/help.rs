//! The `?` overlay: every key.

use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Block, Clear, Paragraph};
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
    ("p", "Trace: pause / resume the view"),
    ("c", "Trace: call statistics"),
    ("x", "Trace: stop the trace"),
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
    f.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" Keys ")),
        r,
    );
}
