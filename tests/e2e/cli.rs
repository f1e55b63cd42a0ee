//! `osprey account …` and configuration errors, against the real binary.

use crate::both_backends;
use crate::harness::{osprey_bin, Backend, Options, Server};
use crate::raw::Raw;

fn code(out: &std::process::Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

async fn accounts(b: Backend) {
    // The server runs while the CLI writes to the same storage.
    let s = Server::start(Options::plaintext(b));
    let out = s.cli(&[
        "account",
        "register",
        "Alice@LocalHost",
        "--password",
        "pw1",
    ]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("registered alice@localhost"));
    let out = s.cli(&["account", "register", "alice@localhost", "--password", "x"]);
    assert_eq!(code(&out), 3, "existing account");
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    let out = s.cli(&[
        "account",
        "register",
        "not a jid@localhost",
        "--password",
        "x",
    ]);
    assert_eq!(code(&out), 2, "malformed JID");
    assert!(String::from_utf8_lossy(&out.stderr).contains("malformed JID"));
    let out = s.cli(&[
        "account",
        "register",
        "bob@elsewhere.org",
        "--password",
        "x",
    ]);
    assert_eq!(code(&out), 2, "unknown host");
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown host"));
    s.register("bob@localhost", "pw2");
    let out = s.cli(&["account", "list"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "alice@localhost\nbob@localhost\n"
    );
    let out = s.cli(&["account", "list", "--host", "localhost"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);

    // The running server sees the new account and, after passwd, the new password.
    Raw::login(s.c2s, "alice", "pw1", "a").await;
    let out = s.cli(&["account", "passwd", "alice@localhost", "--password", "pw3"]);
    assert_eq!(code(&out), 0);
    Raw::login(s.c2s, "alice", "pw3", "b").await;
    let out = s.cli(&["account", "passwd", "nobody@localhost", "--password", "x"]);
    assert_eq!(code(&out), 4);

    let out = s.cli(&["account", "remove", "bob@localhost"]);
    assert_eq!(code(&out), 0);
    let out = s.cli(&["account", "remove", "bob@localhost"]);
    assert_eq!(code(&out), 4, "no such account");
    let out = s.cli(&["account", "list"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "alice@localhost\n");
}
both_backends!(account_commands, accounts);

#[test]
fn no_password_is_stored() {
    let s = Server::start(Options::plaintext(Backend::Sqlite));
    s.register("carol@localhost", "very-secret-password");
    let db = std::fs::read(s.data_dir().join("osprey.db")).unwrap_or_default();
    let wal = std::fs::read(s.data_dir().join("osprey.db-wal")).unwrap_or_default();
    for bytes in [db, wal] {
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("very-secret-password"),
            "plaintext password at rest"
        );
    }
}

#[test]
fn bad_config_names_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[general]\nhosts = [\"localhost\"]\n\n[[listen.c2s]]\nport = 5222\ntls.modee = \"none\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(osprey_bin())
        .arg("--config")
        .arg(&path)
        .arg("serve")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml"), "{err}");
    assert!(err.contains(":6"), "line 6: {err}");
    assert!(err.contains("modee"), "key: {err}");

    std::fs::write(&path, "[storage]\nurl = 42\n").unwrap();
    let out = std::process::Command::new(osprey_bin())
        .arg("--config")
        .arg(&path)
        .args(["account", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(":2") && err.contains("storage.url"), "{err}");

    let out = std::process::Command::new(osprey_bin())
        .args(["--config", "/nonexistent/osprey.toml", "serve"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/osprey.toml"));
}

/// `account populate` (benchmarks): bad input is refused whole, with the
/// reason, and nothing is created.
#[test]
fn populate_refuses_bad_input() {
    let s = Server::start(Options::plaintext(Backend::Sqlite));
    let run = |args: &[&str]| {
        let mut all = vec!["account", "populate", "--password", "pw"];
        all.extend_from_slice(args);
        s.cli(&all)
    };
    let out = run(&["--count", "2", "--prefix", "bad user"]);
    assert_eq!(code(&out), 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("malformed JID"));
    let out = run(&["--count", "2", "--host", "nothere"]);
    assert_eq!(code(&out), 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown host \"nothere\""));
    let out = run(&["--count", "0"]);
    assert_eq!(code(&out), 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("--count 0"));
    let list = String::from_utf8_lossy(&s.cli(&["account", "list"]).stdout).to_string();
    assert!(!list.contains("user1@"), "{list}");
}

/// A listing cut short by its reader (`osprey account list | head -1`)
/// ends quietly: no panic, no exit 101.
#[test]
fn a_closed_pipe_ends_a_listing_quietly() {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Command, Stdio};
    let s = Server::start(Options::plaintext(Backend::Sqlite));
    let out = s.cli(&[
        "account",
        "populate",
        "--count",
        "20000",
        "--prefix",
        "pipe",
        "--password",
        "pw",
    ]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let mut child = Command::new(osprey_bin())
        .arg("--config")
        .arg(&s.config)
        .args(["account", "list"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("osprey account list");
    // Read one line, then close the pipe as `head -1` does.
    let mut stdout = child.stdout.take().expect("stdout");
    let mut first = [0u8; 64];
    let n = stdout.read(&mut first).expect("read");
    assert!(n > 0, "some output first");
    drop(stdout);
    let status = child.wait().expect("wait");
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("stderr");
    assert!(!err.contains("panicked"), "{err}");
    assert_ne!(status.code(), Some(101), "{err}");
    // Killed by SIGPIPE (as `cat` is), or done before the pipe closed.
    assert!(
        status.signal() == Some(13 /* SIGPIPE on Linux */) || status.success(),
        "{status:?} {err}"
    );
}
