//! Making text fit the screen without hiding that it was cut: whatever is
//! cut ends with `…`; numbers are never cut while something less
//! important (a word, a column) can go first.
//!
//! - [`fit`] / [`fit_line`]: cut a string or a styled line to a width.
//! - [`Parts`]: a line of parts, the optional ones dropped (least
//!   important first) before a shrinkable one (a JID, a name) is cut.
//! - [`Col`] / [`widths`]: table columns: text columns shrink to their
//!   minimum and optional columns are dropped, in the order the view
//!   gives, before anything else is cut.
//! - [`lines`]: lines in a box: each cut to the width, and `… N more` as
//!   the last line when they do not all fit in its height.
//! - [`wrap`]: words wrapped over at most N lines, the last one ending in
//!   `…` when the text is longer.

use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};

pub const ELLIPSIS: &str = "…";

/// The display width of `s` (columns on a terminal).
pub fn width(s: &str) -> usize {
    Span::raw(s).width()
}

fn char_width(c: char) -> usize {
    let mut buf = [0u8; 4];
    width(c.encode_utf8(&mut buf))
}

/// `s` cut to at most `w` columns, ending with `…` when cut.
pub fn fit(s: &str, w: usize) -> String {
    if width(s) <= w {
        return s.to_string();
    }
    if w == 0 {
        return String::new();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        let cw = char_width(c);
        if used + cw > w - 1 {
            break;
        }
        out.push(c);
        used += cw;
    }
    // No dangling space before the ellipsis.
    let trimmed = out.trim_end().len();
    out.truncate(trimmed);
    out.push_str(ELLIPSIS);
    out
}

/// `s` fitted to exactly `w` columns: cut with `…`, or padded (numbers
/// right-aligned when `right`).
pub fn cell(s: &str, w: usize, right: bool) -> String {
    let s = fit(s, w);
    let pad = w.saturating_sub(width(&s));
    if right {
        format!("{}{s}", " ".repeat(pad))
    } else {
        format!("{s}{}", " ".repeat(pad))
    }
}

/// A styled line cut to `w` columns, its last column `…` when cut.
pub fn fit_line(line: Line<'_>, w: usize) -> Line<'static> {
    let total: usize = line.spans.iter().map(|s| s.width()).sum();
    let style = line.style;
    let alignment = line.alignment;
    let mut spans: Vec<Span<'static>> = Vec::new();
    if total <= w {
        spans.extend(
            line.spans
                .into_iter()
                .map(|s| Span::styled(s.content.into_owned(), s.style)),
        );
    } else if w > 0 {
        let mut left = w - 1;
        let mut last_style = Style::default();
        for s in line.spans {
            if left == 0 {
                break;
            }
            let sw = s.width();
            last_style = s.style;
            if sw <= left {
                left -= sw;
                spans.push(Span::styled(s.content.into_owned(), s.style));
            } else {
                let mut cut = String::new();
                for c in s.content.chars() {
                    let cw = char_width(c);
                    if cw > left {
                        break;
                    }
                    cut.push(c);
                    left -= cw;
                }
                spans.push(Span::styled(cut, s.style));
                left = 0;
            }
        }
        // No dangling space before the ellipsis.
        while let Some(last) = spans.last_mut() {
            let t = last.content.trim_end().to_string();
            if t.is_empty() {
                spans.pop();
            } else {
                last.content = t.into();
                break;
            }
        }
        spans.push(Span::styled(ELLIPSIS, last_style));
    }
    let mut out = Line::from(spans).style(style);
    out.alignment = alignment;
    out
}

#[derive(Debug, Clone)]
struct Part<'a> {
    spans: Vec<Span<'a>>,
    /// 0: kept; otherwise dropped when the line is too wide, highest first.
    drop: u8,
    /// Cut (with `…`) when dropping is not enough.
    shrink: bool,
}

/// A line built of parts: when it is too wide, optional parts go (highest
/// rank first), then shrinkable parts are cut with `…`, and only then the
/// line's end.
#[derive(Debug, Clone, Default)]
pub struct Parts<'a> {
    parts: Vec<Part<'a>>,
}

impl<'a> Parts<'a> {
    pub fn new() -> Self {
        Parts { parts: Vec::new() }
    }

    /// A part that stays (numbers, what the line is about).
    pub fn keep(mut self, span: impl Into<Span<'a>>) -> Self {
        self.parts.push(Part {
            spans: vec![span.into()],
            drop: 0,
            shrink: false,
        });
        self
    }

    /// Spans dropped together when there is no room (a label and its
    /// number); `rank` as for [`Parts::opt`].
    pub fn opt_group(mut self, rank: u8, spans: Vec<Span<'a>>) -> Self {
        self.parts.push(Part {
            spans,
            drop: rank.max(1),
            shrink: false,
        });
        self
    }

    /// A part dropped when there is no room; `rank` 1 goes last, higher
    /// ranks first.
    pub fn opt(mut self, rank: u8, span: impl Into<Span<'a>>) -> Self {
        self.parts.push(Part {
            spans: vec![span.into()],
            drop: rank.max(1),
            shrink: false,
        });
        self
    }

    /// Text that may be cut with `…` (a name, a JID).
    pub fn shrink(mut self, span: impl Into<Span<'a>>) -> Self {
        self.parts.push(Part {
            spans: vec![span.into()],
            drop: 0,
            shrink: true,
        });
        self
    }

    fn width(&self) -> usize {
        self.parts
            .iter()
            .flat_map(|p| &p.spans)
            .map(|s| s.width())
            .sum()
    }

    /// The line at most `w` columns wide.
    pub fn line(mut self, w: usize) -> Line<'static> {
        while self.width() > w {
            let Some(at) = self
                .parts
                .iter()
                .enumerate()
                .filter(|(_, p)| p.drop > 0)
                .max_by_key(|(i, p)| (p.drop, *i))
                .map(|(i, _)| i)
            else {
                break;
            };
            self.parts.remove(at);
        }
        // Shrinkable parts, the last first, down to one character and `…`.
        let mut i = self.parts.len();
        while self.width() > w && i > 0 {
            i -= 1;
            if !self.parts[i].shrink {
                continue;
            }
            let excess = self.width() - w;
            for s in self.parts[i].spans.iter_mut() {
                let sw = s.width();
                let keep = sw.saturating_sub(excess).max(2).min(sw);
                if keep < sw {
                    s.content = fit(&s.content, keep).into();
                }
            }
        }
        let spans: Vec<Span<'a>> = self.parts.into_iter().flat_map(|p| p.spans).collect();
        fit_line(Line::from(spans), w)
    }
}

/// A table column.
#[derive(Debug, Clone)]
pub struct Col {
    pub header: String,
    /// The width it asks for (its widest cell or header, or more so that
    /// it does not jitter).
    pub want: usize,
    /// The width its text may shrink to (cut with `…`); for numbers, the
    /// widest value (only padding goes).
    pub min: usize,
    /// Takes the room left over.
    pub flex: bool,
    /// Right-aligned (numbers).
    pub right: bool,
}

impl Col {
    /// A number column as wide as its header and widest value (at least
    /// `at_least`, so it does not jitter as values change).
    pub fn number<S: AsRef<str>>(header: &str, at_least: usize, values: &[S]) -> Col {
        let min = values
            .iter()
            .map(|v| width(v.as_ref()))
            .chain([width(header)])
            .max()
            .unwrap_or(0);
        Col {
            header: header.to_string(),
            want: min.max(at_least),
            min,
            flex: false,
            right: true,
        }
    }

    /// A text column: as wide as its widest value (at least `at_least`),
    /// cut down to `min` with `…` when room is short.
    pub fn text<S: AsRef<str>>(header: &str, at_least: usize, min: usize, values: &[S]) -> Col {
        let want = values
            .iter()
            .map(|v| width(v.as_ref()))
            .chain([width(header), at_least])
            .max()
            .unwrap_or(0);
        Col {
            header: header.to_string(),
            want,
            min: min.min(want),
            flex: false,
            right: false,
        }
    }

    /// A text column taking the room left (at least `min`).
    pub fn flex(header: &str, min: usize) -> Col {
        Col {
            header: header.to_string(),
            want: min,
            min,
            flex: true,
            right: false,
        }
    }
}

/// What a view gives up, in order, when its columns are too wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Cut this column's text down to its `min`.
    Shrink(usize),
    /// Leave this column out.
    Drop(usize),
}

/// The width of each column (`None`: dropped) so that they fit in `avail`
/// with `spacing` between them: number columns lose their padding first,
/// then `steps` are taken in order until they fit (columns of width 0,
/// empty, are left out); if they still do not,
/// text columns are cut further, then anything.
pub fn widths(cols: &[Col], avail: usize, spacing: usize, steps: &[Step]) -> Vec<Option<usize>> {
    // A column with nothing to show (and no room to take) is left out.
    let mut w: Vec<Option<usize>> = cols
        .iter()
        .map(|c| (c.want > 0 || c.flex).then_some(c.want))
        .collect();
    let total = |w: &[Option<usize>]| {
        let kept: Vec<usize> = w.iter().flatten().copied().collect();
        kept.iter().sum::<usize>() + spacing * kept.len().saturating_sub(1)
    };
    for (i, c) in cols.iter().enumerate() {
        let t = total(&w);
        if t <= avail {
            break;
        }
        if c.right {
            w[i] = Some(c.want.saturating_sub(t - avail).max(c.min));
        }
    }
    for step in steps {
        let t = total(&w);
        if t <= avail {
            break;
        }
        match *step {
            Step::Shrink(i) => {
                if let Some(cw) = w[i] {
                    w[i] = Some(cw.saturating_sub(t - avail).max(cols[i].min));
                }
            }
            Step::Drop(i) => w[i] = None,
        }
    }
    // Last resorts: text down to its minimum, then anything down to one
    // column, widest first.
    for floor in [None, Some(1)] {
        while total(&w) > avail {
            let excess = total(&w) - avail;
            let widest = w
                .iter()
                .enumerate()
                .filter_map(|(i, cw)| {
                    let lim = floor.unwrap_or(cols[i].min);
                    cw.filter(|cw| *cw > lim).map(|cw| (i, cw, lim))
                })
                .max_by_key(|(i, cw, _)| (*cw, usize::MAX - i));
            let Some((i, cw, lim)) = widest else { break };
            w[i] = Some(cw.saturating_sub(excess).max(lim));
        }
    }
    let left = avail.saturating_sub(total(&w));
    if let Some(i) = cols.iter().position(|c| c.flex) {
        if let Some(cw) = &mut w[i] {
            *cw += left;
        }
    }
    w
}

/// Rows of cells as aligned lines `avail` wide (a dim header line first
/// when `header`): columns sized by [`widths`], each cell cut with `…`
/// only when the steps could not make room.
pub fn grid(
    cols: &[Col],
    header: bool,
    rows: Vec<Vec<Span<'_>>>,
    avail: usize,
    steps: &[Step],
) -> Vec<Line<'static>> {
    let w = widths(cols, avail, 1, steps);
    let line = |cells: Vec<Span<'_>>| {
        let mut spans: Vec<Span<'static>> = Vec::new();
        for (i, c) in cells.into_iter().enumerate() {
            let Some(Some(cw)) = w.get(i) else { continue };
            if !spans.is_empty() {
                spans.push(Span::raw(" "));
            }
            spans.push(Span::styled(cell(&c.content, *cw, cols[i].right), c.style));
        }
        Line::from(spans)
    };
    let mut out = Vec::new();
    if header {
        let dim = Style::default().fg(Color::DarkGray);
        out.push(line(
            cols.iter()
                .map(|c| Span::styled(c.header.clone(), dim))
                .collect(),
        ));
    }
    out.extend(rows.into_iter().map(line));
    out
}

/// The first of `variants` (most detailed first) that fits in `w`
/// columns; the last one cut with `…` if none does.
pub fn best<'a>(w: usize, variants: impl IntoIterator<Item = Line<'a>>) -> Line<'static> {
    let mut last = None;
    for v in variants {
        if v.width() <= w {
            return fit_line(v, w);
        }
        last = Some(v);
    }
    fit_line(last.unwrap_or_default(), w)
}

/// The lines fitted in a `w`×`h` box: each cut to `w`; when there are more
/// than `h`, the last line shown says how many more there are.
pub fn lines(mut lines: Vec<Line<'_>>, w: usize, h: usize) -> Vec<Line<'static>> {
    if lines.len() > h && h > 0 {
        let more = lines.len() - (h - 1);
        lines.truncate(h - 1);
        lines.push(Line::from(Span::styled(
            format!("{ELLIPSIS} {more} more"),
            Style::default().fg(Color::DarkGray),
        )));
    }
    lines.into_iter().map(|l| fit_line(l, w)).collect()
}

/// `text` wrapped at spaces to `w` columns, on at most `max` lines; the
/// last ends with `…` when the text does not fit.
pub fn wrap(text: &str, w: usize, max: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if line.is_empty() {
            line = word.to_string();
        } else if width(&line) + 1 + width(word) <= w {
            line.push(' ');
            line.push_str(word);
        } else {
            out.push(std::mem::replace(&mut line, word.to_string()));
        }
        // A word longer than the line is cut where the line ends.
        while width(&line) > w && w > 0 {
            let head: String = fit(&line, w + 1).trim_end_matches(ELLIPSIS).to_string();
            let head = if head.is_empty() {
                line.chars().take(1).collect()
            } else {
                head
            };
            line = line[head.len()..].to_string();
            out.push(head);
        }
    }
    if !line.is_empty() {
        out.push(line);
    }
    if out.len() > max && max > 0 {
        out.truncate(max);
        let last = out.pop().unwrap_or_default();
        out.push(fit(&format!("{last} {ELLIPSIS}"), w));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(l: &Line) -> String {
        l.spans.iter().map(|s| s.content.as_ref()).collect()
    }

    #[test]
    fn cuts_end_with_an_ellipsis() {
        assert_eq!(fit("abcdef", 6), "abcdef");
        assert_eq!(fit("abcdef", 4), "abc…");
        assert_eq!(fit("ab def", 4), "ab…");
        assert_eq!(fit("abc", 1), "…");
        assert_eq!(fit("abc", 0), "");
        assert_eq!(cell("12", 4, true), "  12");
        assert_eq!(cell("abcdef", 4, false), "abc…");
        let l = fit_line(Line::from(vec![Span::raw("hello "), Span::raw("world")]), 8);
        assert_eq!(text(&l), "hello w…");
        let l = fit_line(Line::from(vec![Span::raw("hello "), Span::raw("world")]), 7);
        assert_eq!(text(&l), "hello…");
    }

    #[test]
    fn parts_drop_words_before_cutting() {
        let p = || {
            Parts::new()
                .keep("success ")
                .keep("12/s")
                .opt(1, " total")
                .keep(" 163")
        };
        assert_eq!(text(&p().line(40)), "success 12/s total 163");
        assert_eq!(text(&p().line(20)), "success 12/s 163");
        let p = Parts::new()
            .shrink("alice@example.org")
            .keep(" 89 days")
            .opt(1, " left");
        assert_eq!(text(&p.line(16)), "alice@e… 89 days");
    }

    #[test]
    fn columns_follow_the_steps_then_cut_text() {
        let cols = vec![
            Col::flex("jid", 8),
            Col::number("in", 4, &["2400"]),
            Col::text("address", 0, 6, &["127.0.0.1:5000"]),
            Col::number("prio", 0, &["0"]),
        ];
        let steps = [Step::Drop(3), Step::Drop(2)];
        assert_eq!(
            widths(&cols, 40, 1, &steps),
            vec![Some(15), Some(4), Some(14), Some(4)]
        );
        assert_eq!(
            widths(&cols, 30, 1, &steps),
            vec![Some(10), Some(4), Some(14), None]
        );
        assert_eq!(
            widths(&cols, 14, 1, &steps),
            vec![Some(9), Some(4), None, None]
        );
    }

    #[test]
    fn too_many_lines_say_how_many_more() {
        let l: Vec<Line> = (0..5).map(|i| Line::from(format!("line {i}"))).collect();
        let out = lines(l, 10, 3);
        assert_eq!(out.len(), 3);
        assert_eq!(text(&out[2]), "… 3 more");
    }

    #[test]
    fn wraps_words() {
        assert_eq!(wrap("aa bb cc", 5, 3), vec!["aa bb", "cc"]);
        let w = wrap("aa bb cc dd ee", 5, 2);
        assert_eq!(w, vec!["aa bb", "cc d…"]);
    }
}
