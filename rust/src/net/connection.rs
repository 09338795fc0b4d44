//! One connection: wait until readable, read once, make one `Session::feed` call, write the
//! whole reply (values of 64 KB and up spliced in with `writev`), and close when the session
//! says so or the server stops.

use std::future::Future;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::listen::REJECT_WRITE_TIMEOUT;
use super::server::{LiveGuard, Phase, Shared};
#[cfg(test)]
use super::tests;
use super::{tls, Level, Log};
use crate::engine::Engine;
use crate::protocol::{spliced_len, Session, SessionConfig, Splice};

/// A reply buffer that grew past this (a large value) is freed after its write, so a connection
/// that once fetched 16 MB does not keep 16 MB.
const KEEP_REPLY_CAPACITY: usize = 1 << 20;

/// A connected socket: wait until a request can be read, then read it without waiting; and
/// async writes.
pub(super) trait Stream: AsyncWrite + Unpin + Send + Sync + 'static {
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

pub(super) async fn run_connection<S: Stream>(
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
    // Requests that may wait on the disk run inside `block_in_place`, the rest on the worker.
    session.set_hands_off_waits(true);
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

/// `feed`; a feed that may wait on the disk (the last one stopped at a request that must,
/// see `disk_wait`) hands this worker's other connections to another thread meanwhile (no copy
/// of the input, unlike spawn_blocking). Every other feed runs on the worker: an L1 hit costs
/// the same with an L2 as without.
fn feed_maybe_blocking(
    engine: &Engine,
    session: &mut Session,
    data: &[u8],
    out: &mut Vec<u8>,
    splices: &mut Vec<Splice>,
) -> Result<bool, String> {
    if session.must_wait() || offload_everything(engine) {
        tokio::task::block_in_place(|| feed(session, data, out, splices))
    } else {
        feed(session, data, out, splices)
    }
}

#[inline]
fn offload_everything(_engine: &Engine) -> bool {
    #[cfg(test)]
    if tests::offload_everything(_engine) {
        return true;
    }
    false
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
