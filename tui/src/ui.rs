//! The frame around the views: title line, tabs, the connection banner,
//! the status line, the help overlay, and the too-small message.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Tabs, Wrap};
use ratatui::Frame;

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
    let banner = banner(app);
    let [title, tabs, banner_area, body, status] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(if banner.is_some() { 2 } else { 0 }),
        Constraint::Min(10),
        Constraint::Length(1),
    ])
    .areas(area);
    f.render_widget(Paragraph::new(title_line(app)), title);
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
    if let Some(b) = banner {
        f.render_widget(b, banner_area);
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
        .map(|n| Span::raw(format!(" {n}")))
        .unwrap_or_default();
    f.render_widget(Paragraph::new(Line::from(vec![hint, notice])), status);
    if app.help {
        views::help::draw(f, body);
    }
}

fn title_line(app: &App) -> Line<'_> {
    let dot = match app.link {
        Link::Up => Span::styled("● live", Style::default().fg(Color::Green)),
        Link::Connecting => Span::styled("○ connecting", Style::default().fg(Color::Yellow)),
        Link::Down { .. } => Span::styled("✖ down", Style::default().fg(Color::Red)),
        Link::Refused => Span::styled("✖ refused", Style::default().fg(Color::Red)),
    };
    let mut spans = vec![Span::styled(
        "Osprey",
        Style::default().add_modifier(Modifier::BOLD),
    )];
    if let Some(s) = &app.snapshot {
        spans.push(Span::raw(format!(
            " {} · up {} · {} · ",
            s.version,
            age(s.uptime_seconds),
            s.hosts.join(",")
        )));
    } else {
        spans.push(Span::raw(" · "));
    }
    spans.push(Span::raw(format!("{} ", app.url)));
    spans.push(dot);
    Line::from(spans)
}

fn banner(app: &App) -> Option<Paragraph<'_>> {
    let style = Style::default()
        .fg(Color::White)
        .bg(Color::Red)
        .add_modifier(Modifier::BOLD);
    let text = match &app.link {
        Link::Up | Link::Connecting => return None,
        Link::Down {
            error,
            retry_in,
            attempt,
        } => format!(
            " gateway unreachable at {}: {error} — retrying in {:.0}s (attempt {attempt}); showing the last data ",
            app.url,
            retry_in.as_secs_f64().ceil()
        ),
        Link::Refused => format!(
            " the admin API at {} refused the token (HTTP 401): pass --token, or run on the gateway's host so the token is read from its data dir ",
            app.url
        ),
    };
    Some(
        Paragraph::new(Line::from(Span::styled(text, style)))
            .style(style)
            .wrap(Wrap { trim: true }),
    )
}

fn too_small(f: &mut Frame, area: Rect) {
    let text = format!(
        "Terminal too small: {}×{}. osprey top needs at least {MIN_WIDTH}×{MIN_HEIGHT}. Enlarge the window, or press q to quit.",
        area.width, area.height
    );
    f.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }), area);
}
