//! What the embedder hands the native engine (its listening and per-connection settings), and
//! the events it hands back to be logged.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::tls;

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
