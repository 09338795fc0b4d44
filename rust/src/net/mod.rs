//! The native I/O engine: event-loop threads (tokio) that move bytes between sockets and
//! `protocol::Session`s, with no Python in it (rust/src/py/native.rs wraps it for Python).
//!
//! Threads: like memcached's, each worker thread runs its own single-threaded event loop (a
//! current-thread tokio runtime) and owns the connections handed to it; the first one also
//! accepts and deals new connections round-robin. No work stealing: a profile of tokio's
//! multi-threaded scheduler on this workload spent ~20% of the server's CPU in the kernel's
//! context switches (workers waking and parking each other, futex and sched_yield).
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
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::watch;

use crate::engine::Engine;
use crate::protocol::Session;

#[cfg(test)]
mod tests;

/// memcached's reply to a connection over the `-c` limit (it accepts, writes this, and closes).
pub const TOO_MANY_CONNECTIONS: &[u8] = b"ERROR Too many open connections\r\n";
/// At most this many events wait for the embedder; more are counted and dropped, so a slow or
/// absent log reader never grows memory without bound.
const MAX_EVENTS: usize = 10_000;
/// A reply buffer that grew past this (a large value) is freed after its write, so a connection
/// that once fetched 16 MB does not keep 16 MB.
const KEEP_REPLY_CAPACITY: usize = 1 << 20;
/// How long a refused connection gets to receive its one-line reply.
const REJECT_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// Listening and per-connection settings, handed over once by the embedder.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// TCP addresses to listen on (already resolved; port 0 picks one, shared by all of them).
    pub tcp: Vec<SocketAddr>,
    /// Also listen on this unix socket (mode 0700). The embedder removes a stale one first.
    pub unix_socket: Option<PathBuf>,
    /// Listen backlog (memcached `-b`).
    pub backlog: u32,
    /// Event-loop threads (memcached `-t`).
    pub worker_threads: usize,
    /// Simultaneous connections (memcached `-c`); one more is told so and closed.
    pub max_connections: usize,
    /// Close a connection that sends nothing for this long (memcached `-o idle_timeout`).
    pub idle_timeout: Option<Duration>,
    /// Bytes read at a time: each read is one `feed`.
    pub read_size: usize,
    /// Queue an audit event per connection opened, refused and closed.
    pub audit: bool,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            tcp: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
            unix_socket: None,
            backlog: 1024,
            worker_threads: 4,
            max_connections: 1024,
            idle_timeout: None,
            read_size: 64 * 1024,
            audit: false,
        }
    }
}

/// Python's logging levels, so the embedder can pass them through unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info = 20,
    Warning = 30,
    Error = 40,
}

/// Something the embedder should log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub level: Level,
    /// `true` for the audit log (connections), `false` for the server log (errors).
    pub audit: bool,
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
    fn event(&self, level: Level, audit: bool, message: String) {
        let mut q = self.events.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() >= MAX_EVENTS {
            self.events_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        q.push_back(Event {
            level,
            audit,
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

/// The event-loop threads: one current-thread runtime each.
struct Workers {
    handles: Vec<Handle>,
    stops: Vec<tokio::sync::oneshot::Sender<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Workers {
    fn spawn(n: usize) -> io::Result<Workers> {
        let mut w = Workers {
            handles: Vec::with_capacity(n),
            stops: Vec::with_capacity(n),
            threads: Vec::with_capacity(n),
        };
        for i in 0..n {
            let (handle_tx, handle_rx) = std::sync::mpsc::channel();
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
            let thread = std::thread::Builder::new()
                .name(format!("ratmemcache-io-{i}"))
                .spawn(move || {
                    let rt = match tokio::runtime::Builder::new_current_thread()
                        .enable_io()
                        .enable_time()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            let _ = handle_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = handle_tx.send(Ok(rt.handle().clone()));
                    rt.block_on(async {
                        let _ = stop_rx.await;
                    });
                    // Whatever is still running is dropped here (its sockets close).
                    rt.shutdown_timeout(Duration::from_secs(1));
                });
            let thread = match thread {
                Ok(t) => t,
                Err(e) => {
                    w.shutdown();
                    return Err(e);
                }
            };
            w.threads.push(thread);
            w.stops.push(stop_tx);
            match handle_rx.recv() {
                Ok(Ok(h)) => w.handles.push(h),
                Ok(Err(e)) => {
                    w.shutdown();
                    return Err(e);
                }
                Err(_) => {
                    w.shutdown();
                    return Err(io::Error::other("an event-loop thread failed to start"));
                }
            }
        }
        Ok(w)
    }

    /// Stops every event loop and joins its thread.
    fn shutdown(&mut self) {
        for s in self.stops.drain(..) {
            let _ = s.send(());
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.handles.clear();
    }
}

/// The native server: its event-loop threads, its listeners, and the connections it serves.
/// Every method takes `&self`, so one thread may wait while another stops it.
pub struct NativeServer {
    workers: Mutex<Option<Workers>>,
    shared: Arc<Shared>,
    pending: Mutex<Option<Listeners>>,
    addrs: Vec<SocketAddr>,
    unix_path: Option<PathBuf>,
}

impl NativeServer {
    /// Builds the runtime and opens every listener (TCP first, so that a port taken by someone
    /// else fails before a unix socket file is created). Nothing is served until `start`.
    pub fn bind(config: NetConfig) -> io::Result<NativeServer> {
        if config.tcp.is_empty() && config.unix_socket.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "nothing to listen on: give a TCP address or a unix socket",
            ));
        }
        let workers = Workers::spawn(config.worker_threads.max(1))?;
        // The listeners belong to the first event loop, which accepts.
        let guard = workers.handles[0].enter();
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
            Some(path) => Some(bind_unix(path)?),
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
            workers: Mutex::new(Some(workers)),
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
                #[cfg(unix)]
                unix,
            })),
            addrs,
            unix_path,
        })
    }

    /// The TCP addresses actually bound (with the port the OS picked for port 0).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Starts serving `engine` on every listener. Returns the TCP port (0 with only a unix
    /// socket). Fails if the server was already started or closed.
    pub fn start(&self, engine: Arc<Engine>) -> io::Result<u16> {
        let listeners = lock(&self.pending)
            .take()
            .ok_or_else(|| io::Error::other("the server was already started"))?;
        let workers = lock(&self.workers);
        let workers = workers
            .as_ref()
            .ok_or_else(|| io::Error::other("the server is closed"))?;
        let dealer = Arc::new(Dealer {
            handles: workers.handles.clone(),
            next: AtomicUsize::new(0),
        });
        let acceptor = &workers.handles[0];
        for l in listeners.tcp {
            acceptor.spawn(accept_loop(
                l,
                self.shared.clone(),
                engine.clone(),
                dealer.clone(),
            ));
        }
        #[cfg(unix)]
        if let Some(l) = listeners.unix {
            acceptor.spawn(accept_loop(l, self.shared.clone(), engine.clone(), dealer));
        }
        Ok(self.addrs.first().map_or(0, |a| a.port()))
    }

    /// True from `bind` until `close`, unless a stop has begun.
    pub fn is_running(&self) -> bool {
        lock(&self.workers).is_some() && lock(&self.shared.stop).is_none()
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

    /// Forces the stop if needed, stops the event loops and removes the unix socket file.
    /// Idempotent. Call it from outside the event loops (it blocks).
    pub fn close(&self) {
        let Some(mut workers) = lock(&self.workers).take() else {
            return;
        };
        self.force_stop();
        lock(&self.pending).take();
        // Forced connections close at their next await; give them a moment before the event
        // loops drop whatever is left.
        self.wait_drained(Some(Duration::from_secs(1)));
        workers.shutdown();
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
fn bind_unix(path: &Path) -> io::Result<tokio::net::UnixListener> {
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
    // memcached's default umask for -s is 0700: only the owner may connect.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(tag)?;
    Ok(l)
}

// ------------------------------------------------------------------------------------------
// Accepting
// ------------------------------------------------------------------------------------------

/// A listener of either kind.
trait Listen: Send + 'static {
    type Stream: Stream;
    fn accept(&self) -> impl Future<Output = io::Result<(Self::Stream, String)>> + Send;
}

impl Listen for TcpListener {
    type Stream = TcpStream;
    async fn accept(&self) -> io::Result<(TcpStream, String)> {
        let (s, peer) = TcpListener::accept(self).await?;
        // A reply is written whole; don't let Nagle hold its tail back (memcached does this too).
        let _ = s.set_nodelay(true);
        Ok((s, peer.to_string()))
    }
}

#[cfg(unix)]
impl Listen for tokio::net::UnixListener {
    type Stream = tokio::net::UnixStream;
    async fn accept(&self) -> io::Result<(tokio::net::UnixStream, String)> {
        let (s, _) = tokio::net::UnixListener::accept(self).await?;
        Ok((s, "unix".to_string()))
    }
}

/// A connected socket: readiness plus non-blocking reads, and async writes; it moves between
/// event loops as its std form.
trait Stream: AsyncWrite + Unpin + Send + Sync + Sized + 'static {
    type Std: Send + 'static;
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send;
    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize>;
    fn into_std(self) -> io::Result<Self::Std>;
    /// Registers the socket with the event loop of the calling thread.
    fn from_std(s: Self::Std) -> io::Result<Self>;
}

impl Stream for TcpStream {
    type Std = std::net::TcpStream;
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send {
        TcpStream::readable(self)
    }
    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        TcpStream::try_read(self, buf)
    }
    fn into_std(self) -> io::Result<Self::Std> {
        TcpStream::into_std(self)
    }
    fn from_std(s: Self::Std) -> io::Result<Self> {
        TcpStream::from_std(s)
    }
}

#[cfg(unix)]
impl Stream for tokio::net::UnixStream {
    type Std = std::os::unix::net::UnixStream;
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send {
        tokio::net::UnixStream::readable(self)
    }
    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        tokio::net::UnixStream::try_read(self, buf)
    }
    fn into_std(self) -> io::Result<Self::Std> {
        tokio::net::UnixStream::into_std(self)
    }
    fn from_std(s: Self::Std) -> io::Result<Self> {
        tokio::net::UnixStream::from_std(s)
    }
}

/// Deals accepted connections to the event loops, round-robin (memcached's dispatch).
struct Dealer {
    handles: Vec<Handle>,
    next: AtomicUsize,
}

impl Dealer {
    /// Runs `serve(stream)` on the next event loop; the accepting loop keeps its own share
    /// without moving the socket.
    fn deal<S: Stream, F, Fut>(&self, stream: S, serve: F)
    where
        F: FnOnce(S) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        if i == 0 {
            tokio::spawn(serve(stream));
            return;
        }
        let Ok(std) = stream.into_std() else {
            return;
        };
        self.handles[i].spawn(async move {
            if let Ok(s) = S::from_std(std) {
                serve(s).await;
            }
        });
    }
}

/// accept() errors that mean "try again later", not "the listener is broken".
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
    dealer: Arc<Dealer>,
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
                            true,
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
                let (shared, engine) = (shared.clone(), engine.clone());
                dealer.deal(stream, move |s| {
                    run_connection(s, peer, id, guard, shared, engine)
                });
            }
            Err(e) if transient_accept_error(&e) => {
                shared.event(
                    Level::Warning,
                    false,
                    format!("accept() failed ({e}); retrying"),
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => {
                shared.event(
                    Level::Error,
                    false,
                    format!("accept() failed ({e}); this listener stops"),
                );
                break;
            }
        }
    }
}

/// memcached's behaviour at `-c`: accept, say why, close. The server stays healthy.
async fn reject<S: Stream>(mut stream: S) {
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
    /// The engine may block: feed this copy of the input off the event loop.
    Offload(Vec<u8>),
}

async fn run_connection<S: Stream>(
    mut stream: S,
    peer: String,
    id: u64,
    live: LiveGuard,
    shared: Arc<Shared>,
    engine: Arc<Engine>,
) {
    let cfg = &shared.config;
    if cfg.audit {
        shared.event(Level::Info, true, format!("conn {id} opened from {peer}"));
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
    // `None` only while an offloaded feed has it, or after that feed was lost.
    let mut slot = Some(Session::new(engine.clone()));
    let mut out: Vec<u8> = Vec::new();
    let (mut bytes_in, mut bytes_out) = (0u64, 0u64);
    let reason: &str = 'conn: loop {
        let Some(session) = slot.as_mut() else {
            break 'conn "shutdown";
        };
        if draining && session.buffered() == 0 {
            break 'conn "shutdown"; // no request in hand
        }
        // Wait for a request, for the idle timeout, or for a stop.
        let woke = {
            let mut ready = std::pin::pin!(readable(&stream, cfg.idle_timeout));
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
        let step = READ_BUF.with(|buf| {
            let mut buf = buf.borrow_mut();
            if buf.len() < cfg.read_size {
                buf.resize(cfg.read_size, 0);
            }
            let n = match stream.try_read(&mut buf[..cfg.read_size]) {
                Ok(0) => return Read::Gone,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Read::Nothing,
                Err(_) => return Read::Gone,
            };
            bytes_in += n as u64;
            let data = &buf[..n];
            if may_block(&engine) {
                return Read::Offload(data.to_vec());
            }
            match feed(session, data, &mut out) {
                Ok(close) => Read::Fed { close },
                Err(msg) => Read::Panicked(msg),
            }
        });
        let step = match step {
            Read::Offload(data) => {
                // A feed that may wait on disk runs on the blocking pool, so this event loop
                // keeps serving its other connections meanwhile.
                let (Some(mut session), mut reply) = (slot.take(), std::mem::take(&mut out)) else {
                    break 'conn "shutdown";
                };
                let done = tokio::task::spawn_blocking(move || {
                    let r = feed(&mut session, &data, &mut reply);
                    (session, reply, r)
                })
                .await;
                let Ok((session, reply, r)) = done else {
                    break 'conn "shutdown"; // the event loop is shutting down
                };
                slot = Some(session);
                out = reply;
                match r {
                    Ok(close) => Read::Fed { close },
                    Err(msg) => Read::Panicked(msg),
                }
            }
            other => other,
        };
        let close = match step {
            Read::Offload(_) => unreachable!("handled above"),
            Read::Nothing => continue 'conn,
            Read::Gone => break 'conn "client went away",
            Read::Fed { close } => close,
            Read::Panicked(msg) => {
                shared.event(
                    Level::Error,
                    false,
                    format!("conn {id} failed (a bug: {msg}); closing it"),
                );
                out.clear();
                out.extend_from_slice(b"SERVER_ERROR internal error; closing the connection\r\n");
                true
            }
        };
        if !out.is_empty() {
            bytes_out += out.len() as u64;
            let mut write = std::pin::pin!(stream.write_all(&out));
            let written = std::future::poll_fn(|cx| {
                if let Poll::Ready(r) = write.as_mut().poll(cx) {
                    return Poll::Ready(Some(r.is_ok()));
                }
                // A client that doesn't read its replies must not hold up a forced stop.
                if shared.stopping.load(Ordering::Acquire) && forcing.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(None);
                }
                Poll::Pending
            })
            .await;
            let Some(written) = written else {
                break 'conn "shutdown";
            };
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
    if let Some(mut session) = slot {
        session.close();
    }
    let _ = tokio::time::timeout(REJECT_WRITE_TIMEOUT, stream.shutdown()).await;
    drop(stream);
    if cfg.audit {
        shared.event(
            Level::Info,
            true,
            format!("conn {id} closed ({reason}): {bytes_in} bytes in, {bytes_out} bytes out"),
        );
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
async fn readable<S: Stream>(stream: &S, idle: Option<Duration>) -> io::Result<bool> {
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
fn feed(session: &mut Session, data: &[u8], out: &mut Vec<u8>) -> Result<bool, String> {
    catch_unwind(AssertUnwindSafe(|| {
        #[cfg(test)]
        tests::fault_injection(data);
        session.feed(data, out)
    }))
    .map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".to_string())
    })
}
