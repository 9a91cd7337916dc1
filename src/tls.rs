//! TLS for the links out to Home Assistant and Redis: rustls on ring, so
//! nothing (no OpenSSL) is needed on the machine.
//!
//! Trust is the platform's roots, or exactly the CAs of a PEM file
//! (`HA_CA_FILE`, `REDIS_CA_FILE`) for a private CA or a self-signed server;
//! verification is off only when a setting says so. MySQL's TLS is sqlx's
//! own, from `ssl-mode` and `ssl-ca` in the URL.
//!
//! What a link trusts, and reading a CA file, are settings' matters and live
//! in [`crate::config`]; this file turns them into rustls configs.

use std::sync::{Arc, Once};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

pub use crate::config::{read_ca_file, TlsError, Trust};

/// Makes ring the process's rustls provider, once: Redis's and sqlx's TLS
/// ask for the process default.
pub fn install_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A client config for `trust`.
pub fn client_config(trust: &Trust) -> Result<Arc<ClientConfig>, TlsError> {
    install_provider();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions");
    let config = if trust.skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth()
    } else {
        let mut roots = RootCertStore::empty();
        match &trust.ca_file {
            Some(path) => {
                for cert in read_ca_file(path)? {
                    roots.add(cert).map_err(|e| TlsError::Invalid {
                        path: path.display().to_string(),
                        error: e.to_string(),
                    })?;
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                if !found.errors.is_empty() {
                    tracing::warn!(errors = ?found.errors, "Some of the platform's CA certificates could not be read");
                }
                roots.add_parsable_certificates(found.certs);
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// Why a TLS handshake failed, in the words people search for
/// ("certificate verify failed: unknown issuer"), found anywhere in an
/// error's chain; `None` when TLS is not the cause.
pub fn describe(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            return Some(describe_rustls(r));
        }
        // An I/O error's `source` skips the error it wraps; rustls's arrives
        // wrapped once or twice (tokio-rustls, then the HTTP connector).
        next = match e.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|i| i as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

fn describe_rustls(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => {
            let why = match c {
                C::UnknownIssuer => "unknown issuer".to_string(),
                C::NotValidForName | C::NotValidForNameContext { .. } => {
                    "the certificate is not for this host name".to_string()
                }
                C::Expired | C::ExpiredContext { .. } => "the certificate has expired".to_string(),
                C::BadSignature => "bad signature".to_string(),
                other => format!("{other:?}"),
            };
            format!("certificate verify failed: {why}")
        }
        other => format!("TLS handshake failed: {other}"),
    }
}

/// The verifier of `HA_TLS_VERIFY=false`: any certificate is taken, but
/// handshake signatures are still checked, so the session is at least
/// encrypted to whoever answered.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_that_cannot_work_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.pem");
        let err = read_ca_file(&missing).unwrap_err().to_string();
        assert!(
            err.contains("none.pem") && err.contains("cannot read"),
            "{err}"
        );
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = read_ca_file(&empty).unwrap_err().to_string();
        assert!(err.contains("no PEM certificate"), "{err}");
    }

    #[test]
    fn the_platform_roots_and_the_opt_out_both_build() {
        client_config(&Trust::default()).unwrap();
        client_config(&Trust {
            ca_file: None,
            skip_verify: true,
        })
        .unwrap();
    }

    #[test]
    fn handshake_errors_read_as_people_search_for_them() {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        assert_eq!(
            describe(&io).as_deref(),
            Some("certificate verify failed: unknown issuer")
        );
        let twice = std::io::Error::other(io);
        assert_eq!(
            describe(&twice).as_deref(),
            Some("certificate verify failed: unknown issuer")
        );
        assert_eq!(describe(&std::io::Error::other("refused")), None);
    }
}
