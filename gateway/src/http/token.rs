//! The admin API token: from the configuration, or generated once into
//! `data_dir/admin.token` (readable by its owner only) and reused.

use std::path::Path;

pub fn load_or_create(configured: Option<&str>, data_dir: &Path) -> std::io::Result<String> {
    if let Some(t) = configured.filter(|t| !t.is_empty()) {
        return Ok(t.to_string());
    }
    let path = data_dir.join("admin.token");
    if let Ok(t) = std::fs::read_to_string(&path) {
        let t = t.trim().to_string();
        if !t.is_empty() {
            return Ok(t);
        }
    }
    let token = hex::encode(rand::random::<[u8; 24]>());
    write_private(&path, token.as_bytes())?;
    tracing::info!(file = %path.display(), "generated the admin API token");
    Ok(token)
}

/// The key of unknown users' fake SCRAM/PLAIN credentials: generated once
/// into `data_dir/fake_credentials.key` (owner only) and kept, so that an
/// unknown name gets the same salt after a restart, as a real one does.
pub fn fake_credentials_key(data_dir: &Path) -> std::io::Result<[u8; 32]> {
    let path = data_dir.join("fake_credentials.key");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let mut key = [0u8; 32];
        if hex::decode_to_slice(text.trim(), &mut key).is_ok() {
            return Ok(key);
        }
    }
    let key: [u8; 32] = rand::random();
    write_private(&path, hex::encode(key).as_bytes())?;
    Ok(key)
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)?.write_all(data)
}
