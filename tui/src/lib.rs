//! `osprey top`: the live terminal dashboard. It follows a running
//! gateway through its admin API (the snapshot stream, the session list,
//! live traces) and never parses Prometheus text.
//!
//! # Layout
//!
//! - `client.rs` — the admin API over HTTP/1.1 with the bearer token;
//!   server-sent event streams.
//! - `feed.rs` — background work: the snapshot stream with reconnect
//!   backoff, the session, event, cluster and trace-list polls, kick/trace
//!   requests → [`feed::Update`]s;
//!   states what the dashboard costs the gateway.
//! - `state.rs` — [`state::App`]: everything the views draw from.
//! - `input.rs` — keys → state changes and [`input::Action`]s.
//! - `ui.rs` — title, tabs, connection banner, status line, help
//!   overlay, the too-small message.
//! - `views/` — overview, sessions, events, trace, help.
//! - `format.rs` — numbers, rates, latencies, ages, sizes.
//! - `fit.rs` — text cut to the screen with `…`, optional words and
//!   columns dropped first, so a number is never cut silently.
//! - `term.rs` — the terminal: raw mode and the alternate screen, restored
//!   on quit, on error, on panic and on SIGTERM/SIGHUP.

pub mod client;
pub mod feed;
pub mod fit;
pub mod format;
pub mod input;
pub mod state;
pub mod term;
pub mod ui;
pub mod views;

use std::time::Duration;

use feed::{Feed, Update};
use state::App;

/// At most this many redraws a second, however fast data arrives.
pub const MAX_FPS: u64 = 10;

pub struct Options {
    /// `http://host:port` of the gateway's admin API.
    pub url: String,
    pub token: String,
}

/// Runs the dashboard until `q`, Ctrl-C, SIGTERM or SIGHUP.
pub fn run(opts: Options) -> Result<(), String> {
    let api = client::Api::new(&opts.url, &opts.token)?;
    if !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        return Err("osprey top needs a terminal (stdout is not a TTY)".into());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| format!("starting the runtime: {e}"))?;
    rt.block_on(main_loop(api, opts.url))
}

/// Applies one update from the feed.
pub fn apply(app: &mut App, u: Update) {
    match u {
        Update::Link(l) => app.link = l,
        Update::Snapshot(s) => {
            app.link = state::Link::Up;
            app.apply_snapshot(*s);
        }
        Update::Sessions(rows) => app.apply_sessions(rows),
        Update::Catalogue(c) => app.catalogue = c,
        Update::Log(l) => app.log = Some(l),
        Update::Traces(list) => app.apply_traces(list),
        Update::Cluster(c) => app.cluster = c.map(|c| *c),
        Update::TraceStarted { id, target } => app.trace_started(id, target),
        Update::TraceRecord(id, r) => app.trace_record_of(id, *r),
        Update::TraceStopped(id, reason) => {
            if let Some(t) = app.trace.as_mut().filter(|t| t.id == id) {
                t.stopped = Some(reason);
            }
        }
        Update::Notice(n) => app.notice = Some(n),
    }
}

async fn main_loop(api: client::Api, url: String) -> Result<(), String> {
    let mut terminal = term::Terminal::enter().map_err(|e| format!("terminal: {e}"))?;
    let mut input = term::input_events();
    let (tx, mut updates) = tokio::sync::mpsc::channel(1024);
    let mut app = App::new(&url);
    let (tab_tx, tab_rx) = tokio::sync::watch::channel(app.tab);
    let (filter_tx, filter_rx) = tokio::sync::watch::channel(String::new());
    let mut feed = Feed::start(api, tx, tab_rx, filter_rx);
    let mut signals = term::Signals::new().map_err(|e| format!("signals: {e}"))?;
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / MAX_FPS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut dirty = true;
    let panic_for_tests = std::env::var_os("OSPREY_TOP_TEST_PANIC").is_some();
    while !app.quit {
        tokio::select! {
            ev = input.recv() => match ev {
                Some(term::Input::Key(k)) => {
                    if let Some(action) = input::key(&mut app, k) {
                        feed.act(action);
                    }
                    tab_tx.send_if_modified(|t| std::mem::replace(t, app.tab) != app.tab);
                    // The gateway filters too, so a big node sends one page.
                    let f = &app.sessions_view.filter;
                    filter_tx.send_if_modified(|old| {
                        let changed = old != f;
                        if changed {
                            old.clone_from(f);
                        }
                        changed
                    });
                    dirty = true;
                }
                Some(term::Input::Resize) => dirty = true,
                Some(term::Input::Failed(e)) => return Err(format!("reading the keyboard: {e}")),
                None => break,
            },
            Some(u) = updates.recv() => {
                apply(&mut app, u);
                dirty = true;
            }
            _ = tick.tick() => {
                if dirty {
                    terminal.draw(&app).map_err(|e| format!("drawing: {e}"))?;
                    dirty = false;
                    // The end-to-end suite checks that a panic restores
                    // the terminal; this is how it causes one.
                    if panic_for_tests {
                        panic!("OSPREY_TOP_TEST_PANIC is set: panicking after the first draw");
                    }
                }
            }
            _ = signals.recv() => app.quit = true,
        }
    }
    drop(feed);
    terminal.leave();
    Ok(())
}

#[cfg(test)]
mod tests;
