//! The rustls client configuration for https destinations.
//!
//! The ring provider is named explicitly: the process-wide default provider
//! may be unset (or set by someone else), and aws-lc must stay out of the
//! tree.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

use super::config::HttpSinkError;

/// Trusts the system's roots plus the certificates of `extra_ca`, and offers
/// only HTTP/1.1 by ALPN (the connector adds it).
pub(crate) fn client_config(extra_ca: Option<&Path>) -> Result<ClientConfig, HttpSinkError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::warn!(%error, "could not load some system CA certificates");
    }
    let (added, ignored) = roots.add_parsable_certificates(native.certs);
    tracing::debug!(added, ignored, "system CA certificates loaded");
    if let Some(path) = extra_ca {
        for cert in read_ca(path)? {
            roots.add(cert).map_err(|source| HttpSinkError::InvalidCa {
                path: path.to_owned(),
                source,
            })?;
        }
    }
    if roots.is_empty() {
        tracing::warn!("no CA certificate is trusted: every https destination will fail");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

fn read_ca(path: &Path) -> Result<Vec<CertificateDer<'static>>, HttpSinkError> {
    let read_error = |source| HttpSinkError::ReadCa {
        path: path.to_owned(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(read_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_error)?;
    if certs.is_empty() {
        return Err(HttpSinkError::NoCaCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_tls_refuses_a_missing_or_empty_ca_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        assert!(matches!(
            client_config(Some(&missing)),
            Err(HttpSinkError::ReadCa { .. })
        ));

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no pem here\n").unwrap();
        assert!(matches!(
            client_config(Some(&empty)),
            Err(HttpSinkError::NoCaCertificate { .. })
        ));

        let garbage = dir.path().join("garbage.pem");
        std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        assert!(matches!(
            client_config(Some(&garbage)),
            Err(HttpSinkError::InvalidCa { .. })
        ));
    }
}
