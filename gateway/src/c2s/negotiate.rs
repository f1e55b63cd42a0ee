//! Negotiation up to a bound resource: stream header, features, STARTTLS,
//! SASL (in [`super::sasl_flow`]), stream restart, resource binding.

use std::time::SystemTime;

use super::{Connection, Phase, Transport, TLS_HANDSHAKE_TIMEOUT};
use crate::config::TlsMode;
use crate::errors::{SessionEnd, StanzaCondition, StanzaError, StreamCondition, StreamError};
use crate::jid::Jid;
use crate::router::{ConnInfo, SessionHandle};
use crate::session::Session;
use crate::xml::{El, Element, Frame, StreamHeader, NS_CLIENT, NS_STREAM};

pub const NS_TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
pub const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
pub const NS_BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
pub const NS_SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";
pub const NS_LIMITS: &str = "urn:xmpp:stream-limits:0";

impl<T: Transport> Connection<T> {
    /// Runs the negotiation; returns the bound (or resumed) session or how
    /// the stream ended.
    pub(super) async fn negotiate(&mut self) -> Result<Session, SessionEnd> {
        loop {
            match self.next_frame().await? {
                Frame::StreamOpen(header) => {
                    if self.phase != Phase::WaitStream {
                        return Err(StreamError::with_text(
                            StreamCondition::NotWellFormed,
                            "a stream header inside the stream",
                        )
                        .into());
                    }
                    self.on_header(*header).await?;
                }
                Frame::StreamClose => return Err(SessionEnd::PeerClosed),
                Frame::Element(el) => {
                    self.element_in(4, el.raw().len());
                    match self.phase {
                        Phase::Features | Phase::Sasl => self.on_pre_auth(el).await?,
                        Phase::Bind if el.ns().is_some_and(|ns| self.ctx.hooks.has_nonza(ns)) => {
                            if let Some(session) = self.on_nonza_before_bind(el).await? {
                                return Ok(session);
                            }
                        }
                        Phase::Bind => {
                            if let Some(bound) = self.on_bind(el).await? {
                                return Ok(bound);
                            }
                        }
                        _ => {
                            return Err(StreamError::new(StreamCondition::NotWellFormed).into());
                        }
                    }
                }
            }
        }
    }

    /// Checks the client's stream header and answers with ours plus features.
    async fn on_header(&mut self, h: StreamHeader) -> Result<(), SessionEnd> {
        let started = std::time::Instant::now();
        let result = self.on_header_inner(h).await;
        self.step("c2s.stream_open", String::new(), started);
        result
    }

    async fn on_header_inner(&mut self, h: StreamHeader) -> Result<(), SessionEnd> {
        if h.local_name != "stream" || h.ns.as_deref() != Some(NS_STREAM) {
            return Err(self.header_error(StreamCondition::InvalidNamespace, "not an XMPP stream"));
        }
        if h.default_ns.as_deref() != Some(NS_CLIENT) {
            return Err(self.header_error(
                StreamCondition::InvalidNamespace,
                "the default namespace must be jabber:client",
            ));
        }
        // RFC 6120 §4.7.5: we speak 1.x; no version means a pre-1.0 client.
        let major = h.version.as_deref().and_then(|v| v.split('.').next());
        if major != Some("1") {
            return Err(self.header_error(
                StreamCondition::UnsupportedVersion,
                "this server speaks XMPP version 1.0",
            ));
        }
        let host = match h.to.as_deref() {
            Some(to) => match crate::jid::normalise_domain(to) {
                Ok(d) if self.ctx.serves(&d) => d,
                _ => return Err(self.header_error(StreamCondition::HostUnknown, "")),
            },
            None => self
                .ctx
                .config
                .general
                .hosts
                .first()
                .cloned()
                .unwrap_or_default(),
        };
        // A restarted stream must stay on the same domain.
        if self.host.as_ref().is_some_and(|old| *old != host) {
            return Err(self.header_error(StreamCondition::HostUnknown, "domain changed"));
        }
        self.host_ev = self.ctx.instr.host(&host);
        self.session_span.record("host", host.as_str());
        self.host = Some(host);
        self.stream_id = super::new_stream_id();
        let mut out = self.stream_header();
        out.push_str(&self.features());
        self.header_sent = true;
        self.phase = if self.user.is_some() {
            Phase::Bind
        } else {
            Phase::Features
        };
        self.send(&out).await
    }

    fn header_error(&self, condition: StreamCondition, text: &str) -> SessionEnd {
        if text.is_empty() {
            StreamError::new(condition).into()
        } else {
            StreamError::with_text(condition, text).into()
        }
    }

    /// Whether STARTTLS is still possible on this stream.
    fn can_starttls(&self) -> bool {
        !self.t.is_tls()
            && self.lst.tls.is_some()
            && matches!(
                self.lst.config.tls.mode,
                TlsMode::Starttls | TlsMode::StarttlsRequired
            )
    }

    fn tls_required_first(&self) -> bool {
        !self.t.is_tls() && self.lst.config.tls.mode == TlsMode::StarttlsRequired
    }

    /// PLAIN sends the password itself: only over TLS unless configured.
    pub(super) fn plain_allowed(&self) -> bool {
        self.t.is_tls() || self.lst.config.allow_plain_auth_without_tls
    }

    /// The features the modules add to this stream.
    fn module_features(&self, mut f: El) -> El {
        let host = self.host.as_deref().unwrap_or_default();
        let cx = crate::hooks::FeaturesCx {
            ctx: &self.ctx,
            host,
            authenticated: self.user.is_some(),
            tls: self.t.is_tls(),
        };
        for el in self.ctx.hooks.run_features(&cx) {
            f = f.child(el);
        }
        f
    }

    fn features(&self) -> String {
        let mut f = El::new("stream:features");
        if self.user.is_some() {
            f = f
                .child(El::new("bind").xmlns(NS_BIND))
                .child(
                    El::new("session")
                        .xmlns(NS_SESSION)
                        .child(El::new("optional")),
                )
                .child(El::new("limits").xmlns(NS_LIMITS).child(
                    El::new("max-bytes").text(&self.lst.config.max_stanza_size.to_string()),
                ));
            return self.module_features(f).to_string();
        }
        if self.can_starttls() {
            let mut st = El::new("starttls").xmlns(NS_TLS);
            if self.tls_required_first() {
                st = st.child(El::new("required"));
            }
            f = f.child(st);
        }
        if !self.tls_required_first() {
            let mut mechs = El::new("mechanisms").xmlns(NS_SASL);
            for m in self.offered_mechanisms() {
                mechs = mechs.child(El::new("mechanism").text(m.name()));
            }
            f = f.child(mechs);
        }
        self.module_features(f).to_string()
    }

    pub(super) fn offered_mechanisms(&self) -> Vec<crate::sasl::Mechanism> {
        use crate::sasl::Mechanism;
        let mut m = vec![Mechanism::ScramSha256, Mechanism::ScramSha1];
        if self.plain_allowed() {
            m.push(Mechanism::Plain);
        }
        m
    }

    /// Before authentication only STARTTLS and SASL are allowed, and IQs
    /// whose payload namespace a module answers before authentication
    /// (the pre-auth IQ hook: XEP-0077 registration).
    async fn on_pre_auth(&mut self, el: Element) -> Result<(), SessionEnd> {
        match (el.ns(), el.name()) {
            (Some(NS_TLS), "starttls") => self.on_starttls().await,
            (Some(NS_CLIENT), "iq") if self.pre_auth_iq_handled(&el) => {
                self.on_pre_auth_iq(el).await
            }
            (Some(NS_SASL), "auth") => {
                if self.tls_required_first() {
                    let failure = El::new("failure")
                        .xmlns(NS_SASL)
                        .child(El::new("encryption-required"));
                    return self.send(&failure.to_string()).await;
                }
                self.on_auth(el).await
            }
            (Some(NS_SASL), "abort") => {
                let failure = El::new("failure").xmlns(NS_SASL).child(El::new("aborted"));
                self.send(&failure.to_string()).await
            }
            _ => Err(
                StreamError::with_text(StreamCondition::NotAuthorized, "authenticate first").into(),
            ),
        }
    }

    /// An IQ request a module answers before authentication: not on a
    /// listener that requires STARTTLS first, until it is done.
    fn pre_auth_iq_handled(&self, el: &Element) -> bool {
        !self.tls_required_first()
            && matches!(el.attr("type"), Some("get") | Some("set"))
            && el
                .first_child()
                .and_then(|c| c.tag_name().namespace())
                .is_some_and(|ns| self.ctx.hooks.has_pre_auth_iq(ns))
    }

    /// Runs the module's pre-authentication IQ handler and sends its
    /// answer; the stream stays where it was.
    async fn on_pre_auth_iq(&mut self, el: Element) -> Result<(), SessionEnd> {
        let ctx = self.ctx.clone();
        let host = self.host.clone().unwrap_or_default();
        let reply = {
            let answer = match el.first_child() {
                Some(payload) if el.attr("id").is_some() => {
                    let cx = crate::hooks::PreAuthIqCx {
                        ctx: &ctx,
                        el: &el,
                        payload,
                        set: el.attr("type") == Some("set"),
                        host: &host,
                        peer: self.peer,
                        tls: self.t.is_tls(),
                    };
                    ctx.hooks.run_pre_auth_iq(&cx).await.unwrap_or_else(|| {
                        Err(StanzaError::new(StanzaCondition::ServiceUnavailable))
                    })
                }
                _ => Err(StanzaError::with_text(
                    StanzaCondition::BadRequest,
                    "an IQ needs an id",
                )),
            };
            let reply = El::new("iq")
                .attr_opt("id", el.attr("id"))
                .attr("from", &host);
            match answer {
                Ok(child) => {
                    let mut reply = reply.attr("type", "result");
                    if let Some(c) = child {
                        reply = reply.child(c);
                    }
                    reply
                }
                Err(err) => {
                    ctx.instr.stanza_error(&err.condition);
                    reply.attr("type", "error").child(err.error_element())
                }
            }
        };
        self.send(&reply.to_string()).await
    }

    async fn on_starttls(&mut self) -> Result<(), SessionEnd> {
        // The listener's current certificate (a reload changes it for new
        // handshakes only).
        let current = self.lst.tls.as_ref().map(|t| t.current());
        let Some(identity) = current.filter(|_| self.can_starttls()) else {
            // RFC 6120 §5.4.2.2: <failure/>, then the stream is closed.
            self.send(&El::new("failure").xmlns(NS_TLS).to_string())
                .await?;
            return Err(SessionEnd::PeerClosed);
        };
        self.send(&El::new("proceed").xmlns(NS_TLS).to_string())
            .await?;
        // The transport drops anything the client pipelined after
        // <starttls/> in the clear (STARTTLS command injection).
        let handshake = self.t.starttls(&identity.acceptor);
        match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, handshake).await {
            Ok(Ok(())) => {
                self.ctx.instr.count(
                    &crate::events::TLS_ESTABLISHED,
                    &[&self.lst.name, "starttls"],
                );
                self.restart();
                Ok(())
            }
            Ok(Err(e)) => {
                // A failed STARTTLS handshake is a rejected connection too.
                if let Some(r) = &self.lst.events.rejected_tls {
                    r.count();
                }
                Err(SessionEnd::Io(e))
            }
            Err(_) => Err(SessionEnd::Io(std::io::ErrorKind::TimedOut.into())),
        }
    }

    /// A stream restart (after TLS or SASL): a new header is expected.
    pub(super) fn restart(&mut self) {
        self.t.restart();
        self.header_sent = false;
        self.phase = Phase::WaitStream;
    }

    /// Resource binding (RFC 6120 §7).
    /// A nonza after authentication and before bind (XEP-0198 resume):
    /// a module may hand back a detached session to run here.
    async fn on_nonza_before_bind(&mut self, el: Element) -> Result<Option<Session>, SessionEnd> {
        let (Some(user), Some(host)) = (self.user.clone(), self.host.clone()) else {
            return Err(StreamError::new(StreamCondition::InternalServerError).into());
        };
        let account = Jid::from_parts(Some(&user), &host, None);
        let ns = el.ns().unwrap_or_default().to_string();
        let mut cx = crate::hooks::NonzaCx {
            ctx: &self.ctx,
            el: &el,
            session: None,
            account: &account,
            replies: Vec::new(),
        };
        let hooks = &self.ctx.clone().hooks;
        let outcome = hooks.run_nonza(&ns, &mut cx).await;
        let replies = std::mem::take(&mut cx.replies);
        if let Some(Ok(crate::hooks::Nonza::Resume(mut session))) = outcome {
            // No await from here on: a session taken over must reach the
            // session loop (which leaves cleanly), so its replies go first
            // in what the loop writes.
            session.replay.splice(0..0, replies);
            self.phase = Phase::Established;
            self.traces = Default::default();
            tracing::info!(jid = %session.handle.full(), peer = %self.peer, session = session.id(), "session resumed");
            return Ok(Some(*session));
        }
        for r in &replies {
            self.send(r).await?;
        }
        match outcome {
            Some(Err(end)) => Err(end),
            _ => Ok(None),
        }
    }

    async fn on_bind(&mut self, el: Element) -> Result<Option<Session>, SessionEnd> {
        let is_bind = el.name() == "iq"
            && el.attr("type") == Some("set")
            && el.first_child().is_some_and(|c| {
                c.tag_name().name() == "bind" && c.tag_name().namespace() == Some(NS_BIND)
            });
        if !is_bind {
            return Err(StreamError::with_text(
                StreamCondition::NotAuthorized,
                "bind a resource first",
            )
            .into());
        }
        let (Some(user), Some(host)) = (self.user.clone(), self.host.clone()) else {
            return Err(StreamError::new(StreamCondition::InternalServerError).into());
        };
        let requested = el
            .first_child()
            .and_then(|b| b.children().find(|c| c.has_tag_name((NS_BIND, "resource"))))
            .and_then(|r| r.text())
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(str::to_string);
        let bare = Jid::from_parts(Some(&user), &host, None);
        let jid = match requested {
            Some(r) => match Jid::parse(&format!("{}/{}", bare, r)) {
                Ok(j) => j,
                Err(_) => {
                    let err = StanzaError::new(StanzaCondition::BadRequest);
                    let reply = err.reply_to(&el, &host, &bare.to_string());
                    self.send(&reply).await?;
                    return Ok(None);
                }
            },
            None => bare.with_resource(&hex::encode(rand::random::<[u8; 8]>())),
        };
        let info = ConnInfo {
            peer: self.peer,
            listener: self.lst.name.clone(),
            tls: self.t.is_tls(),
            connected_at: SystemTime::now(),
        };
        self.session_span.record("jid", jid.to_string().as_str());
        self.session_span.record("tls", self.t.is_tls());
        let id = self.id;
        let bind_started = std::time::Instant::now();
        let (handle, rx) =
            SessionHandle::new(id, jid.clone(), info, self.lst.config.max_queue_bytes);
        if let Some(h) = &self.host_ev {
            let (peer, listener) = (self.peer, &self.lst.name);
            let who: [(&'static str, &dyn std::fmt::Display); 4] = [
                ("jid", &jid),
                ("session", &id),
                ("address", &peer),
                ("listener", listener),
            ];
            h.session_open
                .emit(&[("count", 1.0)], &osprey_instrument::Meta::new(&who));
        }
        if let Some(old) = self.ctx.sessions.insert(handle.clone()) {
            if let Some(h) = &self.host_ev {
                h.session_replaced.count();
            }
            // RFC 6120 §7.7.2.2: the newer session wins, the older is told why.
            old.close(StreamError::with_text(
                StreamCondition::Conflict,
                "replaced by a new connection",
            ));
        }
        let reply = El::new("iq")
            .attr("type", "result")
            .attr_opt("id", el.attr("id"))
            .child(
                El::new("bind")
                    .xmlns(NS_BIND)
                    .child(El::new("jid").text(&jid.to_string())),
            );
        self.phase = Phase::Established;
        if let Err(e) = self.send(&reply.to_string()).await {
            self.ctx.sessions.remove(&handle);
            return Err(e);
        }
        self.step("c2s.bind", format!("jid={jid}"), bind_started);
        // The full JID is known now: full-JID traces may follow it.
        self.traces = Default::default();
        tracing::info!(jid = %jid, peer = %self.peer, session = id, "session bound");
        let mut session = Session::new(handle, rx);
        session.host_ev = self.host_ev.clone();
        // The bound hooks run first thing in the session loop, not here: a
        // shutdown during negotiation drops this future, and a bound session
        // must never be dropped without leaving (its input would be lost).
        session.just_bound = true;
        Ok(Some(session))
    }
}
