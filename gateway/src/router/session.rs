//! A bound session as other tasks see it: its address, its presence, and a
//! byte-bounded mailbox into its connection task.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use tokio::sync::Notify;

use crate::errors::StreamError;
use crate::jid::Jid;

/// What other tasks put into a session's mailbox.
#[derive(Debug)]
pub enum Outbound {
    /// Serialized XML to write to the client, with the sender's trace
    /// context when its stanza is traced (OTLP).
    Stanza(String, Tags),
    /// Close the stream with this error (kick, replaced by a new login).
    Close(StreamError),
    /// Give up the transport and detach (a resume on another connection
    /// takes the session over while this one still looks open).
    Detach,
    /// A message was stored offline while this session was available: it
    /// raced the session's own offline delivery, so take the store again.
    OfflineWaiting,
}

/// What travels with a routed stanza besides its XML.
#[derive(Default)]
pub struct Tags {
    /// The sender's OTLP trace context, when its stanza is traced.
    pub otel: Option<opentelemetry::Context>,
    /// Live traces that want the receiver's side of the hand-off.
    pub live: Option<std::sync::Arc<Vec<std::sync::Arc<osprey_instrument::live::Trace>>>>,
    /// Dropped once the stanza left this node's hands (written out, or
    /// kept for later): another node waits for that to acknowledge it.
    pub receipt: Option<Receipt>,
}

/// Where a [`Receipt`] reports.
pub trait ReceiptSink: Send + Sync {
    fn done(&self, seq: u64);
}

/// Stanza `seq` is in this node's hands; dropping the receipt says it no
/// longer is. Holders keep it until the stanza is written or stored, so a
/// node that dies first has not said so.
pub struct Receipt {
    sink: std::sync::Arc<dyn ReceiptSink>,
    seq: u64,
}

impl Receipt {
    pub fn new(sink: std::sync::Arc<dyn ReceiptSink>, seq: u64) -> Receipt {
        Receipt { sink, seq }
    }
}

impl Drop for Receipt {
    fn drop(&mut self) {
        self.sink.done(self.seq);
    }
}

impl std::fmt::Debug for Receipt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Receipt").field(&self.seq).finish()
    }
}

impl std::fmt::Debug for Tags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tags")
            .field("otel", &self.otel.is_some())
            .field("live", &self.live.as_ref().map(|l| l.len()))
            .field("receipt", &self.receipt)
            .finish()
    }
}

/// Why a stanza could not be queued; the stanza comes back to the caller so
/// that it can be stored offline or bounced instead of lost.
#[derive(Debug)]
pub struct Undelivered(pub String);

/// Presence of one session, as seen by routing (RFC 6121 §4).
#[derive(Debug, Clone, Default)]
pub struct PresenceState {
    /// Sent initial presence and not yet unavailable.
    pub available: bool,
    pub priority: i8,
    /// The last broadcast presence, `from` stamped, without `to`.
    pub last: Option<String>,
}

/// Whether a transport runs the session (XEP-0198: a detached session
/// waits for a resume, its mailbox filling).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    Active,
    Detached,
}

impl SessionState {
    pub fn as_str(&self) -> &'static str {
        match self {
            SessionState::Active => "active",
            SessionState::Detached => "detached",
        }
    }
}

/// Static facts about the connection, for the admin API.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub listener: String,
    pub tls: bool,
    pub connected_at: SystemTime,
}

/// The queue behind a session's mailbox: a deque under a lock, not a
/// channel, because an idle session then holds no buffer at all (a tokio
/// channel allocates ~2 KiB up front) and the connection task takes a
/// whole batch under one lock.
#[derive(Default)]
struct Queue {
    items: VecDeque<Outbound>,
    closed: bool,
}

/// Capacity a drained queue may keep; beyond it the buffer is freed, so a
/// burst does not stay in memory for the rest of the session.
const KEEP_CAPACITY: usize = 16;

pub struct SessionHandle {
    id: u64,
    jid: Arc<Jid>,
    bare: String,
    full: Arc<str>,
    info: ConnInfo,
    mail: Mutex<Queue>,
    mail_ready: Notify,
    queued_bytes: AtomicUsize,
    max_queue_bytes: usize,
    overflowed: AtomicBool,
    overflow: Notify,
    /// Asked for the roster, so it receives roster pushes (RFC 6121 §2.1.6).
    pub roster_interested: AtomicBool,
    pub presence: Mutex<PresenceState>,
    pub stanzas_in: AtomicU64,
    pub stanzas_out: AtomicU64,
    detached: AtomicBool,
}

impl SessionHandle {
    /// Creates the handle and the receiving end of its mailbox.
    pub fn new(
        id: u64,
        jid: Jid,
        info: ConnInfo,
        max_queue_bytes: usize,
    ) -> (Arc<SessionHandle>, Mailbox) {
        let handle = Arc::new(SessionHandle {
            id,
            bare: jid.bare(),
            full: jid.to_string().into(),
            jid: Arc::new(jid),
            info,
            mail: Mutex::new(Queue::default()),
            mail_ready: Notify::new(),
            queued_bytes: AtomicUsize::new(0),
            max_queue_bytes,
            overflowed: AtomicBool::new(false),
            overflow: Notify::new(),
            roster_interested: AtomicBool::new(false),
            presence: Mutex::new(PresenceState::default()),
            stanzas_in: AtomicU64::new(0),
            stanzas_out: AtomicU64::new(0),
            detached: AtomicBool::new(false),
        });
        (handle.clone(), Mailbox(handle))
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        // A panic elsewhere while holding it leaves a usable queue.
        self.mail.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues an item unless the mailbox is closed (then it comes back).
    fn push(&self, item: Outbound) -> Result<(), Outbound> {
        let mut q = self.queue();
        if q.closed {
            return Err(item);
        }
        q.items.push_back(item);
        drop(q);
        self.mail_ready.notify_one();
        Ok(())
    }

    pub fn id(&self) -> u64 {
        self.id
    }
    pub fn jid(&self) -> &Jid {
        &self.jid
    }
    pub fn bare(&self) -> &str {
        &self.bare
    }
    /// The JID, shared (a stanza keeps its sender without copying it).
    pub fn jid_arc(&self) -> Arc<Jid> {
        self.jid.clone()
    }

    pub fn full_arc(&self) -> Arc<str> {
        self.full.clone()
    }

    pub fn full(&self) -> &str {
        &self.full
    }
    pub fn resource(&self) -> &str {
        self.jid.resource().unwrap_or_default()
    }
    pub fn info(&self) -> &ConnInfo {
        &self.info
    }

    pub fn state(&self) -> SessionState {
        if self.detached.load(Ordering::Relaxed) {
            SessionState::Detached
        } else {
            SessionState::Active
        }
    }

    pub fn set_state(&self, state: SessionState) {
        self.detached
            .store(state == SessionState::Detached, Ordering::Relaxed);
    }

    #[cfg(test)]
    pub(crate) fn deliver(&self, xml: String) -> Result<(), Undelivered> {
        self.deliver_with(xml, &mut None)
    }

    /// Queues XML for the client. The queue is bounded in bytes: a client
    /// that stops reading gets its session closed (`overflowed`) rather than
    /// growing the server's memory, and the stanza is handed back. Queued,
    /// the receipt (if any) goes with the stanza; refused, it stays with
    /// the caller.
    pub(crate) fn deliver_with(
        &self,
        xml: String,
        receipt: &mut Option<Receipt>,
    ) -> Result<(), Undelivered> {
        if self.overflowed.load(Ordering::Relaxed) {
            return Err(Undelivered(xml));
        }
        let len = xml.len();
        let before = self.queued_bytes.fetch_add(len, Ordering::Relaxed);
        if before + len > self.max_queue_bytes {
            self.queued_bytes.fetch_sub(len, Ordering::Relaxed);
            self.overflowed.store(true, Ordering::Relaxed);
            self.overflow.notify_one();
            return Err(Undelivered(xml));
        }
        let tags = Tags {
            otel: crate::otel::current_context(),
            live: if crate::live::active() {
                crate::live::sent(self.id, &self.full)
            } else {
                None
            },
            receipt: receipt.take(),
        };
        match self.push(Outbound::Stanza(xml, tags)) {
            Ok(()) => Ok(()),
            Err(Outbound::Stanza(xml, mut tags)) => {
                *receipt = tags.receipt.take();
                self.queued_bytes.fetch_sub(len, Ordering::Relaxed);
                Err(Undelivered(xml))
            }
            Err(_) => Err(Undelivered(String::new())),
        }
    }

    /// Asks the session to deliver what is stored offline for it.
    pub fn offline_waiting(&self) {
        let _ = self.push(Outbound::OfflineWaiting);
    }

    /// Asks the session's task to drop its transport and detach.
    pub fn detach_now(&self) {
        let _ = self.push(Outbound::Detach);
    }

    /// Asks the session to close with a stream error.
    pub fn close(&self, error: StreamError) {
        let _ = self.push(Outbound::Close(error));
    }

    /// The connection task reports bytes it has written out.
    pub fn written(&self, bytes: usize) {
        self.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
    }

    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes.load(Ordering::Relaxed)
    }

    pub fn is_overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Relaxed)
    }

    /// Resolves when the outgoing queue has overflowed.
    pub async fn overflowed(&self) {
        if self.is_overflowed() {
            return;
        }
        self.overflow.notified().await
    }

    pub fn presence(&self) -> PresenceState {
        self.presence.lock().map(|p| p.clone()).unwrap_or_default()
    }

    pub fn is_available(&self) -> bool {
        self.presence.lock().map(|p| p.available).unwrap_or(false)
    }
}

/// The receiving end of a session's mailbox, owned by its connection task.
/// Dropping it closes the mailbox: later deliveries come back to the
/// sender (stored offline or bounced), never vanish.
pub struct Mailbox(Arc<SessionHandle>);

impl Mailbox {
    /// The next item; `None` once closed and empty. Cancel-safe: an item is
    /// only taken when it is returned.
    pub async fn recv(&mut self) -> Option<Outbound> {
        loop {
            {
                let mut q = self.0.queue();
                if let Some(item) = take(&mut q) {
                    return Some(item);
                }
                if q.closed {
                    return None;
                }
            }
            // A push after the check left a permit: this returns at once.
            self.0.mail_ready.notified().await;
        }
    }

    /// The next item if one is queued.
    pub fn try_recv(&mut self) -> Option<Outbound> {
        take(&mut self.0.queue())
    }

    /// No more items are accepted; those queued can still be taken.
    pub fn close(&mut self) {
        self.0.queue().closed = true;
    }
}

impl Drop for Mailbox {
    fn drop(&mut self) {
        let mut q = self.0.queue();
        q.closed = true;
        q.items = VecDeque::new();
    }
}

fn take(q: &mut Queue) -> Option<Outbound> {
    let item = q.items.pop_front();
    if q.items.is_empty() && q.items.capacity() > KEEP_CAPACITY {
        q.items = VecDeque::new();
    }
    item
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle() -> (Arc<SessionHandle>, Mailbox) {
        let jid = Jid::parse("a@localhost/r").expect("jid");
        let info = ConnInfo {
            peer: "127.0.0.1:1".parse().expect("addr"),
            listener: "l".into(),
            tls: false,
            connected_at: SystemTime::now(),
        };
        SessionHandle::new(1, jid, info, 1 << 20)
    }

    #[tokio::test]
    async fn mailbox_delivers_in_order_wakes_and_hands_back_after_close() {
        let (h, mut rx) = handle();
        let waiter = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(Outbound::Stanza(xml, _)) = rx.recv().await {
                got.push(xml);
                if got.len() == 3 {
                    break;
                }
            }
            (got, rx)
        });
        for i in 0..3 {
            h.deliver(format!("<m{i}/>")).expect("queued");
        }
        let (got, mut rx) = waiter.await.expect("receiver");
        assert_eq!(got, ["<m0/>", "<m1/>", "<m2/>"]);
        assert!(rx.try_recv().is_none());
        h.deliver("<late/>".into()).expect("queued");
        rx.close();
        // Queued before the close: still taken; after it: handed back.
        assert!(matches!(rx.try_recv(), Some(Outbound::Stanza(x, _)) if x == "<late/>"));
        match h.deliver("<after/>".into()) {
            Err(Undelivered(x)) => assert_eq!(x, "<after/>"),
            Ok(()) => panic!("delivered into a closed mailbox"),
        }
        assert!(rx.recv().await.is_none());
        drop(rx);
        assert!(h.deliver("<dropped/>".into()).is_err());
        // Bytes handed back are not counted as queued.
        assert_eq!(h.queued_bytes(), "<m0/><m1/><m2/><late/>".len());
    }

    /// Records which receipts were dropped.
    #[derive(Default)]
    struct Seen(std::sync::Mutex<Vec<u64>>);
    impl ReceiptSink for Seen {
        fn done(&self, seq: u64) {
            self.0.lock().expect("lock").push(seq);
        }
    }

    /// A queued stanza carries its receipt until whoever takes it drops
    /// it; a refused one leaves the receipt with the caller.
    #[test]
    fn a_receipt_travels_with_a_queued_stanza_and_stays_when_refused() {
        let (h, mut rx) = handle();
        let seen = std::sync::Arc::new(Seen::default());
        let mut r = Some(Receipt::new(seen.clone(), 1));
        h.deliver_with("<a/>".into(), &mut r).expect("queued");
        assert!(r.is_none(), "went with the stanza");
        assert!(seen.0.lock().expect("lock").is_empty(), "not done yet");
        let Some(Outbound::Stanza(_, tags)) = rx.try_recv() else {
            panic!("queued");
        };
        drop(tags);
        assert_eq!(*seen.0.lock().expect("lock"), [1]);
        rx.close();
        let mut r = Some(Receipt::new(seen.clone(), 2));
        assert!(h.deliver_with("<b/>".into(), &mut r).is_err());
        assert!(r.is_some(), "refused: still the caller's");
        drop(r);
        assert_eq!(*seen.0.lock().expect("lock"), [1, 2]);
    }

    #[test]
    fn a_drained_burst_frees_its_buffer() {
        let (h, mut rx) = handle();
        for _ in 0..100 {
            h.deliver("<x/>".into()).expect("queued");
        }
        while rx.try_recv().is_some() {}
        assert_eq!(h.queue().items.capacity(), 0);
    }
}
