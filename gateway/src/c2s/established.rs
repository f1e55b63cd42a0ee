//! The established session loop: one `select!` over the socket, the
//! mailbox and shutdown; writes are batched; on the way out the session
//! leaves the table, its presence goes unavailable, and queued messages are
//! kept offline rather than lost.

use std::sync::Arc;

use tracing::Instrument;

use osprey_instrument::live::Kind;

use super::{Connection, Transport};
use crate::errors::{SessionEnd, StreamCondition, StreamError};
use crate::hooks::SessionEvent;
use crate::router::{self, Outbound, SessionHandle, Tags};
use crate::server::Ctx;
use crate::session::{Batch, Session};
use crate::xml::{Element, Frame};

/// One write gathers at most this much from the mailbox.
const BATCH_BYTES: usize = 64 * 1024;

enum Wake {
    Read(std::io::Result<usize>),
    Mail(Option<Outbound>),
    Overflow,
    Shutdown,
    /// A shaper's pause is over: reading resumes.
    Resume,
}

impl<T: Transport> Connection<T> {
    /// Runs a bound (or resumed) session on this transport until one of
    /// them ends. A transport that drops without closing the stream is
    /// offered to the detach hooks (XEP-0198 resume); otherwise the session
    /// leaves: out of the table, unavailable presence, queue kept offline.
    pub(super) async fn run(&mut self, mut s: Session) -> SessionEnd {
        let handle = s.handle.clone();
        // The write buffer and where each stanza in it ends.
        let mut batch = Batch::default();
        let shutdown = self.ctx.shutdown.clone();
        let mut close_reason = "";
        let mut shaping = super::shaper::Shaping::for_session(
            &self.ctx.config,
            &self.lst.config,
            handle.jid().domain(),
        );
        // While set, the socket is not read (the shapers' debt).
        let mut paused: Option<tokio::time::Instant> = None;
        // Stanzas left in the framer by the stanza rate, handled on resume.
        let mut backlog = false;
        if std::mem::take(&mut s.just_bound) {
            let ctx = self.ctx.clone();
            Box::pin(ctx.hooks.run_session(&ctx, &mut s, SessionEvent::Bound)).await;
        }
        // A resumed session first writes what its previous transport did
        // not get acknowledged.
        let replay = std::mem::take(&mut s.replay);
        let first = if replay.is_empty() {
            Ok(())
        } else {
            self.write_items(
                &mut s,
                replay.into_iter().map(|x| (x, Tags::default())),
                &mut batch,
            )
            .await
        };
        let end = match first {
            Err(end) => end,
            Ok(()) => loop {
                let resume = paused.unwrap_or_else(tokio::time::Instant::now);
                let read_max = shaping.read_budget();
                let wake = tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => Wake::Shutdown,
                    _ = handle.overflowed() => Wake::Overflow,
                    m = s.mailbox.recv() => Wake::Mail(m),
                    _ = tokio::time::sleep_until(resume), if paused.is_some() => Wake::Resume,
                    r = self.t.read(read_max), if paused.is_none() && !backlog => Wake::Read(r),
                };
                match wake {
                    Wake::Shutdown => break Box::pin(self.read_what_arrived(&mut s)).await,
                    Wake::Resume => {
                        paused = None;
                        if backlog {
                            match Box::pin(self.take_input(&mut s, &mut shaping, 0, &mut batch))
                                .await
                            {
                                Ok(next) => (paused, backlog) = next,
                                Err(end) => break end,
                            }
                        }
                    }
                    Wake::Overflow => break self.overflow_error(&handle),
                    Wake::Mail(None) => break SessionEnd::PeerClosed,
                    Wake::Mail(Some(Outbound::Close(e))) => {
                        close_reason = if e.condition == StreamCondition::Conflict {
                            "replaced"
                        } else {
                            "kicked"
                        };
                        break e.into();
                    }
                    Wake::Mail(Some(Outbound::Detach)) => break SessionEnd::TakenOver,
                    Wake::Mail(Some(Outbound::OfflineWaiting)) => {
                        if let Err(end) = Box::pin(self.flush_offline(&mut s, &mut batch)).await {
                            break end;
                        }
                    }
                    Wake::Mail(Some(Outbound::Stanza(xml, trace))) => {
                        if let Err(end) = self.write_batch(&mut s, xml, trace, &mut batch).await {
                            break end;
                        }
                    }
                    Wake::Read(Ok(0)) => break SessionEnd::Dropped,
                    Wake::Read(Err(e)) => break SessionEnd::Io(e),
                    Wake::Read(Ok(n)) => {
                        self.bytes_in(n);
                        // Boxed (one allocation per read, not per stanza):
                        // held inline, its stanza handling would size every
                        // idle session's task.
                        match Box::pin(self.take_input(&mut s, &mut shaping, n, &mut batch)).await {
                            Ok(next) => (paused, backlog) = next,
                            Err(end) => break end,
                        }
                    }
                }
            },
        };
        // What a failed write did not deliver: kept offline, unless a module
        // keeps every unacknowledged stanza itself (XEP-0198).
        if !batch.is_empty() && !s.keeps_unacked {
            let unwritten: Vec<String> =
                batch.unwritten(batch.written).map(str::to_string).collect();
            let receipts = std::mem::take(&mut batch.receipts);
            batch.clear();
            keep_unwritten(&self.ctx, &handle, unwritten).await;
            drop(receipts);
        }
        let dropped = matches!(
            end,
            SessionEnd::Dropped | SessionEnd::Io(_) | SessionEnd::TakenOver
        );
        if dropped && !shutdown.is_cancelled() && !handle.is_overflowed() {
            match self.ctx.hooks.run_detach(&self.ctx, Box::new(s)) {
                Ok(()) => {
                    tracing::info!(jid = %handle.full(), session = handle.id(), "session detached");
                    return end;
                }
                Err(back) => s = *back,
            }
        }
        if close_reason.is_empty() {
            close_reason = match &end {
                SessionEnd::Stream(e)
                    if e.condition == StreamCondition::PolicyViolation
                        && handle.is_overflowed() =>
                {
                    "slow_consumer"
                }
                other => other.reason(),
            };
        }
        Box::pin(crate::session::leave(&self.ctx, s, close_reason)).await;
        end
    }

    /// Handles the stanzas a read completed (as many as the stanza rate
    /// allows now), then charges the shapers: the pause before reading
    /// again, and whether stanzas were left in the framer.
    async fn take_input(
        &mut self,
        s: &mut Session,
        shaping: &mut super::shaper::Shaping,
        bytes: usize,
        batch: &mut Batch,
    ) -> Result<(Option<tokio::time::Instant>, bool), SessionEnd> {
        let budget = shaping.stanza_budget();
        let (handled, more) = self.drain_frames(s, budget, batch).await?;
        let mut pause = self.shape(shaping, bytes, handled);
        if more && pause.is_none() {
            // The budget ran out exactly: wait for the next token.
            self.ctx.instr.limit("stanza_rate");
            pause = Some(tokio::time::Instant::now() + shaping.next_stanza());
        }
        Ok((pause, more))
    }

    /// Charges what one read brought to the session's shapers: the pause
    /// before the next read, if one of them is in debt.
    fn shape(
        &self,
        shaping: &mut super::shaper::Shaping,
        bytes: usize,
        stanzas: u64,
    ) -> Option<tokio::time::Instant> {
        let now = std::time::Instant::now();
        let mut pause = None;
        if let Some(wait) = shaping
            .bytes
            .as_mut()
            .and_then(|b| b.take(bytes as f64, now))
        {
            self.ctx.instr.limit("shaper");
            pause = Some(wait);
        }
        if let Some(wait) = shaping
            .stanzas
            .as_mut()
            .and_then(|b| b.take(stanzas as f64, now))
        {
            self.ctx.instr.limit("stanza_rate");
            pause = Some(pause.map_or(wait, |p: std::time::Duration| p.max(wait)));
        }
        pause.map(|p| tokio::time::Instant::now() + p)
    }

    /// Shutdown: handles what the framer holds and what the socket has
    /// already delivered (even past a shaper's pause), then stops reading.
    /// Messages for users who are gone by then go to offline storage.
    async fn read_what_arrived(&mut self, s: &mut Session) -> SessionEnd {
        let grace = std::time::Duration::from_secs(self.ctx.config.general.shutdown_timeout);
        let budget = std::time::Instant::now() + grace.saturating_sub(grace / 4);
        let mut batch = Batch::default();
        loop {
            if let Err(end) = Box::pin(self.drain_frames(s, u64::MAX, &mut batch)).await {
                return end;
            }
            if std::time::Instant::now() >= budget {
                break;
            }
            // What the kernel holds now; TLS may also hold decrypted bytes,
            // which a read that does not wait gives back.
            let waiting = self.t.pending_bytes() > 0;
            let read = self.t.read(usize::MAX);
            let wait = if waiting {
                std::time::Duration::from_secs(1)
            } else {
                std::time::Duration::from_millis(1)
            };
            match tokio::time::timeout(wait, read).await {
                Ok(Ok(n)) if n > 0 => self.bytes_in(n),
                _ => break,
            }
        }
        StreamError::new(StreamCondition::SystemShutdown).into()
    }

    /// Processes the complete elements buffered so far, at most `budget`
    /// stanzas: how many, and whether the budget ran out first.
    async fn drain_frames(
        &mut self,
        s: &mut Session,
        budget: u64,
        batch: &mut Batch,
    ) -> Result<(u64, bool), SessionEnd> {
        let mut handled = 0;
        loop {
            if handled >= budget {
                return Ok((handled, true));
            }
            match self.t.next_frame().map_err(|e| self.xml_error(e))? {
                None => return Ok((handled, false)),
                Some(Frame::Element(el)) => {
                    if let Some(ns) = super::dispatch::nonza_ns(&el) {
                        if self.ctx.hooks.has_nonza(ns) {
                            let ns = ns.to_string();
                            self.on_nonza(s, &ns, el, batch).await?;
                            continue;
                        }
                    }
                    self.on_stanza(s, el).await?;
                    handled += 1;
                }
                Some(Frame::StreamClose) => return Err(SessionEnd::PeerClosed),
                Some(Frame::StreamOpen(_)) => {
                    return Err(StreamError::with_text(
                        StreamCondition::NotWellFormed,
                        "a stream header inside the stream",
                    )
                    .into())
                }
            }
        }
    }

    /// A nonza of a bound session: its module answers; the answers leave
    /// through the session (write hooks see them, not as stanzas).
    async fn on_nonza(
        &mut self,
        s: &mut Session,
        ns: &str,
        el: crate::xml::Element,
        batch: &mut Batch,
    ) -> Result<(), SessionEnd> {
        self.element_in(4, el.raw().len());
        let account = s.handle.jid().to_bare();
        let ctx = self.ctx.clone();
        let mut cx = crate::hooks::NonzaCx {
            ctx: &ctx,
            el: &el,
            session: Some(&mut *s),
            account: &account,
            replies: Vec::new(),
        };
        let outcome = ctx.hooks.run_nonza(ns, &mut cx).await;
        let replies = std::mem::take(&mut cx.replies);
        if !replies.is_empty() {
            self.write_items(s, replies.into_iter().map(|x| (x, Tags::default())), batch)
                .await?;
        }
        match outcome {
            Some(Ok(_)) | None => Ok(()),
            Some(Err(end)) => Err(end),
        }
    }

    async fn on_stanza(&mut self, s: &mut Session, el: Element) -> Result<(), SessionEnd> {
        let handle = s.handle.clone();
        handle
            .stanzas_in
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.element_in(
            crate::instr::kind_index(el.name(), el.attr("type")),
            el.raw().len(),
        );
        let span =
            crate::otel::stanza_span(&self.session_span, el.name(), el.attr("type"), handle.id());
        let mut scope = None;
        // A static name: nothing is allocated per stanza when tracing is off.
        let name: &'static str = match el.name() {
            "message" => "message",
            "iq" => "iq",
            "presence" => "presence",
            _ => "other",
        };
        if crate::live::active() {
            self.traces
                .refresh(&self.ctx.live, handle.full(), handle.id());
            let task = crate::live::task(handle.id());
            for t in &self.traces.traces {
                let data = crate::live::describe(&el, t.options.payload);
                t.record(&task, Kind::In, name, data, None);
            }
            scope = self.traces.scope(handle.id());
        }
        let ctx = self.ctx.clone();
        if span.is_none() && scope.is_none() && !crate::live::active() {
            // Untraced (nearly always): no wrapper layers, each of which
            // would move the whole stanza future once more.
            return super::dispatch::stanza(&ctx, s, el).await;
        }
        let work = super::dispatch::stanza(&ctx, s, el).instrument(span);
        Box::pin(crate::live::scoped(
            scope,
            crate::live::call("c2s", || format!("c2s.stanza.{name}"), work),
        ))
        .await
    }

    /// A stanza about to be written: its delivery span (OTLP), the
    /// receiver's side of a traced hand-off, and this session's own `out`.
    fn take_tags(
        &mut self,
        handle: &Arc<SessionHandle>,
        xml: &str,
        tags: Tags,
        deliveries: &mut Vec<tracing::Span>,
    ) {
        if let Some(cx) = &tags.otel {
            deliveries.push(crate::otel::deliver_span(cx, handle.full()));
        }
        if !crate::live::active() {
            return;
        }
        let name = element_name(xml);
        let data = crate::live::describe_xml(xml, false);
        if let Some(traces) = &tags.live {
            let task = crate::live::task(handle.id());
            for t in traces.iter() {
                t.record(&task, Kind::Recv, name, data.clone(), None);
            }
        }
        self.traces
            .refresh(&self.ctx.live, handle.full(), handle.id());
        self.traces.record_out(handle.id(), name, xml);
    }

    /// Streams the stored offline messages out, batch by batch, through the
    /// session (TCP backpressure, not the bounded mailbox, paces a large
    /// backlog); a batch that cannot be written is stored again.
    async fn flush_offline(
        &mut self,
        s: &mut Session,
        batch: &mut Batch,
    ) -> Result<(), SessionEnd> {
        let ctx = self.ctx.clone();
        loop {
            let stored = ctx.hooks.offline_take(&ctx, s.handle.jid()).await;
            if stored.is_empty() {
                return Ok(());
            }
            let n = stored.len();
            self.write_items(s, stored.into_iter().map(|x| (x, Tags::default())), batch)
                .await?;
            if n < crate::modules::offline::BATCH as usize {
                return Ok(());
            }
        }
    }

    /// Writes one mailbox item plus whatever else is queued, in one write.
    async fn write_batch(
        &mut self,
        s: &mut Session,
        first: String,
        first_tags: Tags,
        batch: &mut Batch,
    ) -> Result<(), SessionEnd> {
        let mut items = vec![(first, first_tags)];
        let mut size = items[0].0.len();
        let mut close = None;
        let mut detach = false;
        let mut offline = false;
        while size < BATCH_BYTES {
            match s.mailbox.try_recv() {
                Some(Outbound::Stanza(xml, tags)) => {
                    size += xml.len();
                    items.push((xml, tags));
                }
                Some(Outbound::Close(e)) => {
                    close = Some(e);
                    break;
                }
                Some(Outbound::OfflineWaiting) => offline = true,
                Some(Outbound::Detach) => {
                    detach = true;
                    break;
                }
                None => break,
            }
        }
        // Mailbox bytes are accounted when taken, whether written or kept.
        s.handle.written(size);
        self.write_items(s, items.into_iter(), batch).await?;
        if let Some(e) = close {
            return Err(e.into());
        }
        if detach {
            return Err(SessionEnd::TakenOver);
        }
        if offline {
            Box::pin(self.flush_offline(s, batch)).await?;
        }
        Ok(())
    }

    /// Encodes items through the session (its write hooks) and writes them
    /// in one go. A client that stops reading must not hold this task
    /// forever: the queue overflowing ends the write. On failure the batch
    /// keeps what was not written (for offline storage or a resume).
    async fn write_items(
        &mut self,
        s: &mut Session,
        items: impl Iterator<Item = (String, Tags)>,
        batch: &mut Batch,
    ) -> Result<(), SessionEnd> {
        batch.clear();
        // Routed stanzas that are traced: their delivery spans cover this write.
        let mut deliveries: Vec<tracing::Span> = Vec::new();
        let ctx = self.ctx.clone();
        let handle = s.handle.clone();
        for (xml, mut tags) in items {
            let before = batch.ends.len();
            s.encode(&ctx, &xml, batch);
            // Done once written (below), or once kept if the write fails.
            batch.receipts.extend(tags.receipt.take());
            if batch.ends.len() > before {
                self.element_out(crate::instr::kind_of_xml(&xml), xml.len());
                self.take_tags(&handle, &xml, tags, &mut deliveries);
            }
        }
        ctx.hooks.report_writes(&ctx, &mut batch.tally);
        if batch.is_empty() {
            return Ok(());
        }
        let mut written = 0usize;
        let t = &mut self.t;
        let buf = &batch.buf;
        let write = async {
            while written < buf.len() {
                match t.write(&buf[written..]).await? {
                    0 => return Err(std::io::ErrorKind::WriteZero.into()),
                    n => written += n,
                }
            }
            t.flush().await
        };
        let failed = tokio::select! {
            r = write => r.err().map(SessionEnd::Io),
            _ = handle.overflowed() => Some(self.overflow_error(&handle)),
        };
        batch.written = written;
        if let Some(end) = failed {
            return Err(end);
        }
        self.bytes_out(batch.buf.len());
        drop(deliveries);
        handle.stanzas_out.fetch_add(
            batch.ends.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        batch.clear();
        Ok(())
    }

    fn overflow_error(&self, handle: &SessionHandle) -> SessionEnd {
        tracing::warn!(jid = %handle.full(), queued = handle.queued_bytes(), "slow reader: outgoing queue full");
        self.ctx.instr.limit("slow_consumer");
        StreamError::with_text(
            StreamCondition::PolicyViolation,
            "the outgoing queue is full: the client is not reading",
        )
        .into()
    }
}

/// Stanzas that did not wholly reach the socket go to offline storage (a
/// stanza cut off midway is not delivered: the client cannot parse it, so
/// keeping it may at worst repeat it, never lose it).
async fn keep_unwritten(ctx: &Ctx, handle: &SessionHandle, unwritten: Vec<String>) {
    let mut kept = 0usize;
    for xml in &unwritten {
        if router::keep_undelivered(ctx, handle.jid(), xml).await {
            kept += 1;
        }
    }
    if kept > 0 {
        tracing::info!(jid = %handle.full(), kept, "unwritten messages kept offline");
    }
}

/// The element name at the start of serialized XML (`<message …` → `message`).
fn element_name(xml: &str) -> &str {
    let rest = xml.strip_prefix('<').unwrap_or(xml);
    let end = rest
        .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
        .unwrap_or(rest.len());
    &rest[..end]
}
