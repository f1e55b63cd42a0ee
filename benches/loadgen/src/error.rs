//! The generator's one error type. Per-connection errors are counted in
//! the report; only a bad configuration or an unreachable server makes a
//! whole run fail.

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("bad configuration: {0}")]
    Config(String),
    #[error("connect: {0}")]
    Connect(io::Error),
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    #[error("timed out ({0})")]
    Timeout(&'static str),
    #[error("the server closed the stream ({0})")]
    Closed(&'static str),
    #[error("stream error: {0}")]
    StreamError(String),
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("authentication failed: {0}")]
    Auth(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("element larger than {0} bytes")]
    TooLarge(usize),
    #[error("/proc: {0}")]
    Proc(String),
}

impl Error {
    /// A short, stable text for counting failures by kind (no addresses,
    /// no numbers that differ per connection).
    pub fn kind(&self) -> String {
        match self {
            Error::Config(m) => format!("config: {m}"),
            Error::Connect(e) => format!("connect: {}", e.kind()),
            Error::Io(e) => format!("i/o: {}", e.kind()),
            Error::Timeout(what) => format!("timeout: {what}"),
            Error::Closed(what) => format!("closed: {what}"),
            Error::StreamError(c) => format!("stream error: {c}"),
            Error::Protocol(m) => format!("protocol: {m}"),
            Error::Auth(m) => format!("auth: {m}"),
            Error::Tls(m) => format!("tls: {m}"),
            Error::TooLarge(_) => "element too large".into(),
            Error::Proc(m) => format!("proc: {m}"),
        }
    }
}
