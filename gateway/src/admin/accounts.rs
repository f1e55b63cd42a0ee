//! Accounts: list (paged), count, register, remove, change password
//! (mongooseimctl's `account` category).

use serde::Serialize;

use super::{local_user, run, served_host, AdminError, AdminResult, Page, Paged};
use crate::server::Ctx;
use crate::storage::StorageError;

#[derive(Debug, Clone, Serialize)]
pub struct HostCount {
    pub host: String,
    pub accounts: u64,
}

/// Bare JIDs, sorted, of one host or all.
pub async fn list(ctx: &Ctx, host: Option<&str>, page: Page) -> AdminResult<Paged<String>> {
    run(ctx, "account_list", host.unwrap_or("*"), async {
        let host = host.map(|h| served_host(ctx, h)).transpose()?;
        let all = ctx.storage.list_accounts(host.as_deref()).await?;
        let jids = all.into_iter().map(|(h, u)| format!("{u}@{h}")).collect();
        Ok(page.of(jids))
    })
    .await
}

/// Registered accounts per host (one host, or every served host).
pub async fn count(ctx: &Ctx, host: Option<&str>) -> AdminResult<Vec<HostCount>> {
    run(ctx, "account_count", host.unwrap_or("*"), async {
        let hosts = match host {
            Some(h) => vec![served_host(ctx, h)?],
            None => ctx.config.general.hosts.clone(),
        };
        let mut out = Vec::with_capacity(hosts.len());
        for host in hosts {
            let accounts = ctx.storage.count_accounts(&host).await?;
            out.push(HostCount { host, accounts });
        }
        Ok(out)
    })
    .await
}

/// Creates an account; its SCRAM keys are derived off the async workers.
pub async fn register(ctx: &Ctx, jid: &str, password: &str) -> AdminResult<String> {
    run(ctx, "account_register", jid, async {
        let user = local_user(ctx, jid)?;
        let creds = credentials(ctx, password).await?;
        let (host, name) = (user.domain(), user.local().unwrap_or_default());
        match ctx.storage.create_account(host, name, &creds).await {
            Ok(()) => Ok(user.bare()),
            Err(StorageError::Conflict) => Err(AdminError::Conflict(format!(
                "account {} already exists",
                user.bare()
            ))),
            Err(e) => Err(e.into()),
        }
    })
    .await
}

/// Deletes an account with its roster and offline messages, and closes
/// its sessions (as ejabberd's `unregister` does).
pub async fn remove(ctx: &Ctx, jid: &str) -> AdminResult<String> {
    run(ctx, "account_remove", jid, async {
        let user = local_user(ctx, jid)?;
        let (host, name) = (user.domain(), user.local().unwrap_or_default());
        if !ctx.storage.remove_account(host, name).await? {
            return Err(AdminError::NotFound(format!("no account {}", user.bare())));
        }
        for s in ctx.sessions.resources(&user.bare()) {
            ctx.sessions.close(
                &s,
                crate::errors::StreamError::with_text(
                    crate::errors::StreamCondition::NotAuthorized,
                    "the account was removed",
                ),
            );
        }
        Ok(user.bare())
    })
    .await
}

/// Sets a new password (new salt, new SCRAM keys); sessions stay.
pub async fn change_password(ctx: &Ctx, jid: &str, password: &str) -> AdminResult<String> {
    run(ctx, "account_change_password", jid, async {
        let user = local_user(ctx, jid)?;
        let creds = credentials(ctx, password).await?;
        let (host, name) = (user.domain(), user.local().unwrap_or_default());
        if !ctx.storage.set_credentials(host, name, &creds).await? {
            return Err(AdminError::NotFound(format!("no account {}", user.bare())));
        }
        Ok(user.bare())
    })
    .await
}

/// The SCRAM keys of a new password, as every account path stores them
/// (also XEP-0077 in-band registration): refused when empty, longer than
/// 1024 bytes or refused by SASLprep.
pub(crate) async fn credentials(
    ctx: &Ctx,
    password: &str,
) -> AdminResult<crate::storage::AccountCredentials> {
    if password.is_empty() {
        return Err(AdminError::bad("the password is empty"));
    }
    if password.len() > 1024 {
        return Err(AdminError::bad("the password is longer than 1024 bytes"));
    }
    let iterations = ctx.config.auth.scram_iterations;
    let password = password.to_string();
    // PBKDF2 takes milliseconds: not on an async worker.
    tokio::task::spawn_blocking(move || crate::sasl::account_credentials(&password, iterations))
        .await
        .map_err(|e| AdminError::Internal(e.to_string()))?
        .map_err(|_| AdminError::bad("the password contains characters SASLprep refuses"))
}
