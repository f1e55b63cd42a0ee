//! Replays every input committed under fuzz/regressions/<target>/ (inputs
//! that once crashed a fuzz target: see fuzz/README.md) through the very
//! harness that target runs (fuzz/src/, compiled here on stable). Each input
//! runs in a child process, so one that still overflows the stack or aborts
//! fails this test with its file name instead of killing the test binary.

use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "../../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod fuzz;

/// `TARGET:PATH` of the one input `replay_one` runs.
const ENV: &str = "OSPREY_FUZZ_REPLAY";

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("read fuzz/regressions").path())
        .filter(|p| p.is_file())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            !name.starts_with('.') && !name.starts_with("README")
        })
        .collect();
    files.sort();
    files
}

#[test]
fn fuzz_regressions_replay() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions");
    for entry in std::fs::read_dir(&root).expect("fuzz/regressions exists") {
        let path = entry.expect("read fuzz/regressions").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            assert!(
                fuzz::TARGETS.iter().any(|(t, _)| *t == name),
                "fuzz/regressions/{name}/ is not a fuzz target"
            );
        }
    }
    let exe = std::env::current_exe().expect("the test binary");
    let mut failures = Vec::new();
    for (target, _) in fuzz::TARGETS {
        for file in inputs(&root.join(target)) {
            let out = Command::new(&exe)
                .args(["--exact", "fuzz_regressions::replay_one"])
                .args(["--ignored", "--nocapture", "--test-threads=1"])
                .env(ENV, format!("{target}:{}", file.display()))
                .env("RUST_BACKTRACE", "0")
                .output()
                .expect("run the test binary");
            if !out.status.success() {
                // The panic (or overflow) message, without libtest's noise.
                let stderr = String::from_utf8_lossy(&out.stderr);
                let why: Vec<&str> = stderr
                    .lines()
                    .skip_while(|l| !l.contains("panicked") && !l.contains("overflow"))
                    .take_while(|l| !l.starts_with("note:"))
                    .take(12)
                    .collect();
                failures.push(format!(
                    "{} ({}):\n{}",
                    file.display(),
                    out.status,
                    why.join("\n")
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "fuzz regressions fail (replay one with `cargo +nightly fuzz run TARGET FILE` \
         in fuzz/):\n\n{}",
        failures.join("\n\n")
    );
}

#[test]
#[ignore = "run by fuzz_regressions_replay in a child process, one input each"]
fn replay_one() {
    let Ok(spec) = std::env::var(ENV) else {
        return;
    };
    let (target, path) = spec.split_once(':').expect("TARGET:PATH");
    let (_, run) = fuzz::TARGETS
        .iter()
        .find(|(t, _)| *t == target)
        .expect("a fuzz target");
    let data = std::fs::read(path).expect("read the input");
    run(&data);
}
