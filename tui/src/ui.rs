//! The frame around the views: title line, tabs, the connection banner,
//! the status line, the help overlay, and the too-small message.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Tabs, Wrap};
use ratatui::Frame;

use crate::fit::{self, Parts};
use crate::format::age;
use crate::state::{App, Link, Tab};
use crate::views;

/// Smaller than this and the views cannot be drawn legibly.
pub const MIN_WIDTH: u16 = 80;
pub const MIN_HEIGHT: u16 = 24;

pub fn draw(f: &mut Frame, app: &App) {
    let area = f.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        too_small(f, area);
        return;
    }
    let banner = banner(app, area.width as usize);
    let banner_height = banner.as_ref().map_or(0, |b| b.len() as u16);
    let [title, tabs, banner_area, body, status] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(banner_height),
        Constraint::Min(10),
        Constraint::Length(1),
    ])
    .areas(area);
    f.render_widget(Paragraph::new(title_line(app, title.width as usize)), title);
    let titles: Vec<String> = Tab::ALL
        .iter()
        .enumerate()
        .map(|(i, t)| format!("{} {}", i + 1, t.title()))
        .collect();
    let selected = Tab::ALL.iter().position(|t| *t == app.tab);
    f.render_widget(
        Tabs::new(titles).select(selected).highlight_style(
            Style::default()
                .fg(Color::Black)
                .bg(Color::Cyan)
                .add_modifier(Modifier::BOLD),
        ),
        tabs,
    );
    if let Some(lines) = banner {
        let style = banner_style();
        let lines: Vec<Line> = lines
            .into_iter()
            .map(|l| Line::from(Span::styled(l, style)))
            .collect();
        f.render_widget(Paragraph::new(lines).style(style), banner_area);
    }
    match app.tab {
        Tab::Overview => views::overview::draw(f, body, app),
        Tab::Sessions => views::sessions::draw(f, body, app),
        Tab::Events => views::events::draw(f, body, app),
        Tab::Trace => views::trace::draw(f, body, app),
    }
    let hint = Span::styled(
        " ? keys · q quit ",
        Style::default().fg(Color::Black).bg(Color::Gray),
    );
    let notice = app
        .notice
        .as_deref()
        .map(|n| format!(" {n}"))
        .unwrap_or_default();
    let line = Parts::new()
        .keep(hint)
        .shrink(notice)
        .line(status.width as usize);
    f.render_widget(Paragraph::new(line), status);
    if app.help {
        views::help::draw(f, body);
    }
}

/// The title line: the link state always shows; the hosts go, then the
/// URL is cut, when the line is too narrow.
fn title_line(app: &App, w: usize) -> Line<'static> {
    let dot = match app.link {
        Link::Up => Span::styled("● live", Style::default().fg(Color::Green)),
        Link::Connecting => Span::styled("○ connecting", Style::default().fg(Color::Yellow)),
        Link::Down { .. } => Span::styled("✖ down", Style::default().fg(Color::Red)),
        Link::Refused => Span::styled("✖ refused", Style::default().fg(Color::Red)),
    };
    let mut parts = Parts::new().keep(Span::styled(
        "Osprey",
        Style::default().add_modifier(Modifier::BOLD),
    ));
    if let Some(s) = &app.snapshot {
        parts = parts
            .opt(2, format!(" {}", s.version))
            .keep(format!(" · up {}", age(s.uptime_seconds)))
            .opt(1, format!(" · {}", s.hosts.join(",")))
            .keep(" · ");
    } else {
        parts = parts.keep(" · ");
    }
    parts.shrink(app.url.clone()).keep(" ").keep(dot).line(w)
}

fn banner_style() -> Style {
    Style::default()
        .fg(Color::White)
        .bg(Color::Red)
        .add_modifier(Modifier::BOLD)
}

/// The connection banner, wrapped to the width on at most 3 lines (the
/// last ending with `…` if it is longer).
fn banner(app: &App, w: usize) -> Option<Vec<String>> {
    let text = match &app.link {
        Link::Up | Link::Connecting => return None,
        Link::Down {
            error,
            retry_in,
            attempt,
        } => format!(
            "gateway unreachable at {}: {error} — retrying in {:.0}s (attempt {attempt}); showing the last data",
            app.url,
            retry_in.as_secs_f64().ceil()
        ),
        Link::Refused => format!(
            "the admin API at {} refused the token (HTTP 401): pass --token, or run on the gateway's host so the token is read from its data dir",
            app.url
        ),
    };
    let lines = fit::wrap(&text, w.saturating_sub(2), 3)
        .into_iter()
        .map(|l| format!(" {l}"))
        .collect();
    Some(lines)
}

fn too_small(f: &mut Frame, area: Rect) {
    let text = format!(
        "Terminal too small: {}×{}. osprey top needs at least {MIN_WIDTH}×{MIN_HEIGHT}. Enlarge the window, or press q to quit.",
        area.width, area.height
    );
    f.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }), area);
}
