//! Keys: what each does to the state, and the requests some of them make.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::state::{App, Editing, Tab};

/// A request to the gateway a key asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Kick(String),
    Trace {
        session: u64,
        jid: String,
    },
    /// Follow a trace already on the gateway (started elsewhere, or here).
    Follow {
        id: u64,
        target: String,
    },
    StopTrace(u64),
}

/// Applies a key; returns the request to make, if any.
pub fn key(app: &mut App, k: KeyEvent) -> Option<Action> {
    if k.kind == KeyEventKind::Release {
        return None;
    }
    // Ctrl-C always quits (raw mode turns it into a key).
    if k.modifiers.contains(KeyModifiers::CONTROL) && k.code == KeyCode::Char('c') {
        app.quit = true;
        return None;
    }
    if let Some(field) = app.editing {
        edit(app, field, k.code);
        return None;
    }
    if app.help {
        app.help = false;
        return None;
    }
    if let Some(jid) = app.sessions_view.confirm_kick.take() {
        if k.code == KeyCode::Char('y') {
            app.notice = Some(format!("kicking {jid}…"));
            return Some(Action::Kick(jid));
        }
        app.notice = Some("kick cancelled".into());
        return None;
    }
    match k.code {
        KeyCode::Char('q') => app.quit = true,
        KeyCode::Char('?') => app.help = true,
        KeyCode::Char('1') => app.tab = Tab::Overview,
        KeyCode::Char('2') => app.tab = Tab::Sessions,
        KeyCode::Char('3') => app.tab = Tab::Events,
        KeyCode::Char('4') => app.tab = Tab::Trace,
        KeyCode::Tab | KeyCode::Right => app.tab = app.tab.next(),
        KeyCode::BackTab | KeyCode::Left => app.tab = app.tab.prev(),
        _ => return tab_key(app, k.code),
    }
    None
}

fn tab_key(app: &mut App, code: KeyCode) -> Option<Action> {
    match app.tab {
        Tab::Overview => None,
        Tab::Sessions => {
            let v = &mut app.sessions_view;
            match code {
                KeyCode::Up => app.move_selection(-1),
                KeyCode::Down => app.move_selection(1),
                KeyCode::PageUp => app.move_selection(-10),
                KeyCode::PageDown => app.move_selection(10),
                KeyCode::Home => app.move_selection(isize::MIN / 2),
                KeyCode::End => app.move_selection(isize::MAX / 2),
                KeyCode::Char('/') => app.editing = Some(Editing::SessionsFilter),
                KeyCode::Char('s') => v.sort = v.sort.next(),
                KeyCode::Char('r') => v.descending = !v.descending,
                KeyCode::Char('k') => {
                    if let Some(r) = app.selected_session() {
                        app.sessions_view.confirm_kick = Some(r.jid.clone());
                    }
                }
                KeyCode::Char('t') => {
                    if let Some((session, jid)) = app
                        .selected_session()
                        .map(|r| (r.session_id, r.jid.clone()))
                    {
                        app.notice = Some(format!("starting a trace of {jid}…"));
                        return Some(Action::Trace { session, jid });
                    }
                }
                _ => {}
            }
            None
        }
        Tab::Events => {
            match code {
                KeyCode::Up => app.events_scroll = app.events_scroll.saturating_sub(1),
                KeyCode::Down => app.events_scroll += 1,
                KeyCode::PageUp => app.events_scroll = app.events_scroll.saturating_sub(10),
                KeyCode::PageDown => app.events_scroll += 10,
                KeyCode::Home => app.events_scroll = 0,
                KeyCode::Char('/') => app.editing = Some(Editing::EventsFilter),
                _ => {}
            }
            app.events_scroll = app.events_scroll.min(app.catalogue.len());
            None
        }
        Tab::Trace if app.trace_list_shown() => {
            match code {
                KeyCode::Up => app.move_trace_selection(-1),
                KeyCode::Down => app.move_trace_selection(1),
                KeyCode::PageUp => app.move_trace_selection(-10),
                KeyCode::PageDown => app.move_trace_selection(10),
                KeyCode::Home => app.move_trace_selection(isize::MIN / 2),
                KeyCode::End => app.move_trace_selection(isize::MAX / 2),
                KeyCode::Enter => {
                    let t = app.selected_trace()?;
                    let (id, target) = (t.id, t.target());
                    if app.trace.as_ref().is_some_and(|f| f.id == id) {
                        // Already followed: back to its records.
                        app.traces_view.list = false;
                        return None;
                    }
                    app.notice = Some(format!("following trace {id}…"));
                    return Some(Action::Follow { id, target });
                }
                KeyCode::Char('x') => {
                    let t = app.selected_trace().filter(|t| t.running)?;
                    let id = t.id;
                    app.notice = Some(format!("stopping trace {id}…"));
                    return Some(Action::StopTrace(id));
                }
                KeyCode::Char('l') | KeyCode::Esc if app.trace.is_some() => {
                    app.traces_view.list = false;
                }
                _ => {}
            }
            None
        }
        Tab::Trace => {
            if code == KeyCode::Char('l') {
                app.traces_view.list = true;
                return None;
            }
            let t = app.trace.as_mut()?;
            match code {
                KeyCode::Char('p') | KeyCode::Char(' ') => {
                    t.paused = !t.paused;
                    if !t.paused {
                        t.scroll = 0;
                    }
                }
                KeyCode::Char('c') => t.show_stats = !t.show_stats,
                KeyCode::Char('/') => app.editing = Some(Editing::TraceFilter),
                KeyCode::Char('x') if t.stopped.is_none() => return Some(Action::StopTrace(t.id)),
                KeyCode::Up => scroll(t, 1),
                KeyCode::Down => t.scroll = t.scroll.saturating_sub(1),
                KeyCode::PageUp => scroll(t, 20),
                KeyCode::PageDown => t.scroll = t.scroll.saturating_sub(20),
                KeyCode::End => {
                    t.scroll = 0;
                    t.paused = false;
                }
                _ => {}
            }
            None
        }
    }
}

/// Scrolling back pauses the view, so the rows stay put.
fn scroll(t: &mut crate::state::TraceView, n: usize) {
    t.paused = true;
    t.scroll = (t.scroll + n).min(t.records.len().saturating_sub(1));
}

fn edit(app: &mut App, field: Editing, code: KeyCode) {
    let text = match field {
        Editing::SessionsFilter => &mut app.sessions_view.filter,
        Editing::EventsFilter => &mut app.events_filter,
        Editing::TraceFilter => match app.trace.as_mut() {
            Some(t) => &mut t.filter,
            None => {
                app.editing = None;
                return;
            }
        },
    };
    match code {
        KeyCode::Enter => app.editing = None,
        KeyCode::Esc => {
            text.clear();
            app.editing = None;
        }
        KeyCode::Backspace => {
            text.pop();
        }
        KeyCode::Char(c) => text.push(c),
        _ => {}
    }
    if field == Editing::SessionsFilter {
        // Keep a visible row selected as the filter narrows.
        app.move_selection(0);
    }
    if field == Editing::EventsFilter {
        app.events_scroll = 0;
    }
}
