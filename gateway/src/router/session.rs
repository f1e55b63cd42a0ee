//! A bound session as other tasks see it: its address, its presence, and a
//! byte-bounded mailbox into its connection task.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

use tokio::sync::{mpsc, Notify};

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
}

/// What travels with a routed stanza besides its XML.
#[derive(Default)]
pub struct Tags {
    /// The sender's OTLP trace context, when its stanza is traced.
    pub otel: Option<opentelemetry::Context>,
    /// Live traces that want the receiver's side of the hand-off.
    pub live: Option<std::sync::Arc<Vec<std::sync::Arc<osprey_instrument::live::Trace>>>>,
}

impl std::fmt::Debug for Tags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tags")
            .field("otel", &self.otel.is_some())
            .field("live", &self.live.as_ref().map(|l| l.len()))
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

/// Static facts about the connection, for the admin API.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub listener: String,
    pub tls: bool,
    pub connected_at: SystemTime,
}

pub struct SessionHandle {
    id: u64,
    jid: Jid,
    bare: String,
    full: String,
    info: ConnInfo,
    tx: mpsc::UnboundedSender<Outbound>,
    queued_bytes: AtomicUsize,
    max_queue_bytes: usize,
    overflowed: AtomicBool,
    overflow: Notify,
    /// Asked for the roster, so it receives roster pushes (RFC 6121 §2.1.6).
    pub roster_interested: AtomicBool,
    pub presence: Mutex<PresenceState>,
    pub stanzas_in: AtomicU64,
    pub stanzas_out: AtomicU64,
}

impl SessionHandle {
    /// Creates the handle and the receiving end of its mailbox.
    pub fn new(
        id: u64,
        jid: Jid,
        info: ConnInfo,
        max_queue_bytes: usize,
    ) -> (SessionHandle, mpsc::UnboundedReceiver<Outbound>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = SessionHandle {
            id,
            bare: jid.bare(),
            full: jid.to_string(),
            jid,
            info,
            tx,
            queued_bytes: AtomicUsize::new(0),
            max_queue_bytes,
            overflowed: AtomicBool::new(false),
            overflow: Notify::new(),
            roster_interested: AtomicBool::new(false),
            presence: Mutex::new(PresenceState::default()),
            stanzas_in: AtomicU64::new(0),
            stanzas_out: AtomicU64::new(0),
        };
        (handle, rx)
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
    pub fn full(&self) -> &str {
        &self.full
    }
    pub fn resource(&self) -> &str {
        self.jid.resource().unwrap_or_default()
    }
    pub fn info(&self) -> &ConnInfo {
        &self.info
    }

    /// Queues XML for the client. The queue is bounded in bytes: a client
    /// that stops reading gets its session closed (`overflowed`) rather than
    /// growing the server's memory, and the stanza is handed back.
    pub fn deliver(&self, xml: String) -> Result<(), Undelivered> {
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
        };
        match self.tx.send(Outbound::Stanza(xml, tags)) {
            Ok(()) => Ok(()),
            Err(mpsc::error::SendError(Outbound::Stanza(xml, _))) => {
                self.queued_bytes.fetch_sub(len, Ordering::Relaxed);
                Err(Undelivered(xml))
            }
            Err(_) => Err(Undelivered(String::new())),
        }
    }

    /// Asks the session to close with a stream error.
    pub fn close(&self, error: StreamError) {
        let _ = self.tx.send(Outbound::Close(error));
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
