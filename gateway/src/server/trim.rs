//! Gives freed memory back to the system after many connections closed.
//!
//! glibc keeps freed heap pages for reuse; after a burst of connections
//! (or an attack of half-sent elements) closes, RSS would stay at its peak.
//! Once a second, if at least [`CLOSED_BATCH`] connections ended since the
//! last look, `malloc_trim` returns the free pages (a few milliseconds,
//! only after such a burst).

use std::sync::Arc;
use std::time::Duration;

use super::Ctx;

const CLOSED_BATCH: usize = 64;

pub(super) async fn run(ctx: Arc<Ctx>) {
    let mut seen = ctx.admission.closed();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let closed = ctx.admission.closed();
        if closed.saturating_sub(seen) >= CLOSED_BATCH {
            seen = closed;
            trim();
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}
