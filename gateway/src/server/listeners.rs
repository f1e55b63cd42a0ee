//! `data_dir/listeners.json`: the addresses actually bound (port 0 becomes
//! a real port), written once every listener is up, so that scripts and
//! tests know where to connect and when the server is ready.

use std::path::Path;

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct ListenerFile {
    pub c2s: Vec<String>,
    pub http: Vec<String>,
}

const FILE: &str = "listeners.json";

impl ListenerFile {
    /// Written to a temporary name and renamed, so readers never see half.
    pub fn write(&self, data_dir: &Path) -> std::io::Result<()> {
        let tmp = data_dir.join(format!("{FILE}.tmp"));
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, json)?;
        std::fs::rename(tmp, data_dir.join(FILE))
    }

    pub fn read(data_dir: &Path) -> std::io::Result<ListenerFile> {
        let bytes = std::fs::read(data_dir.join(FILE))?;
        serde_json::from_slice(&bytes).map_err(std::io::Error::other)
    }

    pub fn remove(data_dir: &Path) {
        let _ = std::fs::remove_file(data_dir.join(FILE));
    }
}
