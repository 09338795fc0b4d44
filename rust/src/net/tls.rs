//! TLS for the native engine (memcached's `-Z` with `ssl_chain_cert` and `ssl_key`), on rustls.
//!
//! Only TCP listeners speak TLS; the unix socket stays plain, as memcached's does. The handshake
//! runs in the connection's own task with a deadline, so a client that never finishes it holds
//! one task and one connection slot, never the accept loop. TLS 1.2 and 1.3, no client
//! certificates (memcached's `ssl_verify_mode` and `ssl_ca_cert` are not supported).
//!
//! A TLS connection reads through a small per-connection buffer of decrypted bytes ([`TlsConn`]):
//! rustls may hold plaintext that the socket's readiness no longer shows, so it cannot use the
//! plain sockets' readiness-then-`try_read` path.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// Decrypted bytes read at a time: one TLS record's worth of plaintext.
const PLAINTEXT_CHUNK: usize = 16 * 1024;

/// The server's certificate and key, loaded once; cheap to clone.
#[derive(Clone)]
pub struct Tls {
    acceptor: TlsAcceptor,
    chain_cert: PathBuf,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("chain_cert", &self.chain_cert)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Loads a PEM certificate chain and its private key (from `key`, or from the chain file
    /// when `key` is `None`, as memcached allows). The error names the file and what is wrong.
    pub fn load(chain_cert: &Path, key: Option<&Path>) -> Result<Tls, String> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(chain_cert)
            .and_then(|it| it.collect::<Result<_, _>>())
            .map_err(|e| format!("{}: {}", chain_cert.display(), pem_problem(e)))?;
        if certs.is_empty() {
            return Err(format!(
                "{}: no PEM certificate in it",
                chain_cert.display()
            ));
        }
        let key_path = key.unwrap_or(chain_cert);
        let key = PrivateKeyDer::from_pem_file(key_path)
            .map_err(|e| format!("{}: {}", key_path.display(), pem_problem(e)))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| {
                format!(
                    "{} / {}: the key does not fit the certificate ({e})",
                    chain_cert.display(),
                    key_path.display()
                )
            })?;
        Ok(Tls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            chain_cert: chain_cert.to_path_buf(),
        })
    }

    /// The server side of the handshake on an accepted socket, within `deadline`.
    pub(super) async fn accept(&self, tcp: TcpStream, deadline: Duration) -> io::Result<TlsConn> {
        match tokio::time::timeout(deadline, self.acceptor.accept(tcp)).await {
            Ok(Ok(stream)) => Ok(TlsConn::new(stream)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the TLS handshake took too long",
            )),
        }
    }
}

fn pem_problem(e: rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error as E;
    match e {
        E::Io(io) => format!("cannot read it ({io})"),
        E::NoItemsFound => "no PEM private key in it".to_string(),
        other => format!("not valid PEM ({other:?})"),
    }
}

/// An established TLS connection, with the decrypted bytes not yet fed. Reads go through
/// `fill` and `take` rather than `AsyncRead`, to fit the engine's wait-then-read loop.
pub(super) struct TlsConn {
    stream: TlsStream<TcpStream>,
    plain: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
}

impl TlsConn {
    fn new(stream: TlsStream<TcpStream>) -> TlsConn {
        TlsConn {
            stream,
            plain: Vec::new(),
            start: 0,
            end: 0,
            eof: false,
        }
    }

    /// Waits until decrypted bytes (or the end of the stream) are at hand. Cancel-safe: a read
    /// that is dropped has taken nothing.
    pub(super) async fn fill(&mut self) -> io::Result<()> {
        if self.start < self.end || self.eof {
            return Ok(());
        }
        if self.plain.is_empty() {
            self.plain = vec![0; PLAINTEXT_CHUNK];
        }
        let n = self.stream.read(&mut self.plain).await?;
        self.start = 0;
        self.end = n;
        self.eof = n == 0;
        Ok(())
    }

    /// Hands over what `fill` got: `Ok(0)` at the end of the stream, `WouldBlock` when nothing
    /// is buffered.
    pub(super) fn take(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.start == self.end {
            return if self.eof {
                Ok(0)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            };
        }
        let n = buf.len().min(self.end - self.start);
        buf[..n].copy_from_slice(&self.plain[self.start..self.start + n]);
        self.start += n;
        Ok(n)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
