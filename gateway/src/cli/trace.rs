//! `osprey trace …`: live tracing through the admin API of a running
//! gateway (`load` works on a dump file, offline).

use std::path::PathBuf;

use clap::{Args, Subcommand};
use osprey_instrument::live::{dump, query, Record};
use osprey_tui::client::{encode_segment, ApiError};
use serde_json::Value;

use super::Failure;
use crate::config::Config;

#[derive(Args)]
pub struct Target {
    /// The admin API, e.g. http://127.0.0.1:9091 (default: this
    /// configuration's first HTTP listener).
    #[arg(long, global = true)]
    url: Option<String>,
    /// The admin token (default: `[admin] token`, else data_dir/admin.token).
    #[arg(long, global = true)]
    token: Option<String>,
}

#[derive(Subcommand)]
pub enum TraceCommand {
    /// Start a trace (one filter).
    Start {
        /// A JID; a bare JID follows every resource.
        #[arg(long)]
        jid: Option<String>,
        #[arg(long)]
        session: Option<u64>,
        /// A task kind: c2s, router, module, storage.
        #[arg(long)]
        task: Option<String>,
        /// An event name pattern (`*` wildcard).
        #[arg(long)]
        event: Option<String>,
        /// Stop after this many records.
        #[arg(long, default_value_t = 10_000)]
        limit: usize,
        /// Stop after this long: 90s, 5m, 500ms, or seconds.
        #[arg(long, default_value = "60s")]
        duration: String,
        /// Record messages passed between tasks.
        #[arg(long)]
        messages: bool,
        /// Keep stanza payloads (message bodies are redacted otherwise).
        #[arg(long)]
        payload: bool,
    },
    /// All traces, or one.
    Status {
        id: Option<u64>,
    },
    Stop {
        id: u64,
    },
    /// Records, filtered.
    Select {
        id: u64,
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        task: Option<String>,
        #[arg(long)]
        contains: Option<String>,
        #[arg(long, default_value_t = 0)]
        offset: usize,
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Call statistics: count, accumulated and own time.
    Stat {
        id: u64,
        #[arg(long, default_value = "function")]
        by: String,
        #[arg(long, default_value = "acc")]
        sort: String,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// The most expensive repeated call trees.
    Tree {
        id: u64,
        #[arg(long, default_value_t = 10)]
        top: usize,
    },
    /// Everything between each call of NAME and its return.
    Ranges {
        id: u64,
        #[arg(long)]
        call: String,
        /// Calls that never returned.
        #[arg(long)]
        incomplete: bool,
    },
    /// The calls open when record INDEX was taken.
    Traceback {
        id: u64,
        #[arg(long)]
        index: u64,
    },
    /// Save the records (JSON lines) for offline analysis.
    Dump {
        id: u64,
        file: PathBuf,
    },
    /// Read a dump back: summary and call statistics.
    Load {
        file: PathBuf,
        #[arg(long, default_value = "acc")]
        sort: String,
    },
    /// Print records as they are taken, until the trace stops.
    Follow {
        id: u64,
    },
}

pub async fn run(cmd: TraceCommand, target: Target, config: &Config) -> Result<(), Failure> {
    if let TraceCommand::Load { file, sort } = &cmd {
        return load(file, sort);
    }
    let api = Api::new(&target, config)?.client()?;
    match cmd {
        TraceCommand::Start {
            jid,
            session,
            task,
            event,
            limit,
            duration,
            messages,
            payload,
        } => {
            let secs = parse_duration(&duration).ok_or_else(|| {
                Failure::new(
                    2,
                    format!("bad --duration {duration:?}: use 90s, 5m, 500ms or seconds"),
                )
            })?;
            let body = serde_json::json!({
                "jid": jid, "session": session, "task": task, "event": event,
                "limit": limit, "duration_seconds": secs, "messages": messages, "payload": payload,
            });
            let v = api.call("POST", "/api/trace", Some(body)).await?;
            println!("trace {} started: {}", v["id"], v["filter"]);
        }
        TraceCommand::Status { id } => {
            let path = id
                .map(|i| format!("/api/trace/{i}"))
                .unwrap_or("/api/trace".into());
            let v = api.call("GET", &path, None).await?;
            let list = if v.is_array() {
                v.as_array().cloned().unwrap_or_default()
            } else {
                vec![v]
            };
            for t in list {
                println!(
                    "{:>4}  {:<8} {:>7} records  {}  {}",
                    t["id"],
                    if t["running"].as_bool() == Some(true) {
                        "running"
                    } else {
                        "stopped"
                    },
                    t["records"],
                    t["filter"],
                    t["stop_reason"].as_str().unwrap_or("")
                );
            }
        }
        TraceCommand::Stop { id } => {
            let v = api
                .call("DELETE", &format!("/api/trace/{id}"), None)
                .await?;
            println!("trace {id} stopped with {} records", v["records"]);
        }
        TraceCommand::Select {
            id,
            kind,
            task,
            contains,
            offset,
            limit,
        } => {
            let mut q = format!("offset={offset}&limit={limit}");
            for (k, v) in [("kind", kind), ("task", task), ("contains", contains)] {
                if let Some(v) = v {
                    q.push_str(&format!("&{k}={}", encode_segment(&v)));
                }
            }
            let v = api
                .call("GET", &format!("/api/trace/{id}/records?{q}"), None)
                .await?;
            let records: Vec<Record> =
                serde_json::from_value(v["records"].clone()).unwrap_or_default();
            for r in &records {
                print_record(r);
            }
            eprintln!("{} of {} records", records.len(), v["total"]);
        }
        TraceCommand::Stat {
            id,
            by,
            sort,
            limit,
        } => {
            let v = api
                .call(
                    "GET",
                    &format!("/api/trace/{id}/stats?by={by}&sort={sort}&limit={limit}"),
                    None,
                )
                .await?;
            let stats: Vec<query::CallStat> = serde_json::from_value(v).unwrap_or_default();
            print_stats(&stats);
        }
        TraceCommand::Tree { id, top } => {
            let v = api
                .call("GET", &format!("/api/trace/{id}/trees?top={top}"), None)
                .await?;
            println!("{:>7} {:>12}  tree", "count", "acc µs");
            for t in v.as_array().cloned().unwrap_or_default() {
                println!(
                    "{:>7} {:>12}  {}",
                    t["count"],
                    t["acc_us"],
                    t["shape"].as_str().unwrap_or("")
                );
            }
        }
        TraceCommand::Ranges {
            id,
            call,
            incomplete,
        } => {
            let v = api
                .call(
                    "GET",
                    &format!(
                        "/api/trace/{id}/ranges?call={}&incomplete={incomplete}",
                        encode_segment(&call)
                    ),
                    None,
                )
                .await?;
            for (i, range) in v.as_array().cloned().unwrap_or_default().iter().enumerate() {
                println!("--- range {i}");
                let records: Vec<Record> =
                    serde_json::from_value(range.clone()).unwrap_or_default();
                records.iter().for_each(print_record);
            }
        }
        TraceCommand::Traceback { id, index } => {
            let v = api
                .call(
                    "GET",
                    &format!("/api/trace/{id}/traceback?index={index}"),
                    None,
                )
                .await?;
            let records: Vec<Record> = serde_json::from_value(v).unwrap_or_default();
            records.iter().for_each(print_record);
        }
        TraceCommand::Dump { id, file } => {
            let text = api
                .raw("GET", &format!("/api/trace/{id}/dump"), None)
                .await?;
            std::fs::write(&file, text)
                .map_err(|e| Failure::new(1, format!("{}: {e}", file.display())))?;
            // Read it back: what was written must load.
            let (h, records) = dump::read(&file).map_err(|e| Failure::new(1, e.to_string()))?;
            println!(
                "trace {} dumped to {}: {} records",
                h.id,
                file.display(),
                records.len()
            );
        }
        TraceCommand::Follow { id } => api.follow(id).await?,
        TraceCommand::Load { .. } => {}
    }
    Ok(())
}

fn load(file: &std::path::Path, sort: &str) -> Result<(), Failure> {
    let (h, records) = dump::read(file).map_err(|e| Failure::new(2, e.to_string()))?;
    println!(
        "trace {} ({}): {} records{}",
        h.id,
        h.filter,
        records.len(),
        h.stop_reason
            .map(|r| format!(", stopped: {r}"))
            .unwrap_or_default()
    );
    print_stats(&query::call_stat(&records, "function", sort));
    Ok(())
}

fn print_record(r: &Record) {
    let d = r.duration_us.map(|d| format!(" {d}µs")).unwrap_or_default();
    println!(
        "{:>6} {:>16} {:<10} {:<7} {}{} {}",
        r.index,
        r.ts_us,
        r.task.to_string(),
        format!("{:?}", r.kind).to_lowercase(),
        r.name,
        d,
        r.data
    );
}

fn print_stats(stats: &[query::CallStat]) {
    println!(
        "{:<40} {:>8} {:>12} {:>12}",
        "function", "count", "acc µs", "own µs"
    );
    for s in stats {
        println!(
            "{:<40} {:>8} {:>12} {:>12}",
            s.key, s.count, s.acc_us, s.own_us
        );
    }
}

/// `90s`, `5m`, `500ms`, `2h` or plain seconds.
fn parse_duration(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num.trim().parse().ok()?;
    (v > 0.0).then_some(v * mult)
}

struct Api {
    addr: String,
    token: String,
}

/// The admin API's URL and token, as `--url`/`--token` or the
/// configuration give them (shared with `osprey top`).
pub fn endpoint(target: &Target, config: &Config) -> Result<(String, String), Failure> {
    let api = Api::new(target, config)?;
    let url = target
        .url
        .clone()
        .unwrap_or_else(|| format!("http://{}", api.addr));
    Ok((url, api.token))
}

/// One admin API call of another command (e.g. `osprey log level`).
pub async fn api_call(
    target: &Target,
    config: &Config,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<Value, Failure> {
    Api::new(target, config)?
        .client()?
        .call(method, path, body)
        .await
}

impl Api {
    fn new(target: &Target, config: &Config) -> Result<Api, Failure> {
        let data_dir = &config.general.data_dir;
        let addr = match &target.url {
            Some(u) => u
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .to_string(),
            None => crate::server::ListenerFile::read(data_dir)
                .ok()
                .and_then(|l| l.http.first().cloned())
                .or_else(|| {
                    config.listen.http.first().map(|h| {
                        let ip = if h.address.is_unspecified() {
                            "127.0.0.1".parse().unwrap_or(h.address)
                        } else {
                            h.address
                        };
                        std::net::SocketAddr::new(ip, h.port).to_string()
                    })
                })
                .ok_or_else(|| {
                    Failure::new(2, "no admin API: give --url or configure [[listen.http]]")
                })?,
        };
        let token = match (&target.token, &config.admin.token) {
            (Some(t), _) | (None, Some(t)) => t.clone(),
            (None, None) => std::fs::read_to_string(data_dir.join("admin.token"))
                .map(|t| t.trim().to_string())
                .map_err(|e| {
                    Failure::new(
                        2,
                        format!(
                            "no admin token (--token, [admin] token or {}): {e}",
                            data_dir.join("admin.token").display()
                        ),
                    )
                })?,
        };
        Ok(Api { addr, token })
    }

    /// The client for this endpoint (the one `osprey top` uses).
    fn client(&self) -> Result<Client, Failure> {
        osprey_tui::client::Api::new(&format!("http://{}", self.addr), &self.token)
            .map(|api| Client {
                api,
                addr: self.addr.clone(),
            })
            .map_err(|e| Failure::new(2, e))
    }
}

struct Client {
    api: osprey_tui::client::Api,
    addr: String,
}

impl Client {
    fn failure(&self, e: ApiError) -> Failure {
        match e {
            ApiError::Unreachable(m) => Failure::new(
                1,
                format!("cannot reach the admin API at {}: {m}", self.addr),
            ),
            ApiError::Unauthorized => Failure::new(1, e.to_string()),
            ApiError::Status { status, message } => {
                let code = match status {
                    400 => 2,
                    404 => 4,
                    409 => 3,
                    _ => 1,
                };
                Failure::new(code, format!("{message} (HTTP {status})"))
            }
            ApiError::Malformed(m) => Failure::new(1, format!("unexpected reply: {m}")),
        }
    }

    async fn raw(&self, method: &str, path: &str, body: Option<Value>) -> Result<String, Failure> {
        let body = body.map(|b| b.to_string());
        self.api
            .text(method, path, body)
            .await
            .map_err(|e| self.failure(e))
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, Failure> {
        let body = body.map(|b| b.to_string());
        self.api
            .call(method, path, body)
            .await
            .map_err(|e| self.failure(e))
    }

    async fn follow(&self, id: u64) -> Result<(), Failure> {
        let mut stream = self
            .api
            .events(&format!("/api/trace/{id}/stream"))
            .await
            .map_err(|e| self.failure(e))?;
        while let Some(Ok(event)) = stream.next().await {
            match event.name.as_str() {
                "record" => match serde_json::from_str::<Record>(&event.data) {
                    Ok(r) => print_record(&r),
                    Err(_) => println!("unreadable record: {}", event.data),
                },
                "stopped" => println!("stopped: {}", event.data),
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations() {
        assert_eq!(super::parse_duration("90s"), Some(90.0));
        assert_eq!(super::parse_duration("5m"), Some(300.0));
        assert_eq!(super::parse_duration("500ms"), Some(0.5));
        assert_eq!(super::parse_duration("12"), Some(12.0));
        assert_eq!(super::parse_duration("soon"), None);
        assert_eq!(super::parse_duration("-1s"), None);
    }
}
