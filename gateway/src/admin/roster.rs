//! Rosters: list, add or change an item, remove an item, for one user
//! (mongooseimctl's `roster` category). Changes are pushed to the user's
//! resources that asked for the roster, as a client's roster set is.

use serde::Serialize;

use super::{existing_user, run, AdminError, AdminResult};
use crate::jid::Jid;
use crate::server::Ctx;
use crate::storage::{RosterItem, Subscription};

#[derive(Debug, Clone, Serialize)]
pub struct Item {
    pub jid: String,
    pub name: Option<String>,
    /// none, to, from or both.
    pub subscription: &'static str,
    /// A subscription request is pending out.
    pub ask: bool,
    pub groups: Vec<String>,
}

impl From<&RosterItem> for Item {
    fn from(i: &RosterItem) -> Item {
        Item {
            jid: i.jid.clone(),
            name: i.name.clone(),
            subscription: i.subscription.as_str(),
            ask: i.ask,
            groups: i.groups.clone(),
        }
    }
}

pub async fn list(ctx: &Ctx, user: &str) -> AdminResult<Vec<Item>> {
    run(ctx, "roster_list", user, async {
        let u = existing_user(ctx, user).await?;
        let items = ctx
            .storage
            .roster_get(u.domain(), u.local().unwrap_or_default())
            .await?;
        Ok(items.iter().map(Item::from).collect())
    })
    .await
}

/// What to set: the contact, and optionally its name, groups and
/// subscription state (`none` by default, as for a client's roster set;
/// an administrator may set `both` to pair two users, as mongooseimctl's
/// `setMutualSubscription` does for one side).
#[derive(Debug, Clone, Default)]
pub struct NewItem {
    pub contact: String,
    pub name: Option<String>,
    pub groups: Vec<String>,
    pub subscription: Option<String>,
}

pub async fn add(ctx: &Ctx, user: &str, new: &NewItem) -> AdminResult<Item> {
    run(ctx, "roster_add", user, async {
        let u = existing_user(ctx, user).await?;
        let contact = Jid::parse(&new.contact)
            .map_err(|_| AdminError::bad(format!("{}: malformed JID", new.contact)))?
            .to_bare();
        if contact.same_bare(&u) {
            return Err(AdminError::bad("a user cannot be in their own roster"));
        }
        let subscription = match new.subscription.as_deref() {
            None | Some("none") => Subscription::None,
            Some("to") => Subscription::To,
            Some("from") => Subscription::From,
            Some("both") => Subscription::Both,
            Some(s) => {
                return Err(AdminError::bad(format!(
                    "{s}: subscription must be none, to, from or both"
                )))
            }
        };
        if new.name.as_deref().is_some_and(|n| n.len() > 1024)
            || new.groups.len() > 64
            || new.groups.iter().any(|g| g.is_empty() || g.len() > 1024)
        {
            return Err(AdminError::bad(
                "names and groups are at most 1024 bytes, groups non-empty and at most 64",
            ));
        }
        let (host, name) = (u.domain(), u.local().unwrap_or_default());
        let item = RosterItem {
            jid: contact.bare(),
            name: new.name.clone().filter(|n| !n.is_empty()),
            subscription,
            ask: false,
            groups: new.groups.clone(),
        };
        {
            let _guard = ctx.storage.lock_account(host, name).await;
            ctx.storage.roster_put(host, name, &item).await?;
        }
        crate::modules::roster::push(ctx, &u, &item).await;
        Ok(Item::from(&item))
    })
    .await
}

pub async fn remove(ctx: &Ctx, user: &str, contact: &str) -> AdminResult<String> {
    run(ctx, "roster_remove", user, async {
        let u = existing_user(ctx, user).await?;
        let contact = Jid::parse(contact)
            .map_err(|_| AdminError::bad(format!("{contact}: malformed JID")))?
            .bare();
        let (host, name) = (u.domain(), u.local().unwrap_or_default());
        let removed = {
            let _guard = ctx.storage.lock_account(host, name).await;
            ctx.storage.roster_remove(host, name, &contact).await?
        };
        if !removed {
            return Err(AdminError::NotFound(format!(
                "{contact} is not in {}'s roster",
                u.bare()
            )));
        }
        crate::modules::roster::push_removed(ctx, &u, &contact).await;
        Ok(contact)
    })
    .await
}
