//! The terminal: raw mode and the alternate screen on entry, restored on
//! every way out — quit, error (the guard's `Drop`), panic (ratatui's hook,
//! installed by `try_init`) and SIGTERM/SIGHUP (turned into a quit).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ratatui::crossterm::event::{self, Event, KeyEvent};
use ratatui::DefaultTerminal;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::mpsc;

use crate::state::App;

pub struct Terminal {
    inner: Option<DefaultTerminal>,
}

impl Terminal {
    pub fn enter() -> std::io::Result<Terminal> {
        let inner = ratatui::try_init()?;
        Ok(Terminal { inner: Some(inner) })
    }

    pub fn draw(&mut self, app: &App) -> std::io::Result<()> {
        if let Some(t) = &mut self.inner {
            t.draw(|f| crate::ui::draw(f, app))?;
        }
        Ok(())
    }

    pub fn leave(&mut self) {
        if self.inner.take().is_some() {
            ratatui::restore();
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        // On a panic ratatui's hook has restored already; leaving the
        // alternate screen twice would move the cursor over the message.
        if !std::thread::panicking() {
            self.leave();
        }
    }
}

pub enum Input {
    Key(KeyEvent),
    Resize,
    Failed(String),
}

/// Keyboard and resize events, read on a thread of their own (crossterm's
/// reader blocks); the thread ends when the receiver is dropped.
pub fn input_events() -> mpsc::Receiver<Input> {
    let (tx, rx) = mpsc::channel(64);
    let stop = Arc::new(AtomicBool::new(false));
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) && !tx.is_closed() {
            let ready = match event::poll(Duration::from_millis(100)) {
                Ok(r) => r,
                Err(e) => {
                    let _ = tx.blocking_send(Input::Failed(e.to_string()));
                    return;
                }
            };
            if !ready {
                continue;
            }
            let input = match event::read() {
                Ok(Event::Key(k)) => Input::Key(k),
                Ok(Event::Resize(..)) => Input::Resize,
                Ok(_) => continue,
                Err(e) => Input::Failed(e.to_string()),
            };
            if tx.blocking_send(input).is_err() {
                stop.store(true, Ordering::Relaxed);
            }
        }
    });
    rx
}

/// SIGTERM and SIGHUP (a closed terminal window): quit cleanly.
pub struct Signals {
    term: Signal,
    hup: Signal,
}

impl Signals {
    pub fn new() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    pub async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.hup.recv() => {}
        }
    }
}
