//! Listening: binding TCP and unix sockets, accepting, and refusing a connection over the
//! `-c` limit as memcached does.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use super::connection::{run_connection, Stream};
use super::server::{LiveGuard, Phase, Shared};
use super::{tls, Level, Log, Tls, TOO_MANY_CONNECTIONS};
use crate::engine::Engine;
use crate::protocol::SessionConfig;

/// How long a TLS handshake may take when there is no idle timeout (the anyio engine's too).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a refused connection gets to receive its one-line reply.
pub(super) const REJECT_WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long an accept loop pauses after a transient accept() failure (out of file descriptors).
const ACCEPT_RETRY_PAUSE: Duration = Duration::from_millis(50);

pub(super) fn bind_tcp(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As memcached and asyncio do: a restarted server can bind while old connections linger.
    #[cfg(unix)]
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(backlog)
}

/// A failure to listen on the unix socket, told apart from a TCP one (the embedder words them
/// differently); it is the payload of the `io::Error` that `bind` returns.
#[derive(Debug)]
pub struct UnixBindError {
    pub path: PathBuf,
    pub source: io::Error,
}

impl std::fmt::Display for UnixBindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cannot listen on unix socket {}: {}",
            self.path.display(),
            self.source
        )
    }
}

impl std::error::Error for UnixBindError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

#[cfg(unix)]
pub(super) fn bind_unix(path: &std::path::Path, mask: u32) -> io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let tag = |source: io::Error| {
        let kind = source.kind();
        io::Error::new(
            kind,
            UnixBindError {
                path: path.to_path_buf(),
                source,
            },
        )
    };
    let l = tokio::net::UnixListener::bind(path).map_err(tag)?;
    // memcached's -a (0700 by default: only the owner may connect).
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mask & 0o777)).map_err(tag)?;
    Ok(l)
}

/// A listener of any kind. `accept` takes a socket off the queue; `upgrade` (a TLS handshake,
/// or nothing) runs in the connection's own task, so a slow client never holds up accepting.
pub(super) trait Listen: Send + 'static {
    /// An accepted socket: what a refused connection is told on.
    type Raw: AsyncWrite + Unpin + Send + 'static;
    type Stream: Stream;
    fn accept(&self) -> impl Future<Output = io::Result<(Self::Raw, String)>> + Send;
    fn upgrade(
        &self,
        raw: Self::Raw,
        deadline: Duration,
    ) -> impl Future<Output = io::Result<Self::Stream>> + Send + 'static;
}

impl Listen for TcpListener {
    type Raw = TcpStream;
    type Stream = TcpStream;
    async fn accept(&self) -> io::Result<(TcpStream, String)> {
        let (s, peer) = TcpListener::accept(self).await?;
        // A reply is written whole; don't let Nagle hold its tail back (memcached does this too).
        let _ = s.set_nodelay(true);
        Ok((s, peer.to_string()))
    }
    fn upgrade(
        &self,
        raw: TcpStream,
        _: Duration,
    ) -> impl Future<Output = io::Result<TcpStream>> + Send + 'static {
        std::future::ready(Ok(raw))
    }
}

/// TCP with TLS on every connection.
pub(super) struct TlsListener {
    pub(super) tcp: TcpListener,
    pub(super) tls: Tls,
}

impl Listen for TlsListener {
    type Raw = TcpStream;
    type Stream = tls::TlsConn;
    fn accept(&self) -> impl Future<Output = io::Result<(TcpStream, String)>> + Send {
        Listen::accept(&self.tcp)
    }
    fn upgrade(
        &self,
        raw: TcpStream,
        deadline: Duration,
    ) -> impl Future<Output = io::Result<tls::TlsConn>> + Send + 'static {
        let tls = self.tls.clone();
        async move { tls.accept(raw, deadline).await }
    }
}

#[cfg(unix)]
impl Listen for tokio::net::UnixListener {
    type Raw = tokio::net::UnixStream;
    type Stream = tokio::net::UnixStream;
    async fn accept(&self) -> io::Result<(tokio::net::UnixStream, String)> {
        let (s, _) = tokio::net::UnixListener::accept(self).await?;
        Ok((s, "unix".to_string()))
    }
    fn upgrade(
        &self,
        raw: tokio::net::UnixStream,
        _: Duration,
    ) -> impl Future<Output = io::Result<tokio::net::UnixStream>> + Send + 'static {
        std::future::ready(Ok(raw))
    }
}

fn transient_accept_error(e: &io::Error) -> bool {
    #[cfg(unix)]
    if let Some(code) = e.raw_os_error() {
        return matches!(
            code,
            libc::EMFILE
                | libc::ENFILE
                | libc::ENOBUFS
                | libc::ENOMEM
                | libc::ECONNABORTED
                | libc::EPROTO
                | libc::EPERM
                | libc::EINTR
        );
    }
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::Interrupted
    )
}

pub(super) async fn accept_loop<L: Listen>(
    listener: L,
    shared: Arc<Shared>,
    engine: Arc<Engine>,
    session: SessionConfig,
) {
    let mut phase = shared.phase.subscribe();
    loop {
        if *phase.borrow_and_update() != Phase::Running {
            break; // dropping the listener closes it
        }
        let accepted = tokio::select! {
            biased;
            changed = phase.changed() => {
                if changed.is_err() {
                    break;
                }
                continue;
            }
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                let max = shared.config.max_connections;
                if shared.live.load(Ordering::Acquire) >= max {
                    engine.connection_rejected();
                    if shared.config.audit {
                        shared.event(
                            Level::Warning,
                            Log::Audit,
                            format!(
                                "refused a connection from {peer}: max_connections ({max}) reached"
                            ),
                        );
                    }
                    tokio::spawn(reject(stream));
                    continue;
                }
                // Counted here, before the task runs, so a burst of accepts can't overshoot.
                let guard = LiveGuard::new(&shared);
                let id = shared.next_id.fetch_add(1, Ordering::Relaxed) + 1;
                let deadline = shared.config.idle_timeout.unwrap_or(HANDSHAKE_TIMEOUT);
                let upgrade = listener.upgrade(stream, deadline);
                let (shared, engine) = (shared.clone(), engine.clone());
                tokio::spawn(async move {
                    match upgrade.await {
                        Ok(stream) => {
                            run_connection(stream, peer, id, guard, shared, engine, session).await
                        }
                        Err(e) => {
                            drop(guard);
                            if shared.config.audit {
                                shared.event(
                                    Level::Info,
                                    Log::Audit,
                                    format!("conn {id} from {peer}: TLS handshake failed ({e})"),
                                );
                            }
                        }
                    }
                });
            }
            Err(e) if transient_accept_error(&e) => {
                shared.event(
                    Level::Warning,
                    Log::Server,
                    format!("accept() failed ({e}); retrying"),
                );
                // Accepting is paused meanwhile: memcached's "listen disabled".
                let paused = Instant::now();
                tokio::time::sleep(ACCEPT_RETRY_PAUSE).await;
                engine.accept_paused(paused.elapsed());
            }
            Err(e) => {
                shared.event(
                    Level::Error,
                    Log::Server,
                    format!("accept() failed ({e}); this listener stops"),
                );
                break;
            }
        }
    }
}

/// memcached's behaviour at `-c`: accept, say why, close. The server stays healthy.
async fn reject<S: AsyncWrite + Unpin>(mut stream: S) {
    let _ = tokio::time::timeout(REJECT_WRITE_TIMEOUT, async {
        stream.write_all(TOO_MANY_CONNECTIONS).await?;
        stream.shutdown().await
    })
    .await;
}
