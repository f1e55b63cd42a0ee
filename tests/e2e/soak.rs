//! The soak benchmark (benches/soak) against the real binary: a short run
//! with churn, a slow reader and the hostile connections. Every message
//! must arrive exactly once (the slow reader's from offline storage after
//! the server drops it), some attacks must end in stream errors, and the
//! server must still be up. No timing or memory figure is asserted.

use std::path::PathBuf;
use std::process::Command;

use crate::harness::{Backend, Options, Server};

/// `osprey-soak`, built (or brought up to date) in the same target
/// directory and profile as `osprey`: the gateway's tests cannot depend
/// on that crate, so its binary is built here.
fn soak_bin() -> PathBuf {
    // This build's target directory (not OSPREY_BIN's, which may be anywhere).
    let osprey = PathBuf::from(env!("CARGO_BIN_EXE_osprey"));
    let profile_dir = osprey.parent().expect("the profile directory");
    let target_dir = profile_dir.parent().expect("the target directory");
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("debug");
    let mut build = Command::new(option_env!("CARGO").unwrap_or("cargo"));
    build
        .args([
            "build",
            "--quiet",
            "-p",
            "osprey-soak",
            "--bin",
            "osprey-soak",
        ])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    match profile {
        "debug" => {}
        "release" => {
            build.arg("--release");
        }
        other => {
            build.args(["--profile", other]);
        }
    }
    let status = build.status().expect("run cargo build for osprey-soak");
    let bin = profile_dir.join("osprey-soak");
    assert!(
        status.success() && bin.exists(),
        "building osprey-soak failed ({status}); expected {}",
        bin.display()
    );
    bin
}

#[test]
fn soak_smoke_with_churn_slow_reader_and_attacks() {
    // A small queue bound, so that the slow reader is dropped quickly.
    let mut opts = Options::plaintext(Backend::Sqlite);
    opts.c2s_extra = "max_queue_bytes = 262144".into();
    let mut s = Server::start(opts);
    let sessions = 50;
    s.populate(sessions + 2);
    let json = s.data_dir().join("soak.jsonl");
    let run = Command::new(soak_bin())
        .args(["--host", &s.c2s.ip().to_string()])
        .args(["--port", &s.c2s.port().to_string()])
        .args(["--server-pid", &s.pid().to_string()])
        .args(["--sessions", &sessions.to_string()])
        .args(["--duration", "15", "--interval", "5"])
        .args(["--rate", "40", "--churn", "2"])
        .args(["--offline-min", "0.5", "--offline-max", "2"])
        .args(["--slow-readers", "1", "--slow-every", "3"])
        // More than the queue bound plus the server's socket send buffer
        // (which grows to megabytes on loopback).
        .args([
            "--slow-bytes",
            "6291456",
            "--slow-body",
            "32768",
            "--slow-rate",
            "400",
        ])
        .args(["--attack", "--attackers", "3", "--attack-pause", "0.5"])
        .args(["--trickle-every", "1", "--attack-max", "8"])
        .args(["--concurrency", "10", "--drain", "30", "--loss-after", "5"])
        .arg("--json")
        .arg(&json)
        .output()
        .expect("run osprey-soak");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    eprintln!("--- osprey-soak stdout ---\n{stdout}--- stderr ---\n{stderr}");
    s.assert_alive();
    assert!(run.status.success(), "osprey-soak failed ({})", run.status);
    assert!(stdout.contains("RESULT: OK"), "{stdout}");

    let text = std::fs::read_to_string(&json).expect("the JSON lines file");
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let intervals = records.iter().filter(|r| r["type"] == "interval").count();
    assert!(intervals >= 3, "interval records: {intervals}");
    let sum = records
        .iter()
        .find(|r| r["type"] == "summary")
        .expect("a summary record");
    let m = &sum["messages"];
    assert!(sum["aborted"].is_null(), "{sum}");
    assert_eq!(sum["lost"], 0, "{sum}");
    assert_eq!(m["duplicates"], 0, "{sum}");
    assert_eq!(m["misrouted"], 0, "{sum}");
    assert_eq!(m["bounced"], 0, "{sum}");
    let sent = m["sent"].as_u64().expect("sent");
    assert!(sent > 300, "{sum}");
    assert_eq!(
        m["delivered"].as_u64(),
        Some(sent - m["unconfirmed"].as_u64().unwrap_or(0))
    );
    assert!(
        m["delivered_offline"].as_u64() > Some(0),
        "nothing came from offline storage: {sum}"
    );
    assert!(sum["churn_logouts"].as_u64() > Some(5), "{sum}");
    // The slow reader was dropped by the server at least once, and what it
    // was owed came back from offline storage (no loss above).
    assert!(sum["slow_reader_closes"].as_u64() >= Some(1), "{sum}");
    assert!(sum["attacks_made"].as_u64() >= Some(6), "{sum}");
    assert!(
        sum["attacks_closed_with_error"].as_u64() >= Some(1),
        "no attack was closed with a stream error: {sum}"
    );
    assert!(sum["rss_bytes"]["max"].as_f64() > Some(0.0), "{sum}");
    assert!(sum["fds"]["max"].as_f64() > Some(0.0), "{sum}");
    s.assert_alive();
    assert!(s.terminate().success());
}
