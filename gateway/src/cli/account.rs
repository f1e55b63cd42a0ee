//! `osprey account register|remove|list|count|passwd|populate`: straight to
//! storage, so they work whether or not the server is running (SQLite in WAL
//! mode lets both write).

use clap::Subcommand;

use super::Failure;
use crate::config::Config;
use crate::jid::Jid;
use crate::storage::{AccountCredentials, Storage, StorageError, StorageOptions};

#[derive(Subcommand)]
pub enum AccountCommand {
    /// Create an account.
    Register {
        /// user@host
        jid: String,
        /// The password; read from standard input when omitted.
        #[arg(long)]
        password: Option<String>,
    },
    /// Delete an account with its roster and offline messages.
    Remove { jid: String },
    /// List accounts.
    List {
        /// Only this host.
        #[arg(long)]
        host: Option<String>,
    },
    /// How many accounts: the number for one host, else `host count` lines.
    Count {
        #[arg(long)]
        host: Option<String>,
    },
    /// Change a password.
    Passwd {
        jid: String,
        #[arg(long)]
        password: Option<String>,
    },
    /// Create many accounts for benchmarks: {prefix}{first} …
    /// {prefix}{first+count-1} on one host, all with the same password.
    ///
    /// FOR LOAD TESTS ONLY: the SCRAM keys are derived once and shared, so
    /// every account has the same salt and keys (cracking one cracks all).
    /// Accounts that already exist are skipped and counted, not changed.
    Populate {
        #[arg(long, default_value = "user")]
        prefix: String,
        /// How many accounts.
        #[arg(long)]
        count: usize,
        /// Number of the first account.
        #[arg(long, default_value_t = 1)]
        first: usize,
        /// The password; read from standard input when omitted.
        #[arg(long)]
        password: Option<String>,
        /// Default: the first of general.hosts.
        #[arg(long)]
        host: Option<String>,
    },
}

pub async fn run(cmd: AccountCommand, config: &Config) -> Result<(), Failure> {
    let storage = open(config).await?;
    let result = match cmd {
        AccountCommand::Register { jid, password } => {
            let (host, user) = account_jid(&jid, config)?;
            let creds = credentials(&password_or_stdin(password)?, config)?;
            match storage.create_account(&host, &user, &creds).await {
                Ok(()) => {
                    println!("registered {user}@{host}");
                    Ok(())
                }
                Err(StorageError::Conflict) => Err(Failure::new(
                    3,
                    format!("account {user}@{host} already exists"),
                )),
                Err(e) => Err(storage_failure(e)),
            }
        }
        AccountCommand::Remove { jid } => {
            let (host, user) = account_jid(&jid, config)?;
            match storage.remove_account(&host, &user).await {
                Ok(true) => {
                    println!("removed {user}@{host}");
                    Ok(())
                }
                Ok(false) => Err(no_such(&user, &host)),
                Err(e) => Err(storage_failure(e)),
            }
        }
        AccountCommand::List { host } => {
            let host = match host {
                Some(h) => Some(known_host(&h, config)?),
                None => None,
            };
            let accounts = storage
                .list_accounts(host.as_deref())
                .await
                .map_err(storage_failure)?;
            for (h, u) in accounts {
                println!("{u}@{h}");
            }
            Ok(())
        }
        AccountCommand::Count { host } => {
            let one = host.is_some();
            let hosts = match host {
                Some(h) => vec![known_host(&h, config)?],
                None => config.general.hosts.clone(),
            };
            for h in hosts {
                let n = storage.count_accounts(&h).await.map_err(storage_failure)?;
                if one {
                    println!("{n}");
                } else {
                    println!("{h} {n}");
                }
            }
            Ok(())
        }
        AccountCommand::Passwd { jid, password } => {
            let (host, user) = account_jid(&jid, config)?;
            let creds = credentials(&password_or_stdin(password)?, config)?;
            match storage.set_credentials(&host, &user, &creds).await {
                Ok(true) => {
                    println!("password changed for {user}@{host}");
                    Ok(())
                }
                Ok(false) => Err(no_such(&user, &host)),
                Err(e) => Err(storage_failure(e)),
            }
        }
        AccountCommand::Populate {
            prefix,
            count,
            first,
            password,
            host,
        } => populate(&storage, config, &prefix, count, first, password, host).await,
    };
    storage.close().await;
    result
}

async fn populate(
    storage: &Storage,
    config: &Config,
    prefix: &str,
    count: usize,
    first: usize,
    password: Option<String>,
    host: Option<String>,
) -> Result<(), Failure> {
    let host = match host {
        Some(h) => known_host(&h, config)?,
        None => config
            .general
            .hosts
            .first()
            .cloned()
            .ok_or_else(|| Failure::new(2, "no host configured"))?,
    };
    let last = first
        .checked_add(count.saturating_sub(1))
        .ok_or_else(|| Failure::new(2, "--first + --count is too large"))?;
    // Both ends are valid JIDs, so every name in between is.
    for n in [first, last] {
        account_jid(&format!("{prefix}{n}@{host}"), config)?;
    }
    let creds = credentials(&password_or_stdin(password)?, config)?;
    let users: Vec<String> = (first..=last)
        .take(count)
        .map(|n| format!("{prefix}{n}"))
        .collect();
    let created = storage
        .create_accounts_bulk(&host, &users, &creds)
        .await
        .map_err(storage_failure)?;
    let existing = users.len() as u64 - created;
    match users.len() {
        0 => println!("no accounts to create (--count 0)"),
        _ => println!(
            "created {created} accounts {prefix}{first}..{prefix}{last}@{host} ({existing} already existed)"
        ),
    }
    Ok(())
}

async fn open(config: &Config) -> Result<Storage, Failure> {
    if let Err(e) = std::fs::create_dir_all(&config.general.data_dir) {
        return Err(Failure::new(
            1,
            format!("data directory {}: {e}", config.general.data_dir.display()),
        ));
    }
    Storage::connect(
        &config.storage.url,
        &StorageOptions {
            max_connections: 2,
            migration_locking: config.storage.migration_locking,
        },
    )
    .await
    .map_err(|e| {
        Failure::new(
            1,
            format!(
                "storage {}: {e}",
                crate::server::redact_url(&config.storage.url)
            ),
        )
    })
}

/// `user@host`, on a host this server serves, without a resource.
fn account_jid(s: &str, config: &Config) -> Result<(String, String), Failure> {
    let jid = Jid::parse(s).map_err(|e| Failure::new(2, format!("malformed JID {s:?}: {e}")))?;
    let (Some(user), None) = (jid.local(), jid.resource()) else {
        return Err(Failure::new(
            2,
            format!("malformed JID {s:?}: expected user@host"),
        ));
    };
    let host = known_host(jid.domain(), config)?;
    Ok((host, user.to_string()))
}

fn known_host(h: &str, config: &Config) -> Result<String, Failure> {
    let host = crate::jid::normalise_domain(h)
        .map_err(|e| Failure::new(2, format!("malformed host {h:?}: {e}")))?;
    if config.general.hosts.contains(&host) {
        Ok(host)
    } else {
        Err(Failure::new(
            2,
            format!(
                "unknown host {host:?}: this server serves {}",
                config.general.hosts.join(", ")
            ),
        ))
    }
}

fn password_or_stdin(password: Option<String>) -> Result<String, Failure> {
    let pw = match password {
        Some(p) => p,
        None => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .map_err(|e| Failure::new(1, format!("reading the password: {e}")))?;
            line.trim_end_matches(['\r', '\n']).to_string()
        }
    };
    if pw.is_empty() {
        return Err(Failure::new(2, "the password is empty"));
    }
    Ok(pw)
}

/// Only SCRAM keys are stored, for both hashes; never the password.
fn credentials(password: &str, config: &Config) -> Result<AccountCredentials, Failure> {
    crate::sasl::account_credentials(password, config.auth.scram_iterations)
        .map_err(|_| Failure::new(2, "the password contains characters SASLprep refuses"))
}

fn no_such(user: &str, host: &str) -> Failure {
    Failure::new(4, format!("no account {user}@{host}"))
}

fn storage_failure(e: StorageError) -> Failure {
    Failure::new(1, format!("storage: {e}"))
}
