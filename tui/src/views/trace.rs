//! Trace: the gateway's traces (started here, by another dashboard or by
//! `osprey trace start`), and the records of the one followed as they
//! arrive, with pause, scroll, filter and call statistics (computed here,
//! from the records received, by the same code the gateway's `/stats`
//! uses).

use osprey_instrument::live::{query, Kind, Record};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{HighlightSpacing, Table, TableState};
use ratatui::Frame;

use super::{block_line, panel, Columns};
use crate::fit::{Col, Parts, Step};
use crate::format::age;
use crate::state::{App, Editing};

pub fn draw(f: &mut Frame, area: Rect, app: &App) {
    if app.trace_list_shown() {
        draw_list(f, area, app);
    } else {
        draw_records(f, area, app);
    }
}

/// The gateway's traces: select one and follow it.
fn draw_list(f: &mut Frame, area: Rect, app: &App) {
    let dim = Style::default().fg(Color::DarkGray);
    if app.traces.is_empty() {
        let w = area.width.saturating_sub(2) as usize;
        let mut lines = vec![Line::from("No trace running."), Line::from("")];
        for text in [
            "Select a session in the Sessions view (2) and press t to trace it live.",
            "Traces started elsewhere (another osprey top, `osprey trace start`) are listed here too.",
            "Records appear here as the session works; bodies are redacted by the gateway.",
        ] {
            lines.extend(crate::fit::wrap(text, w, 3).into_iter().map(Line::from));
        }
        panel(f, area, " Trace ", lines);
        return;
    }
    let [list_area, hint_area] =
        Layout::vertical([Constraint::Min(4), Constraint::Length(2)]).areas(area);
    let now = app.snapshot.as_ref().map(|s| s.time_ms / 1000);
    let following = app.trace.as_ref().map(|t| t.id);
    let cells: Vec<[String; 5]> = app
        .traces
        .iter()
        .map(|t| {
            let mut state = if t.running {
                "running".to_string()
            } else {
                format!("stopped: {}", t.stop_reason.as_deref().unwrap_or("stopped"))
            };
            if following == Some(t.id) {
                state.push_str(" (shown)");
            }
            [
                t.id.to_string(),
                t.target(),
                state,
                t.records.to_string(),
                now.map(|n| format!("{} ago", age(n.saturating_sub(t.started) as f64)))
                    .unwrap_or_default(),
            ]
        })
        .collect();
    let column = |i: usize| cells.iter().map(|r| r[i].clone()).collect::<Vec<_>>();
    let mut target = Col::text("follows", 20, 12, &column(1));
    target.flex = true;
    let cols = [
        Col::number("id", 3, &column(0)),
        target,
        Col::text("state", 8, 7, &column(2)),
        Col::number("records", 7, &column(3)),
        Col::number("started", 8, &column(4)),
    ];
    let steps = [Step::Shrink(2), Step::Drop(4), Step::Shrink(1)];
    let layout = Columns::new(&cols, list_area.width.saturating_sub(4) as usize, &steps);
    let rows: Vec<_> = app
        .traces
        .iter()
        .zip(cells)
        .map(|(t, c)| {
            let style = if t.running {
                Style::default().fg(Color::Green)
            } else {
                dim
            };
            layout
                .row(c.into_iter().map(Span::raw).collect())
                .style(style)
        })
        .collect();
    let running = app.traces.iter().filter(|t| t.running).count();
    let title = Parts::new()
        .keep(format!(
            " Traces on the gateway: {running} running of {} ",
            app.traces.len()
        ))
        .line(list_area.width.saturating_sub(2) as usize);
    let mut state = TableState::default();
    state.select(
        app.traces_view
            .selected
            .and_then(|id| app.traces.iter().position(|t| t.id == id)),
    );
    let table = Table::new(rows, layout.constraints())
        .header(layout.header())
        .row_highlight_style(Style::default().bg(Color::DarkGray).fg(Color::White))
        .highlight_symbol("▶ ")
        .highlight_spacing(HighlightSpacing::Always)
        .block(block_line(title, list_area));
    f.render_stateful_widget(table, list_area, &mut state);
    let w = hint_area.width as usize;
    let back = following
        .map(|id| format!(" · l back to trace {id}"))
        .unwrap_or_default();
    let hint = vec![
        Parts::new()
            .keep(Span::styled("Enter follow · x stop · ↑↓ select", dim))
            .opt(1, Span::styled(back, dim))
            .line(w),
        Parts::new()
            .keep(Span::styled(
                "start one: Sessions (2), t; or `osprey trace start`",
                dim,
            ))
            .line(w),
    ];
    f.render_widget(
        ratatui::widgets::Paragraph::new(crate::fit::lines(hint, w, 2)),
        hint_area,
    );
}

/// The followed trace's records.
fn draw_records(f: &mut Frame, area: Rect, app: &App) {
    let Some(t) = &app.trace else {
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
    let others = app.traces.iter().filter(|x| x.id != t.id).count();
    let title = Parts::new()
        .keep(format!(" Trace {} of ", t.id))
        .shrink(t.target.clone())
        .keep(" · ")
        .shrink(state)
        .keep(format!(" · {} records", t.records.len() as u64 + t.dropped))
        .shrink(filter)
        .opt(
            1,
            if others > 0 {
                format!(" · l all traces ({others} more)")
            } else {
                " · l all traces".to_string()
            },
        )
        .keep(" ")
        .line(list_area.width.saturating_sub(2) as usize);
    let height = list_area.height.saturating_sub(3) as usize;
    // `scroll` counts rows back from the newest (records that arrived
    // while paused included), so a paused view keeps its rows.
    let end = records.len().saturating_sub(t.scroll);
    let start = end.saturating_sub(height);
    let shown = &records[start..end];
    let cells: Vec<[String; 6]> = shown
        .iter()
        .map(|r| {
            [
                clock(r.ts_us),
                r.task.to_string(),
                format!("{:?}", r.kind).to_lowercase(),
                r.name.clone(),
                r.duration_us.map(|d| d.to_string()).unwrap_or_default(),
                r.data.clone(),
            ]
        })
        .collect();
    let column = |i: usize| cells.iter().map(|r| r[i].clone()).collect::<Vec<_>>();
    let cols = [
        Col::text("time", 12, 12, &column(0)),
        Col::text("task", 8, 6, &column(1)),
        Col::text("kind", 6, 6, &column(2)),
        Col::text("name", 16, 10, &column(3)),
        Col::number("µs", 9, &column(4)),
        Col::flex("data", 12),
    ];
    // The name and task are cut before whole columns go.
    let steps = [
        Step::Shrink(3),
        Step::Shrink(1),
        Step::Drop(1),
        Step::Drop(0),
    ];
    let layout = Columns::new(&cols, list_area.width.saturating_sub(2) as usize, &steps);
    let rows: Vec<_> = shown
        .iter()
        .zip(cells)
        .map(|(r, c)| {
            let [time, task, kind, name, us, data] = c;
            layout.row(vec![
                Span::raw(time),
                Span::raw(task),
                Span::styled(kind, Style::default().fg(color(r))),
                Span::raw(name),
                Span::raw(us),
                Span::raw(data),
            ])
        })
        .collect();
    let table = Table::new(rows, layout.constraints())
        .header(layout.header())
        .block(block_line(title, list_area));
    f.render_widget(table, list_area);

    if let Some(area) = stats_area {
        let owned: Vec<Record> = records.iter().map(|r| (*r).clone()).collect();
        let stats = query::call_stat(&owned, "function", "acc");
        let cells: Vec<[String; 4]> = stats
            .iter()
            .map(|s| {
                [
                    s.key.clone(),
                    s.count.to_string(),
                    s.acc_us.to_string(),
                    s.own_us.to_string(),
                ]
            })
            .collect();
        let column = |i: usize| cells.iter().map(|r| r[i].clone()).collect::<Vec<_>>();
        let mut call = Col::text("call", 0, 6, &column(0));
        call.flex = true;
        call.want = call.want.min(14);
        let cols = [
            call,
            Col::number("count", 6, &column(1)),
            Col::number("acc µs", 8, &column(2)),
            Col::number("own µs", 8, &column(3)),
        ];
        let layout = Columns::new(
            &cols,
            area.width.saturating_sub(2) as usize,
            &[Step::Shrink(0), Step::Drop(3)],
        );
        let rows: Vec<_> = cells
            .into_iter()
            .map(|c| layout.row(c.into_iter().map(Span::raw).collect()))
            .collect();
        f.render_widget(
            Table::new(rows, layout.constraints())
                .header(layout.header())
                .block(block_line(Line::from(" Call statistics "), area)),
            area,
        );
    }
}

fn color(r: &Record) -> Color {
    match r.kind {
        Kind::In => Color::Green,
        Kind::Out => Color::Blue,
        Kind::Error => Color::Red,
        Kind::Call | Kind::Return => Color::Yellow,
        _ => Color::Gray,
    }
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
