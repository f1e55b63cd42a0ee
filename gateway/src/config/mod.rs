//! The configuration file: one TOML document in the MongooseIM 6 spirit.
//! Every key has a default; unknown keys and bad values are refused with
//! the file, line and key named.

mod error;
mod locate;
mod model;
mod validate;

pub use error::ConfigError;
pub use model::*;

use std::path::Path;

impl Config {
    /// Loads and validates a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::io(path, &e))?;
        Config::parse(&text, path)
    }

    /// Parses `text` as if read from `path` (errors name it).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::new(text);
        let raw: RawConfig = serde_path_to_error::deserialize(de)
            .map_err(|e| ConfigError::from_serde(path, text, e))?;
        let mut config = raw.into_config();
        config.source = Some(path.to_path_buf());
        validate::check(&config)
            .and_then(|()| crate::modules::check(&config))
            .map_err(|(key, message)| ConfigError::at_key(path, text, &key, message))?;
        Ok(config)
    }

    /// The built-in configuration used when no file is given: localhost on
    /// 0.0.0.0:5222 with STARTTLS required, the admin/metrics listener on
    /// 127.0.0.1:9091, SQLite under ./data, Prometheus and log handlers on.
    pub fn default_for_no_file() -> Config {
        let mut c = RawConfig::default().into_config();
        c.instrumentation.prometheus = Some(PrometheusConfig::default());
        c.instrumentation.log = Some(LogConfig::default());
        c
    }

    /// A config error about `key` found after loading (e.g. an event name
    /// only the gateway knows), located in the source file when there is one.
    pub fn error_at(&self, key: &str, message: impl Into<String>) -> ConfigError {
        match &self.source {
            Some(path) => {
                let text = std::fs::read_to_string(path).unwrap_or_default();
                ConfigError::at_key(path, &text, key, message.into())
            }
            None => ConfigError::at_key(Path::new("<built-in defaults>"), "", key, message.into()),
        }
    }
}

#[cfg(test)]
mod tests;
