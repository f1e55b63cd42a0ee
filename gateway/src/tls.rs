//! TLS for the c2s listeners: the configured certificate, or a self-signed
//! one generated under the data directory on first start and reused after.
//! Each listener's certificate can be reloaded while the server runs
//! ([`ReloadableIdentity`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// How long a generated certificate is valid.
const GENERATED_VALIDITY_DAYS: i64 = 365;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Pem { path: PathBuf, message: String },
    #[error("{keyfile} with {certfile}: {}", key_message(source))]
    Key {
        certfile: PathBuf,
        keyfile: PathBuf,
        source: rustls::Error,
    },
    #[error("generating a self-signed certificate: {0}")]
    Generate(String),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A ready acceptor plus what the probes report about its certificate.
#[derive(Clone)]
pub struct TlsIdentity {
    pub acceptor: TlsAcceptor,
    pub certfile: PathBuf,
    /// End of the leaf certificate's validity, if it could be read.
    pub not_after: Option<SystemTime>,
    /// The chain as served: a reload compares it to tell whether it changed.
    pub chain: Vec<CertificateDer<'static>>,
}

impl TlsIdentity {
    /// When the certificate expires (its notAfter), in Unix seconds: the
    /// `tls_certificate_expiry_timestamp_seconds` gauge. Alerts and the
    /// dashboards subtract `time()`; `osprey top` shows the days left.
    pub fn expiry_timestamp(&self) -> Option<f64> {
        let end = self.not_after?;
        Some(match end.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(d) => d.as_secs_f64(),
            Err(e) => -e.duration().as_secs_f64(),
        })
    }

    /// The notAfter in whole Unix seconds.
    pub fn not_after_unix(&self) -> Option<i64> {
        let end = self.not_after?;
        let secs = end.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_secs();
        i64::try_from(secs).ok()
    }
}

/// Where a listener's certificate comes from, kept to load it again.
#[derive(Debug, Clone)]
pub struct TlsSource {
    pub certfile: Option<PathBuf>,
    pub keyfile: Option<PathBuf>,
    pub data_dir: PathBuf,
    pub hosts: Vec<String>,
}

impl TlsSource {
    pub fn load(&self) -> Result<TlsIdentity, TlsError> {
        load_or_generate(
            self.certfile.as_deref(),
            self.keyfile.as_deref(),
            &self.data_dir,
            &self.hosts,
        )
    }
}

/// A listener's current identity, replaceable while it serves: each new
/// handshake takes the current one ([`ReloadableIdentity::current`]);
/// connections already open keep the one they were made with.
pub struct ReloadableIdentity {
    source: TlsSource,
    current: RwLock<Arc<TlsIdentity>>,
    /// One reload at a time (SIGHUP and the admin API may race), so that
    /// `changed` compares against what the previous reload installed.
    reloading: Mutex<()>,
}

/// What a successful reload installed.
#[derive(Clone)]
pub struct Reloaded {
    pub identity: Arc<TlsIdentity>,
    /// Whether the served chain differs from the previous one.
    pub changed: bool,
}

impl ReloadableIdentity {
    /// Loads the first identity (blocking file I/O).
    pub fn load(source: TlsSource) -> Result<ReloadableIdentity, TlsError> {
        let identity = source.load()?;
        Ok(ReloadableIdentity {
            source,
            current: RwLock::new(Arc::new(identity)),
            reloading: Mutex::new(()),
        })
    }

    /// The identity new handshakes use.
    pub fn current(&self) -> Arc<TlsIdentity> {
        // A panic elsewhere cannot leave the Arc half-written: ignore poison.
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Reads the files again (blocking: call it off the async workers) and
    /// installs the result; on any error the current identity stays.
    pub fn reload(&self) -> Result<Reloaded, TlsError> {
        let _one = self
            .reloading
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let identity = Arc::new(self.source.load()?);
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        let changed = current.chain != identity.chain;
        *current = identity.clone();
        Ok(Reloaded { identity, changed })
    }
}

/// Loads `certfile`/`keyfile`, or (both `None`) the generated pair under
/// `data_dir/tls/`, creating it for `hosts` when it does not exist yet.
pub fn load_or_generate(
    certfile: Option<&Path>,
    keyfile: Option<&Path>,
    data_dir: &Path,
    hosts: &[String],
) -> Result<TlsIdentity, TlsError> {
    let (cert_path, key_path) = match (certfile, keyfile) {
        (Some(c), Some(k)) => (c.to_path_buf(), k.to_path_buf()),
        _ => {
            let dir = data_dir.join("tls");
            let cert = dir.join("cert.pem");
            let key = dir.join("key.pem");
            if !cert.exists() || !key.exists() {
                generate(&dir, &cert, &key, hosts)?;
            }
            (cert, key)
        }
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .map_err(|e| pem_err(&cert_path, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| pem_err(&cert_path, e))?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: cert_path,
            message: "no certificate found".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| pem_err(&key_path, e))?;
    let not_after = certs.first().and_then(|c| leaf_not_after(c.as_ref()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // Named by both files: a key that does not match the certificate
    // (e.g. one of the pair replaced but not the other) fails here.
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs.clone(), key)
        .map_err(|source| TlsError::Key {
            certfile: cert_path.clone(),
            keyfile: key_path.clone(),
            source,
        })?;
    Ok(TlsIdentity {
        acceptor: TlsAcceptor::from(Arc::new(config)),
        certfile: cert_path,
        not_after,
        chain: certs,
    })
}

/// rustls words a mismatched pair as a Debug name: say it plainly.
fn key_message(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
            "the private key does not match the certificate".into()
        }
        other => other.to_string(),
    }
}

fn pem_err(path: &Path, e: rustls::pki_types::pem::Error) -> TlsError {
    TlsError::Pem {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

fn generate(dir: &Path, cert: &Path, key: &Path, hosts: &[String]) -> Result<(), TlsError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TlsError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut params = rcgen::CertificateParams::new(hosts.to_vec())
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(GENERATED_VALIDITY_DAYS);
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        hosts.first().cloned().unwrap_or_default(),
    );
    let pair = rcgen::KeyPair::generate().map_err(|e| TlsError::Generate(e.to_string()))?;
    let certificate = params
        .self_signed(&pair)
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    write_private(key, pair.serialize_pem().as_bytes()).map_err(io(key))?;
    std::fs::write(cert, certificate.pem()).map_err(io(cert))?;
    tracing::info!(
        certfile = %cert.display(),
        hosts = ?hosts,
        "generated a self-signed certificate valid for {GENERATED_VALIDITY_DAYS} days"
    );
    Ok(())
}

/// The private key is written readable by its owner only.
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        f.write_all(data)
    }
    #[cfg(not(unix))]
    {
        std::fs::write(path, data)
    }
}

fn leaf_not_after(der: &[u8]) -> Option<SystemTime> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let ts = cert.validity().not_after.timestamp();
    let secs = u64::try_from(ts).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_once_and_reuses() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = vec!["localhost".to_string()];
        let a = load_or_generate(None, None, dir.path(), &hosts).unwrap();
        let pem1 = std::fs::read(&a.certfile).unwrap();
        let b = load_or_generate(None, None, dir.path(), &hosts).unwrap();
        assert_eq!(pem1, std::fs::read(&b.certfile).unwrap());
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let days = (a.expiry_timestamp().unwrap() - now) / 86_400.0;
        assert!((363.0..=365.0).contains(&days), "days remaining {days}");
    }

    /// A self-signed pair for `localhost` with `cn` as its common name.
    fn pair(cn: &str) -> (String, String) {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn reload_swaps_and_keeps_the_old_one_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        let write = |(c, k): &(String, String)| {
            std::fs::write(&cert, c).unwrap();
            std::fs::write(&key, k).unwrap();
        };
        let (one, two) = (pair("one"), pair("two"));
        write(&one);
        let id = ReloadableIdentity::load(TlsSource {
            certfile: Some(cert.clone()),
            keyfile: Some(key.clone()),
            data_dir: dir.path().to_path_buf(),
            hosts: vec!["localhost".into()],
        })
        .unwrap();
        let first = id.current();
        assert!(!id.reload().unwrap().changed, "same files, same chain");

        write(&two);
        let r = id.reload().unwrap();
        assert!(r.changed);
        assert_ne!(id.current().chain, first.chain);
        let installed = id.current();

        // Not PEM: the error names the file; the certificate stays.
        std::fs::write(&cert, "not a certificate").unwrap();
        let e = id.reload().err().unwrap();
        assert!(e.to_string().contains("c.pem"), "{e}");
        assert_eq!(id.current().chain, installed.chain);

        // A key of another pair: both files named.
        std::fs::write(&cert, &one.0).unwrap();
        let e = id.reload().err().unwrap();
        assert!(e.to_string().contains("does not match"), "{e}");
        assert!(
            e.to_string().contains("c.pem") && e.to_string().contains("k.pem"),
            "{e}"
        );
        assert_eq!(id.current().chain, installed.chain);

        std::fs::remove_file(&key).unwrap();
        assert!(id.reload().err().unwrap().to_string().contains("k.pem"));
        assert_eq!(id.current().chain, installed.chain);
    }

    #[test]
    fn missing_certfile_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let err = load_or_generate(Some(&missing), Some(&missing), dir.path(), &[])
            .err()
            .unwrap();
        assert!(err.to_string().contains("nope.pem"), "{err}");
    }
}
