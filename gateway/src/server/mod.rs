//! `osprey serve`: storage, certificates, listeners, accept loops, a
//! graceful shutdown on SIGINT/SIGTERM, and a certificate reload on SIGHUP.

mod accept;
mod admission;
mod context;
mod listeners;
mod probes;
mod trim;

pub use accept::AcceptBackoff;
pub use admission::{Admission, Admitted, Refused};
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
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
}

/// Runs the server until a shutdown signal, then shuts down gracefully.
pub async fn run(config: Config) -> Result<(), ServeError> {
    let running = start(config, Vec::new()).await?;
    wait_for_signal(&running.ctx).await;
    running.shutdown().await;
    Ok(())
}

/// A started server (listeners bound, tasks running).
pub struct Running {
    pub ctx: Arc<Ctx>,
    pub listeners: ListenerFile,
    probes: tokio::task::JoinHandle<()>,
    pushers: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Graceful shutdown: `<system-shutdown/>` to every session, wait for
    /// their tasks (which store what they still hold), close storage.
    pub async fn shutdown(self) {
        let ctx = self.ctx;
        tracing::info!(
            sessions = ctx.sessions.len(),
            "shutting down: closing sessions with system-shutdown"
        );
        ctx.shutdown.cancel();
        ctx.tasks.close();
        let grace = Duration::from_secs(ctx.config.general.shutdown_timeout);
        if tokio::time::timeout(grace, ctx.tasks.wait()).await.is_err() {
            tracing::warn!(
                left = ctx.tasks.len(),
                "sessions still open after the shutdown timeout"
            );
        }
        // Sessions are gone: what modules still hold (MAM's queue) is written.
        ctx.hooks.run_stopping(&ctx).await;
        if let Some(cluster) = &ctx.cluster {
            cluster.leave(&ctx).await;
        }
        self.probes.abort();
        for p in &self.pushers {
            p.abort();
        }
        ctx.live.save(&ctx.config.general.data_dir);
        ctx.storage.close().await;
        ListenerFile::remove(&ctx.config.general.data_dir);
        tracing::info!("stopped");
    }
}

/// Binds every listener and starts serving; `extra_handlers` (tests) see
/// every event besides the configured handlers.
pub async fn start(
    config: Config,
    extra_handlers: Vec<Box<dyn osprey_instrument::Handler>>,
) -> Result<Running, ServeError> {
    let config = Arc::new(config);
    let live = Arc::new(crate::live::Live::new());
    live.restore(&config.general.data_dir);
    let mut extra_handlers = extra_handlers;
    extra_handlers.push(Box::new(crate::live::EventHandler(live.clone())));
    let instr = crate::instr::Instr::from_config(&config, extra_handlers)?;
    let data_dir = config.general.data_dir.clone();
    std::fs::create_dir_all(&data_dir).map_err(|source| ServeError::DataDir {
        path: data_dir.clone(),
        source,
    })?;
    let url = config.storage.url.clone();
    let mut storage = Storage::connect(
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

    // Bind everything first: a port in use fails the start before anything serves.
    let mut c2s = Vec::new();
    let mut certs = Vec::new();
    for (i, lc) in config.listen.c2s.iter().enumerate() {
        let key = format!("listen.c2s[{i}]");
        let tls = match lc.tls.mode {
            TlsMode::None => None,
            _ => Some(Arc::new(
                crate::tls::ReloadableIdentity::load(crate::tls::TlsSource {
                    certfile: lc.tls.certfile.clone(),
                    keyfile: lc.tls.keyfile.clone(),
                    data_dir: data_dir.clone(),
                    hosts: config.general.hosts.clone(),
                })
                .map_err(|source| ServeError::Tls {
                    listener: key.clone(),
                    source,
                })?,
            )),
        };
        let listener = bind(&key, std::net::SocketAddr::new(lc.address, lc.port)).await?;
        let name = format!("c2s_{}", listener.local_addr()?.port());
        if let Some(t) = &tls {
            certs.push((name.clone(), t.clone()));
        }
        c2s.push((key, name, lc.clone(), tls, listener));
    }
    let mut http = Vec::new();
    for (i, hc) in config.listen.http.iter().enumerate() {
        let key = format!("listen.http[{i}]");
        let listener = bind(&key, std::net::SocketAddr::new(hc.address, hc.port)).await?;
        http.push((key, hc.clone(), listener));
    }

    // The storage observer reaches the registry through the context, which
    // holds the storage: a weak link set once the context exists.
    let slot: Arc<std::sync::OnceLock<std::sync::Weak<Ctx>>> = Arc::default();
    let weak = slot.clone();
    storage.set_observer(Arc::new(move |op, took, failed| {
        if let Some(ctx) = weak.get().and_then(std::sync::Weak::upgrade) {
            ctx.instr
                .storage_query(ctx.storage.backend(), op, took, failed);
        }
    }));
    let fd_limit = admission::raise_fd_limit();
    let admission = Admission::new(Admission::max_total_for(&config, fd_limit));
    tracing::info!(
        fd_limit,
        max_client_connections = admission.max_total(),
        "connection limits"
    );
    // The config was checked at load: a module error here is a bug.
    let hooks = crate::modules::hooks(&config)
        .map_err(|(key, message)| ServeError::Config(config.error_at(&key, message)))?;
    let mut ctx = Ctx::new(config.clone(), storage, hooks, instr, live, admission);
    ctx.certificates = certs.clone();
    if let Some(cc) = &config.cluster {
        let cluster = Arc::new(crate::cluster::Cluster::new(cc.clone()));
        ctx.sessions = cluster.registry.clone();
        ctx.cluster = Some(cluster);
    }
    ctx.secret = crate::http::token::fake_credentials_key(&data_dir).map_err(|source| {
        ServeError::DataDir {
            path: data_dir.join("fake_credentials.key"),
            source,
        }
    })?;
    let ctx = Arc::new(ctx);
    let _ = slot.set(Arc::downgrade(&ctx));
    ctx.instr.preset_storage(ctx.storage.backend());

    tokio::spawn(trim::run(ctx.clone()));
    ctx.hooks.run_started(&ctx);
    let mut bound = ListenerFile::default();
    for (key, name, lc, tls, listener) in c2s {
        let local = listener.local_addr()?;
        tracing::info!(listener = %key, address = %local, tls = lc.tls.mode.as_str(), "c2s listening");
        bound.c2s.push(local.to_string());
        let lctx = Arc::new(ListenerCtx {
            events: ctx.instr.listener(&name, tls.is_some()),
            name,
            config: lc,
            tls,
        });
        tokio::spawn(accept_loop(ctx.clone(), lctx, listener));
    }
    let needs_token = http
        .iter()
        .any(|(_, hc, _)| hc.handlers.contains(&crate::config::HttpHandler::Admin));
    let token = if needs_token {
        Some(
            crate::http::token::load_or_create(config.admin.token.as_deref(), &data_dir).map_err(
                |source| ServeError::DataDir {
                    path: data_dir.join("admin.token"),
                    source,
                },
            )?,
        )
    } else {
        None
    };
    for (key, hc, listener) in http {
        let local = listener.local_addr()?;
        tracing::info!(listener = %key, address = %local, handlers = ?hc.handlers, "http listening");
        bound.http.push(local.to_string());
        let hctx = Arc::new(crate::http::HttpCtx {
            handlers: hc.handlers.clone(),
            token: token.clone(),
        });
        tokio::spawn(crate::http::serve(
            ctx.clone(),
            hctx,
            listener,
            crate::http::HttpLimits::from(&hc),
        ));
    }
    let probes = osprey_instrument::probe::spawn_probes(
        ctx.instr.registry.clone(),
        Duration::from_secs(config.instrumentation.probe_interval),
        probes::all(&ctx, certs),
    );
    let mut pushers = ctx.instr.spawn_graphite();
    pushers.extend(crate::snapshots::spawn(ctx.clone()));
    if let Some(cluster) = &ctx.cluster {
        // What operators see as this node's address: its HTTP listener
        // (else its first c2s one).
        let address = bound
            .http
            .first()
            .or(bound.c2s.first())
            .cloned()
            .unwrap_or_default();
        tracing::info!(node = %cluster.config.node, nats = ?cluster.config.nats, "joining the cluster");
        cluster.start(&ctx, address).await;
    }
    bound.write(&data_dir)?;
    Ok(Running {
        ctx,
        listeners: bound,
        probes,
        pushers,
    })
}

async fn bind(
    key: &str,
    address: std::net::SocketAddr,
) -> Result<tokio::net::TcpListener, ServeError> {
    tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| ServeError::Bind {
            listener: key.to_string(),
            address: address.to_string(),
            source,
        })
}

async fn accept_loop(ctx: Arc<Ctx>, lst: Arc<ListenerCtx>, listener: tokio::net::TcpListener) {
    let mut backoff = AcceptBackoff::new();
    loop {
        let accepted = tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((tcp, peer)) => {
                backoff.succeeded();
                let cap = lst.config.max_connections_per_address;
                match ctx.admission.admit(peer.ip(), cap) {
                    Ok(ticket) => {
                        ctx.tasks
                            .spawn(c2s::serve(ctx.clone(), lst.clone(), tcp, peer, ticket));
                    }
                    Err(refused) => c2s::refuse(&ctx, &lst, tcp, peer, refused),
                }
            }
            Err(e) => {
                let pause = backoff.failed(&lst.name, &e);
                ctx.instr.count(
                    &crate::events::CONNECTION_REJECTED,
                    &[&lst.name, "accept_error"],
                );
                tokio::time::sleep(pause).await;
            }
        }
    }
}

/// Waits for SIGINT/SIGTERM (or a shutdown from inside); reloads the
/// certificates on each SIGHUP meanwhile.
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
        // Without SIGHUP the server still runs; reload goes through the admin API.
        let mut hup = signal(SignalKind::hangup())
            .map_err(|e| tracing::warn!(error = %e, "cannot watch SIGHUP"))
            .ok();
        // Polled across iterations: a SIGINT during a reload is not lost.
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        loop {
            tokio::select! {
                _ = &mut ctrl_c => break,
                _ = term.recv() => break,
                _ = ctx.shutdown.cancelled() => break,
                _ = async {
                    match hup.as_mut() {
                        Some(h) => h.recv().await,
                        None => std::future::pending().await,
                    }
                } => reload_on_hangup(ctx).await,
            }
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

/// SIGHUP: every listener's certificate read again, as
/// `admin::server::reload_certificates` does (which logs each listener; a
/// failed one keeps serving its old certificate).
#[cfg(unix)]
async fn reload_on_hangup(ctx: &Ctx) {
    match crate::admin::server::reload_certificates(ctx).await {
        Ok(certs) => tracing::info!(
            listeners = certs.len(),
            changed = certs.iter().filter(|c| c.changed).count(),
            "SIGHUP: certificates reloaded"
        ),
        Err(e) => tracing::warn!(error = %e, "SIGHUP: certificate reload failed"),
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
