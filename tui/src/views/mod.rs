//! One file per view; each draws from [`crate::state::App`] only.

pub mod events;
pub mod help;
pub mod overview;
pub mod sessions;
pub mod trace;

use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row};
use ratatui::Frame;

use crate::fit::{self, Col};

/// A table's filter as its title shows it: `filter: text▏` while typing,
/// `filter: text` when set, nothing when empty.
pub fn filter_label(text: &str, editing: bool) -> Option<String> {
    if editing {
        Some(format!("filter: {text}▏"))
    } else if text.is_empty() {
        None
    } else {
        Some(format!("filter: {text}"))
    }
}

/// A bordered box whose title, when too long for it, ends with `…`.
pub fn block(title: &str, area: Rect) -> Block<'static> {
    let room = area.width.saturating_sub(2) as usize;
    if title.is_empty() {
        return Block::bordered();
    }
    Block::bordered().title(fit::fit(title, room))
}

/// A bordered box of lines: each cut to its width with `…`, and `… N more`
/// when they do not all fit in its height.
pub fn panel(f: &mut Frame, area: Rect, title: &str, lines: Vec<Line<'_>>) {
    let b = block(title, area);
    let inner = b.inner(area);
    let lines = fit::lines(lines, inner.width as usize, inner.height as usize);
    f.render_widget(Paragraph::new(lines).block(b), area);
}

/// A bordered box with a title line already fitted (see [`fit::Parts`]).
pub fn block_line(title: Line<'static>, area: Rect) -> Block<'static> {
    let room = area.width.saturating_sub(2) as usize;
    Block::bordered().title(fit::fit_line(title, room))
}

/// A table laid out by [`fit::widths`]: its constraints, header and a way
/// to turn each row's cells into a fitted [`Row`] (dropped columns left
/// out, text cut with `…`, numbers right-aligned).
pub struct Columns<'c> {
    cols: &'c [Col],
    widths: Vec<Option<usize>>,
}

impl<'c> Columns<'c> {
    pub fn new(cols: &'c [Col], avail: usize, steps: &[fit::Step]) -> Self {
        Columns {
            cols,
            widths: fit::widths(cols, avail, 1, steps),
        }
    }

    pub fn constraints(&self) -> Vec<Constraint> {
        self.widths
            .iter()
            .flatten()
            .map(|w| Constraint::Length(*w as u16))
            .collect()
    }

    /// Is column `i` shown?
    pub fn shown(&self, i: usize) -> bool {
        self.widths.get(i).is_some_and(Option::is_some)
    }

    pub fn header(&self) -> Row<'static> {
        self.row(
            self.cols
                .iter()
                .map(|c| Span::raw(c.header.clone()))
                .collect(),
        )
        .style(Style::default().add_modifier(Modifier::BOLD))
    }

    pub fn row(&self, cells: Vec<Span<'_>>) -> Row<'static> {
        let cells: Vec<Cell<'static>> = cells
            .into_iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let w = (*self.widths.get(i)?)?;
                let text = fit::cell(&c.content, w, self.cols[i].right);
                Some(Cell::from(Span::styled(text, c.style)))
            })
            .collect();
        Row::new(cells)
    }
}
