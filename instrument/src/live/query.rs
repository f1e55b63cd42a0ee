//! The `tr` toolbox over records: select, call statistics, call trees and
//! the most repeated ones, ranges between a call and its return, tracebacks,
//! lookup and a task's next or previous record. Calls and returns pair up
//! per task, innermost first.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::{Kind, Record, Task};

/// Records matching every given criterion.
pub fn select<'a>(
    records: &'a [Record],
    kind: Option<Kind>,
    task: Option<&str>,
    contains: Option<&str>,
) -> Vec<&'a Record> {
    records
        .iter()
        .filter(|r| kind.is_none_or(|k| r.kind == k))
        .filter(|r| task.is_none_or(|t| r.task.to_string() == t || r.task.kind == t))
        .filter(|r| contains.is_none_or(|c| r.name.contains(c) || r.data.contains(c)))
        .collect()
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct CallStat {
    pub key: String,
    pub count: u64,
    /// Total time inside the call, µs.
    pub acc_us: u64,
    /// Time not spent in nested calls, µs.
    pub own_us: u64,
}

/// A completed call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Call {
    pub name: String,
    pub task: Task,
    /// The call's details (its arguments, as recorded).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub args: String,
    /// The return's details (its result, as recorded).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub result: String,
    pub call_index: u64,
    pub return_index: u64,
    pub duration_us: u64,
    pub children: Vec<Call>,
}

struct Open {
    name: String,
    args: String,
    call_index: u64,
    children: Vec<Call>,
}

/// Pairs calls with returns; returns the top-level calls (in order) and
/// the calls that never returned.
pub fn calls(records: &[Record]) -> (Vec<Call>, Vec<&Record>) {
    let mut stacks: HashMap<&Task, Vec<Open>> = HashMap::new();
    let mut top = Vec::new();
    for r in records {
        match r.kind {
            Kind::Call => stacks.entry(&r.task).or_default().push(Open {
                name: r.name.clone(),
                args: r.data.clone(),
                call_index: r.index,
                children: Vec::new(),
            }),
            Kind::Return => {
                let stack = stacks.entry(&r.task).or_default();
                // A return without its call (the trace began mid-call) is skipped.
                let Some(pos) = stack.iter().rposition(|o| o.name == r.name) else {
                    continue;
                };
                // Calls opened after it and never returned stay unfinished.
                let open = stack.remove(pos);
                stack.truncate(pos);
                let call = Call {
                    name: open.name,
                    task: r.task.clone(),
                    args: open.args,
                    result: r.data.clone(),
                    call_index: open.call_index,
                    return_index: r.index,
                    duration_us: r.duration_us.unwrap_or(0),
                    children: open.children,
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(call),
                    None => top.push(call),
                }
            }
            _ => {}
        }
    }
    let open: std::collections::HashSet<u64> = stacks
        .values()
        .flat_map(|s| s.iter().map(|o| o.call_index))
        .collect();
    let unfinished = records.iter().filter(|r| open.contains(&r.index)).collect();
    (top, unfinished)
}

/// Count, accumulated and own time per function (`by = "function"`) or
/// per task (`by = "task"`), sorted by `sort` ("acc", "own" or "count").
pub fn call_stat(records: &[Record], by: &str, sort: &str) -> Vec<CallStat> {
    let (top, _) = calls(records);
    let mut stats: HashMap<String, CallStat> = HashMap::new();
    fn walk(c: &Call, by: &str, stats: &mut HashMap<String, CallStat>) {
        let key = if by == "task" {
            c.task.to_string()
        } else {
            c.name.clone()
        };
        let children: u64 = c.children.iter().map(|k| k.duration_us).sum();
        let s = stats.entry(key.clone()).or_insert_with(|| CallStat {
            key,
            ..Default::default()
        });
        s.count += 1;
        s.acc_us += c.duration_us;
        s.own_us += c.duration_us.saturating_sub(children);
        for k in &c.children {
            walk(k, by, stats);
        }
    }
    for c in &top {
        walk(c, by, &mut stats);
    }
    let mut v: Vec<CallStat> = stats.into_values().collect();
    match sort {
        "own" => v.sort_by(|a, b| b.own_us.cmp(&a.own_us).then(a.key.cmp(&b.key))),
        "count" => v.sort_by(|a, b| b.count.cmp(&a.count).then(a.key.cmp(&b.key))),
        _ => v.sort_by(|a, b| b.acc_us.cmp(&a.acc_us).then(a.key.cmp(&b.key))),
    }
    v
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TreeStat {
    /// The call tree's shape, e.g. `module.roster.set(storage.roster_set)`;
    /// arguments and results in brackets: `c2s.bind[jid=a@b/r]`.
    pub shape: String,
    pub count: u64,
    pub acc_us: u64,
    /// One occurrence's call record index.
    pub example: u64,
}

/// What `top_call_trees` lists (`tr:top_call_trees/1`'s options).
#[derive(Debug, Clone, PartialEq)]
pub struct TreeOptions {
    /// At most this many trees (`max_size`).
    pub top: usize,
    /// Trees seen at least this often; none: any repeated tree, and any
    /// tree with children.
    pub min_count: Option<u64>,
    /// Trees taking at least this long in all, µs.
    pub min_time_us: u64,
    /// Group by function names alone, whatever the arguments and results.
    pub names_only: bool,
    /// List subtrees of listed trees too (tr's `output => complete`).
    pub complete: bool,
}

impl Default for TreeOptions {
    fn default() -> Self {
        TreeOptions {
            top: 10,
            min_count: None,
            min_time_us: 0,
            names_only: false,
            complete: false,
        }
    }
}

fn shape(c: &Call, names_only: bool) -> String {
    let mut s = c.name.clone();
    // Two calls group together only with the same arguments and results.
    if !names_only && (!c.args.is_empty() || !c.result.is_empty()) {
        s.push('[');
        s.push_str(&c.args);
        if !c.result.is_empty() {
            s.push_str(" -> ");
            s.push_str(&c.result);
        }
        s.push(']');
    }
    if !c.children.is_empty() {
        let kids: Vec<String> = c.children.iter().map(|k| shape(k, names_only)).collect();
        s.push('(');
        s.push_str(&kids.join(","));
        s.push(')');
    }
    s
}

/// Identical call trees grouped, the most time-consuming first (then the
/// most frequent).
pub fn top_call_trees(records: &[Record], o: &TreeOptions) -> Vec<TreeStat> {
    let (calls, _) = calls(records);
    let mut by_shape: HashMap<String, TreeStat> = HashMap::new();
    // Which trees each tree was seen inside (for the reduced output).
    let mut parents: HashMap<String, HashSet<String>> = HashMap::new();
    fn walk(
        c: &Call,
        parent: Option<&str>,
        o: &TreeOptions,
        by_shape: &mut HashMap<String, TreeStat>,
        parents: &mut HashMap<String, HashSet<String>>,
    ) {
        let s = shape(c, o.names_only);
        let e = by_shape.entry(s.clone()).or_insert(TreeStat {
            shape: s.clone(),
            count: 0,
            acc_us: 0,
            example: c.call_index,
        });
        e.count += 1;
        e.acc_us += c.duration_us;
        if let Some(p) = parent {
            parents.entry(s.clone()).or_default().insert(p.to_string());
        }
        for k in &c.children {
            walk(k, Some(&s), o, by_shape, parents);
        }
    }
    for c in &calls {
        walk(c, None, o, &mut by_shape, &mut parents);
    }
    let mut v: Vec<TreeStat> = by_shape
        .into_values()
        .filter(|t| match o.min_count {
            Some(n) => t.count >= n,
            None => t.shape.contains('(') || t.count > 1,
        })
        .filter(|t| t.acc_us >= o.min_time_us)
        .collect();
    v.sort_by(|a, b| {
        b.acc_us
            .cmp(&a.acc_us)
            .then(b.count.cmp(&a.count))
            .then(a.shape.cmp(&b.shape))
    });
    if !o.complete {
        let mut listed: HashSet<String> = HashSet::new();
        v.retain(|t| {
            if inside_any(&t.shape, &listed, &parents) {
                return false;
            }
            listed.insert(t.shape.clone());
            true
        });
    }
    v.truncate(o.top);
    v
}

/// Was `shape` seen inside one of `listed` (at any depth)?
fn inside_any(
    shape: &str,
    listed: &HashSet<String>,
    parents: &HashMap<String, HashSet<String>>,
) -> bool {
    let mut seen: HashSet<&str> = HashSet::new();
    let mut todo: Vec<&str> = vec![shape];
    while let Some(s) = todo.pop() {
        for p in parents.get(s).into_iter().flatten() {
            if listed.contains(p) {
                return true;
            }
            if seen.insert(p) {
                todo.push(p);
            }
        }
    }
    false
}

/// Each task's records, in index order.
fn by_task(records: &[Record]) -> HashMap<&Task, Vec<&Record>> {
    let mut m: HashMap<&Task, Vec<&Record>> = HashMap::new();
    for r in records {
        m.entry(&r.task).or_default().push(r);
    }
    m
}

/// Every record of the task between each call of `name` and its return;
/// with `incomplete`, the records from calls that never returned.
pub fn ranges<'a>(records: &'a [Record], name: &str, incomplete: bool) -> Vec<Vec<&'a Record>> {
    ranges_where(records, &|r| r.name == name, incomplete, None)
}

/// `tr:ranges/2`: the records between each matching call and its return
/// (or, with `incomplete`, from each matching call that never returned to
/// the task's last record). `max_depth` 1 keeps the call and its return,
/// 2 adds what happened directly inside it, and so on.
pub fn ranges_where<'a>(
    records: &'a [Record],
    start: &dyn Fn(&Record) -> bool,
    incomplete: bool,
    max_depth: Option<usize>,
) -> Vec<Vec<&'a Record>> {
    let (top, unfinished) = calls(records);
    let mut spans: Vec<(Task, u64, u64)> = Vec::new();
    if incomplete {
        for r in unfinished.iter().filter(|r| start(r)) {
            spans.push((r.task.clone(), r.index, u64::MAX));
        }
    } else {
        fn walk(c: &Call, found: &mut Vec<(Task, u64, u64)>) {
            found.push((c.task.clone(), c.call_index, c.return_index));
            for k in &c.children {
                walk(k, found);
            }
        }
        let mut all = Vec::new();
        for c in &top {
            walk(c, &mut all);
        }
        all.sort_by_key(|s| s.1);
        spans = all
            .into_iter()
            .filter(|(_, call, _)| lookup(records, *call).is_some_and(start))
            .collect();
    }
    let tasks = by_task(records);
    let max = max_depth.unwrap_or(usize::MAX);
    spans
        .into_iter()
        .map(|(task, from, to)| {
            let Some(recs) = tasks.get(&task) else {
                return Vec::new();
            };
            let first = recs.partition_point(|r| r.index < from);
            let mut depth = 0usize;
            let mut out = Vec::new();
            for r in recs[first..].iter().take_while(|r| r.index <= to) {
                match r.kind {
                    Kind::Call => {
                        depth += 1;
                        if depth <= max {
                            out.push(*r);
                        }
                    }
                    Kind::Return => {
                        if depth <= max {
                            out.push(*r);
                        }
                        depth = depth.saturating_sub(1);
                    }
                    _ => {
                        if depth < max {
                            out.push(*r);
                        }
                    }
                }
            }
            out
        })
        .collect()
}

/// The calls open in the record's task when it was taken, outermost first.
pub fn traceback(records: &[Record], index: u64) -> Option<Vec<&Record>> {
    let target = lookup(records, index)?;
    let mut stack: Vec<&Record> = Vec::new();
    for r in records
        .iter()
        .filter(|r| r.task == target.task && r.index < index)
    {
        match r.kind {
            Kind::Call => stack.push(r),
            Kind::Return => {
                if let Some(pos) = stack.iter().rposition(|c| c.name == r.name) {
                    stack.truncate(pos);
                }
            }
            _ => {}
        }
    }
    Some(stack)
}

/// Which tracebacks `tracebacks` gives (`tr:tracebacks/2`'s `output`, and
/// `root`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TracebackFormat {
    /// When one traceback extends another, only the shorter (tr's default).
    Shortest,
    /// Every match's traceback (tr's `all`).
    Full,
    /// When one traceback extends another, only the longer.
    Longest,
    /// Only the outermost call of each, once.
    Root,
}

impl TracebackFormat {
    pub fn parse(s: &str) -> Option<TracebackFormat> {
        Some(match s {
            "shortest" => TracebackFormat::Shortest,
            "full" | "all" => TracebackFormat::Full,
            "longest" => TracebackFormat::Longest,
            "root" => TracebackFormat::Root,
            _ => return None,
        })
    }
}

/// A matching record's call stack, outermost first, ending with the match
/// itself (for a matching return: with its call).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Traceback {
    /// The matching record.
    pub index: u64,
    pub calls: Vec<Record>,
}

/// `tr:tracebacks/2`: the traceback of each of the first `limit` matching
/// records, in the given format.
pub fn tracebacks(
    records: &[Record],
    matches: &dyn Fn(&Record) -> bool,
    format: TracebackFormat,
    limit: usize,
) -> Vec<Traceback> {
    let mut stacks: HashMap<&Task, Vec<&Record>> = HashMap::new();
    let mut found: Vec<(u64, Vec<&Record>)> = Vec::new();
    for r in records {
        if found.len() >= limit {
            break;
        }
        let stack = stacks.entry(&r.task).or_default();
        let hit = matches(r);
        match r.kind {
            Kind::Call => {
                stack.push(r);
                if hit {
                    found.push((r.index, stack.clone()));
                }
            }
            Kind::Return => {
                let pos = stack.iter().rposition(|c| c.name == r.name);
                if hit {
                    let tb = match pos {
                        Some(p) => stack[..=p].to_vec(),
                        None => stack.iter().copied().chain([r]).collect(),
                    };
                    found.push((r.index, tb));
                }
                if let Some(p) = pos {
                    stack.truncate(p);
                }
            }
            _ if hit => found.push((r.index, stack.iter().copied().chain([r]).collect())),
            _ => {}
        }
    }
    let key = |tb: &[&Record]| tb.iter().map(|r| r.index).collect::<Vec<u64>>();
    let mut seen: HashSet<Vec<u64>> = HashSet::new();
    let kept: Vec<(u64, Vec<&Record>)> = match format {
        TracebackFormat::Full => found,
        TracebackFormat::Shortest => {
            let all: HashSet<Vec<u64>> = found.iter().map(|(_, tb)| key(tb)).collect();
            found
                .into_iter()
                .filter(|(_, tb)| {
                    let k = key(tb);
                    !(1..k.len()).any(|n| all.contains(&k[..n])) && seen.insert(k)
                })
                .collect()
        }
        TracebackFormat::Longest => {
            let prefixes: HashSet<Vec<u64>> = found
                .iter()
                .flat_map(|(_, tb)| {
                    let k = key(tb);
                    (1..k.len()).map(move |n| k[..n].to_vec())
                })
                .collect();
            found
                .into_iter()
                .filter(|(_, tb)| {
                    let k = key(tb);
                    !prefixes.contains(&k) && seen.insert(k)
                })
                .collect()
        }
        TracebackFormat::Root => found
            .into_iter()
            .filter_map(|(i, tb)| tb.first().map(|root| (i, vec![*root])))
            .filter(|(_, tb)| seen.insert(key(tb)))
            .collect(),
    };
    kept.into_iter()
        .map(|(index, tb)| Traceback {
            index,
            calls: tb.into_iter().cloned().collect(),
        })
        .collect()
}

/// `tr:lookup/1`: the record with this index.
pub fn lookup(records: &[Record], index: u64) -> Option<&Record> {
    // Records are in index order; a hand-made file may not be.
    match records.binary_search_by_key(&index, |r| r.index) {
        Ok(i) => Some(&records[i]),
        Err(_) => records.iter().find(|r| r.index == index),
    }
}

/// `tr:next/1`: the record after this one in the same task.
pub fn next(records: &[Record], index: u64) -> Option<&Record> {
    let task = &lookup(records, index)?.task;
    records
        .iter()
        .filter(|r| r.index > index && &r.task == task)
        .min_by_key(|r| r.index)
}

/// `tr:prev/1`: the record before this one in the same task.
pub fn prev(records: &[Record], index: u64) -> Option<&Record> {
    let task = &lookup(records, index)?.task;
    records
        .iter()
        .filter(|r| r.index < index && &r.task == task)
        .max_by_key(|r| r.index)
}
