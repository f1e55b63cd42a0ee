//! `osprey serve`: storage, certificates, listeners, accept loops, and a
//! graceful shutdown on SIGINT/SIGTERM.

mod context;
mod listeners;

pub use context::Ctx;
pub use listeners::ListenerFile;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::c2s::{self, ListenerCtx};
use crate::config::{Config, TlsMode};
use crate::storage::{Storage, StorageOptions};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("storage {url}: {source}")]
    Storage {
        url: String,
        source: crate::storage::StorageError,
    },
    #[error("TLS for {listener}: {source}")]
    Tls {
        listener: String,
        source: crate::tls::TlsError,
    },
    #[error("cannot listen on {address} ({listener}): {source}")]
    Bind {
        listener: String,
        address: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Runs the server until a shutdown signal, then shuts down gracefully.
pub async fn run(config: Config) -> Result<(), ServeError> {
    let config = Arc::new(config);
    let data_dir = config.general.data_dir.clone();
    std::fs::create_dir_all(&data_dir).map_err(|source| ServeError::DataDir {
        path: data_dir.clone(),
        source,
    })?;
    let url = config.storage.url.clone();
    let storage = Storage::connect(
        &url,
        &StorageOptions {
            max_connections: config.storage.max_connections,
            migration_locking: config.storage.migration_locking,
        },
    )
    .await
    .map_err(|source| ServeError::Storage {
        url: redact_url(&url),
        source,
    })?;
    tracing::info!(backend = storage.backend(), url = %redact_url(&url), "storage ready");

    let ctx = Arc::new(Ctx::new(config.clone(), storage));
    let mut bound = ListenerFile::default();
    for (i, lc) in config.listen.c2s.iter().enumerate() {
        let name = format!("c2s_{}", lc.port);
        let config_key = format!("listen.c2s[{i}]");
        let tls = match lc.tls.mode {
            TlsMode::None => None,
            _ => Some(
                crate::tls::load_or_generate(
                    lc.tls.certfile.as_deref(),
                    lc.tls.keyfile.as_deref(),
                    &data_dir,
                    &config.general.hosts,
                )
                .map_err(|source| ServeError::Tls {
                    listener: config_key.clone(),
                    source,
                })?,
            ),
        };
        let address = std::net::SocketAddr::new(lc.address, lc.port);
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|source| ServeError::Bind {
                listener: config_key.clone(),
                address: address.to_string(),
                source,
            })?;
        let local = listener.local_addr()?;
        tracing::info!(
            listener = %config_key,
            address = %local,
            tls = lc.tls.mode.as_str(),
            "c2s listening"
        );
        bound.c2s.push(local.to_string());
        let lctx = Arc::new(ListenerCtx {
            name,
            config: lc.clone(),
            tls,
        });
        tokio::spawn(accept_loop(ctx.clone(), lctx, listener));
    }
    bound.write(&data_dir)?;

    wait_for_signal(&ctx).await;
    tracing::info!(
        sessions = ctx.sessions.len(),
        "shutting down: closing sessions with system-shutdown"
    );
    ctx.shutdown.cancel();
    ctx.tasks.close();
    let grace = Duration::from_secs(config.general.shutdown_timeout);
    if tokio::time::timeout(grace, ctx.tasks.wait()).await.is_err() {
        tracing::warn!(
            left = ctx.tasks.len(),
            "sessions still open after the shutdown timeout"
        );
    }
    // Every session task has stored what it had to; now flush the pool.
    ctx.storage.close().await;
    ListenerFile::remove(&data_dir);
    tracing::info!("stopped");
    Ok(())
}

async fn accept_loop(ctx: Arc<Ctx>, lst: Arc<ListenerCtx>, listener: tokio::net::TcpListener) {
    loop {
        let accepted = tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((tcp, peer)) => {
                ctx.tasks
                    .spawn(c2s::serve(ctx.clone(), lst.clone(), tcp, peer));
            }
            Err(e) => {
                // Out of file descriptors and the like: back off, keep serving.
                tracing::warn!(listener = %lst.name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn wait_for_signal(ctx: &Ctx) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
            _ = ctx.shutdown.cancelled() => {}
        }
    }
    #[cfg(not(unix))]
    {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = ctx.shutdown.cancelled() => {}
        }
    }
}

/// A storage URL for logs: the password, if any, replaced.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_string();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords_only() {
        assert_eq!(
            super::redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(super::redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            super::redact_url("sqlite://data/o.db"),
            "sqlite://data/o.db"
        );
    }
}
