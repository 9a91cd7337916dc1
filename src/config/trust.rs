//! What a link trusts, and the CA files it names: read and checked at start,
//! so a setting that can never work stops the process with its name.

use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// What one link trusts.
#[derive(Clone, Debug, Default)]
pub struct Trust {
    /// A PEM file of the CAs to trust instead of the platform's roots.
    pub ca_file: Option<PathBuf>,
    /// `false` accepts any certificate (an explicit opt-out, logged).
    pub skip_verify: bool,
}

/// Why a TLS setting can never work; the process stops at start with it.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {error}; point it at a readable PEM file of the CA")]
    Unreadable { path: String, error: std::io::Error },
    #[error("{path} holds no PEM certificate (-----BEGIN CERTIFICATE-----); point it at the CA's certificate")]
    NoCertificate { path: String },
    #[error("{path}: {error}; point it at the CA's certificate")]
    Invalid { path: String, error: String },
}

/// The certificates of a CA file, read and checked.
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|error| TlsError::Unreadable {
        path: shown.clone(),
        error,
    })?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Invalid {
            path: shown.clone(),
            error: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { path: shown });
    }
    Ok(certs)
}
