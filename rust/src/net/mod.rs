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

mod config;
mod connection;
mod listen;
mod server;
#[cfg(test)]
mod tests;
mod tls;
mod udp;

pub use config::{Event, Level, Log, NetConfig};
pub use listen::UnixBindError;
pub use server::NativeServer;
pub use tls::Tls;

/// memcached's reply to a connection over the `-c` limit (it accepts, writes this, and closes).
pub const TOO_MANY_CONNECTIONS: &[u8] = b"ERROR Too many open connections\r\n";
