//! TLS for the c2s listeners: the configured certificate, or a self-signed
//! one generated under the data directory on first start and reused after.

use std::path::{Path, PathBuf};
use std::sync::Arc;
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
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(TlsIdentity {
        acceptor: TlsAcceptor::from(Arc::new(config)),
        certfile: cert_path,
        not_after,
    })
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
