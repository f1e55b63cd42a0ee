//! What every task of the server shares: configuration, storage, the
//! session table, and the shutdown signal.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::c2s::throttle::Throttle;
use crate::config::Config;
use crate::hooks::Hooks;
use crate::instr::Instr;
use crate::router::{SessionRegistry, SessionTable};
use crate::storage::{Storage, Stores};

pub struct Ctx {
    pub config: Arc<Config>,
    /// The pool itself (admin, probes, shutdown); modules use `stores`.
    pub storage: Storage,
    /// Storage per domain, as modules see it.
    pub stores: Stores,
    /// Where sessions are (this node's table; a cluster backend later).
    pub sessions: Arc<dyn SessionRegistry>,
    /// What the configured modules registered.
    pub hooks: Hooks,
    pub throttle: Throttle,
    /// Key for the fake SCRAM credentials of unknown users: kept in the
    /// data directory, so a restart does not tell them apart from real ones.
    pub secret: [u8; 32],
    /// Cancelled on SIGINT/SIGTERM.
    pub shutdown: CancellationToken,
    /// Session tasks, awaited at shutdown.
    pub tasks: TaskTracker,
    pub started: std::time::SystemTime,
    pub instr: Instr,
    /// Live traces (`osprey trace`).
    pub live: Arc<crate::live::Live>,
    /// The latest snapshot of every series (`osprey top`).
    pub snapshots: crate::snapshots::Snapshots,
    /// Caps on open client connections.
    pub admission: Arc<super::admission::Admission>,
    /// Each TLS c2s listener's certificate by listener name (`c2s_5222`),
    /// shared with the listener: reloading one here changes what its new
    /// handshakes serve.
    pub certificates: Vec<(String, Arc<crate::tls::ReloadableIdentity>)>,
    /// This node's part in a cluster (`[cluster]`); its registry is then
    /// `sessions`.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
}

impl Ctx {
    pub fn new(
        config: Arc<Config>,
        storage: Storage,
        mut hooks: Hooks,
        instr: Instr,
        live: Arc<crate::live::Live>,
        admission: Arc<super::admission::Admission>,
    ) -> Ctx {
        let throttle = Throttle::from_config(&config.auth.throttle);
        hooks.resolve(&instr);
        Ctx {
            config,
            stores: Stores::sql(&storage),
            storage,
            sessions: Arc::new(SessionTable::new()),
            hooks,
            throttle,
            secret: rand::random(),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            started: std::time::SystemTime::now(),
            instr,
            live,
            snapshots: crate::snapshots::channel(),
            admission,
            certificates: Vec::new(),
            cluster: None,
        }
    }

    /// Whether this server serves the domain.
    pub fn serves(&self, domain: &str) -> bool {
        self.config.general.hosts.iter().any(|h| h == domain)
    }
}
