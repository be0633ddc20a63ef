//! MQTT over TLS (`[embedded_broker.tls]`): the broker's own certificate, and, optionally,
//! client certificates from a city's CA that log a device in by name instead of a secret.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use serde::Deserialize;
use tokio_rustls::TlsAcceptor;

use crate::BrokerError;

/// `[embedded_broker.tls]`: a second listener, for MQTT over TLS.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerTls {
    /// Default `127.0.0.1:8883`.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// PEM: the broker's certificate chain, its own first.
    pub cert_file: PathBuf,
    /// PEM: the private key of that certificate.
    pub key_file: PathBuf,
    /// PEM: the CA certificates whose client certificates log clients in. A client that
    /// presents one (it must verify) is the credential its subject's common name names, with
    /// no password, while that credential is live; a client without one logs in with its
    /// secret as on the plain listener. Absent: no client certificates are asked for.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8883))
}

fn bad(path: &Path, why: impl std::fmt::Display) -> BrokerError {
    BrokerError::Config(format!("[embedded_broker.tls] {}: {why}", path.display()))
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, BrokerError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(path, e))?;
    if certs.is_empty() {
        return Err(bad(path, "no certificate in it"));
    }
    Ok(certs)
}

/// The acceptor for `tls`: every file read and checked now, so that a bad one stops the
/// start instead of every handshake.
pub(crate) fn acceptor(tls: &BrokerTls) -> Result<TlsAcceptor, BrokerError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certificates(&tls.cert_file)?;
    let key = PrivateKeyDer::from_pem_file(&tls.key_file).map_err(|e| bad(&tls.key_file, e))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| BrokerError::Config(format!("[embedded_broker.tls]: {e}")))?;
    let builder = match &tls.client_ca_file {
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for ca in certificates(path)? {
                roots.add(ca).map_err(|e| bad(path, e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| bad(path, e))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(chain, key)
        .map_err(|e| bad(&tls.cert_file, e))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The common name of a verified client certificate's subject.
pub(crate) fn certificate_name(certificate: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate.as_ref()).ok()?;
    let name = parsed.subject().iter_common_name().next()?.as_str().ok()?;
    Some(name.to_owned())
}
