//! `osprey session|stanza|roster|offline|stats|server …`: mongooseimctl's
//! categories, run by a live gateway through its admin REST API (they need
//! the running server: sessions and routing live in it). `osprey account …`
//! stays on storage, so that it works with the server down.
//!
//! Each command prints readable lines by default and the API's JSON reply
//! as is with `--json`. A REST error maps onto the exit codes of
//! [`super`]: 400 → 2, 404 → 4, 409 → 3, anything else → 1.

use std::io::Read;

use clap::{Args, Subcommand};
use osprey_tui::client::encode_segment;
use serde_json::{json, Value};

use super::trace::{api_call, Target};
use super::Failure;
use crate::config::Config;

/// Where the API is and how to print its replies (shared by every command).
#[derive(Args)]
pub struct Remote {
    #[command(flatten)]
    target: Target,
    /// Print the API's JSON reply as is.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Sessions of a running gateway (through its admin API): list, count, kick.
    Session {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        command: SessionCommand,
    },
    /// Send stanzas through a running gateway (through its admin API).
    Stanza {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        command: StanzaCommand,
    },
    /// A user's roster, changes pushed to its online resources (through the
    /// admin API of a running gateway).
    Roster {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        command: RosterCommand,
    },
    /// A user's offline messages (through the admin API of a running gateway).
    Offline {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        command: OfflineCommand,
    },
    /// Per-host statistics: accounts, online sessions and users, stanzas in
    /// and out (through the admin API of a running gateway).
    Stats {
        #[command(flatten)]
        remote: Remote,
        /// Only this host.
        #[arg(long)]
        host: Option<String>,
    },
    /// The running server (through its admin API).
    Server {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        command: ServerCommand,
    },
    /// The cluster as the running node sees it (through its admin API).
    Cluster {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        command: ClusterCommand,
    },
}

#[derive(Subcommand)]
pub enum ClusterCommand {
    /// Nodes, their heartbeats and sessions, NATS state.
    Status,
    /// Every session in the cluster, with its node (from this node's
    /// replica of the registry), sorted by full JID.
    Sessions {
        /// A case-insensitive substring of the full JID or the node name.
        #[arg(long)]
        filter: Option<String>,
        #[arg(long)]
        offset: Option<usize>,
        /// At most this many (the API's default 100, at most 10000).
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Leave the cluster and stop: no new connections, sessions closed
    /// with `system-shutdown` (clients reconnect to another node), queued
    /// stanzas delivered or stored, then the node exits (as SIGTERM).
    Leave,
}

#[derive(Subcommand)]
pub enum SessionCommand {
    /// This node's sessions, sorted by full JID.
    List {
        /// A case-insensitive substring of the full JID or the peer address.
        #[arg(long)]
        filter: Option<String>,
        /// Only this host.
        #[arg(long)]
        host: Option<String>,
        #[arg(long)]
        offset: Option<usize>,
        /// At most this many (the API's default 100, at most 10000).
        #[arg(long)]
        limit: Option<usize>,
    },
    /// How many sessions (match).
    Count {
        #[arg(long)]
        filter: Option<String>,
        #[arg(long)]
        host: Option<String>,
    },
    /// Close sessions with a stream error: by default undefined-condition
    /// with <kicked xmlns='urn:osprey:admin:0'/>.
    Kick {
        /// A full JID (one session), a bare JID (all its sessions) or a
        /// session id.
        target: String,
        /// Sent as the stream error's text.
        #[arg(long)]
        reason: Option<String>,
        /// Another RFC 6120 stream error condition, e.g. policy-violation.
        #[arg(long)]
        condition: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum StanzaCommand {
    /// A chat message from a local user (or a served host: the server).
    SendMessage {
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        #[arg(long)]
        body: String,
    },
    /// Any stanza with from and to, routed as given.
    Send {
        /// The stanza's XML, or `-` to read it from standard input.
        stanza: String,
    },
}

#[derive(Subcommand)]
pub enum RosterCommand {
    /// The user's roster.
    List {
        /// user@host
        user: String,
    },
    /// Add or change a contact.
    Add {
        /// user@host
        user: String,
        /// The contact's JID.
        contact: String,
        /// The contact's display name.
        #[arg(long)]
        name: Option<String>,
        /// A group; repeat for several.
        #[arg(long = "group")]
        groups: Vec<String>,
        /// none (default), to, from or both.
        #[arg(long)]
        subscription: Option<String>,
    },
    /// Remove a contact.
    Remove {
        /// user@host
        user: String,
        contact: String,
    },
}

#[derive(Subcommand)]
pub enum OfflineCommand {
    /// How many messages are stored.
    Count { user: String },
    /// The stored messages, oldest first (they stay stored).
    List {
        user: String,
        #[arg(long)]
        offset: Option<usize>,
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Delete every stored message.
    Purge { user: String },
}

#[derive(Subcommand)]
pub enum ServerCommand {
    /// Version, uptime, hosts, sessions, listeners, storage.
    Status,
    /// Read every TLS listener's certificate and key files again (new
    /// handshakes use them; open connections keep theirs). `kill -HUP`
    /// does the same.
    ReloadCertificates,
}

pub async fn run(cmd: AdminCommand, config: &Config) -> Result<(), Failure> {
    match cmd {
        AdminCommand::Session { remote, command } => session(command, &remote, config).await,
        AdminCommand::Stanza { remote, command } => stanza(command, &remote, config).await,
        AdminCommand::Roster { remote, command } => roster(command, &remote, config).await,
        AdminCommand::Offline { remote, command } => offline(command, &remote, config).await,
        AdminCommand::Stats { remote, host } => {
            let path = format!("/api/stats{}", query(&[("host", host.as_deref())]));
            let v = call(&remote, config, "GET", &path, None).await?;
            if !remote.json {
                print_stats(&v);
            }
            Ok(())
        }
        AdminCommand::Server {
            remote,
            command: ServerCommand::ReloadCertificates,
        } => {
            let v = call(&remote, config, "POST", "/api/certificates/reload", None).await?;
            if !remote.json {
                for c in v.as_array().into_iter().flatten() {
                    println!(
                        "{}  {}  until {}  {}",
                        c["listener"].as_str().unwrap_or("?"),
                        c["certfile"].as_str().unwrap_or("?"),
                        c["not_after_rfc3339"].as_str().unwrap_or("?"),
                        if c["changed"] == true {
                            "changed"
                        } else {
                            "unchanged"
                        }
                    );
                }
            }
            Ok(())
        }
        AdminCommand::Cluster {
            remote,
            command: ClusterCommand::Status,
        } => {
            let v = call(&remote, config, "GET", "/api/cluster", None).await?;
            if !remote.json {
                print_cluster(&v);
            }
            Ok(())
        }
        AdminCommand::Cluster {
            remote,
            command:
                ClusterCommand::Sessions {
                    filter,
                    offset,
                    limit,
                },
        } => {
            let q = query(&[
                ("filter", filter.as_deref()),
                ("offset", offset.map(|o| o.to_string()).as_deref()),
                ("limit", limit.map(|l| l.to_string()).as_deref()),
            ]);
            let v = call(
                &remote,
                config,
                "GET",
                &format!("/api/cluster/sessions{q}"),
                None,
            )
            .await?;
            if !remote.json {
                print_cluster_sessions(&v);
            }
            Ok(())
        }
        AdminCommand::Cluster {
            remote,
            command: ClusterCommand::Leave,
        } => {
            let v = call(&remote, config, "POST", "/api/cluster/leave", None).await?;
            if !remote.json {
                println!(
                    "{} is leaving: sessions closing, then it exits",
                    v["node"].as_str().unwrap_or("?")
                );
            }
            Ok(())
        }
        AdminCommand::Server {
            remote,
            command: ServerCommand::Status,
        } => {
            let v = call(&remote, config, "GET", "/api/status", None).await?;
            if !remote.json {
                print_status(&v);
            }
            Ok(())
        }
    }
}

/// One API call; with `--json` the reply is printed here, as is.
async fn call(
    remote: &Remote,
    config: &Config,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<Value, Failure> {
    let v = api_call(&remote.target, config, method, path, body).await?;
    if remote.json {
        println!("{v}");
    }
    Ok(v)
}

async fn session(cmd: SessionCommand, remote: &Remote, config: &Config) -> Result<(), Failure> {
    match cmd {
        SessionCommand::List {
            filter,
            host,
            offset,
            limit,
        } => {
            let q = query(&[
                ("filter", filter.as_deref()),
                ("host", host.as_deref()),
                ("offset", offset.map(|o| o.to_string()).as_deref()),
                ("limit", limit.map(|l| l.to_string()).as_deref()),
            ]);
            let v = call(remote, config, "GET", &format!("/api/sessions{q}"), None).await?;
            if !remote.json {
                let items = v["items"].as_array().cloned().unwrap_or_default();
                println!(
                    "{:<40} {:>8} {:<22} {:<4} {:>9} {:>7} {:>7} STATE",
                    "JID", "SESSION", "ADDRESS", "TLS", "CONNECTED", "IN", "OUT"
                );
                for s in &items {
                    println!(
                        "{:<40} {:>8} {:<22} {:<4} {:>8}s {:>7} {:>7} {}",
                        s["jid"].as_str().unwrap_or(""),
                        num(&s["session_id"]),
                        s["address"].as_str().unwrap_or(""),
                        if s["tls"].as_bool() == Some(true) {
                            "yes"
                        } else {
                            "no"
                        },
                        num(&s["connected_seconds"]),
                        num(&s["stanzas_in"]),
                        num(&s["stanzas_out"]),
                        s["state"].as_str().unwrap_or("")
                    );
                }
                // On stderr: a pipe into `wc -l` or `cut` sees sessions only.
                eprintln!("{} of {} sessions", items.len(), v["total"]);
            }
        }
        SessionCommand::Count { filter, host } => {
            let q = query(&[("filter", filter.as_deref()), ("host", host.as_deref())]);
            let v = call(
                remote,
                config,
                "GET",
                &format!("/api/sessions/count{q}"),
                None,
            )
            .await?;
            if !remote.json {
                println!("{}", v["count"]);
            }
        }
        SessionCommand::Kick {
            target,
            reason,
            condition,
        } => {
            if target.is_empty() {
                return Err(Failure::new(2, "the target is empty"));
            }
            let q = query(&[
                ("reason", reason.as_deref()),
                ("condition", condition.as_deref()),
            ]);
            let path = format!("/api/sessions/{}{q}", encode_segment(&target));
            let v = call(remote, config, "DELETE", &path, None).await?;
            if !remote.json {
                let ids: Vec<String> = v["sessions"]
                    .as_array()
                    .map(|a| a.iter().map(Value::to_string).collect())
                    .unwrap_or_default();
                println!(
                    "kicked {} session(s) with {}: {}",
                    v["kicked"],
                    v["condition"].as_str().unwrap_or("?"),
                    ids.join(" ")
                );
            }
        }
    }
    Ok(())
}

async fn stanza(cmd: StanzaCommand, remote: &Remote, config: &Config) -> Result<(), Failure> {
    let (path, body) = match cmd {
        StanzaCommand::SendMessage { from, to, body } => (
            "/api/stanzas/message",
            json!({ "from": from, "to": to, "body": body }),
        ),
        StanzaCommand::Send { stanza } => {
            let xml = if stanza == "-" {
                let mut s = String::new();
                std::io::stdin()
                    .read_to_string(&mut s)
                    .map_err(|e| Failure::new(1, format!("reading the stanza: {e}")))?;
                s
            } else {
                stanza
            };
            if xml.trim().is_empty() {
                return Err(Failure::new(2, "the stanza is empty"));
            }
            ("/api/stanzas", json!({ "stanza": xml }))
        }
    };
    let v = call(remote, config, "POST", path, Some(body)).await?;
    if !remote.json {
        let id = v["id"].as_str().unwrap_or("");
        let id = if id.is_empty() {
            String::new()
        } else {
            format!(" (id {id})")
        };
        match v["outcome"].as_str().unwrap_or("?") {
            "delivered" => println!("delivered to {} session(s){id}", v["sessions"]),
            "offline" => println!("stored offline{id}"),
            other => println!("{other}{id}"),
        }
    }
    Ok(())
}

async fn roster(cmd: RosterCommand, remote: &Remote, config: &Config) -> Result<(), Failure> {
    match cmd {
        RosterCommand::List { user } => {
            let path = format!("/api/roster/{}", encode_segment(&user));
            let v = call(remote, config, "GET", &path, None).await?;
            if !remote.json {
                println!(
                    "{:<40} {:<12} {:<20} GROUPS",
                    "CONTACT", "SUBSCRIPTION", "NAME"
                );
                for i in v.as_array().cloned().unwrap_or_default() {
                    let sub = format!(
                        "{}{}",
                        i["subscription"].as_str().unwrap_or(""),
                        if i["ask"].as_bool() == Some(true) {
                            "+ask"
                        } else {
                            ""
                        }
                    );
                    println!(
                        "{:<40} {:<12} {:<20} {}",
                        i["jid"].as_str().unwrap_or(""),
                        sub,
                        i["name"].as_str().unwrap_or("-"),
                        strings(&i["groups"]).join(", ")
                    );
                }
            }
        }
        RosterCommand::Add {
            user,
            contact,
            name,
            groups,
            subscription,
        } => {
            let path = format!("/api/roster/{}", encode_segment(&user));
            let body = json!({
                "contact": contact, "name": name, "groups": groups, "subscription": subscription,
            });
            let v = call(remote, config, "POST", &path, Some(body)).await?;
            if !remote.json {
                println!(
                    "{} in {user}'s roster (subscription {})",
                    v["jid"].as_str().unwrap_or(&contact),
                    v["subscription"].as_str().unwrap_or("?")
                );
            }
        }
        RosterCommand::Remove { user, contact } => {
            let path = format!(
                "/api/roster/{}/{}",
                encode_segment(&user),
                encode_segment(&contact)
            );
            let v = call(remote, config, "DELETE", &path, None).await?;
            if !remote.json {
                println!(
                    "removed {} from {user}'s roster",
                    v["removed"].as_str().unwrap_or(&contact)
                );
            }
        }
    }
    Ok(())
}

async fn offline(cmd: OfflineCommand, remote: &Remote, config: &Config) -> Result<(), Failure> {
    match cmd {
        OfflineCommand::Count { user } => {
            let path = format!("/api/offline/{}/count", encode_segment(&user));
            let v = call(remote, config, "GET", &path, None).await?;
            if !remote.json {
                println!("{}", v["count"]);
            }
        }
        OfflineCommand::List {
            user,
            offset,
            limit,
        } => {
            let q = query(&[
                ("offset", offset.map(|o| o.to_string()).as_deref()),
                ("limit", limit.map(|l| l.to_string()).as_deref()),
            ]);
            let path = format!("/api/offline/{}{q}", encode_segment(&user));
            let v = call(remote, config, "GET", &path, None).await?;
            if !remote.json {
                let items = v["items"].as_array().cloned().unwrap_or_default();
                for m in &items {
                    println!(
                        "{:>8} {} {}",
                        num(&m["id"]),
                        m["stored_at_ms"]
                            .as_i64()
                            .map(rfc3339_ms)
                            .unwrap_or_default(),
                        m["stanza"].as_str().unwrap_or("")
                    );
                }
                eprintln!("{} of {} messages", items.len(), v["total"]);
            }
        }
        OfflineCommand::Purge { user } => {
            let path = format!("/api/offline/{}", encode_segment(&user));
            let v = call(remote, config, "DELETE", &path, None).await?;
            if !remote.json {
                println!("purged {} message(s) of {user}", v["purged"]);
            }
        }
    }
    Ok(())
}

fn print_stats(v: &Value) {
    println!(
        "{:<30} {:>10} {:>9} {:>7} {:>12} {:>12}",
        "HOST", "REGISTERED", "SESSIONS", "USERS", "STANZAS IN", "STANZAS OUT"
    );
    for h in v.as_array().cloned().unwrap_or_default() {
        println!(
            "{:<30} {:>10} {:>9} {:>7} {:>12} {:>12}",
            h["host"].as_str().unwrap_or(""),
            num(&h["registered_users"]),
            num(&h["online_sessions"]),
            num(&h["online_users"]),
            num(&h["stanzas_in"]),
            num(&h["stanzas_out"])
        );
    }
}

/// A number of the reply, as text: a JSON value ignores width and
/// alignment in `format!`, a string does not.
fn num(v: &Value) -> String {
    match v {
        Value::Number(n) => n.to_string(),
        _ => "-".to_string(),
    }
}

fn print_cluster(v: &Value) {
    println!(
        "node {}  cluster {}  nats {}  sessions here {}, elsewhere {}",
        v["node"].as_str().unwrap_or("?"),
        v["cluster"].as_str().unwrap_or("?"),
        v["nats"].as_str().unwrap_or("?"),
        v["local_sessions"],
        v["remote_sessions"]
    );
    println!(
        "{:<20} {:<22} {:>6} {:>10} {:>9} {:>9} {:>8}",
        "NODE", "ADDRESS", "ALIVE", "HEARTBEAT", "SESSIONS", "LAG", "UNACKED"
    );
    for n in v["nodes"].as_array().into_iter().flatten() {
        // The lag: how long its stanzas take to get here (none seen: -).
        let lag = n["transit_ms"]
            .as_f64()
            .map_or("-".to_string(), |ms| format!("{ms:.2}ms"));
        println!(
            "{:<20} {:<22} {:>6} {:>8}ms {:>9} {:>9} {:>8}",
            n["node"].as_str().unwrap_or("?"),
            n["address"].as_str().unwrap_or("?"),
            if n["alive"] == true { "yes" } else { "no" },
            n["heartbeat_age_ms"],
            n["sessions"],
            lag,
            n["unacked"]
        );
    }
}

fn print_cluster_sessions(v: &Value) {
    println!(
        "{:<40} {:<20} {:>8} {:<11} {:>8}",
        "JID", "NODE", "SESSION", "PRESENCE", "PRIORITY"
    );
    let items = v["items"].as_array().map_or(&[][..], Vec::as_slice);
    for s in items {
        println!(
            "{:<40} {:<20} {:>8} {:<11} {:>8}",
            s["jid"].as_str().unwrap_or(""),
            s["node"].as_str().unwrap_or(""),
            num(&s["session_id"]),
            if s["available"] == true {
                "available"
            } else {
                "unavailable"
            },
            num(&s["priority"])
        );
    }
    println!("{} of {} sessions", items.len(), num(&v["total"]));
}

fn print_status(v: &Value) {
    let list = |v: &Value| strings(v).join(", ");
    println!("version   {}", v["version"].as_str().unwrap_or("?"));
    println!("uptime    {}s", v["uptime_seconds"]);
    println!("hosts     {}", list(&v["hosts"]));
    println!("sessions  {} ({} users)", v["sessions"], v["users"]);
    println!("storage   {}", v["storage"].as_str().unwrap_or("?"));
    if v["listeners"].is_object() {
        println!("c2s       {}", list(&v["listeners"]["c2s"]));
        println!("http      {}", list(&v["listeners"]["http"]));
    }
    println!("handlers  {}", list(&v["handlers"]));
}

/// The strings of a JSON array (others skipped: the reply is the server's).
fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// `?k=v&…` of the given pairs, percent-encoded; empty when none is set.
fn query(pairs: &[(&str, Option<&str>)]) -> String {
    let set: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k}={}", encode_segment(v))))
        .collect();
    if set.is_empty() {
        String::new()
    } else {
        format!("?{}", set.join("&"))
    }
}

/// Unix milliseconds as an RFC 3339 UTC time (the raw number if out of range).
fn rfc3339_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn queries_are_encoded_and_skip_unset_keys() {
        assert_eq!(super::query(&[("a", None)]), "");
        assert_eq!(
            super::query(&[
                ("filter", Some("a b/c")),
                ("host", None),
                ("limit", Some("5"))
            ]),
            "?filter=a%20b%2Fc&limit=5"
        );
    }

    #[test]
    fn timestamps() {
        assert_eq!(super::rfc3339_ms(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            super::rfc3339_ms(1_709_210_096_789),
            "2024-02-29T12:34:56.789Z"
        );
    }
}
