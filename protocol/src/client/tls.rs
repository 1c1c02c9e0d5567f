//! The client side of TLS, as RocketMQ's clients configure it (`tls.enable`,
//! `tls.client.authServer`, `tls.client.trustCertPath`, `tls.client.certPath`,
//! `tls.client.keyPath`): for the broker's connections to name servers, and for tools.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::error::{Error, Result};

/// A client TLS configuration, ready to connect with.
#[derive(Clone, Debug)]
pub struct ClientTls(pub(super) Arc<rustls::ClientConfig>);

fn invalid(what: &str, reason: impl std::fmt::Display) -> Error {
    Error::Tls(format!("{what}: {reason}"))
}

/// The certificates of a PEM file, at least one; for servers' and clients' files alike.
pub fn pem_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).map_err(|e| invalid(&path.display().to_string(), e))?;
    certificates(&pem, &path.display().to_string())
}

/// The certificates of a PEM document, at least one; `what` names it in errors.
fn certificates(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| invalid(what, e))?;
    if certs.is_empty() {
        return Err(invalid(what, "holds no certificate"));
    }
    Ok(certs)
}

/// A PEM document and the name its errors give it.
struct Pem<'a> {
    text: &'a [u8],
    name: &'a str,
}

fn pem((text, name): &(Vec<u8>, String)) -> Pem<'_> {
    Pem { text, name }
}

impl ClientTls {
    /// `trust`: CA certificates the server's must chain to, or `None` to accept any server
    /// certificate (RocketMQ's default, `tls.client.authServer=false`: encryption without
    /// knowing who answers). `identity`: a certificate and key to show servers that ask.
    pub fn new(trust: Option<&Path>, identity: Option<(&Path, &Path)>) -> Result<ClientTls> {
        let read = |path: &Path| {
            let name = path.display().to_string();
            std::fs::read(path)
                .map(|text| (text, name.clone()))
                .map_err(|e| invalid(&name, e))
        };
        let trust = trust.map(read).transpose()?;
        let identity = match identity {
            Some((cert, key)) => Some((read(cert)?, read(key)?)),
            None => None,
        };
        Self::build(
            trust.as_ref().map(pem),
            identity.as_ref().map(|(cert, key)| (pem(cert), pem(key))),
        )
    }

    /// As [`ClientTls::new`], from PEM held in memory (a Kubernetes Secret's `ca.crt`,
    /// `tls.crt` and `tls.key`).
    pub fn from_pem(trust: Option<&[u8]>, identity: Option<(&[u8], &[u8])>) -> Result<ClientTls> {
        let pem = |text, name| Pem { text, name };
        Self::build(
            trust.map(|text| pem(text, "the trusted certificates")),
            identity.map(|(cert, key)| {
                (
                    pem(cert, "the client certificate"),
                    pem(key, "the client key"),
                )
            }),
        )
    }

    fn build(trust: Option<Pem>, identity: Option<(Pem, Pem)>) -> Result<ClientTls> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls(e.to_string()))?;
        let builder = match trust {
            Some(trust) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in certificates(trust.text, trust.name)? {
                    roots.add(cert).map_err(|e| invalid(trust.name, e))?;
                }
                builder.with_root_certificates(roots)
            }
            None => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyServer(provider))),
        };
        let config = match identity {
            Some((cert, key)) => {
                let key_der =
                    PrivateKeyDer::from_pem_slice(key.text).map_err(|e| invalid(key.name, e))?;
                builder
                    .with_client_auth_cert(certificates(cert.text, cert.name)?, key_der)
                    .map_err(|e| invalid(cert.name, e))?
            }
            None => builder.with_no_client_auth(),
        };
        Ok(ClientTls(Arc::new(config)))
    }
}

/// The name a server's certificate is checked against: the address's host.
pub(super) fn server_name(host: &str) -> Result<ServerName<'static>> {
    ServerName::try_from(host.to_string()).map_err(|e| Error::Tls(format!("{host}: {e}")))
}

/// Accepts any server certificate, still checking the handshake's signatures, so the
/// session is encrypted; who is at the other end is not known.
#[derive(Debug)]
struct AnyServer(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
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
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
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
    fn pem_held_in_memory_is_checked_and_named_in_errors() {
        let error = ClientTls::from_pem(Some(b"not a certificate"), None).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("the trusted certificates: holds no certificate"),
            "{error}"
        );
        assert!(ClientTls::from_pem(None, None).is_ok());
    }
}
