//! Presence subscriptions (RFC 6121 §3): the state machine of Appendix A as
//! pure functions, and the glue that stores, pushes and delivers.
//! Pre-approval (§3.4) is not offered.

use std::sync::Arc;

use super::roster::{self, internal};
use crate::jid::Jid;
use crate::router::{self, SessionHandle};
use crate::server::Ctx;
use crate::stanza::Kind as StanzaKind;
use crate::storage::{RosterItem, Subscription};
use crate::xml::{rewrite_from_to, El, Element};

/// The four subscription presence types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Subscribe,
    Subscribed,
    Unsubscribe,
    Unsubscribed,
}

impl Kind {
    pub fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "subscribe" => Kind::Subscribe,
            "subscribed" => Kind::Subscribed,
            "unsubscribe" => Kind::Unsubscribe,
            "unsubscribed" => Kind::Unsubscribed,
            _ => return None,
        })
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::Subscribe => "subscribe",
            Kind::Subscribed => "subscribed",
            Kind::Unsubscribe => "unsubscribe",
            Kind::Unsubscribed => "unsubscribed",
        }
    }
}

/// One side's view of a contact: does it get the contact's presence (`to`),
/// does the contact get its presence (`from`), is a request out (`ask`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct State {
    pub to: bool,
    pub from: bool,
    pub ask: bool,
}

impl State {
    pub fn of(item: Option<&RosterItem>) -> State {
        item.map(|i| State {
            to: matches!(i.subscription, Subscription::To | Subscription::Both),
            from: matches!(i.subscription, Subscription::From | Subscription::Both),
            ask: i.ask,
        })
        .unwrap_or_default()
    }

    pub fn subscription(&self) -> Subscription {
        match (self.to, self.from) {
            (false, false) => Subscription::None,
            (true, false) => Subscription::To,
            (false, true) => Subscription::From,
            (true, true) => Subscription::Both,
        }
    }
}

/// The sender's side of a subscription stanza (RFC 6121 Appendix A.2):
/// its new state, and whether the stanza goes on to the contact.
pub fn outbound(s: State, kind: Kind, pending_in: bool) -> (State, bool) {
    match kind {
        // Already subscribed: forwarded all the same; the contact's server
        // answers with `subscribed` on its own.
        Kind::Subscribe if s.to => (s, true),
        Kind::Subscribe => (State { ask: true, ..s }, true),
        Kind::Unsubscribe => (
            State {
                to: false,
                ask: false,
                ..s
            },
            s.to || s.ask,
        ),
        // Approving needs a request to approve: no pre-approval.
        Kind::Subscribed if pending_in && !s.from => (State { from: true, ..s }, true),
        Kind::Subscribed => (s, false),
        Kind::Unsubscribed if s.from || pending_in => (State { from: false, ..s }, true),
        Kind::Unsubscribed => (s, false),
    }
}

/// What the receiving account does with an inbound subscription stanza
/// (RFC 6121 Appendix A.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbound {
    Ignore,
    /// Answer on the account's behalf (it already approved).
    AutoReply(Kind),
    /// Keep the request until the account answers, and deliver it.
    StoreRequest,
    /// New roster state; deliver; drop a pending request if `clear_request`.
    Change {
        state: State,
        clear_request: bool,
    },
}

pub fn inbound(s: State, kind: Kind, pending_in: bool) -> Inbound {
    match kind {
        Kind::Subscribe if s.from => Inbound::AutoReply(Kind::Subscribed),
        Kind::Subscribe => Inbound::StoreRequest,
        Kind::Subscribed if s.ask && !s.to => Inbound::Change {
            state: State {
                to: true,
                ask: false,
                ..s
            },
            clear_request: false,
        },
        Kind::Subscribed => Inbound::Ignore,
        Kind::Unsubscribe if s.from || pending_in => Inbound::Change {
            state: State { from: false, ..s },
            clear_request: true,
        },
        Kind::Unsubscribe => Inbound::Ignore,
        Kind::Unsubscribed if s.to || s.ask => Inbound::Change {
            state: State {
                to: false,
                ask: false,
                ..s
            },
            clear_request: false,
        },
        Kind::Unsubscribed => Inbound::Ignore,
    }
}

/// A subscription stanza sent by a session to `contact`.
pub async fn handle_outbound(
    ctx: &Ctx,
    me: &Arc<SessionHandle>,
    contact: &Jid,
    kind: Kind,
    el: &Element,
) {
    let owner = me.jid().to_bare();
    let contact = contact.to_bare();
    let (host, user) = (owner.domain(), owner.local().unwrap_or_default());
    let bare = contact.to_string();
    let forward = {
        // The owner's item and pending request are read and written back
        // as one step: the contact's task may be updating the same item
        // (mutual add). Released before the contact's account is touched
        // (one account lock at a time: see `storage::lock_account`).
        let store = &ctx.stores.roster;
        let _owner = store.lock_account(host, user).await;
        let item = match store.roster_item(host, user, &bare).await {
            Ok(i) => i,
            Err(e) => return storage_failed(e),
        };
        let pending_in = match kind {
            Kind::Subscribed | Kind::Unsubscribed => {
                match store.sub_request_remove(host, user, &bare).await {
                    Ok(p) => p,
                    Err(e) => return storage_failed(e),
                }
            }
            _ => false,
        };
        let before = State::of(item.as_ref());
        let (after, forward) = outbound(before, kind, pending_in);
        if after != before {
            let entry = apply(item, &bare, after);
            if let Err(e) = store.roster_put(host, user, &entry).await {
                return storage_failed(e);
            }
            roster::push(ctx, &owner, &entry).await;
        }
        forward
    };
    if !forward {
        return;
    }
    deliver_inbound(ctx, &owner, &contact, kind, Some(el)).await;
    match kind {
        // The new subscriber gets the approver's current presence, and a
        // cancelled one gets unavailable (RFC 6121 §3.1.5, §3.2.2).
        Kind::Subscribed => send_presence_of(ctx, &owner, &contact, true).await,
        Kind::Unsubscribed => send_presence_of(ctx, &owner, &contact, false).await,
        _ => {}
    }
}

/// Processes a subscription stanza from `from` at the local account `to`.
/// Takes `to`'s account lock: the caller must hold none.
pub async fn deliver_inbound(ctx: &Ctx, from: &Jid, to: &Jid, kind: Kind, el: Option<&Element>) {
    if !ctx.serves(to.domain()) {
        return;
    }
    let (host, Some(user)) = (to.domain(), to.local()) else {
        return;
    };
    let from_bare = from.to_string();
    let xml = match el {
        Some(el) => rewrite_from_to(el, Some(&from_bare), Some(&to.to_string())),
        None => El::new("presence")
            .attr("from", &from_bare)
            .attr("to", &to.to_string())
            .attr("type", kind.as_str())
            .to_string(),
    };
    let storage = &ctx.stores.roster;
    match ctx.stores.accounts.account_exists(host, user).await {
        Ok(true) => {}
        Ok(false) => {
            // RFC 6121 §3.1.3: no such contact; the request is refused.
            if kind == Kind::Subscribe {
                Box::pin(deliver_inbound(ctx, to, from, Kind::Unsubscribed, None)).await;
            }
            return;
        }
        Err(e) => return storage_failed(e),
    }
    // Decided, stored, pushed and delivered under the account's lock (see
    // `handle_outbound`); an automatic reply goes to the other account
    // only once it is released.
    let auto_reply = {
        let _account = storage.lock_account(host, user).await;
        let item = match storage.roster_item(host, user, &from_bare).await {
            Ok(i) => i,
            Err(e) => return storage_failed(e),
        };
        let pending_in = match storage.sub_requests(host, user).await {
            Ok(r) => r.iter().any(|(c, _)| *c == from_bare),
            Err(e) => return storage_failed(e),
        };
        let before = State::of(item.as_ref());
        match inbound(before, kind, pending_in) {
            Inbound::Ignore => None,
            Inbound::AutoReply(reply) => Some(reply),
            Inbound::StoreRequest => {
                if let Err(e) = storage.sub_request_put(host, user, &from_bare, &xml).await {
                    return storage_failed(e);
                }
                let _ = router::route_xml(ctx, StanzaKind::Presence, from, to, &xml).await;
                None
            }
            Inbound::Change {
                state,
                clear_request,
            } => {
                if clear_request {
                    if let Err(e) = storage.sub_request_remove(host, user, &from_bare).await {
                        return storage_failed(e);
                    }
                }
                if state != before {
                    let entry = apply(item, &from_bare, state);
                    if let Err(e) = storage.roster_put(host, user, &entry).await {
                        return storage_failed(e);
                    }
                    roster::push(ctx, to, &entry).await;
                }
                let _ = router::route_xml(ctx, StanzaKind::Presence, from, to, &xml).await;
                if kind == Kind::Unsubscribe {
                    // The former subscriber sees this account go unavailable.
                    send_presence_of(ctx, to, from, false).await;
                }
                None
            }
        }
    };
    if let Some(reply) = auto_reply {
        Box::pin(deliver_inbound(ctx, to, from, reply, None)).await;
        if reply == Kind::Subscribed {
            send_presence_of(ctx, to, from, true).await;
        }
    }
}

/// Logged (in `internal`); the stanza is dropped.
fn storage_failed(e: crate::storage::StorageError) {
    let _ = internal(e);
}

/// The roster item with its subscription state replaced.
fn apply(item: Option<RosterItem>, contact: &str, state: State) -> RosterItem {
    let mut item = item.unwrap_or(RosterItem {
        jid: contact.to_string(),
        name: None,
        subscription: Subscription::None,
        ask: false,
        groups: Vec::new(),
    });
    item.subscription = state.subscription();
    item.ask = state.ask;
    item
}

/// Sends the presence of each available resource of `of` (or unavailable
/// from each) to the available resources of `to`.
pub async fn send_presence_of(ctx: &Ctx, of: &Jid, to: &Jid, available: bool) {
    let to_s = to.to_string();
    for s in router::resources(ctx, &of.bare()) {
        let p = s.presence();
        if !p.available {
            continue;
        }
        let xml = match (available, p.last.as_deref()) {
            (true, Some(last)) => match Element::parse(last) {
                Ok(el) => rewrite_from_to(&el, None, Some(&to_s)),
                Err(_) => continue,
            },
            (true, None) => continue,
            (false, _) => El::new("presence")
                .attr("from", s.full())
                .attr("to", &to_s)
                .attr("type", "unavailable")
                .to_string(),
        };
        let _ = router::route_xml(ctx, StanzaKind::Presence, of, to, &xml).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: State = State {
        to: false,
        from: false,
        ask: false,
    };

    #[test]
    fn full_handshake_reaches_both() {
        // Alice asks Bob; Bob approves; Bob asks back; Alice approves.
        let (alice, fwd) = outbound(NONE, Kind::Subscribe, false);
        assert!(fwd && alice.ask);
        assert_eq!(inbound(NONE, Kind::Subscribe, false), Inbound::StoreRequest);
        let (bob, fwd) = outbound(NONE, Kind::Subscribed, true);
        assert!(fwd);
        assert_eq!(bob.subscription(), Subscription::From);
        let Inbound::Change { state: alice, .. } = inbound(alice, Kind::Subscribed, false) else {
            panic!("alice must gain `to`");
        };
        assert_eq!((alice.subscription(), alice.ask), (Subscription::To, false));
        let (bob, _) = outbound(bob, Kind::Subscribe, false);
        assert!(bob.ask);
        // Alice already approved nothing yet, so the request is stored...
        assert_eq!(
            inbound(alice, Kind::Subscribe, false),
            Inbound::StoreRequest
        );
        let (alice, fwd) = outbound(alice, Kind::Subscribed, true);
        assert!(fwd);
        assert_eq!(alice.subscription(), Subscription::Both);
        let Inbound::Change { state: bob, .. } = inbound(bob, Kind::Subscribed, false) else {
            panic!("bob must gain `to`");
        };
        assert_eq!(bob.subscription(), Subscription::Both);
    }

    #[test]
    fn approved_request_is_answered_automatically() {
        let from = State { from: true, ..NONE };
        assert_eq!(
            inbound(from, Kind::Subscribe, false),
            Inbound::AutoReply(Kind::Subscribed)
        );
    }

    #[test]
    fn no_pre_approval_and_unsolicited_subscribed_ignored() {
        assert_eq!(outbound(NONE, Kind::Subscribed, false), (NONE, false));
        assert_eq!(inbound(NONE, Kind::Subscribed, false), Inbound::Ignore);
    }

    #[test]
    fn cancellations() {
        let both = State {
            to: true,
            from: true,
            ask: false,
        };
        let (s, fwd) = outbound(both, Kind::Unsubscribe, false);
        assert!(fwd);
        assert_eq!(s.subscription(), Subscription::From);
        let (s, fwd) = outbound(both, Kind::Unsubscribed, false);
        assert!(fwd);
        assert_eq!(s.subscription(), Subscription::To);
        let Inbound::Change {
            state,
            clear_request,
        } = inbound(both, Kind::Unsubscribe, false)
        else {
            panic!()
        };
        assert!(clear_request);
        assert_eq!(state.subscription(), Subscription::To);
        let Inbound::Change { state, .. } = inbound(both, Kind::Unsubscribed, false) else {
            panic!()
        };
        assert_eq!(state.subscription(), Subscription::From);
        // Nothing to cancel: nothing happens.
        assert_eq!(outbound(NONE, Kind::Unsubscribe, false), (NONE, false));
        assert_eq!(inbound(NONE, Kind::Unsubscribed, false), Inbound::Ignore);
        // A pending-out request is cancelled by unsubscribed.
        let asking = State { ask: true, ..NONE };
        assert!(matches!(
            inbound(asking, Kind::Unsubscribed, false),
            Inbound::Change { state: NONE, .. }
        ));
    }
}
