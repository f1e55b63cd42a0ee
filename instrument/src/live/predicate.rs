//! The `--where` language: a predicate on records, as `tr:filter/1` takes a
//! fun. Parsed once, then matched against every record.
//!
//! ```text
//! kind=call and task=c2s:3 and name~storage and duration>1ms and data~"<body"
//! not (kind=in or kind=out) and (jid=alice@localhost or session=7)
//! ```
//!
//! A comparison is `FIELD OP VALUE`; `and` binds tighter than `or`; `not`
//! and parentheses as usual. Operators: `=` and `!=` (whole text, `*`
//! matches any run of characters), `~` and `!~` (contains), and `<` `<=`
//! `>` `>=` on numbers. Fields:
//!
//! - `kind`: in, out, call, return, send, recv, event, error;
//! - `task`: `c2s:3`, or a task kind (`storage`);
//! - `name` (also `event`, `function`): the function, element or event;
//! - `jid`: the session's JID (from its bind; a bare JID matches every
//!   resource), or a `from`/`to`/`jid`/`user` attribute in the data;
//! - `session`: the session id of the record's task;
//! - `duration`: a call's time (on its call and its return), with a unit
//!   (`us`, `ms`, `s`; µs bare);
//! - `at`: time since the trace started, with a unit;
//! - `index`: the record's index;
//! - `data`: the details text; `data.KEY`: one `KEY=value` of it.
//!
//! Bounded: an expression over [`MAX_LEN`] bytes or nested deeper than
//! [`MAX_DEPTH`] is refused, so a request cannot make the parser or the
//! matcher recurse without end.

use std::collections::HashMap;

use super::{Kind, Record};

/// The longest expression accepted, in bytes.
pub const MAX_LEN: usize = 1024;
/// The deepest nesting of parentheses and `not`.
pub const MAX_DEPTH: usize = 32;

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    All(Vec<Expr>),
    Any(Vec<Expr>),
    Not(Box<Expr>),
    Cmp(Cmp),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cmp {
    field: Field,
    op: Op,
    value: Value,
}

#[derive(Debug, Clone, PartialEq)]
enum Field {
    Kind,
    Task,
    Name,
    Jid,
    Session,
    Duration,
    At,
    Index,
    Data,
    Attr(String),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Eq,
    Ne,
    Contains,
    NotContains,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Text(String),
    Num(u64),
    Kind(Kind),
}

/// Why an expression was refused, with the byte offset it points at.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("--where: {message} (at byte {at})")]
pub struct ParseError {
    pub at: usize,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Open,
    Close,
    Op(Op),
    /// A bare word (`true` when it may be a keyword) or a quoted string.
    Word(String, bool),
}

fn err<T>(at: usize, message: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError {
        at,
        message: message.into(),
    })
}

fn lex(s: &str) -> Result<Vec<(usize, Tok)>, ParseError> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'(' => {
                out.push((i, Tok::Open));
                i += 1;
            }
            b')' => {
                out.push((i, Tok::Close));
                i += 1;
            }
            b'=' | b'~' => {
                out.push((i, Tok::Op(if c == b'=' { Op::Eq } else { Op::Contains })));
                i += 1;
            }
            b'!' | b'<' | b'>' => {
                let next = b.get(i + 1).copied();
                let (op, len) = match (c, next) {
                    (b'!', Some(b'=')) => (Op::Ne, 2),
                    (b'!', Some(b'~')) => (Op::NotContains, 2),
                    (b'<', Some(b'=')) => (Op::Le, 2),
                    (b'>', Some(b'=')) => (Op::Ge, 2),
                    (b'<', _) => (Op::Lt, 1),
                    (b'>', _) => (Op::Gt, 1),
                    _ => return err(i, "`!` goes with `=` or `~`; use `not` to negate"),
                };
                out.push((i, Tok::Op(op)));
                i += len;
            }
            b'"' | b'\'' => {
                let mut text = String::new();
                i += 1;
                loop {
                    let Some(ch) = s[i..].chars().next() else {
                        return err(start, "unterminated string");
                    };
                    i += ch.len_utf8();
                    match ch {
                        '\\' => {
                            let Some(esc) = s[i..].chars().next() else {
                                return err(start, "unterminated string");
                            };
                            i += esc.len_utf8();
                            text.push(esc);
                        }
                        q if q == c as char => break,
                        ch => text.push(ch),
                    }
                }
                out.push((start, Tok::Word(text, false)));
            }
            _ => {
                while i < b.len() && !b" \t\n\r()=~!<>\"'".contains(&b[i]) {
                    i += 1;
                }
                // Every byte stopped at above is ASCII: `i` is a char boundary.
                out.push((start, Tok::Word(s[start..i].to_string(), true)));
            }
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(_, t)| t)
    }

    fn at(&self) -> usize {
        self.toks.get(self.pos).map(|(a, _)| *a).unwrap_or(self.end)
    }

    fn keyword(&self, k: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w, true)) if w.eq_ignore_ascii_case(k))
    }

    fn or(&mut self, depth: usize) -> Result<Expr, ParseError> {
        let mut terms = vec![self.and(depth)?];
        while self.keyword("or") {
            self.pos += 1;
            terms.push(self.and(depth)?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            Expr::Any(terms)
        })
    }

    fn and(&mut self, depth: usize) -> Result<Expr, ParseError> {
        let mut terms = vec![self.not(depth)?];
        while self.keyword("and") {
            self.pos += 1;
            terms.push(self.not(depth)?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            Expr::All(terms)
        })
    }

    fn not(&mut self, depth: usize) -> Result<Expr, ParseError> {
        if depth > MAX_DEPTH {
            return err(self.at(), format!("nested deeper than {MAX_DEPTH} levels"));
        }
        if self.keyword("not") {
            self.pos += 1;
            return Ok(Expr::Not(Box::new(self.not(depth + 1)?)));
        }
        match self.peek() {
            Some(Tok::Open) => {
                self.pos += 1;
                let e = self.or(depth + 1)?;
                if self.peek() != Some(&Tok::Close) {
                    return err(self.at(), "expected `)`");
                }
                self.pos += 1;
                Ok(e)
            }
            _ => self.cmp(),
        }
    }

    fn cmp(&mut self) -> Result<Expr, ParseError> {
        let at = self.at();
        let name = match self.peek() {
            Some(Tok::Word(w, true)) => w.clone(),
            None => return err(at, "expected a comparison, found the end"),
            _ => return err(at, "expected a field name (kind, task, name, jid, …)"),
        };
        self.pos += 1;
        let field = field(&name).ok_or_else(|| ParseError {
            at,
            message: format!(
                "unknown field {name:?} (kind, task, name, event, function, jid, session, \
                 duration, at, index, data, data.KEY)"
            ),
        })?;
        let op_at = self.at();
        let Some(Tok::Op(op)) = self.peek().cloned() else {
            return err(op_at, format!("expected an operator after {name}"));
        };
        self.pos += 1;
        let value_at = self.at();
        let Some(Tok::Word(text, _)) = self.peek().cloned() else {
            return err(value_at, format!("expected a value after {name}"));
        };
        self.pos += 1;
        let value = value(&field, op, &text).map_err(|message| ParseError {
            at: value_at,
            message,
        })?;
        Ok(Expr::Cmp(Cmp { field, op, value }))
    }
}

fn field(name: &str) -> Option<Field> {
    Some(match name {
        "kind" => Field::Kind,
        "task" => Field::Task,
        "name" | "event" | "function" => Field::Name,
        "jid" => Field::Jid,
        "session" => Field::Session,
        "duration" => Field::Duration,
        "at" => Field::At,
        "index" => Field::Index,
        "data" => Field::Data,
        _ => match name.strip_prefix("data.") {
            Some(k) if !k.is_empty() => Field::Attr(k.to_string()),
            _ => return None,
        },
    })
}

fn value(field: &Field, op: Op, text: &str) -> Result<Value, String> {
    let numeric = matches!(op, Op::Lt | Op::Le | Op::Gt | Op::Ge);
    match field {
        Field::Kind => match (op, Kind::parse(text)) {
            (Op::Eq | Op::Ne, Some(k)) => Ok(Value::Kind(k)),
            (Op::Eq | Op::Ne, None) => Err(format!(
                "unknown kind {text:?} (in, out, call, return, send, recv, event, error)"
            )),
            _ => Err("kind takes = or !=".into()),
        },
        Field::Session | Field::Index => match (op, text.parse()) {
            (Op::Contains | Op::NotContains, _) => Err("a number takes = != < <= > >=".into()),
            (_, Ok(n)) => Ok(Value::Num(n)),
            (_, Err(_)) => Err(format!("{text:?} is not a whole number")),
        },
        Field::Duration | Field::At => match op {
            Op::Contains | Op::NotContains => Err("a time takes = != < <= > >=".into()),
            _ => micros(text)
                .map(Value::Num)
                .ok_or_else(|| format!("{text:?} is not a time (12us, 1.5ms, 2s)")),
        },
        _ if numeric => Err("< <= > >= compare numbers: duration, at, index, session".into()),
        _ => Ok(Value::Text(text.to_string())),
    }
}

/// `12us`, `1.5ms`, `2s`, or plain microseconds.
pub fn micros(text: &str) -> Option<u64> {
    let (num, scale) = if let Some(n) = text.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix("µs") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1e6)
    } else {
        (text, 1.0)
    };
    let v: f64 = num.parse().ok()?;
    (v.is_finite() && v >= 0.0 && v * scale < u64::MAX as f64).then(|| (v * scale).round() as u64)
}

impl Expr {
    /// Parses an expression, or says where and why not.
    pub fn parse(s: &str) -> Result<Expr, ParseError> {
        if s.len() > MAX_LEN {
            return err(MAX_LEN, format!("longer than {MAX_LEN} bytes"));
        }
        let toks = lex(s)?;
        if toks.is_empty() {
            return err(0, "an empty expression");
        }
        let mut p = Parser {
            toks,
            pos: 0,
            end: s.len(),
        };
        let e = p.or(0)?;
        if p.pos < p.toks.len() {
            return err(p.at(), "expected `and`, `or` or the end");
        }
        Ok(e)
    }
}

/// An expression ready to match one set of records: it knows each
/// session's JID (from its bind) and when the trace started.
pub struct Matcher<'e> {
    expr: &'e Expr,
    jids: HashMap<u64, String>,
    /// Each returned call's duration, by its call record's index.
    call_us: HashMap<u64, u64>,
    start_us: u64,
}

/// Tasks whose id is a session's (a c2s session and the calls it made).
fn session_of(r: &Record) -> Option<u64> {
    (r.task.kind != "event").then_some(r.task.id)
}

/// `KEY=value` pairs of a record's details, up to a payload (raw XML).
pub fn attrs(data: &str) -> impl Iterator<Item = (&str, &str)> {
    data.split_whitespace()
        .take_while(|w| !w.starts_with('<'))
        .filter_map(|w| w.split_once('='))
}

impl<'e> Matcher<'e> {
    /// `start_us`: the trace's start (Unix µs), for `at`.
    pub fn new(expr: &'e Expr, records: &[Record], start_us: u64) -> Matcher<'e> {
        let mut jids = HashMap::new();
        for r in records.iter().filter(|r| r.name == "c2s.bind") {
            if let Some((_, j)) = attrs(&r.data).find(|(k, _)| *k == "jid") {
                jids.insert(r.task.id, j.to_string());
            }
        }
        let mut call_us = HashMap::new();
        if mentions_duration(expr) {
            fn walk(c: &super::query::Call, out: &mut HashMap<u64, u64>) {
                out.insert(c.call_index, c.duration_us);
                c.children.iter().for_each(|k| walk(k, out));
            }
            super::query::calls(records)
                .0
                .iter()
                .for_each(|c| walk(c, &mut call_us));
        }
        Matcher {
            expr,
            jids,
            call_us,
            start_us,
        }
    }

    pub fn matches(&self, r: &Record) -> bool {
        self.eval(self.expr, r)
    }

    fn eval(&self, e: &Expr, r: &Record) -> bool {
        match e {
            Expr::All(v) => v.iter().all(|e| self.eval(e, r)),
            Expr::Any(v) => v.iter().any(|e| self.eval(e, r)),
            Expr::Not(e) => !self.eval(e, r),
            Expr::Cmp(c) => self.cmp(c, r),
        }
    }

    fn cmp(&self, c: &Cmp, r: &Record) -> bool {
        match (&c.field, &c.value) {
            (Field::Kind, Value::Kind(k)) => (r.kind == *k) == (c.op == Op::Eq),
            (Field::Session, Value::Num(n)) => num(c.op, session_of(r), *n),
            (Field::Index, Value::Num(n)) => num(c.op, Some(r.index), *n),
            (Field::Duration, Value::Num(n)) => {
                let d = match r.kind {
                    Kind::Call => self.call_us.get(&r.index).copied(),
                    _ => r.duration_us,
                };
                num(c.op, d, *n)
            }
            (Field::At, Value::Num(n)) => num(c.op, r.ts_us.checked_sub(self.start_us), *n),
            (Field::Task, Value::Text(t)) => {
                let full = r.task.to_string();
                text(c.op, t, |op, t| {
                    text_is(op, &full, t) || (op == Op::Eq && text_is(op, &r.task.kind, t))
                })
            }
            (Field::Name, Value::Text(t)) => text(c.op, t, |op, t| text_is(op, &r.name, t)),
            (Field::Data, Value::Text(t)) => text(c.op, t, |op, t| text_is(op, &r.data, t)),
            (Field::Attr(k), Value::Text(t)) => text(c.op, t, |op, t| {
                attrs(&r.data).any(|(key, v)| key == k && text_is(op, v, t))
            }),
            (Field::Jid, Value::Text(t)) => text(c.op, t, |op, t| {
                let session = session_of(r).and_then(|s| self.jids.get(&s));
                session.is_some_and(|j| jid_is(op, j, t))
                    || attrs(&r.data).any(|(k, v)| {
                        matches!(k, "from" | "to" | "jid" | "user") && jid_is(op, v, t)
                    })
            }),
            _ => false,
        }
    }
}

/// Pairing calls with returns is work done only when `duration` is asked.
fn mentions_duration(e: &Expr) -> bool {
    match e {
        Expr::All(v) | Expr::Any(v) => v.iter().any(mentions_duration),
        Expr::Not(e) => mentions_duration(e),
        Expr::Cmp(c) => c.field == Field::Duration,
    }
}

/// A text comparison: `!=` and `!~` are the negations of `=` and `~`.
fn text(op: Op, t: &str, f: impl Fn(Op, &str) -> bool) -> bool {
    match op {
        Op::Ne => !f(Op::Eq, t),
        Op::NotContains => !f(Op::Contains, t),
        op => f(op, t),
    }
}

fn text_is(op: Op, have: &str, want: &str) -> bool {
    match op {
        Op::Contains => have.contains(want),
        _ => glob(want, have),
    }
}

/// A bare JID matches each of its resources.
fn jid_is(op: Op, have: &str, want: &str) -> bool {
    match op {
        Op::Contains => have.contains(want),
        _ => {
            glob(want, have)
                || have
                    .strip_prefix(want)
                    .is_some_and(|rest| rest.starts_with('/'))
        }
    }
}

/// A missing number (no duration) matches no comparison but `!=`.
fn num(op: Op, have: Option<u64>, want: u64) -> bool {
    let Some(h) = have else {
        return op == Op::Ne;
    };
    match op {
        Op::Eq => h == want,
        Op::Ne => h != want,
        Op::Lt => h < want,
        Op::Le => h <= want,
        Op::Gt => h > want,
        Op::Ge => h >= want,
        Op::Contains | Op::NotContains => false,
    }
}

/// `*` matches any run of characters; otherwise the whole text.
pub fn glob(pattern: &str, text: &str) -> bool {
    let Some((head, rest)) = pattern.split_once('*') else {
        return pattern == text;
    };
    let Some(mut left) = text.strip_prefix(head) else {
        return false;
    };
    // Each further piece is found leftmost; the last must end the text.
    let pieces: Vec<&str> = rest.split('*').collect();
    for (i, piece) in pieces.iter().enumerate() {
        if i + 1 == pieces.len() {
            return left.len() >= piece.len() && left.ends_with(piece);
        }
        match left.find(piece) {
            Some(p) => left = &left[p + piece.len()..],
            None => return false,
        }
    }
    true
}
