//! Target `config`: the TOML configuration loader from text
//! (`osprey::config::Config::parse`), with its file/line/key errors.
//!
//! Input: the file's text (non-UTF-8 inputs are skipped: `Config::load`
//! refuses them before parsing).
//!
//! Invariants: nothing panics; a refused file's error names the file and a
//! line within it (1..=lines+1) and a column, and displays; an accepted one
//! passes the checks `validate` promises (e.g. at least one valid host).

use std::path::Path;

use osprey::config::Config;

const FILE: &str = "/etc/osprey/fuzz.toml";

pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(text, Path::new(FILE)) {
        Ok(c) => {
            assert!(!c.general.hosts.is_empty());
            assert!(c.auth.scram_iterations >= 4096);
            assert_eq!(c.source.as_deref(), Some(Path::new(FILE)));
            for l in &c.listen.c2s {
                assert!(l.max_stanza_size_pre_auth >= 512);
                assert!(l.max_stanza_size_pre_auth <= l.max_stanza_size);
            }
            let _ = format!("{c:?}");
        }
        Err(e) => {
            let shown = e.to_string();
            assert!(
                shown.starts_with(&format!("config error: {FILE}")),
                "{shown}"
            );
            let lines = text.split('\n').count();
            let line = e
                .line
                .unwrap_or_else(|| panic!("an error without a line: {shown}"));
            assert!(
                (1..=lines + 1).contains(&line),
                "line {line} of {lines}: {shown}"
            );
            assert!(e.column.is_some_and(|c| c >= 1), "no column: {shown}");
        }
    }
}
