//! The server's lifecycle: bind every listener, start serving, stop (drain, then force) and
//! close; and the state the accept loops and connections share with the embedder's thread.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, UdpSocket};
use tokio::runtime::Runtime;
use tokio::sync::watch;

#[cfg(unix)]
use super::listen::bind_unix;
use super::listen::{accept_loop, bind_tcp, TlsListener};
use super::{udp, Event, Level, Log, NetConfig};
use crate::engine::Engine;
use crate::protocol::SessionConfig;

/// At most this many events wait for the embedder; more are counted and dropped, so a slow or
/// absent log reader never grows memory without bound.
const MAX_EVENTS: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
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
pub(super) struct Shared {
    pub(super) config: NetConfig,
    pub(super) phase: watch::Sender<Phase>,
    /// Set before the first phase change is sent: until then a connection need not poll its
    /// stop futures (their wakers stay registered from the first poll).
    pub(super) stopping: AtomicBool,
    pub(super) live: AtomicUsize,
    pub(super) next_id: AtomicU64,
    /// Why a stop began (`None` while running); waited on by [`NativeServer::wait`].
    pub(super) stop: Mutex<Option<String>>,
    /// Signalled when `stop` is set and whenever a connection closes while stopping.
    pub(super) cond: Condvar,
    pub(super) events: Mutex<VecDeque<Event>>,
    pub(super) events_dropped: AtomicU64,
}

impl Shared {
    pub(super) fn event(&self, level: Level, log: Log, message: String) {
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
    pub(super) fn begin_stop(&self, reason: &str) {
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
pub(super) struct LiveGuard(Arc<Shared>);

impl LiveGuard {
    pub(super) fn new(shared: &Arc<Shared>) -> LiveGuard {
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
