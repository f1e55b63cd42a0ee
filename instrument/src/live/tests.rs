use std::time::Duration;

use super::query::*;
use super::*;

fn task(id: u64) -> Task {
    Task {
        kind: "c2s".into(),
        id,
    }
}

/// A session that handles a roster set (with a storage query inside) twice.
fn sample() -> (Tracer, Arc<Trace>) {
    let tracer = Tracer::new();
    let t = tracer
        .start(
            serde_json::json!({"jid": "alice@localhost"}),
            Options::default(),
        )
        .unwrap();
    let a = task(1);
    for _ in 0..2 {
        t.record(&a, Kind::In, "iq", "type=set".into(), None);
        t.record(&a, Kind::Call, "module.roster.set", String::new(), None);
        t.record(&a, Kind::Call, "storage.roster_set", String::new(), None);
        t.record(
            &a,
            Kind::Return,
            "storage.roster_set",
            String::new(),
            Some(Duration::from_micros(300)),
        );
        t.record(
            &a,
            Kind::Return,
            "module.roster.set",
            String::new(),
            Some(Duration::from_micros(500)),
        );
    }
    t.record(&a, Kind::Send, "message", "to=c2s:2".into(), None);
    t.record(&a, Kind::Call, "module.disco.info", String::new(), None);
    (tracer, t)
}

#[test]
fn records_are_indexed_and_selectable() {
    let (_, t) = sample();
    let r = t.records();
    assert_eq!(r.len(), 12);
    assert_eq!(
        r.iter().map(|x| x.index).collect::<Vec<_>>(),
        (0..12).collect::<Vec<_>>()
    );
    assert_eq!(select(&r, Some(Kind::Call), None, None).len(), 5);
    assert_eq!(select(&r, None, None, Some("to=c2s:2")).len(), 1);
    assert_eq!(select(&r, None, Some("c2s:1"), None).len(), 12);
    assert!(select(&r, None, Some("c2s:9"), None).is_empty());
}

#[test]
fn call_stat_acc_and_own() {
    let (_, t) = sample();
    let stats = call_stat(&t.records(), "function", "acc");
    assert_eq!(
        stats[0],
        CallStat {
            key: "module.roster.set".into(),
            count: 2,
            acc_us: 1000,
            own_us: 400
        }
    );
    assert_eq!(
        stats[1],
        CallStat {
            key: "storage.roster_set".into(),
            count: 2,
            acc_us: 600,
            own_us: 600
        }
    );
    let by_own = call_stat(&t.records(), "function", "own");
    assert_eq!(by_own[0].key, "storage.roster_set");
}

#[test]
fn trees_ranges_traceback() {
    let (_, t) = sample();
    let r = t.records();
    let trees = top_call_trees(
        &r,
        &TreeOptions {
            top: 5,
            complete: true,
            ..Default::default()
        },
    );
    assert_eq!(trees[0].shape, "module.roster.set(storage.roster_set)");
    assert_eq!(trees[0].count, 2);
    let rs = ranges(&r, "module.roster.set", false);
    assert_eq!(rs.len(), 2);
    assert_eq!(rs[0].len(), 4, "call, inner call, inner return, return");
    let open = ranges(&r, "module.disco.info", true);
    assert_eq!(open.len(), 1, "the call that never returned");
    let tb = traceback(&r, 3).unwrap();
    assert_eq!(
        tb.iter().map(|x| x.name.as_str()).collect::<Vec<_>>(),
        ["module.roster.set", "storage.roster_set"]
    );
    assert!(traceback(&r, 999).is_none());
}

#[test]
fn limits_stop_the_trace_and_say_why() {
    let tracer = Tracer::new();
    let t = tracer
        .start(
            serde_json::json!({"jid": "a"}),
            Options {
                limit: 3,
                ..Default::default()
            },
        )
        .unwrap();
    assert!(tracer.active());
    for _ in 0..10 {
        t.record(&task(1), Kind::In, "message", String::new(), None);
    }
    assert_eq!(t.len(), 3);
    assert!(!t.is_running());
    assert_eq!(
        t.stop_reason().as_deref(),
        Some("record limit of 3 reached")
    );
    assert!(tracer.running().is_empty());
    assert!(!tracer.active(), "off again: the hot-path check is false");
    let timed = tracer
        .start(
            serde_json::json!({"jid": "b"}),
            Options {
                duration: Duration::from_millis(20),
                ..Default::default()
            },
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(30));
    assert!(!timed.record(&task(2), Kind::In, "iq", String::new(), None));
    assert!(timed.stop_reason().unwrap().contains("time limit"));
}

#[test]
fn refusals() {
    let tracer = Tracer::new();
    let f = serde_json::json!({"jid": "a"});
    tracer.start(f.clone(), Options::default()).unwrap();
    assert!(tracer
        .start(f, Options::default())
        .unwrap_err()
        .contains("already running"));
    for i in 0..3 {
        tracer
            .start(serde_json::json!({"session": i}), Options::default())
            .unwrap();
    }
    assert!(tracer
        .start(serde_json::json!({"session": 9}), Options::default())
        .unwrap_err()
        .contains("running already"));
    assert!(tracer
        .start(
            serde_json::json!({}),
            Options {
                limit: 0,
                ..Default::default()
            }
        )
        .is_err());
    assert!(tracer.stop(999).is_err());
}

#[test]
fn dump_and_load_round_trip_and_refuse_bad_files() {
    let (_, t) = sample();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.jsonl");
    let header = t.header(t.len());
    dump::write(&path, &header, &t.records()).unwrap();
    let (h, back) = dump::read(&path).unwrap();
    assert_eq!(h.id, t.id);
    assert_eq!(back, t.records());
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace(dump::FORMAT, "osprey-trace/0")).unwrap();
    assert!(matches!(
        dump::read(&path),
        Err(dump::DumpError::Version { .. })
    ));
    std::fs::write(&path, "garbage\n").unwrap();
    assert!(matches!(
        dump::read(&path),
        Err(dump::DumpError::NotADump { .. })
    ));
    let mut lines: Vec<&str> = text.lines().collect();
    lines[3] = "{\"index\": \"x\"}";
    std::fs::write(&path, lines.join("\n")).unwrap();
    let e = dump::read(&path).unwrap_err();
    assert!(e.to_string().contains(":4: corrupt record"), "{e}");
    lines.truncate(3);
    std::fs::write(&path, lines.join("\n")).unwrap();
    assert!(matches!(
        dump::read(&path),
        Err(dump::DumpError::Truncated { .. })
    ));
}

// --- Queries on a recorded fixture: alice's trace (`--jid alice@localhost
// --messages`) while she logged in, set her roster twice, messaged bob,
// pinged the server and read her roster. Session 2 is alice, 1 is bob.

fn fixture() -> (dump::Header, Vec<Record>) {
    dump::parse(include_str!("fixture.jsonl").as_bytes(), "fixture.jsonl").unwrap()
}

fn indices(rs: &[&Record]) -> Vec<u64> {
    rs.iter().map(|r| r.index).collect()
}

/// The indices of the records matching `expr` on the fixture.
fn matching(expr: &str) -> Vec<u64> {
    let (h, r) = fixture();
    let e = predicate::Expr::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
    let m = predicate::Matcher::new(&e, &r, h.start_us(&r));
    r.iter().filter(|x| m.matches(x)).map(|x| x.index).collect()
}

#[test]
fn the_fixture_loads() {
    let (h, r) = fixture();
    assert_eq!(h.records, 61);
    assert_eq!(r.len(), 61);
    assert!(h.started_us.is_some_and(|s| s < r[0].ts_us));
}

#[test]
fn predicates_select_on_every_field() {
    // A call's duration is its return's.
    assert_eq!(
        matching("kind=call and task=c2s:2 and name~storage and duration>1ms"),
        [33]
    );
    assert_eq!(
        matching("kind=return and name~storage and duration>500us"),
        [14, 26, 34, 36]
    );
    assert_eq!(matching("data~\"[redacted]\" or data.type=chat"), [40, 46]);
    // A JID in from/to, or the session's own JID (from its bind).
    assert_eq!(matching("jid=bob@localhost"), [40, 46]);
    assert_eq!(
        matching("jid=alice@localhost and kind=in"),
        [8, 20, 30, 40, 47, 53]
    );
    assert_eq!(matching("jid=alice@localhost/a and kind=in").len(), 6);
    assert_eq!(matching("session=1"), [46]);
    assert_eq!(matching("task=c2s:1"), [46]);
    assert_eq!(matching("task=c2s").len(), 61);
    assert_eq!(matching("not (kind=call or kind=return)").len(), 13);
    assert_eq!(matching("index>=58 and index<60"), [58, 59]);
    assert_eq!(matching("at<251ms"), [0, 1, 2, 3, 4, 5]);
    assert_eq!(matching("name=c2s.stanza.*").len(), 12);
    assert_eq!(
        matching("event=c2s.sasl or function=c2s.bind"),
        [2, 3, 6, 7]
    );
    assert_eq!(matching("data.mechanism=PLAIN"), [2]);
    assert_eq!(matching("name!=c2s.stream_open AND index<4"), [2, 3]);
    assert_eq!(matching("duration!=5ms and index<2"), [0, 1]);
    assert_eq!(matching("kind=out and data.to!~alice"), Vec::<u64>::new());
    assert_eq!(matching("data~\"type=get id=p1\""), [47]);
}

#[test]
fn predicates_are_bounded_and_errors_say_where() {
    use predicate::{Expr, MAX_DEPTH, MAX_LEN};
    let err = |s: &str| Expr::parse(s).unwrap_err().to_string();
    let long = format!("name={}", "x".repeat(MAX_LEN));
    assert!(err(&long).contains("longer than 1024 bytes"));
    let deep = format!(
        "{}kind=in{}",
        "(".repeat(MAX_DEPTH + 1),
        ")".repeat(MAX_DEPTH + 1)
    );
    assert!(
        err(&deep).contains("nested deeper than 32"),
        "{}",
        err(&deep)
    );
    let nots = format!("{}kind=in", "not ".repeat(MAX_DEPTH + 1));
    assert!(err(&nots).contains("nested deeper"));
    let ok = format!("{}kind=in{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
    assert!(Expr::parse(&ok).is_ok());
    // Long flat chains are fine (no recursion).
    let chain = vec!["index>1"; 60].join(" and ");
    assert!(Expr::parse(&chain).is_ok());
    assert!(err("colour=red").contains("unknown field \"colour\""));
    assert!(err("kind=walk").contains("unknown kind"));
    assert!(err("kind~call").contains("kind takes = or !="));
    assert!(err("name<3").contains("compare numbers"));
    assert!(err("duration>soon").contains("not a time"));
    assert!(err("index=x").contains("not a whole number"));
    assert!(err("data~\"open").contains("unterminated string"));
    assert!(err("name=").contains("expected a value"));
    assert!(err("name").contains("expected an operator"));
    assert!(err("(kind=in").contains("expected `)`"));
    assert!(err("kind=in kind=out").contains("expected `and`, `or`"));
    assert!(err("kind=in and").contains("found the end"));
    assert!(err("").contains("empty"));
    assert!(err("kind ! in").contains("use `not`"));
    assert_eq!(Expr::parse("kind=in or").unwrap_err().at, 10);
}

#[test]
fn globs() {
    use predicate::glob;
    assert!(glob("storage.*", "storage.roster_set"));
    assert!(glob("*roster*", "module.roster.set"));
    assert!(glob("a*b*c", "a-b-c"));
    assert!(!glob("a*b*c", "a-c"));
    assert!(!glob("*set", "set_up"));
    assert!(glob("exact", "exact") && !glob("exact", "exactly"));
}

fn tb_indices(tbs: &[Traceback]) -> Vec<(u64, Vec<u64>)> {
    tbs.iter()
        .map(|t| (t.index, t.calls.iter().map(|r| r.index).collect()))
        .collect()
}

fn tracebacks_of(expr: &str, format: TracebackFormat) -> Vec<(u64, Vec<u64>)> {
    let (h, r) = fixture();
    let e = predicate::Expr::parse(expr).unwrap();
    let m = predicate::Matcher::new(&e, &r, h.start_us(&r));
    tb_indices(&tracebacks(&r, &|x| m.matches(x), format, 1000))
}

#[test]
fn tracebacks_in_every_format() {
    let calls = "kind=call and name~roster";
    // Shortest: a traceback extending another (a match inside a match) goes.
    assert_eq!(
        tracebacks_of(calls, TracebackFormat::Shortest),
        [
            (13, vec![9, 12, 13]),
            (22, vec![21, 22]),
            (32, vec![31, 32]),
            (55, vec![54, 55])
        ]
    );
    assert_eq!(tracebacks_of(calls, TracebackFormat::Full).len(), 9);
    assert_eq!(
        tracebacks_of(calls, TracebackFormat::Longest)
            .iter()
            .map(|t| t.0)
            .collect::<Vec<_>>(),
        [13, 23, 25, 33, 35, 56]
    );
    assert_eq!(
        tracebacks_of(calls, TracebackFormat::Root),
        [
            (13, vec![9]),
            (22, vec![21]),
            (32, vec![31]),
            (55, vec![54])
        ]
    );
    // A record that is not a call ends its own traceback.
    assert_eq!(
        tracebacks_of("kind=send", TracebackFormat::Shortest),
        [(43, vec![41, 42, 43])]
    );
    // A return's traceback is its call's.
    assert_eq!(
        tracebacks_of(
            "kind=return and name=storage.roster_set and duration>600us",
            TracebackFormat::Full
        ),
        [(36, vec![31, 32, 35])]
    );
    // Identical tracebacks (a call and its return both matching) once.
    assert_eq!(
        tracebacks_of("name=storage.roster_get", TracebackFormat::Shortest).len(),
        2
    );
    assert_eq!(
        tracebacks_of("name=storage.roster_get", TracebackFormat::Full).len(),
        4
    );
    assert_eq!(TracebackFormat::parse("all"), Some(TracebackFormat::Full));
    assert_eq!(TracebackFormat::parse("tree"), None);
    // The limit counts matches.
    let (_, r) = fixture();
    assert_eq!(tracebacks(&r, &|_| true, TracebackFormat::Full, 5).len(), 5);
}

#[test]
fn ranges_with_max_depth() {
    let (_, r) = fixture();
    let iq = |x: &Record| x.name == "c2s.stanza.iq";
    let all = ranges_where(&r, &iq, false, None);
    assert_eq!(all.len(), 4);
    assert_eq!(indices(&all[0]), (21..=28).collect::<Vec<_>>());
    let two = ranges_where(&r, &iq, false, Some(2));
    assert_eq!(indices(&two[0]), [21, 22, 27, 28]);
    let one = ranges_where(&r, &iq, false, Some(1));
    assert_eq!(indices(&one[1]), [31, 38]);
    // Records that are not calls sit one level inside their call.
    let msg = ranges_where(&r, &|x| x.name == "c2s.stanza.message", false, Some(2));
    assert_eq!(indices(&msg[0]), [41, 42, 44, 45]);
    let msg3 = ranges_where(&r, &|x| x.name == "c2s.stanza.message", false, Some(3));
    assert_eq!(indices(&msg3[0]), [41, 42, 43, 44, 45]);
    assert_eq!(ranges(&r, "module.roster.set", false).len(), 2);
}

#[test]
fn call_trees_by_count_time_and_arguments() {
    let (_, r) = fixture();
    let trees = top_call_trees(&r, &TreeOptions::default());
    assert_eq!(
        trees[0].shape,
        "c2s.stanza.iq(module.roster.set(storage.roster_get_item,storage.roster_set))"
    );
    assert_eq!((trees[0].count, trees[0].acc_us), (2, 6814));
    // Reduced (tr's default): no subtree of a listed tree.
    assert!(!trees
        .iter()
        .any(|t| t.shape.starts_with("module.roster.set")));
    let complete = top_call_trees(
        &r,
        &TreeOptions {
            min_count: Some(2),
            complete: true,
            ..Default::default()
        },
    );
    assert!(complete.iter().all(|t| t.count >= 2));
    assert_eq!(
        complete[1].shape,
        "module.roster.set(storage.roster_get_item,storage.roster_set)"
    );
    let slow = top_call_trees(
        &r,
        &TreeOptions {
            min_count: Some(1),
            min_time_us: 6000,
            complete: true,
            ..Default::default()
        },
    );
    assert_eq!(slow.len(), 3, "{slow:#?}");
    assert!(slow.iter().all(|t| t.acc_us >= 6000));
    // Arguments and results are part of a tree (tr groups that way).
    let once = top_call_trees(
        &r,
        &TreeOptions {
            min_count: Some(1),
            top: 100,
            ..Default::default()
        },
    );
    assert!(
        once.iter()
            .any(|t| t.shape == "c2s.sasl[mechanism=PLAIN outcome=success]"),
        "{once:#?}"
    );
    // Same names, other arguments: two groups; by names alone, one.
    let tracer = Tracer::new();
    let t = tracer
        .start(serde_json::json!({"task": "c2s"}), Options::default())
        .unwrap();
    for (jid, result) in [("a@b/1", "ok"), ("a@b/2", "ok"), ("a@b/1", "ok")] {
        t.record(&task(1), Kind::Call, "c2s.bind", format!("jid={jid}"), None);
        t.record(
            &task(1),
            Kind::Return,
            "c2s.bind",
            result.into(),
            Some(Duration::from_micros(10)),
        );
    }
    let by_args = top_call_trees(
        &t.records(),
        &TreeOptions {
            min_count: Some(1),
            ..Default::default()
        },
    );
    assert_eq!(
        by_args
            .iter()
            .map(|t| (t.shape.as_str(), t.count))
            .collect::<Vec<_>>(),
        [
            ("c2s.bind[jid=a@b/1 -> ok]", 2),
            ("c2s.bind[jid=a@b/2 -> ok]", 1)
        ]
    );
    let by_name = top_call_trees(
        &t.records(),
        &TreeOptions {
            names_only: true,
            ..Default::default()
        },
    );
    assert_eq!(
        (by_name[0].shape.as_str(), by_name[0].count),
        ("c2s.bind", 3)
    );
}

#[test]
fn lookup_next_prev() {
    let (_, r) = fixture();
    assert_eq!(lookup(&r, 40).map(|x| x.name.as_str()), Some("message"));
    assert!(lookup(&r, 999).is_none());
    // The same task's neighbours: bob's record 46 sits between.
    assert_eq!(next(&r, 45).map(|x| x.index), Some(47));
    assert_eq!(prev(&r, 47).map(|x| x.index), Some(45));
    assert!(prev(&r, 46).is_none() && next(&r, 46).is_none());
    assert!(next(&r, 60).is_none());
    assert!(prev(&r, 0).is_none());
}

#[test]
fn the_api_answers_like_the_server() {
    let (h, r) = fixture();
    let view = api::View {
        records: &r,
        started_us: h.start_us(&r),
    };
    let q = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let v = api::answer(
        &view,
        "records",
        &q(&[
            ("kind", "return"),
            ("where", "name~storage and duration>500us"),
            ("limit", "2"),
        ]),
    )
    .unwrap();
    assert_eq!(v["total"], 4);
    assert_eq!(v["records"].as_array().unwrap().len(), 2);
    assert_eq!(v["started_us"], h.started_us.unwrap());
    let v = api::answer(
        &view,
        "tracebacks",
        &q(&[("where", "kind=send"), ("format", "root")]),
    )
    .unwrap();
    assert_eq!(v[0]["calls"][0]["index"], 41);
    let v = api::answer(
        &view,
        "ranges",
        &q(&[("where", "name=c2s.stanza.iq"), ("max_depth", "1")]),
    )
    .unwrap();
    assert_eq!(v.as_array().unwrap().len(), 4);
    let v = api::answer(
        &view,
        "trees",
        &q(&[
            ("min_count", "2"),
            ("min_time", "6ms"),
            ("complete", "true"),
        ]),
    )
    .unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert_eq!(
        api::answer(&view, "next", &q(&[("index", "45")])).unwrap()["index"],
        47
    );
    assert_eq!(
        api::answer(&view, "lookup", &q(&[("index", "3")])).unwrap()["duration_us"],
        45058
    );
    let refused =
        |query: &str, pairs: &[(&str, &str)]| api::answer(&view, query, &q(pairs)).unwrap_err();
    assert_eq!(refused("records", &[("where", "kind=nope")]).status, 400);
    assert!(refused("records", &[("where", "kind=nope")])
        .message
        .contains("unknown kind"));
    assert_eq!(refused("lookup", &[("index", "999")]).status, 404);
    assert_eq!(refused("prev", &[("index", "46")]).status, 404);
    assert_eq!(refused("lookup", &[]).status, 400);
    assert_eq!(refused("tracebacks", &[]).status, 400);
    assert_eq!(
        refused("tracebacks", &[("where", "kind=in"), ("format", "tree")]).status,
        400
    );
    assert_eq!(refused("ranges", &[]).status, 400);
    assert_eq!(
        refused("ranges", &[("call", "x"), ("max_depth", "0")]).status,
        400
    );
    assert_eq!(refused("trees", &[("min_time", "soon")]).status, 400);
    assert_eq!(refused("trees", &[("complete", "maybe")]).status, 400);
    assert_eq!(refused("stats", &[("by", "colour")]).status, 400);
    assert_eq!(refused("nonsense", &[]).status, 404);
}

#[test]
fn human_times_and_aligned_tables() {
    assert_eq!(show::rfc3339(0), "1970-01-01T00:00:00.000000Z");
    assert_eq!(
        show::rfc3339(1_709_210_096_789_012),
        "2024-02-29T12:34:56.789012Z"
    );
    assert_eq!(
        show::rfc3339(946_684_799_999_999),
        "1999-12-31T23:59:59.999999Z"
    );
    assert_eq!(show::relative(1_500, 0), "+1.500ms");
    assert_eq!(show::relative(12_345_678, 0), "+12345.678ms");
    assert_eq!(show::relative(0, 2_000), "-2.000ms");
    let (h, r) = fixture();
    let line = show::record_line(&r[3], h.start_us(&r));
    assert!(
        line.contains("+250.343ms") && line.contains("Z c2s:2"),
        "{line}"
    );
    assert!(line.contains("c2s.sasl 45058µs"), "{line}");
    // Every row's shape starts in the header's `tree` column.
    let trees = top_call_trees(
        &r,
        &TreeOptions {
            min_count: Some(1),
            top: 100,
            complete: true,
            ..Default::default()
        },
    );
    let table = show::tree_table(&trees);
    let col = table[0].chars().count() - "tree".len();
    for (row, t) in table[1..].iter().zip(&trees) {
        let at = row.chars().count() - t.shape.chars().count();
        assert_eq!(at, col, "{table:#?}");
    }
    let stats = show::stat_table(&call_stat(&r, "function", "acc"));
    let width = |l: &String| l.chars().count();
    assert!(
        stats.iter().all(|l| width(l) == width(&stats[0])),
        "{stats:#?}"
    );
}

#[test]
fn dumps_are_adopted_as_stopped_traces() {
    let (h, r) = fixture();
    let tracer = Tracer::new();
    let running = tracer
        .start(serde_json::json!({"jid": "x@y"}), Options::default())
        .unwrap();
    assert_eq!(running.id, 1);
    // The saved id is taken: a new one.
    let a = tracer.adopt(h, r.clone(), true, "restored".into()).unwrap();
    assert_eq!(a.id, 2);
    assert!(!a.is_running());
    assert_eq!(a.records(), r);
    assert_eq!(a.status()["origin"], "restored");
    assert_eq!(a.status()["stop_reason"], "stopped by an administrator");
    assert!(!a.record(&task(2), Kind::In, "iq", String::new(), None));
    let mut h2 = fixture().0;
    h2.id = 40;
    let b = tracer
        .adopt(h2, Vec::new(), true, "restored".into())
        .unwrap();
    assert_eq!(b.id, 40);
    let next = tracer
        .start(serde_json::json!({"jid": "z@y"}), Options::default())
        .unwrap();
    assert_eq!(next.id, 41, "ids go on after restored ones");
    let c = tracer
        .adopt(fixture().0, Vec::new(), false, "loaded".into())
        .unwrap();
    assert_eq!(c.id, 42);
    // A dump without a start time starts at its first record.
    let (mut h3, r3) = fixture();
    h3.started_us = None;
    assert_eq!(h3.start_us(&r3), r3[0].ts_us);
}
