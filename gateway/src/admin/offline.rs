//! Offline messages: count, list (without delivering them), purge, for one
//! user (mongooseimctl's `offline` category).

use serde::Serialize;

use super::{existing_user, run, AdminResult, Page, Paged};
use crate::server::Ctx;

#[derive(Debug, Clone, Serialize)]
pub struct Stored {
    pub id: i64,
    /// When it was stored, Unix milliseconds.
    pub stored_at_ms: i64,
    pub stanza: String,
}

pub async fn count(ctx: &Ctx, user: &str) -> AdminResult<u64> {
    run(ctx, "offline_count", user, async {
        let u = existing_user(ctx, user).await?;
        Ok(ctx
            .storage
            .offline_count(u.domain(), u.local().unwrap_or_default())
            .await?)
    })
    .await
}

/// The stored messages, oldest first; they stay stored.
pub async fn list(ctx: &Ctx, user: &str, page: Page) -> AdminResult<Paged<Stored>> {
    run(ctx, "offline_list", user, async {
        let u = existing_user(ctx, user).await?;
        let (host, name) = (u.domain(), u.local().unwrap_or_default());
        let total = ctx.storage.offline_count(host, name).await?;
        let items = ctx
            .storage
            .offline_peek(host, name, page.offset, page.limit)
            .await?
            .into_iter()
            .map(|m| Stored {
                id: m.id,
                stored_at_ms: m.stored_at_ms,
                stanza: m.stanza,
            })
            .collect();
        Ok(Paged {
            total: usize::try_from(total).unwrap_or(usize::MAX),
            offset: page.offset,
            items,
        })
    })
    .await
}

/// Deletes every stored message; returns how many.
pub async fn purge(ctx: &Ctx, user: &str) -> AdminResult<usize> {
    run(ctx, "offline_purge", user, async {
        let u = existing_user(ctx, user).await?;
        let (host, name) = (u.domain(), u.local().unwrap_or_default());
        let _guard = ctx.storage.lock_account(host, name).await;
        let mut purged = 0;
        loop {
            let taken = ctx.storage.offline_take(host, name, 1000).await?.len();
            purged += taken;
            if taken < 1000 {
                return Ok(purged);
            }
        }
    })
    .await
}
