//! The native I/O engine: event-loop threads (tokio) that move bytes between sockets and
//! `protocol::Session`s, with no Python in it (rust/src/py/native.rs wraps it for Python).
//!
//! Threads: one multi-threaded tokio runtime with `worker_threads` workers. A design with one
//! single-threaded loop per thread and connections dealt round-robin (memcached's) was tried and
//! dropped: it saved the workers' wake-ups (futex and sched_yield, ~3% of the server's CPU in a
//! profile), but when the box is busy and one thread is descheduled, its connections wait. At
//! 20k req/s on a loaded 2-core box (bench/latency, 5 interleaved runs each) its median p99 was
//! 2.4 ms against 1.5 ms with work stealing; those figures are noisy, the direction held.
//!
//! Per connection the loop is the anyio engine's: wait until the socket is readable, read once
//! into a per-thread buffer, make ONE `Session::feed` call, write the whole reply (every
//! pipelined answer together) with ONE `write_all`, and close when the session says so. The
//! read buffer belongs to the worker thread, not the connection, so an idle connection costs
//! its session and an empty reply buffer, not 64 KB.
//!
//! It does not parse, log, or handle signals: protocol rules live in `protocol`, and audit lines
//! are queued as [`Event`]s for the embedder (Python) to log, so the hot path never touches a
//! logger.
//!
//! Lifecycle: [`NativeServer::bind`] (listeners open, errors surface before anything serves),
//! [`NativeServer::start`], then [`NativeServer::begin_stop`] (stop accepting; idle connections
//! close at once, a busy one after the request in hand), [`NativeServer::wait_drained`] for a
//! bounded grace, [`NativeServer::force_stop`], and [`NativeServer::close`].

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream, UdpSocket};
use tokio::runtime::Runtime;
use tokio::sync::watch;

use crate::engine::Engine;
use crate::protocol::{spliced_len, Session, SessionConfig, Splice};

#[cfg(test)]
mod tests;
mod tls;
mod udp;

pub use tls::Tls;

/// memcached's reply to a connection over the `-c` limit (it accepts, writes this, and closes).
pub const TOO_MANY_CONNECTIONS: &[u8] = b"ERROR Too many open connections\r\n";
/// At most this many events wait for the embedder; more are counted and dropped, so a slow or
/// absent log reader never grows memory without bound.
const MAX_EVENTS: usize = 10_000;
/// A reply buffer that grew past this (a large value) is freed after its write, so a connection
/// that once fetched 16 MB does not keep 16 MB.
const KEEP_REPLY_CAPACITY: usize = 1 << 20;
/// How long a TLS handshake may take when there is no idle timeout (the anyio engine's too).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a refused connection gets to receive its one-line reply.
const REJECT_WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long an accept loop pauses after a transient accept() failure (out of file descriptors).
const ACCEPT_RETRY_PAUSE: Duration = Duration::from_millis(50);

/// Listening and per-connection settings, handed over once by the embedder.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// TCP addresses to listen on (already resolved; port 0 picks one, shared by all of them).
    /// Empty with only a unix socket (memcached's `-s` turns TCP off).
    pub tcp: Vec<SocketAddr>,
    /// UDP addresses to serve memcached's UDP protocol on (memcached `-U`; port 0 picks one,
    /// shared by all of them). Empty: no UDP.
    pub udp: Vec<SocketAddr>,
    /// Listen on this unix socket. The embedder removes a stale one first.
    pub unix_socket: Option<PathBuf>,
    /// The unix socket's permissions (memcached `-a`, default 0700).
    pub unix_socket_mask: u32,
    /// Listen backlog (memcached `-b`).
    pub backlog: u32,
    /// Runtime worker threads (memcached `-t`).
    pub worker_threads: usize,
    /// Simultaneous connections (memcached `-c`); one more is told so and closed.
    pub max_connections: usize,
    /// Close a connection that sends nothing for this long (memcached `-o idle_timeout`).
    pub idle_timeout: Option<Duration>,
    /// Bytes read at a time: each read is one `feed`.
    pub read_size: usize,
    /// Queue an audit event per connection opened, refused and closed.
    pub audit: bool,
    /// Queue a debug event per exchange (bytes in and out), for the cache log.
    pub exchanges: bool,
    /// Serve TLS on the TCP listeners (memcached `-Z`).
    pub tls: Option<tls::Tls>,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            tcp: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
            udp: Vec::new(),
            unix_socket: None,
            unix_socket_mask: 0o700,
            backlog: 1024,
            worker_threads: 4,
            max_connections: 1024,
            idle_timeout: None,
            read_size: 64 * 1024,
            audit: false,
            exchanges: false,
            tls: None,
        }
    }
}

/// Python's logging levels, so the embedder can pass them through unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Debug = 10,
    Info = 20,
    Warning = 30,
    Error = 40,
}

/// Which of the embedder's logs an event belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Log {
    /// Errors and warnings of the server itself.
    Server,
    /// Connections opened, refused and closed.
    Audit,
    /// Per-exchange sizes (never contents).
    Cache,
}

impl Log {
    /// The Python logger's name.
    pub fn name(self) -> &'static str {
        match self {
            Log::Server => "ratmemcache.server",
            Log::Audit => "ratmemcache.audit",
            Log::Cache => "ratmemcache.cache",
        }
    }
}

/// Something the embedder should log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub level: Level,
    pub log: Log,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    /// Not accepting; each connection closes once it has no request in hand.
    Draining,
    /// Every connection closes now.
    Forced,
}

struct Listeners {
    tcp: Vec<TcpListener>,
    udp: Vec<UdpSocket>,
    #[cfg(unix)]
    unix: Option<tokio::net::UnixListener>,
}

/// State shared by the accept loops, the connections and the embedder's thread.
struct Shared {
    config: NetConfig,
    phase: watch::Sender<Phase>,
    /// Set before the first phase change is sent: until then a connection need not poll its
    /// stop futures (their wakers stay registered from the first poll).
    stopping: AtomicBool,
    live: AtomicUsize,
    next_id: AtomicU64,
    /// Why a stop began (`None` while running); waited on by [`NativeServer::wait`].
    stop: Mutex<Option<String>>,
    /// Signalled when `stop` is set and whenever a connection closes while stopping.
    cond: Condvar,
    events: Mutex<VecDeque<Event>>,
    events_dropped: AtomicU64,
}

impl Shared {
    fn event(&self, level: Level, log: Log, message: String) {
        let mut q = self.events.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() >= MAX_EVENTS {
            self.events_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        q.push_back(Event {
            level,
            log,
            message,
        });
    }

    /// Stop accepting and drain; the first reason given is kept.
    fn begin_stop(&self, reason: &str) {
        let mut stop = self.stop.lock().unwrap_or_else(|e| e.into_inner());
        if stop.is_none() {
            *stop = Some(reason.to_string());
        }
        self.stopping.store(true, Ordering::Release);
        self.phase.send_if_modified(|p| {
            if *p == Phase::Running {
                *p = Phase::Draining;
                true
            } else {
                false
            }
        });
        drop(stop);
        self.cond.notify_all();
    }
}

/// Counts a live connection for as long as its task runs, even if the task panics or is dropped.
struct LiveGuard(Arc<Shared>);

impl LiveGuard {
    fn new(shared: &Arc<Shared>) -> LiveGuard {
        shared.live.fetch_add(1, Ordering::AcqRel);
        LiveGuard(shared.clone())
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        if self.0.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            // Take the lock so a waiter between its check and its wait can't miss this.
            let _g = self.0.stop.lock().unwrap_or_else(|e| e.into_inner());
            self.0.cond.notify_all();
        }
    }
}

/// The native server: a tokio runtime, its listeners, and the connections it serves.
/// Every method takes `&self`, so one thread may wait while another stops it.
pub struct NativeServer {
    runtime: Mutex<Option<Runtime>>,
    shared: Arc<Shared>,
    pending: Mutex<Option<Listeners>>,
    addrs: Vec<SocketAddr>,
    udp_addrs: Vec<SocketAddr>,
    unix_path: Option<PathBuf>,
}

impl NativeServer {
    /// Builds the runtime and opens every listener (TCP and UDP first, so that a port taken by
    /// someone else fails before a unix socket file is created). Nothing is served until
    /// `start`.
    pub fn bind(config: NetConfig) -> io::Result<NativeServer> {
        if config.tcp.is_empty() && config.unix_socket.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "nothing to listen on: give a TCP address or a unix socket",
            ));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.worker_threads.max(1))
            .thread_name("ratmemcache-io")
            .enable_io()
            .enable_time()
            .build()?;
        let guard = runtime.enter();
        // UDP first: once a TCP port accepts, UDP is served too (clients take an accepting
        // port to mean "ready").
        let mut udp = Vec::new();
        let mut udp_addrs = Vec::new();
        let mut udp_port = 0u16;
        for addr in &config.udp {
            let mut addr = *addr;
            if addr.port() == 0 && udp_port != 0 {
                addr.set_port(udp_port);
            }
            let sock = udp::bind(addr).map_err(|e| {
                io::Error::new(e.kind(), format!("cannot serve UDP on {addr}: {e}"))
            })?;
            let local = sock.local_addr()?;
            udp_port = local.port();
            udp_addrs.push(local);
            udp.push(sock);
        }
        let mut tcp = Vec::new();
        let mut addrs = Vec::new();
        let mut port = 0u16;
        for addr in &config.tcp {
            let mut addr = *addr;
            if addr.port() == 0 && port != 0 {
                addr.set_port(port); // "port 0" means one free port for every address
            }
            let listener = bind_tcp(addr, config.backlog)?;
            let local = listener.local_addr()?;
            port = local.port();
            addrs.push(local);
            tcp.push(listener);
        }
        #[cfg(unix)]
        let unix = match &config.unix_socket {
            Some(path) => Some(bind_unix(path, config.unix_socket_mask)?),
            None => None,
        };
        #[cfg(not(unix))]
        if config.unix_socket.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "unix sockets are POSIX-only",
            ));
        }
        drop(guard);
        let (phase, _) = watch::channel(Phase::Running);
        let unix_path = config.unix_socket.clone();
        Ok(NativeServer {
            runtime: Mutex::new(Some(runtime)),
            shared: Arc::new(Shared {
                config,
                phase,
                stopping: AtomicBool::new(false),
                live: AtomicUsize::new(0),
                next_id: AtomicU64::new(0),
                stop: Mutex::new(None),
                cond: Condvar::new(),
                events: Mutex::new(VecDeque::new()),
                events_dropped: AtomicU64::new(0),
            }),
            pending: Mutex::new(Some(Listeners {
                tcp,
                udp,
                #[cfg(unix)]
                unix,
            })),
            addrs,
            udp_addrs,
            unix_path,
        })
    }

    /// The TCP addresses actually bound (with the port the OS picked for port 0).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The UDP addresses actually bound.
    pub fn udp_addrs(&self) -> &[SocketAddr] {
        &self.udp_addrs
    }

    /// Starts serving `engine` on every listener, with the default session settings. Returns
    /// the TCP port (0 with only a unix socket). Fails if the server was already started or
    /// closed.
    pub fn start(&self, engine: Arc<Engine>) -> io::Result<u16> {
        self.start_with(engine, SessionConfig::default())
    }

    /// [`start`](Self::start), each connection's session made with `session` (memcached's
    /// `-B` and `-R`).
    pub fn start_with(&self, engine: Arc<Engine>, session: SessionConfig) -> io::Result<u16> {
        let listeners = lock(&self.pending)
            .take()
            .ok_or_else(|| io::Error::other("the server was already started"))?;
        let rt = lock(&self.runtime);
        let rt = rt
            .as_ref()
            .ok_or_else(|| io::Error::other("the server is closed"))?;
        for l in listeners.tcp {
            let (shared, engine) = (self.shared.clone(), engine.clone());
            match self.shared.config.tls.clone() {
                None => rt.spawn(accept_loop(l, shared, engine, session)),
                Some(tls) => rt.spawn(accept_loop(
                    TlsListener { tcp: l, tls },
                    shared,
                    engine,
                    session,
                )),
            };
        }
        for sock in listeners.udp {
            // One reader per worker thread on each socket, as memcached has one UDP connection
            // per thread.
            let sock = Arc::new(sock);
            for _ in 0..self.shared.config.worker_threads.max(1) {
                rt.spawn(udp::serve(
                    sock.clone(),
                    self.shared.clone(),
                    engine.clone(),
                    session,
                ));
            }
        }
        #[cfg(unix)]
        if let Some(l) = listeners.unix {
            rt.spawn(accept_loop(l, self.shared.clone(), engine.clone(), session));
        }
        Ok(self.addrs.first().map_or(0, |a| a.port()))
    }

    /// True from `bind` until `close`, unless a stop has begun.
    pub fn is_running(&self) -> bool {
        lock(&self.runtime).is_some() && lock(&self.shared.stop).is_none()
    }

    /// Open client connections (refused ones are not counted).
    pub fn connection_count(&self) -> usize {
        self.shared.live.load(Ordering::Acquire)
    }

    /// Waits until a stop has begun (the `shutdown` command, or `begin_stop`) and returns why;
    /// `None` after `timeout`.
    pub fn wait(&self, timeout: Option<Duration>) -> Option<String> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut stop = lock(&self.shared.stop);
        loop {
            if let Some(reason) = stop.as_ref() {
                return Some(reason.clone());
            }
            stop = wait_until(&self.shared.cond, stop, deadline)?;
        }
    }

    /// Stops accepting (the listeners close) and lets connections drain. Idempotent.
    pub fn begin_stop(&self, reason: &str) {
        self.shared.begin_stop(reason);
    }

    /// Waits until every connection has closed; false after `timeout`.
    pub fn wait_drained(&self, timeout: Option<Duration>) -> bool {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut stop = lock(&self.shared.stop);
        loop {
            if self.shared.live.load(Ordering::Acquire) == 0 {
                return true;
            }
            stop = match wait_until(&self.shared.cond, stop, deadline) {
                Some(g) => g,
                None => return self.shared.live.load(Ordering::Acquire) == 0,
            };
        }
    }

    /// Closes every connection now, even one with a request in hand.
    pub fn force_stop(&self) {
        self.shared.begin_stop("forced");
        self.shared.phase.send_replace(Phase::Forced);
    }

    /// A graceful stop: stop accepting, give busy connections up to `grace` to finish, then
    /// force and close. Returns true if every connection finished within the grace.
    pub fn stop(&self, grace: Duration) -> bool {
        self.begin_stop("stop");
        let drained = self.wait_drained(Some(grace));
        self.close();
        drained
    }

    /// Forces the stop if needed, shuts the runtime down and removes the unix socket file.
    /// Idempotent. Call it from outside the runtime (it blocks).
    pub fn close(&self) {
        let Some(rt) = lock(&self.runtime).take() else {
            return;
        };
        self.force_stop();
        lock(&self.pending).take();
        // Forced connections close at their next await; give them a moment before the runtime
        // drops whatever is left.
        self.wait_drained(Some(Duration::from_secs(1)));
        rt.shutdown_timeout(Duration::from_secs(1));
        if let Some(p) = &self.unix_path {
            let _ = std::fs::remove_file(p);
        }
    }

    /// Takes the queued events (oldest first), and how many were dropped since the last call.
    pub fn take_events(&self) -> (Vec<Event>, u64) {
        let events = lock(&self.shared.events).drain(..).collect();
        (
            events,
            self.shared.events_dropped.swap(0, Ordering::Relaxed),
        )
    }
}

impl Drop for NativeServer {
    fn drop(&mut self) {
        self.close();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One condvar wait bounded by `deadline`; `None` once the deadline has passed.
fn wait_until<'a, T>(
    cond: &Condvar,
    guard: std::sync::MutexGuard<'a, T>,
    deadline: Option<Instant>,
) -> Option<std::sync::MutexGuard<'a, T>> {
    match deadline {
        None => Some(cond.wait(guard).unwrap_or_else(|e| e.into_inner())),
        Some(d) => {
            let now = Instant::now();
            if now >= d {
                return None;
            }
            let (g, _) = cond
                .wait_timeout(guard, d - now)
                .unwrap_or_else(|e| e.into_inner());
            Some(g)
        }
    }
}

fn bind_tcp(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
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
fn bind_unix(path: &std::path::Path, mask: u32) -> io::Result<tokio::net::UnixListener> {
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

// ------------------------------------------------------------------------------------------
// Accepting
// ------------------------------------------------------------------------------------------

/// A listener of any kind. `accept` takes a socket off the queue; `upgrade` (a TLS handshake,
/// or nothing) runs in the connection's own task, so a slow client never holds up accepting.
trait Listen: Send + 'static {
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
struct TlsListener {
    tcp: TcpListener,
    tls: Tls,
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

/// A connected socket: wait until a request can be read, then read it without waiting; and
/// async writes.
trait Stream: AsyncWrite + Unpin + Send + Sync + 'static {
    fn readable(&mut self) -> impl Future<Output = io::Result<()>> + Send;
    /// One read of what is at hand: `Ok(0)` at the end of the stream, `WouldBlock` if nothing
    /// was after all.
    fn read_once(&mut self, buf: &mut [u8]) -> io::Result<usize>;
}

/// One non-blocking read from a plain socket. A short read (less than `buf` holds) drained the
/// socket, so the readiness is cleared at once, as memcached does after a short read: otherwise
/// the next wait would return at once and cost a read that fails with EAGAIN, one wasted
/// syscall per request. Safe against a race: tokio clears only if no readiness event came in
/// since the read began.
fn read_socket_once(
    buf: &mut [u8],
    try_io: impl FnOnce(&mut dyn FnMut() -> io::Result<usize>) -> io::Result<usize>,
    try_read: impl Fn(&mut [u8]) -> io::Result<usize>,
) -> io::Result<usize> {
    let mut got = 0;
    let cap = buf.len();
    match try_io(&mut || match try_read(buf) {
        Ok(n) if n > 0 && n < cap => {
            got = n;
            Err(io::ErrorKind::WouldBlock.into())
        }
        other => other,
    }) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock && got > 0 => Ok(got),
        other => other,
    }
}

/// `Stream` for a plain socket type with tokio's readiness API.
macro_rules! plain_socket_stream {
    ($ty:ty) => {
        impl Stream for $ty {
            fn readable(&mut self) -> impl Future<Output = io::Result<()>> + Send {
                <$ty>::readable(self)
            }
            fn read_once(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let this = &*self;
                read_socket_once(
                    buf,
                    |f| this.try_io(tokio::io::Interest::READABLE, f),
                    |b| this.try_read(b),
                )
            }
        }
    };
}

plain_socket_stream!(TcpStream);
#[cfg(unix)]
plain_socket_stream!(tokio::net::UnixStream);

impl Stream for tls::TlsConn {
    fn readable(&mut self) -> impl Future<Output = io::Result<()>> + Send {
        self.fill()
    }
    fn read_once(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.take(buf)
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

async fn accept_loop<L: Listen>(
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

// ------------------------------------------------------------------------------------------
// One connection
// ------------------------------------------------------------------------------------------

thread_local! {
    /// The read buffer of this worker thread: a read is fed before the task yields again, so
    /// one buffer per thread serves every connection the thread runs.
    static READ_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// What woke a connection waiting for its next request.
enum Wake {
    Stopping,
    Forced,
    Readable(io::Result<bool>),
}

enum Read {
    /// The session answered; write `out`, then close if `close`.
    Fed { close: bool },
    /// A spurious wakeup: nothing to read after all.
    Nothing,
    /// The peer closed or the socket failed.
    Gone,
    /// `feed` panicked (a bug): reply SERVER_ERROR and close this connection only.
    Panicked(String),
}

async fn run_connection<S: Stream>(
    mut stream: S,
    peer: String,
    id: u64,
    live: LiveGuard,
    shared: Arc<Shared>,
    engine: Arc<Engine>,
    session: SessionConfig,
) {
    let cfg = &shared.config;
    if cfg.audit {
        shared.event(
            Level::Info,
            Log::Audit,
            format!("conn {id} opened from {peer}"),
        );
    }
    // Two stop signals, each one future for the connection's whole life (not one per request:
    // creating and dropping a watch waiter per read cost ~3% of the CPU in a profile).
    let (mut rx_stop, mut rx_force) = (shared.phase.subscribe(), shared.phase.subscribe());
    let stopping = std::pin::pin!(async move {
        let _ = rx_stop.wait_for(|p| *p != Phase::Running).await;
    });
    let forcing = std::pin::pin!(async move {
        let _ = rx_force.wait_for(|p| *p == Phase::Forced).await;
    });
    let (mut stopping, mut forcing) = (stopping, forcing);
    let mut draining = false;
    // The stop futures are polled once to register their wakers, then only after a stop has
    // begun: polling them on every wakeup cost ~1.5% of the CPU (a mutex per poll) in a profile.
    let mut registered = false;
    let mut session = Session::with_config(engine.clone(), session);
    let mut out: Vec<u8> = Vec::new();
    // Large values a reply shares with the store instead of copying (see `feed_spliced`).
    let mut splices: Vec<Splice> = Vec::new();
    let (mut bytes_in, mut bytes_out) = (0u64, 0u64);
    let reason: &str = 'conn: loop {
        if draining && session.buffered() == 0 {
            break 'conn "shutdown"; // no request in hand
        }
        // The last reply stopped at the reply budget with requests still buffered: answer them
        // (it was sent, so the client is reading) before reading more. A client that pipelines
        // without reading its replies is thereby not read either: backpressure.
        let more = session.has_more();
        // Wait for a request, for the idle timeout, or for a stop.
        let woke = if more {
            Wake::Readable(Ok(true))
        } else {
            let mut ready = std::pin::pin!(readable(&mut stream, cfg.idle_timeout));
            std::future::poll_fn(|cx| {
                if !registered || shared.stopping.load(Ordering::Acquire) {
                    registered = true;
                    if !draining && stopping.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Wake::Stopping);
                    }
                    if forcing.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Wake::Forced);
                    }
                }
                ready.as_mut().poll(cx).map(Wake::Readable)
            })
            .await
        };
        match woke {
            Wake::Stopping => {
                draining = true;
                continue 'conn;
            }
            Wake::Forced => break 'conn "shutdown",
            Wake::Readable(Ok(true)) => {}
            Wake::Readable(Ok(false)) => break 'conn "idle timeout",
            Wake::Readable(Err(_)) => break 'conn "client went away",
        }
        out.clear();
        splices.clear();
        let read_before = bytes_in;
        let step = READ_BUF.with(|buf| {
            if more {
                return match feed_maybe_blocking(&engine, &mut session, &[], &mut out, &mut splices)
                {
                    Ok(close) => Read::Fed { close },
                    Err(msg) => Read::Panicked(msg),
                };
            }
            let mut buf = buf.borrow_mut();
            if buf.len() < cfg.read_size {
                buf.resize(cfg.read_size, 0);
            }
            let n = match stream.read_once(&mut buf[..cfg.read_size]) {
                Ok(0) => return Read::Gone,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Read::Nothing,
                Err(_) => return Read::Gone,
            };
            bytes_in += n as u64;
            let data = &buf[..n];
            match feed_maybe_blocking(&engine, &mut session, data, &mut out, &mut splices) {
                Ok(close) => Read::Fed { close },
                Err(msg) => Read::Panicked(msg),
            }
        });
        let close = match step {
            Read::Nothing => continue 'conn,
            Read::Gone => break 'conn "client went away",
            Read::Fed { close } => close,
            Read::Panicked(msg) => {
                shared.event(
                    Level::Error,
                    Log::Server,
                    format!("conn {id} failed (a bug: {msg}); closing it"),
                );
                out.clear();
                splices.clear();
                out.extend_from_slice(b"SERVER_ERROR internal error; closing the connection\r\n");
                true
            }
        };
        if cfg.exchanges {
            shared.event(
                Level::Debug,
                Log::Cache,
                format!(
                    "conn {id}: {} bytes in, {} bytes out",
                    bytes_in - read_before,
                    reply_len(&out, &splices)
                ),
            );
        }
        if !out.is_empty() {
            bytes_out += reply_len(&out, &splices) as u64;
            // The flush matters for TLS only (rustls may hold the end of a record); on a plain
            // socket it is a no-op.
            let written = {
                let mut write = std::pin::pin!(async {
                    if splices.is_empty() {
                        stream.write_all(&out).await?;
                    } else {
                        write_spliced(&mut stream, &out, &splices).await?;
                    }
                    stream.flush().await
                });
                std::future::poll_fn(|cx| {
                    if let Poll::Ready(r) = write.as_mut().poll(cx) {
                        return Poll::Ready(Some(r.is_ok()));
                    }
                    // A client that doesn't read its replies must not hold up a forced stop.
                    if shared.stopping.load(Ordering::Acquire)
                        && forcing.as_mut().poll(cx).is_ready()
                    {
                        return Poll::Ready(None);
                    }
                    Poll::Pending
                })
                .await
            };
            let Some(written) = written else {
                break 'conn "shutdown";
            };
            splices.clear(); // don't keep a large value alive while the connection idles
            if out.capacity() > KEEP_REPLY_CAPACITY {
                out = Vec::new();
            }
            if !written {
                break 'conn "client went away";
            }
        }
        if close {
            if engine.shutdown_requested() {
                shared.begin_stop("the \"shutdown\" command");
            }
            break 'conn "closed by the protocol engine";
        }
    };
    // The slot frees before `curr_connections` drops, so a client that saw the count drop can
    // connect again at once.
    drop(live);
    session.close();
    let _ = tokio::time::timeout(REJECT_WRITE_TIMEOUT, stream.shutdown()).await;
    drop(stream);
    if cfg.audit {
        shared.event(
            Level::Info,
            Log::Audit,
            format!("conn {id} closed ({reason}): {bytes_in} bytes in, {bytes_out} bytes out"),
        );
    }
}

/// Writes `out` with each splice's bytes at its offset, in as few `writev`s as the socket takes
/// (one write per piece cost a large get three syscalls and, in bench/large_values.py, 60% of
/// its throughput at 1 MiB).
async fn write_spliced<S: AsyncWrite + Unpin>(
    stream: &mut S,
    out: &[u8],
    splices: &[Splice],
) -> io::Result<()> {
    let mut pieces: Vec<io::IoSlice<'_>> = Vec::with_capacity(2 * splices.len() + 1);
    let mut from = 0;
    for sp in splices {
        pieces.push(io::IoSlice::new(&out[from..sp.at]));
        pieces.push(io::IoSlice::new(&sp.bytes));
        from = sp.at;
    }
    pieces.push(io::IoSlice::new(&out[from..]));
    pieces.retain(|p| !p.is_empty());
    let mut left: &mut [io::IoSlice<'_>] = &mut pieces;
    while !left.is_empty() {
        // At most IOV_MAX (1024) pieces per call; the kernel takes what fits anyway.
        let n = left.len().min(1024);
        let written = stream.write_vectored(&left[..n]).await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        io::IoSlice::advance_slices(&mut left, written);
    }
    Ok(())
}

/// The length of a reply: `out` plus the values spliced into it.
fn reply_len(out: &[u8], splices: &[Splice]) -> usize {
    out.len() + spliced_len(splices)
}

/// `feed`, handing this worker's other connections to another thread meanwhile when the engine
/// may wait on disk (no copy of the input, unlike spawn_blocking).
fn feed_maybe_blocking(
    engine: &Engine,
    session: &mut Session,
    data: &[u8],
    out: &mut Vec<u8>,
    splices: &mut Vec<Splice>,
) -> Result<bool, String> {
    if may_block(engine) {
        tokio::task::block_in_place(|| feed(session, data, out, splices))
    } else {
        feed(session, data, out, splices)
    }
}

#[inline]
fn may_block(engine: &Engine) -> bool {
    #[cfg(test)]
    if tests::offload_everything(engine) {
        return true;
    }
    engine.may_block()
}

/// Ready to read: `Ok(true)`; the idle timeout passed: `Ok(false)`.
async fn readable<S: Stream>(stream: &mut S, idle: Option<Duration>) -> io::Result<bool> {
    match idle {
        None => stream.readable().await.map(|()| true),
        Some(t) => match tokio::time::timeout(t, stream.readable()).await {
            Ok(r) => r.map(|()| true),
            Err(_) => Ok(false),
        },
    }
}

/// One `feed`, with a panic caught at the connection boundary (panic = "unwind" is kept in
/// every profile for this).
fn feed(
    session: &mut Session,
    data: &[u8],
    out: &mut Vec<u8>,
    splices: &mut Vec<Splice>,
) -> Result<bool, String> {
    catch_unwind(AssertUnwindSafe(|| {
        #[cfg(test)]
        tests::fault_injection(data);
        session.feed_spliced(data, out, splices)
    }))
    .map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".to_string())
    })
}
