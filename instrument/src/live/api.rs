//! The analysis queries as one function of the records and the query
//! string, so `/api/trace/ID/QUERY?…` on the server and `osprey trace
//! QUERY FILE` on a dump answer alike.

use serde_json::{json, Value};

use super::predicate::{micros, Expr, Matcher};
use super::query::{self, TracebackFormat, TreeOptions};
use super::{Kind, Record};

/// The queries [`answer`] knows.
pub const QUERIES: &[&str] = &[
    "records",
    "stats",
    "trees",
    "ranges",
    "traceback",
    "tracebacks",
    "lookup",
    "next",
    "prev",
];

/// The records to query, and when their trace started (Unix µs).
pub struct View<'a> {
    pub records: &'a [Record],
    pub started_us: u64,
}

/// A query refused: the HTTP status (400 bad input, 404 nothing there).
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub status: u16,
    pub message: String,
}

fn bad(m: impl Into<String>) -> Refusal {
    Refusal {
        status: 400,
        message: m.into(),
    }
}

fn missing(m: impl Into<String>) -> Refusal {
    Refusal {
        status: 404,
        message: m.into(),
    }
}

struct Params<'a>(&'a [(String, String)]);

impl Params<'_> {
    fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }

    fn number<T: std::str::FromStr>(&self, k: &str, default: T) -> Result<T, Refusal> {
        match self.get(k) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| bad(format!("{k} must be a whole number"))),
        }
    }

    fn flag(&self, k: &str) -> Result<bool, Refusal> {
        match self.get(k) {
            None | Some("" | "0" | "false") => Ok(false),
            Some("1" | "true") => Ok(true),
            Some(v) => Err(bad(format!("{k}={v}: true or false"))),
        }
    }

    fn index(&self) -> Result<u64, Refusal> {
        match self.get("index") {
            Some(v) => v.parse().map_err(|_| bad("index must be a whole number")),
            None => Err(bad("index=N is needed")),
        }
    }

    fn expr(&self) -> Result<Option<Expr>, Refusal> {
        self.get("where")
            .map(|w| Expr::parse(w).map_err(|e| bad(e.to_string())))
            .transpose()
    }
}

/// Answers `query` on the view's records.
pub fn answer(view: &View<'_>, query: &str, params: &[(String, String)]) -> Result<Value, Refusal> {
    let p = Params(params);
    let all = view.records;
    let expr = p.expr()?;
    let matcher = expr.as_ref().map(|e| Matcher::new(e, all, view.started_us));
    let matches = |r: &Record| matcher.as_ref().is_none_or(|m| m.matches(r));
    let one = |r: Option<&Record>, what: &str| match r {
        Some(r) => Ok(json!(r)),
        None => Err(missing(what.to_string())),
    };
    match query {
        "records" => {
            let kind = match p.get("kind") {
                Some(k) => Some(Kind::parse(k).ok_or_else(|| bad(format!("unknown kind {k:?}")))?),
                None => None,
            };
            let offset = p.number("offset", 0usize)?;
            let limit = p.number("limit", 1000usize)?;
            let sel: Vec<&Record> = query::select(all, kind, p.get("task"), p.get("contains"))
                .into_iter()
                .filter(|r| matches(r))
                .collect();
            let page: Vec<_> = sel.iter().skip(offset).take(limit).collect();
            Ok(json!({
                "total": sel.len(),
                "offset": offset,
                "started_us": view.started_us,
                "records": page,
            }))
        }
        "stats" => {
            let by = p.get("by").unwrap_or("function");
            let sort = p.get("sort").unwrap_or("acc");
            if !["function", "task"].contains(&by) || !["acc", "own", "count"].contains(&sort) {
                return Err(bad("by: function|task; sort: acc|own|count"));
            }
            let mut stats = query::call_stat(all, by, sort);
            stats.truncate(p.number("limit", 50usize)?);
            Ok(json!(stats))
        }
        "trees" => {
            let min_time_us = match p.get("min_time") {
                Some(t) => {
                    micros(t).ok_or_else(|| bad(format!("min_time={t}: e.g. 500us, 2ms")))?
                }
                None => 0,
            };
            let o = TreeOptions {
                top: p.number("top", 10usize)?,
                min_count: p
                    .get("min_count")
                    .map(|_| p.number("min_count", 0))
                    .transpose()?,
                min_time_us,
                names_only: p.flag("names")?,
                complete: p.flag("complete")?,
            };
            Ok(json!(query::top_call_trees(all, &o)))
        }
        "ranges" => {
            let call = p.get("call");
            if call.is_none() && matcher.is_none() {
                return Err(bad("ranges needs call=NAME or where=EXPR"));
            }
            let max_depth = match p.get("max_depth") {
                Some(_) => match p.number("max_depth", 0usize)? {
                    0 => return Err(bad("max_depth must be 1 or more")),
                    n => Some(n),
                },
                None => None,
            };
            let start =
                |r: &Record| r.kind == Kind::Call && call.is_none_or(|c| r.name == c) && matches(r);
            let incomplete = p.flag("incomplete")?;
            Ok(json!(query::ranges_where(
                all, &start, incomplete, max_depth
            )))
        }
        "traceback" => {
            let index = p.index()?;
            match query::traceback(all, index) {
                Some(tb) => Ok(json!(tb)),
                None => Err(missing(format!("no record {index}"))),
            }
        }
        "tracebacks" => {
            if matcher.is_none() {
                return Err(bad("tracebacks needs where=EXPR"));
            }
            let format = p.get("format").unwrap_or("shortest");
            let format = TracebackFormat::parse(format)
                .ok_or_else(|| bad(format!("format={format}: shortest, full, longest or root")))?;
            let limit = p.number("limit", 1000usize)?;
            Ok(json!(query::tracebacks(all, &matches, format, limit)))
        }
        "lookup" => {
            let i = p.index()?;
            one(query::lookup(all, i), &format!("no record {i}"))
        }
        "next" => {
            let i = p.index()?;
            one(
                query::next(all, i),
                &format!("no record after {i} in its task"),
            )
        }
        "prev" => {
            let i = p.index()?;
            one(
                query::prev(all, i),
                &format!("no record before {i} in its task"),
            )
        }
        _ => Err(missing(format!("no query {query:?}"))),
    }
}
