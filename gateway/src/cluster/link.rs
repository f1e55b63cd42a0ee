//! The NATS side: one connection per node; a publisher task that sends
//! this node's registry changes and directed stanzas in the order they were
//! queued (so per-sender order holds across nodes), and two subscribers:
//! the registry subject (others' changes) and this node's own subject
//! (stanzas for its sessions).
//!
//! NATS down: the client reconnects by itself (forever); meanwhile the
//! bounded queue fills and stanzas that cannot be queued come back to the
//! router as undeliverable (a message is stored offline). On reconnect the
//! node says hello again, and every node answers with a snapshot.

use std::sync::Arc;

use futures_util::StreamExt;
use tokio::sync::oneshot;
use tracing::Instrument;

use super::registry::Outgoing;
use super::wire::{self, Directed, RegistryMsg};
use super::Cluster;
use crate::config::Cluster as ClusterConfig;
use crate::errors::{StreamCondition, StreamError};
use crate::events as ev;
use crate::jid::Jid;
use crate::router::{self, Receipt};
use crate::server::Ctx;

/// Options from the config; connects in the background (the node starts
/// without NATS and joins when it comes).
pub async fn connect(
    config: &ClusterConfig,
    cluster: Arc<Cluster>,
) -> Result<async_nats::Client, async_nats::ConnectError> {
    let mut opts = async_nats::ConnectOptions::new()
        .name(format!("osprey {}", config.node))
        .retry_on_initial_connect()
        .max_reconnects(None)
        .event_callback(move |event| {
            let cluster = cluster.clone();
            async move {
                match event {
                    async_nats::Event::Connected => {
                        tracing::info!("cluster: NATS connected");
                        // Possibly after a partition: everyone resyncs.
                        let r = &cluster.registry;
                        r.try_queue(Outgoing::Registry(r.hello()));
                        r.try_queue(Outgoing::Registry(r.snapshot()));
                    }
                    async_nats::Event::Disconnected => {
                        tracing::warn!("cluster: NATS disconnected; routing to other nodes waits")
                    }
                    other => tracing::debug!(event = %other, "cluster: NATS event"),
                }
            }
        });
    if let Some(creds) = &config.nats_credentials {
        opts = opts.credentials_file(creds).await.map_err(|e| {
            tracing::error!(error = %e, path = %creds.display(), "cluster: NATS credentials unreadable");
            async_nats::ConnectError::from(async_nats::ConnectErrorKind::Io)
        })?;
    }
    if let Some(ca) = &config.nats_ca {
        opts = opts.add_root_certificates(ca.clone()).require_tls(true);
    }
    let addrs: Vec<async_nats::ServerAddr> =
        config.nats.iter().filter_map(|u| u.parse().ok()).collect();
    opts.connect(addrs).await
}

/// Starts the publisher and the two subscribers.
pub async fn spawn(ctx: Arc<Ctx>, cluster: Arc<Cluster>, client: async_nats::Client) {
    let name = cluster.config.name.clone();
    let node = cluster.config.node.clone();
    let Some(out) = cluster.registry.take_outgoing() else {
        return;
    };
    // Subscriptions first: the hello's answers must find them.
    let registry_sub = client.subscribe(wire::registry_subject(&name)).await;
    let node_sub = client.subscribe(wire::node_subject(&name, &node)).await;
    let (Ok(mut registry_sub), Ok(mut node_sub)) = (registry_sub, node_sub) else {
        tracing::error!("cluster: NATS subscriptions failed; this node routes locally only");
        return;
    };
    let pub_client = client.clone();
    let pub_name = name.clone();
    let out_ev = ctx.instr.registry.resolve(&ev::CLUSTER_STANZA_OUT, &[]);
    tokio::spawn(publisher(out, pub_client, pub_name, out_ev));

    let reg_ctx = ctx.clone();
    let reg_cluster = cluster.clone();
    tokio::spawn(async move {
        while let Some(m) = registry_sub.next().await {
            let Ok(msg) = serde_json::from_slice::<RegistryMsg>(&m.payload) else {
                tracing::warn!("cluster: an unreadable registry message");
                continue;
            };
            // A snapshot of another node: counted once applied, with the
            // time from its taking there to its applied state here.
            let sync = match &msg {
                RegistryMsg::Snapshot {
                    node, sessions, ts, ..
                } if *node != reg_cluster.config.node => Some((*ts, sessions.len())),
                _ => None,
            };
            let (reply, gone) = reg_cluster.registry.apply(msg);
            if let Some((ts, sessions)) = sync {
                let took = (super::registry::now_us() - ts).max(0) as f64 / 1e6;
                reg_ctx.instr.emit(
                    &ev::CLUSTER_SYNC,
                    &[],
                    &[
                        ("count", 1.0),
                        ("sessions", sessions as f64),
                        ("seconds", took),
                    ],
                );
            }
            if let Some(reply) = reply {
                reg_cluster.registry.try_queue(Outgoing::Registry(reply));
            }
            if !gone.is_empty() {
                super::sessions_gone(&reg_ctx, &reg_cluster, gone).await;
            }
            super::place_orphans(&reg_ctx, &reg_cluster).await;
        }
    });

    let in_ev = ["delivered", "offline", "dropped"]
        .map(|o| ctx.instr.registry.resolve(&ev::CLUSTER_STANZA_IN, &[o]));
    let held_ev = ctx
        .instr
        .registry
        .resolve(&ev::LIMIT_HIT, &["cluster_held"]);
    let ack_cluster = cluster.clone();
    tokio::spawn(async move {
        let registry = &ack_cluster.registry;
        // Acks go out every ACK_EVERY stanzas done or ACK_AFTER, whichever
        // first, so they cost little under load.
        let mut tick = tokio::time::interval(ACK_AFTER);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let m = tokio::select! {
                m = node_sub.next() => match m {
                    Some(m) => m,
                    None => break,
                },
                _ = tick.tick() => {
                    registry.ack_due();
                    let given_up = registry.take_given_up();
                    if given_up > 0 {
                        tracing::warn!(stanzas = given_up, "cluster: stanzas held by stalled sessions acknowledged anyway (too many held)");
                        held_ev.emit(&[("count", given_up as f64)], &osprey_instrument::Meta::NONE);
                    }
                    continue;
                }
            };
            // Unreadable input is dropped, logged and counted as such.
            let dropped = || {
                in_ev[Outcome::Dropped as usize]
                    .emit(&[("count", 1.0)], &osprey_instrument::Meta::NONE)
            };
            // One NATS message comes from one node: looked up once.
            let now = std::time::Instant::now();
            let mut inbound: Option<Arc<super::inbound::Inbound>> = None;
            for frame in wire::frames(&m.payload) {
                let Some(frame) = frame else {
                    tracing::warn!("cluster: a damaged batch from another node");
                    dropped();
                    break;
                };
                let Some((header, xml)) = wire::decode_directed(frame) else {
                    tracing::warn!("cluster: an unreadable stanza from another node");
                    dropped();
                    continue;
                };
                match header {
                    Directed::Ack { from, upto, except } => registry.acked(&from, upto, &except),
                    Directed::Deliver {
                        full,
                        tp,
                        ts,
                        from,
                        seq,
                        ..
                    } => {
                        let span = match tp.as_deref() {
                            Some(tp) => super::trace::receive_span(tp, &full),
                            None => tracing::Span::none(),
                        };
                        let transit_us = (super::registry::now_us() - ts).max(0);
                        // Acknowledged once it is done: written out or kept.
                        let receipt = if seq > 0 {
                            let i = match inbound.take() {
                                Some(i) if i.from() == from => i,
                                _ => registry.inbound_of(&from),
                            };
                            let r = i.received(seq, transit_us, now);
                            inbound = Some(i);
                            r
                        } else {
                            None
                        };
                        let outcome = deliver_here(&ctx, &full, xml, receipt)
                            .instrument(span)
                            .await;
                        in_ev[outcome as usize].emit(
                            &[("count", 1.0), ("seconds", transit_us as f64 / 1e6)],
                            &osprey_instrument::Meta::NONE,
                        );
                    }
                    Directed::Close {
                        id,
                        condition,
                        text,
                        app,
                    } => {
                        if let Some(h) = ctx.sessions.local_by_id(id) {
                            h.close(StreamError {
                                condition: StreamCondition::from_wire(&condition),
                                text,
                                // Written out as it is: one that is not
                                // well-formed would break the client's stream.
                                app: app.filter(|a| roxmltree::Document::parse(a).is_ok()),
                            });
                        }
                    }
                }
            }
        }
    });

    // Announce: who is there answers with a snapshot.
    let r = &cluster.registry;
    r.try_queue(Outgoing::Registry(r.hello()));
    r.try_queue(Outgoing::Registry(r.snapshot()));
}

/// The most queued items one round of the publisher takes.
const GATHER: usize = 256;

/// Publishes what the node queued, in order. Each round takes everything
/// queued by the tasks of the current wake-up (it yields once first, so
/// that they run), and the stanzas of a round for one node travel as one
/// NATS message: under load, one write, one nats-server wake-up and one
/// wake-up of the receiving node carry many stanzas, at no added delay.
async fn publisher(
    mut out: tokio::sync::mpsc::Receiver<Outgoing>,
    client: async_nats::Client,
    name: String,
    out_ev: osprey_instrument::Labelled,
) {
    let registry_subject = async_nats::Subject::from(wire::registry_subject(&name));
    let mut subjects: std::collections::HashMap<String, async_nats::Subject> = Default::default();
    // Per node, in the order first seen this round.
    let mut batches: Vec<(String, wire::Batch)> = Vec::new();
    let mut items = Vec::with_capacity(GATHER);
    loop {
        match out.recv().await {
            Some(item) => items.push(item),
            None => return,
        }
        tokio::task::yield_now().await;
        while items.len() < GATHER {
            match out.try_recv() {
                Ok(item) => items.push(item),
                Err(_) => break,
            }
        }
        for item in items.drain(..) {
            match item {
                Outgoing::Directed { node, payload } => {
                    out_ev.emit(
                        &[("count", 1.0), ("bytes", payload.len() as f64)],
                        &osprey_instrument::Meta::NONE,
                    );
                    let i = match batches.iter().position(|(n, _)| *n == node) {
                        Some(i) => i,
                        None => {
                            batches.push((node, wire::Batch::default()));
                            batches.len() - 1
                        }
                    };
                    let (node, batch) = &mut batches[i];
                    if !batch.fits(&payload) {
                        let subject = subject_of(&mut subjects, &name, node);
                        send(&client, subject, batch.take()).await;
                    }
                    batch.push(payload);
                }
                // Everything queued before goes first: order is kept.
                Outgoing::Registry(msg) => {
                    send_batches(&client, &mut subjects, &name, &mut batches).await;
                    match serde_json::to_vec(&msg) {
                        Ok(json) => send(&client, registry_subject.clone(), json).await,
                        Err(e) => {
                            tracing::warn!(error = %e, "cluster: registry message not encoded")
                        }
                    }
                }
                Outgoing::Flush(done) => {
                    send_batches(&client, &mut subjects, &name, &mut batches).await;
                    if let Err(e) = client.flush().await {
                        tracing::warn!(error = %e, "cluster: NATS flush failed");
                    }
                    let _ = done.send(());
                }
            }
        }
        send_batches(&client, &mut subjects, &name, &mut batches).await;
    }
}

async fn send(client: &async_nats::Client, subject: async_nats::Subject, payload: Vec<u8>) {
    if let Err(e) = client.publish(subject, payload.into()).await {
        tracing::warn!(error = %e, "cluster: NATS publish failed");
    }
}

/// Publishes this round's batches, emptying the list.
async fn send_batches(
    client: &async_nats::Client,
    subjects: &mut std::collections::HashMap<String, async_nats::Subject>,
    cluster: &str,
    batches: &mut Vec<(String, wire::Batch)>,
) {
    for (node, mut batch) in batches.drain(..) {
        send(client, subject_of(subjects, cluster, &node), batch.take()).await;
    }
}

/// A node's subject, made once.
fn subject_of(
    cache: &mut std::collections::HashMap<String, async_nats::Subject>,
    cluster: &str,
    node: &str,
) -> async_nats::Subject {
    if let Some(s) = cache.get(node) {
        return s.clone();
    }
    let s = async_nats::Subject::from(wire::node_subject(cluster, node));
    cache.insert(node.to_string(), s.clone());
    s
}

/// How long a leaving node waits without a stanza from another node
/// before it says `Down`, and the most it waits in all.
const LEAVE_QUIET: std::time::Duration = std::time::Duration::from_millis(200);
const LEAVE_QUIET_MAX: std::time::Duration = std::time::Duration::from_secs(3);
/// The longest a done stanza waits for its acknowledgement.
const ACK_AFTER: std::time::Duration = std::time::Duration::from_millis(50);

/// What became of a stanza from another node (the `outcome` label).
#[derive(Clone, Copy)]
enum Outcome {
    Delivered = 0,
    Offline = 1,
    Dropped = 2,
}

/// A stanza from another node for `full`: to that session here, or (gone
/// meanwhile) kept offline when it is a message that may be.
async fn deliver_here(ctx: &Ctx, full: &str, xml: &str, mut receipt: Option<Receipt>) -> Outcome {
    // `full` is a session's JID as a node's registry has it, prepared
    // already: looked up as it is (stringprep only on the rare way below).
    let handle = full
        .split_once('/')
        .and_then(|(bare, resource)| ctx.sessions.local_full(bare, resource));
    let xml = match handle {
        Some(h) => match router::deliver_local_with(ctx, &h, xml.to_string(), &mut receipt) {
            Ok(()) => return Outcome::Delivered,
            Err(router::Undelivered(back)) => back,
        },
        None => xml.to_string(),
    };
    let Ok(jid) = Jid::parse(full) else {
        return Outcome::Dropped;
    };
    if router::redeliver_or_keep(ctx, &jid.to_bare(), &xml).await {
        Outcome::Offline
    } else {
        Outcome::Dropped
    }
}

/// Publishes `Down`, then waits until NATS has everything queued.
///
/// This node's sessions are closed by now and their `Leave`s published,
/// but the others may still have stanzas for them on the way. It waits
/// for that stream to go quiet (each such stanza is stored or placed
/// again here) and then says in `Down` what it handled, so the others
/// place again only what never reached it: no duplicates.
pub async fn leave(cluster: &Cluster) {
    let r = &cluster.registry;
    let deadline = tokio::time::Instant::now() + LEAVE_QUIET_MAX;
    while r.quiet_for_ms() < LEAVE_QUIET.as_millis() as i64
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    r.try_queue(Outgoing::Registry(RegistryMsg::Down {
        node: cluster.config.node.clone(),
        acks: r.all_done(),
    }));
    let (tx, rx) = oneshot::channel();
    if r.try_queue(Outgoing::Flush(tx)) {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), rx).await;
    }
}
