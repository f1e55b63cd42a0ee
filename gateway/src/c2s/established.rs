//! The established session loop: one `select!` over the socket, the
//! mailbox and shutdown; writes are batched; on the way out the session
//! leaves the table, its presence goes unavailable, and queued messages are
//! kept offline rather than lost.

use std::sync::Arc;

use tokio::io::AsyncWriteExt;

use super::dispatch::Local;
use super::negotiate::Bound;
use tracing::Instrument;

use osprey_instrument::live::Kind;

use super::Connection;
use crate::errors::{SessionEnd, StreamCondition, StreamError};
use crate::events as ev;
use crate::modules;
use crate::router::{Outbound, SessionHandle};
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

impl Connection {
    pub(super) async fn established(&mut self, bound: Bound) -> SessionEnd {
        let Bound { handle, mut rx } = bound;
        let mut local = Local::default();
        // The write buffer and where each stanza in it ends.
        let mut wbuf: (Vec<u8>, Vec<usize>) = Default::default();
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
        let end = loop {
            let resume = paused.unwrap_or_else(tokio::time::Instant::now);
            let read_max = shaping.read_budget();
            let wake = tokio::select! {
                biased;
                _ = shutdown.cancelled() => Wake::Shutdown,
                _ = handle.overflowed() => Wake::Overflow,
                m = rx.recv() => Wake::Mail(m),
                _ = tokio::time::sleep_until(resume), if paused.is_some() => Wake::Resume,
                r = self.conn.read_at_most(&mut self.framer, &mut self.tls_buf, read_max), if paused.is_none() && !backlog => Wake::Read(r),
            };
            match wake {
                Wake::Shutdown => {
                    break Box::pin(self.read_what_arrived(&handle, &mut local)).await
                }
                Wake::Resume => {
                    paused = None;
                    if backlog {
                        match Box::pin(self.take_input(&handle, &mut local, &mut shaping, 0)).await
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
                Wake::Mail(Some(Outbound::OfflineWaiting)) => {
                    if let Err(end) = Box::pin(self.flush_offline(&handle)).await {
                        break end;
                    }
                }
                Wake::Mail(Some(Outbound::Stanza(xml, trace))) => {
                    if let Err(end) = self
                        .write_batch(&handle, &mut rx, xml, trace, &mut wbuf)
                        .await
                    {
                        break end;
                    }
                }
                Wake::Read(Ok(0)) => break SessionEnd::PeerClosed,
                Wake::Read(Err(e)) => break SessionEnd::Io(e),
                Wake::Read(Ok(n)) => {
                    self.bytes_in(n);
                    // Boxed (one allocation per read, not per stanza): held
                    // inline, its stanza handling would size every idle
                    // session's task.
                    match Box::pin(self.take_input(&handle, &mut local, &mut shaping, n)).await {
                        Ok(next) => (paused, backlog) = next,
                        Err(end) => break end,
                    }
                }
            }
        };
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
        let lasted = handle
            .info()
            .connected_at
            .elapsed()
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        self.ctx.instr.emit(
            &ev::SESSION_CLOSE,
            &[handle.jid().domain(), close_reason],
            &[("count", 1.0), ("duration_seconds", lasted)],
        );
        Box::pin(self.leave(&handle, &mut local, rx)).await;
        end
    }

    /// Handles the stanzas a read completed (as many as the stanza rate
    /// allows now), then charges the shapers: the pause before reading
    /// again, and whether stanzas were left in the framer.
    async fn take_input(
        &mut self,
        handle: &Arc<SessionHandle>,
        local: &mut Local,
        shaping: &mut super::shaper::Shaping,
        bytes: usize,
    ) -> Result<(Option<tokio::time::Instant>, bool), SessionEnd> {
        let budget = shaping.stanza_budget();
        let (handled, more) = self.drain_frames(handle, local, budget).await?;
        if std::mem::take(&mut local.deliver_offline) {
            let scope = self.traces.scope(handle.id());
            let flush = self.flush_offline(handle);
            let flush = crate::live::call("module", || "module.offline.deliver".into(), flush);
            Box::pin(crate::live::scoped(scope, flush)).await?;
        }
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
    async fn read_what_arrived(
        &mut self,
        handle: &Arc<SessionHandle>,
        local: &mut Local,
    ) -> SessionEnd {
        let grace = std::time::Duration::from_secs(self.ctx.config.general.shutdown_timeout);
        let budget = std::time::Instant::now() + grace.saturating_sub(grace / 4);
        loop {
            if let Err(end) = Box::pin(self.drain_frames(handle, local, u64::MAX)).await {
                return end;
            }
            if std::time::Instant::now() >= budget {
                break;
            }
            // What the kernel holds now; TLS may also hold decrypted bytes,
            // which a read that does not wait gives back.
            let waiting = self.conn.pending_bytes() > 0;
            let read = self.conn.read_into(&mut self.framer, &mut self.tls_buf);
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

    /// Processes the complete stanzas buffered so far, at most `budget`:
    /// how many, and whether the budget ran out first.
    async fn drain_frames(
        &mut self,
        handle: &Arc<SessionHandle>,
        local: &mut Local,
        budget: u64,
    ) -> Result<(u64, bool), SessionEnd> {
        let mut handled = 0;
        loop {
            if handled >= budget {
                return Ok((handled, true));
            }
            match self.framer.next_frame().map_err(|e| self.xml_error(e))? {
                None => return Ok((handled, false)),
                Some(Frame::Element(el)) => {
                    self.on_stanza(handle, local, el).await?;
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

    async fn on_stanza(
        &mut self,
        handle: &Arc<SessionHandle>,
        local: &mut Local,
        el: Element,
    ) -> Result<(), SessionEnd> {
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
        let work = super::dispatch::stanza(&self.ctx, handle, local, el).instrument(span);
        crate::live::scoped(
            scope,
            crate::live::call("c2s", || format!("c2s.stanza.{name}"), work),
        )
        .await
    }

    /// A stanza about to be written: its delivery span (OTLP), the
    /// receiver's side of a traced hand-off, and this session's own `out`.
    fn take_tags(
        &mut self,
        handle: &Arc<SessionHandle>,
        xml: &str,
        tags: crate::router::Tags,
        deliveries: &mut Vec<tracing::Span>,
    ) {
        if let Some(cx) = &tags.otel {
            deliveries.push(crate::otel::deliver_span(cx, handle.full()));
        }
        if !crate::live::active() {
            return;
        }
        let name = element_name(xml);
        let data = format!("size={}", xml.len());
        if let Some(traces) = &tags.live {
            let task = crate::live::task(handle.id());
            for t in traces.iter() {
                t.record(&task, Kind::Recv, name, data.clone(), None);
            }
        }
        self.traces
            .refresh(&self.ctx.live, handle.full(), handle.id());
        self.traces
            .record(handle.id(), Kind::Out, name, &data, None);
    }

    /// Streams the stored offline messages straight to the socket, batch by
    /// batch; a batch that cannot be written is stored again.
    async fn flush_offline(&mut self, handle: &Arc<SessionHandle>) -> Result<(), SessionEnd> {
        let started = std::time::Instant::now();
        let result = self.flush_offline_batches(handle).await;
        self.ctx
            .instr
            .handler("offline", "deliver", started.elapsed());
        result
    }

    async fn flush_offline_batches(
        &mut self,
        handle: &Arc<SessionHandle>,
    ) -> Result<(), SessionEnd> {
        loop {
            let batch = modules::offline::take_batch(&self.ctx, handle).await;
            if batch.is_empty() {
                return Ok(());
            }
            let n = batch.len();
            let bytes: String = batch.concat();
            let write = async {
                self.conn.write_all(bytes.as_bytes()).await?;
                self.conn.flush().await
            };
            let failed = tokio::select! {
                r = write => r.err().map(SessionEnd::Io),
                _ = handle.overflowed() => Some(self.overflow_error(handle)),
            };
            if let Some(end) = failed {
                for xml in &batch {
                    modules::offline::keep_undelivered(&self.ctx, handle.jid(), xml).await;
                }
                return Err(end);
            }
            handle
                .stanzas_out
                .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
            self.bytes_out(bytes.len());
            for xml in &batch {
                self.element_out(0, xml.len());
            }
            if n < modules::offline::BATCH as usize {
                return Ok(());
            }
        }
    }

    /// Writes one mailbox item plus whatever else is queued, in one write.
    async fn write_batch(
        &mut self,
        handle: &Arc<SessionHandle>,
        rx: &mut crate::router::Mailbox,
        first: String,
        first_tags: crate::router::Tags,
        wbuf: &mut (Vec<u8>, Vec<usize>),
    ) -> Result<(), SessionEnd> {
        let (buf, ends) = wbuf;
        buf.clear();
        ends.clear();
        buf.extend_from_slice(first.as_bytes());
        ends.push(buf.len());
        self.element_out(crate::instr::kind_of_xml(&first), first.len());
        // Routed stanzas that are traced: their delivery spans cover this write.
        let mut deliveries: Vec<tracing::Span> = Vec::new();
        self.take_tags(handle, &first, first_tags, &mut deliveries);
        let mut close = None;
        let mut offline = false;
        while buf.len() < BATCH_BYTES {
            match rx.try_recv() {
                Some(Outbound::Stanza(xml, tags)) => {
                    buf.extend_from_slice(xml.as_bytes());
                    ends.push(buf.len());
                    self.element_out(crate::instr::kind_of_xml(&xml), xml.len());
                    self.take_tags(handle, &xml, tags, &mut deliveries);
                }
                Some(Outbound::Close(e)) => {
                    close = Some(e);
                    break;
                }
                Some(Outbound::OfflineWaiting) => offline = true,
                None => break,
            }
        }
        // A client that stops reading must not hold this task forever:
        // the queue overflowing ends the write. What was not written by
        // then (or when the write failed) is kept offline, not dropped.
        let mut written = 0usize;
        let write = async {
            while written < buf.len() {
                match self.conn.write(&buf[written..]).await? {
                    0 => return Err(std::io::ErrorKind::WriteZero.into()),
                    n => written += n,
                }
            }
            self.conn.flush().await
        };
        let failed = tokio::select! {
            r = write => r.err().map(SessionEnd::Io),
            _ = handle.overflowed() => Some(self.overflow_error(handle)),
        };
        if let Some(end) = failed {
            self.keep_unwritten(handle, buf, ends, written).await;
            return Err(end);
        }
        handle.written(buf.len());
        self.bytes_out(buf.len());
        drop(deliveries);
        handle
            .stanzas_out
            .fetch_add(ends.len() as u64, std::sync::atomic::Ordering::Relaxed);
        if let Some(e) = close {
            return Err(e.into());
        }
        if offline {
            Box::pin(self.flush_offline(handle)).await?;
        }
        Ok(())
    }

    /// The stanzas of a batch that did not wholly reach the socket go to
    /// offline storage (a stanza cut off midway is not delivered: the client
    /// cannot parse it, so keeping it may at worst repeat it, never lose it).
    async fn keep_unwritten(
        &mut self,
        handle: &Arc<SessionHandle>,
        buf: &[u8],
        ends: &[usize],
        written: usize,
    ) {
        let mut start = 0;
        let mut kept = 0usize;
        for &end in ends {
            if end > written {
                if let Ok(xml) = std::str::from_utf8(&buf[start..end]) {
                    if modules::offline::keep_undelivered(&self.ctx, handle.jid(), xml).await {
                        kept += 1;
                    }
                }
            }
            start = end;
        }
        if kept > 0 {
            tracing::info!(jid = %handle.full(), kept, "unwritten messages kept offline");
        }
    }

    /// Leaves cleanly: out of the table first (nothing new arrives), then
    /// unavailable presence, then queued messages to offline storage.
    async fn leave(
        &mut self,
        handle: &Arc<SessionHandle>,
        local: &mut Local,
        mut rx: crate::router::Mailbox,
    ) {
        self.ctx.sessions.remove(handle);
        modules::presence::on_disconnect(&self.ctx, handle, local).await;
        rx.close();
        let mut kept = 0usize;
        while let Some(item) = rx.try_recv() {
            if let Outbound::Stanza(xml, _) = item {
                if modules::offline::keep_undelivered(&self.ctx, handle.jid(), &xml).await {
                    kept += 1;
                }
            }
        }
        if kept > 0 {
            tracing::info!(jid = %handle.full(), kept, "queued messages kept offline");
        }
        tracing::info!(jid = %handle.full(), session = handle.id(), "session closed");
    }
}

impl Connection {
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

/// The element name at the start of serialized XML (`<message …` → `message`).
fn element_name(xml: &str) -> &str {
    let rest = xml.strip_prefix('<').unwrap_or(xml);
    let end = rest
        .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
        .unwrap_or(rest.len());
    &rest[..end]
}
