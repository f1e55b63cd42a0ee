//! The registry: modules add to it at start (`Module::register`), the data
//! path reads it. Lists are kept sorted by each hook's `order` (lower runs
//! first; equal orders keep registration order).

use std::collections::HashMap;
use std::sync::Arc;

use super::points::*;
use super::{call, call_sync, Flow, Site, WriteTally};
use crate::errors::{SessionEnd, StanzaError};
use crate::events::Handler;
use crate::instr::Instr;
use crate::router::{Routed, SessionHandle};
use crate::server::Ctx;
use crate::session::Session;
use crate::stanza::{Kind, Stanza};
use crate::xml::El;
use osprey_instrument::Labelled;

struct Reg<T: ?Sized> {
    name: &'static Handler,
    order: i32,
    hook: Arc<T>,
    /// The `module_handler` series of `name`, resolved once the registry
    /// exists ([`Hooks::resolve`]): a hook call then costs no lookup.
    ev: Option<Labelled>,
}

impl<T: ?Sized> Reg<T> {
    fn new(name: &'static Handler, order: i32, hook: Arc<T>) -> Self {
        Reg {
            name,
            order,
            hook,
            ev: None,
        }
    }

    fn site(&self) -> Site<'_> {
        Site {
            name: self.name,
            ev: self.ev.as_ref(),
        }
    }

    fn resolve(&mut self, instr: &Instr) {
        self.ev = Some(instr.handler_series(self.name.module, self.name.operation));
    }
}

fn add<T: ?Sized>(list: &mut Vec<Reg<T>>, name: &'static Handler, order: i32, hook: Arc<T>) {
    let at = list.partition_point(|r| r.order <= order);
    list.insert(at, Reg::new(name, order, hook));
}

/// Puts an IQ handler in the get and/or set slot of its namespace; a
/// second one for a slot is a programming error caught at start.
fn put_iq<T: ?Sized>(
    map: &mut HashMap<&'static str, [Option<Reg<T>>; 2]>,
    ns: &'static str,
    typ: IqType,
    name: &'static Handler,
    hook: Arc<T>,
    what: &str,
) {
    let sets: &[bool] = match typ {
        IqType::Get => &[false],
        IqType::Set => &[true],
        IqType::Both => &[false, true],
    };
    for &set in sets {
        let slot = &mut map.entry(ns).or_default()[usize::from(set)];
        assert!(slot.is_none(), "two {what} handlers for {ns}");
        *slot = Some(Reg::new(name, 0, hook.clone()));
    }
}

fn kind_index(k: Kind) -> usize {
    match k {
        Kind::Message => 0,
        Kind::Presence => 1,
        Kind::Iq => 2,
    }
}

/// Every hook of the running server.
#[derive(Default)]
pub struct Hooks {
    features: Vec<Reg<dyn FeaturesHook>>,
    nonzas: HashMap<&'static str, Reg<dyn NonzaHook>>,
    send: [Vec<Reg<dyn SendHook>>; 3],
    route_before: [Vec<Reg<dyn RouteHook>>; 3],
    route_after: [Vec<Reg<dyn RouteHook>>; 3],
    amend: [Vec<Reg<dyn AmendHook>>; 3],
    presence_out: Vec<Reg<dyn PresenceHook>>,
    deliver: Vec<Reg<dyn DeliverHook>>,
    write: Vec<Reg<dyn WriteHook>>,
    session: Vec<Reg<dyn SessionHook>>,
    detach: Vec<Reg<dyn DetachHook>>,
    /// By payload namespace: the get handler, then the set handler.
    iq: HashMap<&'static str, [Option<Reg<dyn IqHandler>>; 2]>,
    /// Before authentication, by payload namespace: get, then set.
    pre_auth_iq: HashMap<&'static str, [Option<Reg<dyn PreAuthIqHook>>; 2]>,
    account_removed: Vec<Reg<dyn AccountHook>>,
    server: Vec<Reg<dyn ServerHook>>,
    /// The store, and the take's name (same hook).
    offline: Option<(Reg<dyn OfflineHook>, Reg<()>)>,
    /// Module-wide state other modules may read, keyed by type.
    state: Vec<(std::any::TypeId, Arc<dyn std::any::Any + Send + Sync>)>,
    server_features: Vec<&'static str>,
    account_features: Vec<&'static str>,
    identities: Vec<Identity>,
    /// Identities every account advertises besides `account/registered`.
    account_identities: Vec<Identity>,
}

/// Registration: what `Module::register` calls.
impl Hooks {
    pub fn stream_features(&mut self, name: &'static Handler, hook: Arc<dyn FeaturesHook>) {
        add(&mut self.features, name, 0, hook);
    }

    /// One handler per namespace: a second registration is a programming
    /// error caught at start.
    pub fn nonza(&mut self, ns: &'static str, name: &'static Handler, hook: Arc<dyn NonzaHook>) {
        let prev = self.nonzas.insert(ns, Reg::new(name, 0, hook));
        assert!(prev.is_none(), "two nonza handlers for {ns}");
    }

    pub fn user_send(
        &mut self,
        kind: Kind,
        order: i32,
        name: &'static Handler,
        hook: Arc<dyn SendHook>,
    ) {
        add(&mut self.send[kind_index(kind)], name, order, hook);
    }

    pub fn route_before(
        &mut self,
        kind: Kind,
        order: i32,
        name: &'static Handler,
        hook: Arc<dyn RouteHook>,
    ) {
        add(&mut self.route_before[kind_index(kind)], name, order, hook);
    }

    pub fn route_after(
        &mut self,
        kind: Kind,
        order: i32,
        name: &'static Handler,
        hook: Arc<dyn RouteHook>,
    ) {
        add(&mut self.route_after[kind_index(kind)], name, order, hook);
    }

    /// Changes a stanza's XML before it is routed (see [`AmendHook`]).
    pub fn amend(
        &mut self,
        kind: Kind,
        order: i32,
        name: &'static Handler,
        hook: Arc<dyn AmendHook>,
    ) {
        add(&mut self.amend[kind_index(kind)], name, order, hook);
    }

    /// Amends a user's available presence before it is broadcast.
    pub fn presence_out(&mut self, name: &'static Handler, hook: Arc<dyn PresenceHook>) {
        add(&mut self.presence_out, name, 0, hook);
    }

    pub fn deliver(&mut self, order: i32, name: &'static Handler, hook: Arc<dyn DeliverHook>) {
        add(&mut self.deliver, name, order, hook);
    }

    pub fn write(&mut self, order: i32, name: &'static Handler, hook: Arc<dyn WriteHook>) {
        add(&mut self.write, name, order, hook);
    }

    pub fn session(&mut self, order: i32, name: &'static Handler, hook: Arc<dyn SessionHook>) {
        add(&mut self.session, name, order, hook);
    }

    pub fn detach(&mut self, name: &'static Handler, hook: Arc<dyn DetachHook>) {
        add(&mut self.detach, name, 0, hook);
    }

    /// The handler of one IQ payload namespace, for gets, sets or both.
    pub fn iq(
        &mut self,
        ns: &'static str,
        typ: IqType,
        name: &'static Handler,
        hook: Arc<dyn IqHandler>,
    ) {
        put_iq(&mut self.iq, ns, typ, name, hook, "IQ");
    }

    /// The handler of one IQ payload namespace on a stream that has not
    /// authenticated yet (XEP-0077), for gets, sets or both.
    pub fn pre_auth_iq(
        &mut self,
        ns: &'static str,
        typ: IqType,
        name: &'static Handler,
        hook: Arc<dyn PreAuthIqHook>,
    ) {
        put_iq(
            &mut self.pre_auth_iq,
            ns,
            typ,
            name,
            hook,
            "pre-authentication IQ",
        );
    }

    /// The keeper of undeliverable messages (one at most), with the
    /// handler names of its store and take.
    pub fn offline(
        &mut self,
        store: &'static Handler,
        take: &'static Handler,
        hook: Arc<dyn OfflineHook>,
    ) {
        assert!(self.offline.is_none(), "two offline stores");
        self.offline = Some((Reg::new(store, 0, hook), Reg::new(take, 0, Arc::new(()))));
    }

    /// Told when the server has started and when it is stopping.
    pub fn server(&mut self, name: &'static Handler, hook: Arc<dyn ServerHook>) {
        add(&mut self.server, name, 0, hook);
    }

    pub fn account_removed(&mut self, name: &'static Handler, hook: Arc<dyn AccountHook>) {
        add(&mut self.account_removed, name, 0, hook);
    }

    /// A feature the server advertises in disco#info.
    pub fn server_feature(&mut self, var: &'static str) {
        if !self.server_features.contains(&var) {
            self.server_features.push(var);
            self.server_features.sort_unstable();
        }
    }

    /// A feature every account advertises in disco#info.
    pub fn account_feature(&mut self, var: &'static str) {
        if !self.account_features.contains(&var) {
            self.account_features.push(var);
            self.account_features.sort_unstable();
        }
    }

    pub fn identity(&mut self, identity: Identity) {
        self.identities.push(identity);
    }

    /// An identity every account advertises in disco#info (e.g. pubsub/pep).
    pub fn account_identity(&mut self, identity: Identity) {
        self.account_identities.push(identity);
    }

    /// Makes a module's shared state findable by type ([`Hooks::state`]).
    pub fn provide<T: std::any::Any + Send + Sync>(&mut self, value: Arc<T>) {
        self.state.push((std::any::TypeId::of::<T>(), value));
    }
}

impl Hooks {
    /// Resolves every hook's `module_handler` series (once, at start).
    pub fn resolve(&mut self, instr: &Instr) {
        fn all<T: ?Sized>(list: &mut [Reg<T>], instr: &Instr) {
            list.iter_mut().for_each(|r| r.resolve(instr));
        }
        all(&mut self.features, instr);
        self.nonzas.values_mut().for_each(|r| r.resolve(instr));
        for l in self.send.iter_mut() {
            all(l, instr);
        }
        for l in self
            .route_before
            .iter_mut()
            .chain(self.route_after.iter_mut())
        {
            all(l, instr);
        }
        for l in self.amend.iter_mut() {
            all(l, instr);
        }
        all(&mut self.deliver, instr);
        all(&mut self.presence_out, instr);
        all(&mut self.write, instr);
        all(&mut self.session, instr);
        all(&mut self.detach, instr);
        for pair in self.iq.values_mut() {
            pair.iter_mut().flatten().for_each(|r| r.resolve(instr));
        }
        for pair in self.pre_auth_iq.values_mut() {
            pair.iter_mut().flatten().for_each(|r| r.resolve(instr));
        }
        all(&mut self.account_removed, instr);
        all(&mut self.server, instr);
        if let Some((store, take)) = &mut self.offline {
            store.resolve(instr);
            take.resolve(instr);
        }
    }
}

/// Running the points: what the data path calls.
impl Hooks {
    /// A module's shared state, if that module is on.
    pub fn state<T: std::any::Any + Send + Sync>(&self) -> Option<Arc<T>> {
        let id = std::any::TypeId::of::<T>();
        let (_, v) = self.state.iter().find(|(t, _)| *t == id)?;
        v.clone().downcast().ok()
    }

    pub fn server_features(&self) -> &[&'static str] {
        &self.server_features
    }

    pub fn account_features(&self) -> &[&'static str] {
        &self.account_features
    }

    pub fn identities(&self) -> &[Identity] {
        &self.identities
    }

    pub fn account_identities(&self) -> &[Identity] {
        &self.account_identities
    }

    /// The features of a stream, in hook order.
    pub fn run_features(&self, cx: &FeaturesCx<'_>) -> Vec<El> {
        let mut out = Vec::new();
        for r in &self.features {
            call_sync(cx.ctx, r.site(), || r.hook.features(cx, &mut out));
        }
        out
    }

    pub fn has_nonza(&self, ns: &str) -> bool {
        self.nonzas.contains_key(ns)
    }

    /// `None`: no module handles this namespace.
    pub async fn run_nonza(
        &self,
        ns: &str,
        cx: &mut NonzaCx<'_>,
    ) -> Option<Result<Nonza, SessionEnd>> {
        let r = self.nonzas.get(ns)?;
        Some(call(cx.ctx, r.site(), r.hook.nonza(cx)).await)
    }

    /// The user-send hooks of the stanza's kind, until one decides.
    pub async fn run_send(&self, cx: &mut SendCx<'_>, stanza: &Stanza) -> Flow {
        for r in &self.send[kind_index(stanza.kind)] {
            if !r.hook.active(stanza) {
                continue;
            }
            match call(cx.ctx, r.site(), r.hook.send(cx, stanza)).await {
                Flow::Continue => {}
                other => return other,
            }
        }
        Flow::Continue
    }

    pub fn has_send_hooks(&self, kind: Kind) -> bool {
        !self.send[kind_index(kind)].is_empty()
    }

    pub async fn run_route_before(&self, ctx: &Ctx, route: &Route<'_>) -> Flow {
        for r in &self.route_before[kind_index(route.kind)] {
            if !r.hook.active(route) {
                continue;
            }
            match call(ctx, r.site(), r.hook.route(ctx, route, None)).await {
                Flow::Continue => {}
                other => return other,
            }
        }
        Flow::Continue
    }

    /// The amend hooks of the route's kind, in order.
    pub async fn run_amend(&self, ctx: &Ctx, route: &mut Route<'_>) {
        for r in &self.amend[kind_index(route.kind)] {
            if r.hook.active(route) {
                call(ctx, r.site(), r.hook.amend(ctx, route)).await;
            }
        }
    }

    /// The presence hooks, on an available presence about to be broadcast.
    pub async fn run_presence_out(&self, ctx: &Ctx, owner: &crate::jid::Jid, xml: &mut String) {
        for r in &self.presence_out {
            call(ctx, r.site(), r.hook.broadcast(ctx, owner, xml)).await;
        }
    }

    pub async fn run_route_after(
        &self,
        ctx: &Ctx,
        route: &Route<'_>,
        outcome: &Result<Routed, StanzaError>,
    ) {
        for r in &self.route_after[kind_index(route.kind)] {
            if !r.hook.active(route) {
                continue;
            }
            if !matches!(
                call(ctx, r.site(), r.hook.route(ctx, route, Some(outcome))).await,
                Flow::Continue
            ) {
                return;
            }
        }
    }

    /// Whether an after-hook would act on this route (it then needs the XML
    /// after delivery, so the router keeps a copy).
    pub fn wants_route_after(&self, route: &Route<'_>) -> bool {
        self.route_after[kind_index(route.kind)]
            .iter()
            .any(|r| r.hook.active(route))
    }

    pub fn has_route_hooks(&self, kind: Kind) -> bool {
        !self.route_before[kind_index(kind)].is_empty()
            || !self.route_after[kind_index(kind)].is_empty()
            || !self.amend[kind_index(kind)].is_empty()
    }

    pub fn run_deliver(
        &self,
        ctx: &Ctx,
        to: &SessionHandle,
        xml: &str,
        kind: Option<Kind>,
    ) -> Flow {
        for r in &self.deliver {
            match call_sync(ctx, r.site(), || r.hook.deliver(ctx, to, xml, kind)) {
                Flow::Continue => {}
                other => return other,
            }
        }
        Flow::Continue
    }

    /// The write hooks from position `from` on; `Continue` means write it.
    /// Returns the position after the hook that asked to prepend, so the
    /// prepended stanzas pass only the hooks after it.
    pub(crate) fn run_write(
        &self,
        ctx: &Ctx,
        from: usize,
        cx: &mut WriteCx<'_>,
        tally: &mut WriteTally,
    ) -> (Flow, usize) {
        for (i, r) in self.write.iter().enumerate().skip(from) {
            if !r.hook.active(cx.ext) {
                continue;
            }
            let flow = if super::observed() {
                call_sync(ctx, r.site(), || r.hook.write(cx))
            } else {
                // Timed here, reported per batch (`report_writes`).
                let started = std::time::Instant::now();
                let flow = r.hook.write(cx);
                tally.add(i, started.elapsed());
                flow
            };
            if !cx.prepend.is_empty() || !matches!(flow, Flow::Continue) {
                return (flow, i + 1);
            }
        }
        (Flow::Continue, self.write.len())
    }

    pub fn has_deliver_hooks(&self) -> bool {
        !self.deliver.is_empty()
    }

    /// Emits the write hooks' events for a batch (see [`WriteTally`]).
    pub fn report_writes(&self, ctx: &Ctx, tally: &mut WriteTally) {
        for (i, (calls, took)) in tally.0.iter_mut().enumerate() {
            if *calls > 0 {
                if let Some(r) = self.write.get(i) {
                    r.site().done_many(ctx, *calls, *took);
                }
                *calls = 0;
                *took = std::time::Duration::ZERO;
            }
        }
    }

    /// Whether a write hook would act on this session's stanzas now.
    pub fn write_active(&self, ext: &crate::session::Extensions) -> bool {
        self.write.iter().any(|r| r.hook.active(ext))
    }

    pub async fn run_session(&self, ctx: &Arc<Ctx>, session: &mut Session, event: SessionEvent) {
        for r in &self.session {
            call(ctx, r.site(), r.hook.session(ctx, session, event)).await;
        }
    }

    /// Offers a session whose transport broke to the detach hooks.
    pub fn run_detach(
        &self,
        ctx: &Arc<Ctx>,
        mut session: Box<Session>,
    ) -> Result<(), Box<Session>> {
        for r in &self.detach {
            match call_sync(ctx, r.site(), || r.hook.detach(ctx, session)) {
                Ok(()) => return Ok(()),
                Err(back) => session = back,
            }
        }
        Err(session)
    }

    /// The handler for a request's payload namespace.
    pub fn iq_handler(
        &self,
        ns: &str,
        set: bool,
    ) -> Option<(&'static Handler, &Arc<dyn IqHandler>)> {
        let r = self.iq.get(ns)?[usize::from(set)].as_ref()?;
        Some((r.name, &r.hook))
    }

    /// Whether a module answers IQs of this payload namespace before
    /// authentication.
    pub fn has_pre_auth_iq(&self, ns: &str) -> bool {
        self.pre_auth_iq.contains_key(ns)
    }

    /// Runs the pre-authentication handler of the payload's namespace and
    /// IQ type; `None`: no module answers it.
    pub async fn run_pre_auth_iq(&self, cx: &PreAuthIqCx<'_>) -> Option<IqResult> {
        let ns = cx.payload.tag_name().namespace()?;
        let r = self.pre_auth_iq.get(ns)?[usize::from(cx.set)].as_ref()?;
        Some(call(cx.ctx, r.site(), r.hook.pre_auth_iq(cx)).await)
    }

    /// Keeps an undeliverable message, or says why it cannot be kept.
    /// Takes the next stored messages of an account (none without a store).
    pub async fn offline_take(&self, ctx: &Ctx, owner: &crate::jid::Jid) -> Vec<String> {
        match &self.offline {
            Some((r, take)) => call(ctx, take.site(), r.hook.take(ctx, owner)).await,
            None => Vec::new(),
        }
    }

    pub async fn run_offline(
        &self,
        ctx: &Ctx,
        to: &crate::jid::Jid,
        xml: &str,
    ) -> Result<Routed, StanzaError> {
        match &self.offline {
            // No span of its own: the store is part of the route's span
            // (route → storage query), as operators read a message's trace.
            Some((r, _)) => super::call_unspanned(ctx, r.site(), r.hook.store(ctx, to, xml)).await,
            None => Err(StanzaError::new(
                crate::errors::StanzaCondition::ServiceUnavailable,
            )),
        }
    }

    /// The server is up: modules start their background work.
    pub fn run_started(&self, ctx: &Arc<Ctx>) {
        for r in &self.server {
            call_sync(ctx, r.site(), || r.hook.started(ctx));
        }
    }

    /// Every session has ended: modules write out what they hold.
    pub async fn run_stopping(&self, ctx: &Ctx) {
        for r in &self.server {
            call(ctx, r.site(), r.hook.stopping(ctx)).await;
        }
    }

    pub async fn run_account_removed(&self, ctx: &Ctx, host: &str, user: &str) {
        for r in &self.account_removed {
            call(ctx, r.site(), r.hook.removed(ctx, host, user)).await;
        }
    }
}
