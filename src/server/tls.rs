//! TLS for `tls` and `wss` listeners: the rustls configuration (ring
//! provider), built once per listener and swapped on reload, and the
//! client certificate identity used as a user name.

use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use parking_lot::RwLock;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::config::{IdentitySource, TlsConfig};

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("{path}: no {what} found")]
    Empty { path: String, what: &'static str },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client CA {path}: {error}")]
    ClientCa { path: String, error: String },
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let file = std::fs::File::open(path).map_err(|error| TlsSetupError::Read {
        path: path.display().to_string(),
        error,
    })?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut BufReader::new(file))
        .collect::<Result<_, _>>()
        .map_err(|error| TlsSetupError::Read {
            path: path.display().to_string(),
            error,
        })?;
    if certs.is_empty() {
        return Err(TlsSetupError::Empty {
            path: path.display().to_string(),
            what: "certificate",
        });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsSetupError> {
    let file = std::fs::File::open(path).map_err(|error| TlsSetupError::Read {
        path: path.display().to_string(),
        error,
    })?;
    rustls_pemfile::private_key(&mut BufReader::new(file))
        .map_err(|error| TlsSetupError::Read {
            path: path.display().to_string(),
            error,
        })?
        .ok_or(TlsSetupError::Empty {
            path: path.display().to_string(),
            what: "private key",
        })
}

/// Builds the rustls server configuration from the listener's files.
pub fn server_config(cfg: &TlsConfig) -> Result<Arc<ServerConfig>, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()?;
    let builder = match &cfg.client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs(ca)? {
                roots.add(cert).map_err(|e| TlsSetupError::ClientCa {
                    path: ca.display().to_string(),
                    error: e.to_string(),
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if cfg.require_certificate {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            let verifier = verifier.build().map_err(|e| TlsSetupError::ClientCa {
                path: ca.display().to_string(),
                error: e.to_string(),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(read_certs(&cfg.cert)?, read_key(&cfg.key)?)?;
    config.alpn_protocols = vec![b"mqtt".to_vec()];
    Ok(Arc::new(config))
}

/// A listener's TLS state: the acceptor is built once and replaced as a
/// whole on reload, so a handshake in progress keeps the config it began with.
pub struct TlsEndpoint {
    config: TlsConfig,
    /// The one ALPN protocol offered: what the listener speaks inside TLS.
    alpn: &'static [u8],
    acceptor: RwLock<TlsAcceptor>,
}

impl TlsEndpoint {
    /// `alpn` is `b"mqtt"` for MQTT over TLS and `b"http/1.1"` for WSS:
    /// browsers offer `h2` and `http/1.1` for a WebSocket and get a
    /// `no_application_protocol` alert from a server that offers only
    /// `mqtt`.
    pub fn new(config: &TlsConfig, alpn: &'static [u8]) -> Result<TlsEndpoint, TlsSetupError> {
        let acceptor = acceptor(config, alpn)?;
        Ok(TlsEndpoint {
            config: config.clone(),
            alpn,
            acceptor: RwLock::new(acceptor),
        })
    }

    pub fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.read().clone()
    }

    /// Re-reads certificate, key and CA files; on error the running
    /// configuration stays.
    pub fn reload(&self) -> Result<(), TlsSetupError> {
        *self.acceptor.write() = acceptor(&self.config, self.alpn)?;
        Ok(())
    }

    pub fn uses_identity(&self) -> bool {
        self.config.use_identity_as_username
    }

    /// The identity of a verified client certificate, as configured.
    pub fn identity(&self, certs: Option<&[CertificateDer<'_>]>) -> Option<String> {
        let der = certs?.first()?;
        certificate_identity(der, self.config.identity_source)
    }
}

fn acceptor(config: &TlsConfig, alpn: &[u8]) -> Result<TlsAcceptor, TlsSetupError> {
    let mut server = (*server_config(config)?).clone();
    server.alpn_protocols = vec![alpn.to_vec()];
    Ok(TlsAcceptor::from(Arc::new(server)))
}

/// The subject CN or the first SAN of the wanted type.
pub fn certificate_identity(der: &[u8], source: IdentitySource) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    match source {
        IdentitySource::Cn => cert
            .subject()
            .iter_common_name()
            .next()?
            .as_str()
            .ok()
            .map(str::to_string),
        _ => {
            let san = cert.subject_alternative_name().ok()??;
            san.value
                .general_names
                .iter()
                .find_map(|n| match (n, source) {
                    (GeneralName::DNSName(s), IdentitySource::Dns)
                    | (GeneralName::RFC822Name(s), IdentitySource::Email)
                    | (GeneralName::URI(s), IdentitySource::Uri) => Some(s.to_string()),
                    _ => None,
                })
        }
    }
}
