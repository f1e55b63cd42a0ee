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
    let trees = top_call_trees(&r, 5);
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
    let header = dump::Header {
        format: dump::FORMAT.into(),
        id: t.id,
        filter: t.filter.clone(),
        stop_reason: None,
        records: t.len(),
    };
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
