//! The `tr` toolbox over records: select, call statistics, call trees and
//! the most repeated ones, ranges between a call and its return, tracebacks.
//! Calls and returns pair up per task, innermost first.

use std::collections::HashMap;

use serde::Serialize;

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
    pub call_index: u64,
    pub return_index: u64,
    pub duration_us: u64,
    pub children: Vec<Call>,
}

struct Open {
    name: String,
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

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TreeStat {
    /// The call tree's shape, e.g. `module.roster.set(storage.roster_set)`.
    pub shape: String,
    pub count: u64,
    pub acc_us: u64,
    /// One occurrence's call record index.
    pub example: u64,
}

fn shape(c: &Call) -> String {
    if c.children.is_empty() {
        return c.name.clone();
    }
    let kids: Vec<String> = c.children.iter().map(shape).collect();
    format!("{}({})", c.name, kids.join(","))
}

/// Identical call trees grouped, the most time-consuming first (then the most frequent).
pub fn top_call_trees(records: &[Record], top: usize) -> Vec<TreeStat> {
    let (calls, _) = calls(records);
    let mut by_shape: HashMap<String, TreeStat> = HashMap::new();
    fn walk(c: &Call, by_shape: &mut HashMap<String, TreeStat>) {
        let s = shape(c);
        let e = by_shape.entry(s.clone()).or_insert(TreeStat {
            shape: s,
            count: 0,
            acc_us: 0,
            example: c.call_index,
        });
        e.count += 1;
        e.acc_us += c.duration_us;
        for k in &c.children {
            walk(k, by_shape);
        }
    }
    for c in &calls {
        walk(c, &mut by_shape);
    }
    let mut v: Vec<TreeStat> = by_shape
        .into_values()
        .filter(|t| t.shape.contains('(') || t.count > 1)
        .collect();
    v.sort_by(|a, b| {
        b.acc_us
            .cmp(&a.acc_us)
            .then(b.count.cmp(&a.count))
            .then(a.shape.cmp(&b.shape))
    });
    v.truncate(top);
    v
}

/// Every record of the task between each call of `name` and its return;
/// with `incomplete`, the records from calls that never returned.
pub fn ranges<'a>(records: &'a [Record], name: &str, incomplete: bool) -> Vec<Vec<&'a Record>> {
    let (top, unfinished) = calls(records);
    let mut spans: Vec<(Task, u64, u64)> = Vec::new();
    fn walk(c: &Call, name: &str, out: &mut Vec<(Task, u64, u64)>) {
        if c.name == name {
            out.push((c.task.clone(), c.call_index, c.return_index));
        }
        for k in &c.children {
            walk(k, name, out);
        }
    }
    if incomplete {
        for r in unfinished.iter().filter(|r| r.name == name) {
            spans.push((r.task.clone(), r.index, u64::MAX));
        }
    } else {
        for c in &top {
            walk(c, name, &mut spans);
        }
    }
    spans
        .into_iter()
        .map(|(task, from, to)| {
            records
                .iter()
                .filter(|r| r.task == task && r.index >= from && r.index <= to)
                .collect()
        })
        .collect()
}

/// The calls open in the record's task when it was taken, outermost first.
pub fn traceback(records: &[Record], index: u64) -> Option<Vec<&Record>> {
    let target = records.iter().find(|r| r.index == index)?;
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
