//! TLS on the remoting port, as RocketMQ's servers offer it (`tls.server.mode`): disabled,
//! permissive (TLS and plaintext clients on one port, told apart by the first byte) or
//! enforcing. Certificates are PEM files, read again when they change, so a renewed
//! certificate (cert-manager's) applies to new connections without a restart.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tracing::{error, info};

use crate::config::{ClientAuth, TlsConfig, TlsMode};
use crate::error::{Error, Result};
use crate::file_stamp::{self, FileStamp};

/// The first byte of every TLS connection: a handshake record. A RocketMQ frame starting
/// with it would announce more than 350 MiB, far past the largest frame, so the two cannot
/// be mistaken for each other.
const TLS_HANDSHAKE: u8 = 0x16;

pub struct TlsServer {
    mode: TlsMode,
    acceptor: TlsAcceptor,
    certificate: Arc<ReloadingCertificate>,
}

/// The server's certificate and key, from files, swapped when either file changes.
#[derive(Debug)]
struct ReloadingCertificate {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    stamps: Mutex<[FileStamp; 2]>,
}

fn invalid(reason: String) -> Error {
    Error::Tls { reason }
}

/// The protocol crate's TLS error as ours, without saying "TLS" twice.
pub(crate) fn protocol_error(error: protocol::Error) -> Error {
    match error {
        protocol::Error::Tls(reason) => invalid(reason),
        other => invalid(other.to_string()),
    }
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    protocol::client::pem_certificates(path).map_err(protocol_error)
}

fn read_certified_key(cert_path: &Path, key_path: &Path) -> Result<CertifiedKey> {
    let certs = read_certificates(cert_path)?;
    let key = PrivateKeyDer::from_pem_file(key_path)
        .map_err(|e| invalid(format!("{}: {e}", key_path.display())))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| invalid(format!("{}: {e}", key_path.display())))?;
    Ok(CertifiedKey::new(certs, signing))
}

impl ResolvesServerCert for ReloadingCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().clone())
    }
}

impl ReloadingCertificate {
    fn reload_if_changed(&self) {
        let now = [
            file_stamp::of(&self.cert_path),
            file_stamp::of(&self.key_path),
        ];
        let mut stamps = self.stamps.lock();
        if *stamps == now {
            return;
        }
        *stamps = now;
        match read_certified_key(&self.cert_path, &self.key_path) {
            Ok(key) => {
                *self.current.write() = Arc::new(key);
                info!(cert = %self.cert_path.display(), "TLS certificate read again");
            }
            // Mid-renewal the two files may not match yet; the next change is tried again.
            Err(failure) => error!(error = %failure, "keeping the TLS certificate read before"),
        }
    }
}

impl TlsServer {
    /// The server side of `config`, or `None` when TLS is disabled. Files that are missing
    /// or unreadable stop the start.
    pub fn from_config(config: &TlsConfig) -> Result<Option<Arc<TlsServer>>> {
        if config.mode == TlsMode::Disabled {
            return Ok(None);
        }
        let required = |key: &str, value: &str| {
            if value.is_empty() {
                Err(invalid(format!(
                    "tls.server.mode={} needs {key}",
                    config.mode
                )))
            } else {
                Ok(PathBuf::from(value))
            }
        };
        let cert_path = required("tls.server.certPath", &config.cert_path)?;
        let key_path = required("tls.server.keyPath", &config.key_path)?;
        let key = read_certified_key(&cert_path, &key_path)?;
        let certificate = Arc::new(ReloadingCertificate {
            stamps: Mutex::new([file_stamp::of(&cert_path), file_stamp::of(&key_path)]),
            cert_path,
            key_path,
            current: RwLock::new(Arc::new(key)),
        });
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(e.to_string()))?;
        let builder = match config.need_client_auth {
            ClientAuth::None => builder.with_no_client_auth(),
            ClientAuth::Optional | ClientAuth::Require => {
                let trust = required("tls.server.trustCertPath", &config.trust_cert_path)?;
                let mut roots = rustls::RootCertStore::empty();
                for cert in read_certificates(&trust)? {
                    roots
                        .add(cert)
                        .map_err(|e| invalid(format!("{}: {e}", trust.display())))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                let verifier = match config.need_client_auth {
                    ClientAuth::Optional => verifier.allow_unauthenticated(),
                    _ => verifier,
                };
                let verifier = verifier.build().map_err(|e| invalid(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let server = builder.with_cert_resolver(certificate.clone());
        info!(mode = %config.mode, client_auth = %config.need_client_auth, "TLS on");
        Ok(Some(Arc::new(TlsServer {
            mode: config.mode,
            acceptor: TlsAcceptor::from(Arc::new(server)),
            certificate,
        })))
    }

    /// Reads the certificate files again if they changed; new connections use them.
    pub fn reload_if_changed(&self) {
        self.certificate.reload_if_changed();
    }

    /// The connection as this mode has it: a TLS session after a handshake, or, in
    /// permissive mode, the plain stream of a client whose first byte is not TLS's. The
    /// handshake must finish within `timeout`.
    pub async fn accept(
        &self,
        stream: TcpStream,
        timeout: Option<Duration>,
    ) -> io::Result<(ReadSide, WriteSide)> {
        let handshake = async {
            if self.mode == TlsMode::Permissive {
                let mut first = [0u8; 1];
                if stream.peek(&mut first).await? == 0 || first[0] != TLS_HANDSHAKE {
                    return Ok(plain(stream));
                }
            }
            let session = self.acceptor.accept(stream).await?;
            let (read, write) = tokio::io::split(session);
            Ok((ReadSide::Tls(read), WriteSide::Tls(write)))
        };
        match timeout {
            Some(timeout) => tokio::time::timeout(timeout, handshake)
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))?,
            None => handshake.await,
        }
    }
}

/// The halves of a connection without TLS.
pub fn plain(stream: TcpStream) -> (ReadSide, WriteSide) {
    let (read, write) = stream.into_split();
    (ReadSide::Plain(read), WriteSide::Plain(write))
}

/// The reading half of a connection, plain or TLS.
pub enum ReadSide {
    Plain(OwnedReadHalf),
    Tls(tokio::io::ReadHalf<TlsStream<TcpStream>>),
}

/// The writing half of a connection, plain or TLS.
pub enum WriteSide {
    Plain(OwnedWriteHalf),
    Tls(tokio::io::WriteHalf<TlsStream<TcpStream>>),
}

impl ReadSide {
    /// Waits until the socket has bytes, so an idle plain connection holds no read buffer.
    /// A TLS session cannot tell without reading (a record may carry no data), so it
    /// returns at once and the reader takes its buffer.
    pub async fn readable(&self) -> io::Result<()> {
        match self {
            ReadSide::Plain(read) => read.readable().await,
            ReadSide::Tls(_) => Ok(()),
        }
    }
}

impl AsyncRead for ReadSide {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ReadSide::Plain(read) => Pin::new(read).poll_read(cx, buf),
            ReadSide::Tls(read) => Pin::new(read).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for WriteSide {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WriteSide::Plain(write) => Pin::new(write).poll_write(cx, buf),
            WriteSide::Tls(write) => Pin::new(write).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WriteSide::Plain(write) => Pin::new(write).poll_write_vectored(cx, bufs),
            WriteSide::Tls(write) => Pin::new(write).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            WriteSide::Plain(write) => write.is_write_vectored(),
            WriteSide::Tls(write) => write.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteSide::Plain(write) => Pin::new(write).poll_flush(cx),
            WriteSide::Tls(write) => Pin::new(write).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteSide::Plain(write) => Pin::new(write).poll_shutdown(cx),
            WriteSide::Tls(write) => Pin::new(write).poll_shutdown(cx),
        }
    }
}
