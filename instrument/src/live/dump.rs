//! Dump a trace to a file (JSON lines, a header first) and load it back.

use std::io::{BufRead, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Options, Record};

/// The file format's version; a file of another version is refused.
pub const FORMAT: &str = "osprey-trace/1";

#[derive(Debug, Serialize, Deserialize)]
pub struct Header {
    pub format: String,
    pub id: u64,
    pub filter: serde_json::Value,
    pub stop_reason: Option<String>,
    pub records: usize,
    /// When the trace started, Unix µs (older dumps: the first record's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_us: Option<u64>,
    /// The trace's limits and what it kept (payloads, messages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Options>,
}

impl Header {
    /// The trace's start: as recorded, else its first record's time.
    pub fn start_us(&self, records: &[Record]) -> u64 {
        self.started_us
            .or_else(|| records.first().map(|r| r.ts_us))
            .unwrap_or(0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not an Osprey trace dump (line 1: {detail})")]
    NotADump { path: String, detail: String },
    #[error("{path}: format {found:?}, this version reads {FORMAT:?}")]
    Version { path: String, found: String },
    #[error("{path}:{line}: corrupt record: {detail}")]
    Corrupt {
        path: String,
        line: usize,
        detail: String,
    },
    #[error("{path}: the header announces {want} records, the file holds {found}")]
    Truncated {
        path: String,
        want: usize,
        found: usize,
    },
}

/// Writes the dump next to `path`, then renames it into place: a crash
/// midway leaves the old file, never half a new one.
pub fn write(path: &Path, header: &Header, records: &[Record]) -> Result<(), DumpError> {
    let io = |source| DumpError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(io)?);
    encode(&mut out, header, records).map_err(io)?;
    out.flush().map_err(io)?;
    drop(out);
    std::fs::rename(&tmp, path).map_err(io)
}

/// The dump as text (the HTTP `dump` reply).
pub fn to_text(header: &Header, records: &[Record]) -> String {
    let mut out = Vec::new();
    let _ = encode(&mut out, header, records);
    String::from_utf8(out).unwrap_or_default()
}

fn encode(out: &mut impl Write, header: &Header, records: &[Record]) -> std::io::Result<()> {
    let line = serde_json::to_string(header).unwrap_or_default();
    writeln!(out, "{line}")?;
    for r in records {
        let line = serde_json::to_string(r).unwrap_or_default();
        writeln!(out, "{line}")?;
    }
    Ok(())
}

pub fn read(path: &Path) -> Result<(Header, Vec<Record>), DumpError> {
    let p = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| DumpError::Io {
        path: p.clone(),
        source,
    })?;
    parse(std::io::BufReader::new(file), &p)
}

/// Reads a dump from any reader (a file, an uploaded body); `name` is what
/// errors call it.
pub fn parse(input: impl BufRead, name: &str) -> Result<(Header, Vec<Record>), DumpError> {
    let p = name.to_string();
    let mut lines = input.lines();
    let first = match lines.next() {
        Some(Ok(l)) => l,
        Some(Err(source)) => return Err(DumpError::Io { path: p, source }),
        None => {
            return Err(DumpError::NotADump {
                path: p,
                detail: "empty file".into(),
            })
        }
    };
    let header: Header = serde_json::from_str(&first).map_err(|e| DumpError::NotADump {
        path: p.clone(),
        detail: e.to_string(),
    })?;
    if header.format != FORMAT {
        return Err(DumpError::Version {
            path: p,
            found: header.format,
        });
    }
    let mut records = Vec::new();
    for (i, line) in lines.enumerate() {
        let line = line.map_err(|source| DumpError::Io {
            path: p.clone(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let r: Record = serde_json::from_str(&line).map_err(|e| DumpError::Corrupt {
            path: p.clone(),
            line: i + 2,
            detail: e.to_string(),
        })?;
        records.push(r);
    }
    if records.len() != header.records {
        return Err(DumpError::Truncated {
            path: p,
            want: header.records,
            found: records.len(),
        });
    }
    Ok((header, records))
}
