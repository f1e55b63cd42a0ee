//! `osprey trace …`: live tracing through the admin API of a running
//! gateway (`load` works on a dump file, offline).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use http_body_util::BodyExt;
use osprey_instrument::live::{dump, query, Record};
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
    let api = Api::new(&target, config)?;
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
                    q.push_str(&format!("&{k}={}", encode(&v)));
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
                        encode(&call)
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

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
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

    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, Failure> {
        let unreachable = |e: &dyn std::fmt::Display| {
            Failure::new(
                1,
                format!("cannot reach the admin API at {}: {e}", self.addr),
            )
        };
        let tcp = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::net::TcpStream::connect(&self.addr),
        )
        .await
        .map_err(|e| unreachable(&e))?
        .map_err(|e| unreachable(&e))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                .await
                .map_err(|e| unreachable(&e))?;
        tokio::spawn(conn);
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.addr)
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .map_err(|e| Failure::new(2, e.to_string()))?;
        sender.send_request(req).await.map_err(|e| unreachable(&e))
    }

    async fn raw(&self, method: &str, path: &str, body: Option<Value>) -> Result<String, Failure> {
        let resp = self.send(method, path, body).await?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| Failure::new(1, format!("reading the reply: {e}")))?
            .to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if status.is_success() {
            return Ok(text);
        }
        let msg = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or(text);
        let code = match status.as_u16() {
            400 => 2,
            404 => 4,
            409 => 3,
            _ => 1,
        };
        Err(Failure::new(
            code,
            format!("{msg} (HTTP {})", status.as_u16()),
        ))
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, Failure> {
        let text = self.raw(method, path, body).await?;
        serde_json::from_str(&text).map_err(|e| Failure::new(1, format!("unexpected reply: {e}")))
    }

    async fn follow(&self, id: u64) -> Result<(), Failure> {
        let resp = self
            .send("GET", &format!("/api/trace/{id}/stream"), None)
            .await?;
        if !resp.status().is_success() {
            return Err(Failure::new(4, format!("no trace {id}")));
        }
        let mut body = resp.into_body();
        let mut buf = String::new();
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { break };
            if let Some(data) = frame.data_ref() {
                buf.push_str(&String::from_utf8_lossy(data));
                while let Some(end) = buf.find("\n\n") {
                    let event: String = buf.drain(..end + 2).collect();
                    if let Some(json) = event.lines().find_map(|l| l.strip_prefix("data: ")) {
                        match serde_json::from_str::<Record>(json) {
                            Ok(r) => print_record(&r),
                            Err(_) => println!("stopped: {json}"),
                        }
                    }
                }
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
