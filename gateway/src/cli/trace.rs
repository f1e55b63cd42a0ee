//! `osprey trace …`: live tracing through the admin API of a running
//! gateway. Every query takes a trace id or a dump file (analysed here,
//! offline, by the same code as the server's); `load` puts a dump into the
//! gateway under a new id.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use osprey_instrument::live::{api, dump, query, show, Record};
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

/// A trace to query: an id on the running gateway, or a dump file (read
/// here, no server needed; a path that is all digits is written `./123`).
#[derive(Debug, Clone, PartialEq)]
enum Source {
    Server(u64),
    File(PathBuf),
}

impl Source {
    fn parse(s: &str) -> Source {
        match s.parse::<u64>() {
            Ok(id) => Source::Server(id),
            Err(_) => Source::File(PathBuf::from(s)),
        }
    }
}

#[derive(Subcommand)]
pub enum TraceCommand {
    /// Start a trace. Several criteria narrow it: all must hold
    /// (`--jid alice@localhost --event 'router_*'`: alice's router events).
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
        /// Keep stanza payloads (message bodies are redacted otherwise);
        /// the server logs this as an audit event.
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
    /// Records, filtered (`tr:select`, `tr:filter`).
    #[command(alias = "select")]
    Records {
        /// A trace id, or a dump file.
        #[arg(value_name = "ID|FILE")]
        trace: String,
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        task: Option<String>,
        #[arg(long)]
        contains: Option<String>,
        /// A predicate, e.g. `kind=call and name~storage and duration>1ms`
        /// (docs/tracing.md).
        #[arg(long = "where", value_name = "EXPR")]
        filter: Option<String>,
        #[arg(long, default_value_t = 0)]
        offset: usize,
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Call statistics: count, accumulated and own time (`tr:call_stat`).
    Stat {
        #[arg(value_name = "ID|FILE")]
        trace: String,
        #[arg(long, default_value = "function")]
        by: String,
        #[arg(long, default_value = "acc")]
        sort: String,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// The most expensive repeated call trees (`tr:top_call_trees`); calls
    /// group when their names, arguments and results are the same.
    Tree {
        #[arg(value_name = "ID|FILE")]
        trace: String,
        #[arg(long, default_value_t = 10)]
        top: usize,
        /// Trees seen at least this often.
        #[arg(long)]
        min_count: Option<u64>,
        /// Trees taking at least this long in all (500us, 2ms, 1s).
        #[arg(long)]
        min_time: Option<String>,
        /// Group by function names alone.
        #[arg(long)]
        names: bool,
        /// Also list subtrees of listed trees.
        #[arg(long)]
        complete: bool,
    },
    /// Everything between each matching call and its return (`tr:ranges`).
    Ranges {
        #[arg(value_name = "ID|FILE")]
        trace: String,
        /// The function called.
        #[arg(long)]
        call: Option<String>,
        /// Calls matching a predicate.
        #[arg(long = "where", value_name = "EXPR")]
        filter: Option<String>,
        /// Calls that never returned.
        #[arg(long)]
        incomplete: bool,
        /// 1: the call and its return; 2: and what is directly inside…
        #[arg(long)]
        max_depth: Option<usize>,
    },
    /// Call stacks (`tr:tracebacks`): of each record matching --where, or
    /// the calls open when record --index was taken.
    Traceback {
        #[arg(value_name = "ID|FILE")]
        trace: String,
        #[arg(long, conflicts_with = "filter")]
        index: Option<u64>,
        #[arg(long = "where", value_name = "EXPR")]
        filter: Option<String>,
        /// shortest (overlapping stacks: the shorter), full, longest, root.
        #[arg(long, default_value = "shortest")]
        format: String,
        /// At most this many matches.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// The record with this index (`tr:lookup`).
    Lookup {
        #[arg(value_name = "ID|FILE")]
        trace: String,
        index: u64,
    },
    /// The next record of the same task (`tr:next`).
    Next {
        #[arg(value_name = "ID|FILE")]
        trace: String,
        index: u64,
    },
    /// The previous record of the same task (`tr:prev`).
    Prev {
        #[arg(value_name = "ID|FILE")]
        trace: String,
        index: u64,
    },
    /// Save the records (JSON lines) for offline analysis.
    Dump {
        id: u64,
        file: PathBuf,
    },
    /// Load a dump into the running gateway as a stopped trace: prints its
    /// summary and the id every query takes (`tr:load`).
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
    let client = || Api::new(&target, config)?.client();
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
            // Who asks, for the server's audit line (as the client says).
            let by = std::env::var("USER")
                .or_else(|_| std::env::var("LOGNAME"))
                // SAFETY: getuid has no preconditions and cannot fail.
                .unwrap_or_else(|_| format!("uid {}", unsafe { libc::getuid() }));
            let body = serde_json::json!({
                "jid": jid, "session": session, "task": task, "event": event,
                "limit": limit, "duration_seconds": secs, "messages": messages, "payload": payload,
                "by": format!("{by} (osprey trace)"),
            });
            let v = client()?.call("POST", "/api/trace", Some(body)).await?;
            println!("trace {} started: {}", v["id"], v["filter"]);
            if payload {
                println!("payloads are captured: the server logs this trace as an audit event");
            }
        }
        TraceCommand::Status { id } => {
            let path = id
                .map(|i| format!("/api/trace/{i}"))
                .unwrap_or("/api/trace".into());
            let v = client()?.call("GET", &path, None).await?;
            let list = if v.is_array() {
                v.as_array().cloned().unwrap_or_default()
            } else {
                vec![v]
            };
            for t in list {
                println!("{}", status_line(&t));
            }
        }
        TraceCommand::Stop { id } => {
            let v = client()?
                .call("DELETE", &format!("/api/trace/{id}"), None)
                .await?;
            println!("trace {id} stopped with {} records", v["records"]);
        }
        TraceCommand::Records {
            trace,
            kind,
            task,
            contains,
            filter,
            offset,
            limit,
        } => {
            let mut q = params(&[
                ("kind", kind),
                ("task", task),
                ("contains", contains),
                ("where", filter),
            ]);
            q.push(("offset".into(), offset.to_string()));
            q.push(("limit".into(), limit.to_string()));
            let (v, start) = ask(&client, &trace, "records", q).await?;
            let records: Vec<Record> = from(&v["records"])?;
            for r in &records {
                println!("{}", show::record_line(r, start));
            }
            eprintln!("{} of {} records", records.len(), v["total"]);
        }
        TraceCommand::Stat {
            trace,
            by,
            sort,
            limit,
        } => {
            let q = params(&[
                ("by", Some(by)),
                ("sort", Some(sort)),
                ("limit", Some(limit.to_string())),
            ]);
            let (v, _) = ask(&client, &trace, "stats", q).await?;
            let stats: Vec<query::CallStat> = from(&v)?;
            show::stat_table(&stats)
                .iter()
                .for_each(|l| println!("{l}"));
        }
        TraceCommand::Tree {
            trace,
            top,
            min_count,
            min_time,
            names,
            complete,
        } => {
            let q = params(&[
                ("top", Some(top.to_string())),
                ("min_count", min_count.map(|n| n.to_string())),
                ("min_time", min_time),
                ("names", Some(names.to_string())),
                ("complete", Some(complete.to_string())),
            ]);
            let (v, _) = ask(&client, &trace, "trees", q).await?;
            let trees: Vec<query::TreeStat> = from(&v)?;
            show::tree_table(&trees)
                .iter()
                .for_each(|l| println!("{l}"));
        }
        TraceCommand::Ranges {
            trace,
            call,
            filter,
            incomplete,
            max_depth,
        } => {
            if call.is_none() && filter.is_none() {
                return Err(Failure::new(2, "ranges needs --call NAME or --where EXPR"));
            }
            let q = params(&[
                ("call", call),
                ("where", filter),
                ("incomplete", Some(incomplete.to_string())),
                ("max_depth", max_depth.map(|d| d.to_string())),
            ]);
            let (v, start) = ask(&client, &trace, "ranges", q).await?;
            let ranges: Vec<Vec<Record>> = from(&v)?;
            for (i, range) in ranges.iter().enumerate() {
                println!("--- range {i}");
                range
                    .iter()
                    .for_each(|r| println!("{}", show::record_line(r, start)));
            }
        }
        TraceCommand::Traceback {
            trace,
            index,
            filter,
            format,
            limit,
        } => match (index, filter) {
            (Some(i), None) => {
                let q = params(&[("index", Some(i.to_string()))]);
                let (v, start) = ask(&client, &trace, "traceback", q).await?;
                let records: Vec<Record> = from(&v)?;
                records
                    .iter()
                    .for_each(|r| println!("{}", show::record_line(r, start)));
            }
            (None, Some(w)) => {
                let q = params(&[
                    ("where", Some(w)),
                    ("format", Some(format)),
                    ("limit", Some(limit.to_string())),
                ]);
                let (v, start) = ask(&client, &trace, "tracebacks", q).await?;
                let tbs: Vec<query::Traceback> = from(&v)?;
                for tb in &tbs {
                    println!("--- record {}", tb.index);
                    tb.calls
                        .iter()
                        .for_each(|r| println!("{}", show::record_line(r, start)));
                }
                eprintln!("{} tracebacks", tbs.len());
            }
            _ => return Err(Failure::new(2, "traceback needs --index N or --where EXPR")),
        },
        TraceCommand::Lookup { trace, index } => one(&client, &trace, "lookup", index).await?,
        TraceCommand::Next { trace, index } => one(&client, &trace, "next", index).await?,
        TraceCommand::Prev { trace, index } => one(&client, &trace, "prev", index).await?,
        TraceCommand::Dump { id, file } => {
            let text = client()?
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
        TraceCommand::Load { file, sort } => {
            let (h, records) = dump::read(&file).map_err(|e| Failure::new(2, e.to_string()))?;
            println!(
                "trace {} ({}): {} records{}",
                h.id,
                h.filter,
                records.len(),
                h.stop_reason
                    .as_ref()
                    .map(|r| format!(", stopped: {r}"))
                    .unwrap_or_default()
            );
            show::stat_table(&query::call_stat(&records, "function", &sort))
                .iter()
                .for_each(|l| println!("{l}"));
            let text = std::fs::read_to_string(&file)
                .map_err(|e| Failure::new(2, format!("{}: {e}", file.display())))?;
            let v = client()?.upload("/api/trace/load", text).await?;
            println!(
                "loaded as trace {id}: query it as any other (osprey trace records {id})",
                id = v["id"]
            );
        }
        TraceCommand::Follow { id } => {
            let c = client()?;
            let st = c.call("GET", &format!("/api/trace/{id}"), None).await?;
            c.follow(id, st["started_us"].as_u64().unwrap_or(0)).await?
        }
    }
    Ok(())
}

/// The given query parameters, by name.
fn params(list: &[(&str, Option<String>)]) -> Vec<(String, String)> {
    list.iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k.to_string(), v.clone())))
        .collect()
}

fn from<T: serde::de::DeserializeOwned>(v: &Value) -> Result<T, Failure> {
    serde_json::from_value(v.clone()).map_err(|e| Failure::new(1, format!("unexpected reply: {e}")))
}

/// Runs an analysis query on a server trace or a dump file; the answer
/// and the trace's start (Unix µs, for relative times).
async fn ask(
    client: &impl Fn() -> Result<Client, Failure>,
    trace: &str,
    query: &str,
    q: Vec<(String, String)>,
) -> Result<(Value, u64), Failure> {
    match Source::parse(trace) {
        Source::Server(id) => {
            let c = client()?;
            let status = c.call("GET", &format!("/api/trace/{id}"), None).await?;
            let qs: Vec<String> = q
                .iter()
                .map(|(k, v)| format!("{k}={}", encode_segment(v)))
                .collect();
            let v = c
                .call(
                    "GET",
                    &format!("/api/trace/{id}/{query}?{}", qs.join("&")),
                    None,
                )
                .await?;
            Ok((v, status["started_us"].as_u64().unwrap_or(0)))
        }
        Source::File(path) => {
            let (h, records) = dump::read(&path).map_err(|e| Failure::new(2, e.to_string()))?;
            let view = api::View {
                records: &records,
                started_us: h.start_us(&records),
            };
            api::answer(&view, query, &q)
                .map(|v| (v, view.started_us))
                .map_err(|r| Failure::new(if r.status == 404 { 4 } else { 2 }, r.message))
        }
    }
}

/// `lookup`, `next`, `prev`: one record.
async fn one(
    client: &impl Fn() -> Result<Client, Failure>,
    trace: &str,
    query: &str,
    index: u64,
) -> Result<(), Failure> {
    let (v, start) = ask(
        client,
        trace,
        query,
        params(&[("index", Some(index.to_string()))]),
    )
    .await?;
    let r: Record = from(&v)?;
    println!("{}", show::record_line(&r, start));
    Ok(())
}

/// One trace in `status`: numbers in fixed columns, what it follows, and
/// whether it captures payloads.
fn status_line(t: &Value) -> String {
    let state = if t["running"].as_bool() == Some(true) {
        "running"
    } else {
        "stopped"
    };
    let mut line = format!(
        "{:>4}  {:<8} {:>7} records  {}",
        t["id"].as_u64().unwrap_or(0),
        state,
        t["records"].as_u64().unwrap_or(0),
        t["filter"],
    );
    if t["payload"].as_bool() == Some(true) {
        line.push_str("  payload: true");
    }
    if let Some(o) = t["origin"].as_str() {
        line.push_str(&format!("  ({o})"));
    }
    if let Some(r) = t["stop_reason"].as_str() {
        line.push_str(&format!("  {r}"));
    }
    line
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

    /// A dump as the body (JSON lines), a JSON reply.
    async fn upload(&self, path: &str, body: String) -> Result<Value, Failure> {
        self.api
            .call("POST", path, Some(body))
            .await
            .map_err(|e| self.failure(e))
    }

    async fn follow(&self, id: u64, start: u64) -> Result<(), Failure> {
        let mut stream = self
            .api
            .events(&format!("/api/trace/{id}/stream"))
            .await
            .map_err(|e| self.failure(e))?;
        while let Some(Ok(event)) = stream.next().await {
            match event.name.as_str() {
                "record" => match serde_json::from_str::<Record>(&event.data) {
                    Ok(r) => println!("{}", show::record_line(&r, start)),
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

    #[test]
    fn a_trace_is_an_id_or_a_file() {
        use super::Source;
        assert_eq!(Source::parse("12"), Source::Server(12));
        assert_eq!(Source::parse("./12"), Source::File("./12".into()));
        assert_eq!(Source::parse("a.trace"), Source::File("a.trace".into()));
    }

    #[test]
    fn status_lines_say_payload_and_keep_columns() {
        let t = |id: u64, records: u64, payload: bool| {
            serde_json::json!({"id": id, "running": true, "records": records,
                "filter": {"jid": "a@b"}, "payload": payload, "origin": null, "stop_reason": null})
        };
        let a = super::status_line(&t(1, 5, false));
        let b = super::status_line(&t(12, 12345, true));
        assert_eq!(a.find("records"), b.find("records"), "{a}\n{b}");
        assert!(
            b.ends_with("payload: true") && !a.contains("payload"),
            "{a}\n{b}"
        );
    }
}
