//! The native engine's UDP sockets (memcached `-U`): receive a datagram, let
//! `protocol::udp` answer it, send the reply datagrams back to its sender.
//!
//! Each socket is read by one task per worker thread (memcached has one UDP connection per
//! thread). A datagram is served from start to end before its task reads the next one; a
//! datagram is a request of its own, so nothing is kept between them.

use std::io;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use tokio::net::UdpSocket;

use super::server::{Phase, Shared};
use super::{Level, Log};
use crate::engine::Engine;
use crate::protocol::{udp, SessionConfig};

/// memcached's `UDP_READ_BUFFER_SIZE`: the largest request datagram read whole.
const READ_BUFFER: usize = 65536;

/// A UDP socket on `addr`, ready for the runtime (call inside it).
pub(super) fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    let sock = std::net::UdpSocket::bind(addr)?;
    sock.set_nonblocking(true)?;
    UdpSocket::from_std(sock)
}

/// Serves datagrams on `sock` until the server stops.
pub(super) async fn serve(
    sock: Arc<UdpSocket>,
    shared: Arc<Shared>,
    engine: Arc<Engine>,
    session: SessionConfig,
) {
    let mut phase = shared.phase.subscribe();
    let mut buf = vec![0u8; READ_BUFFER];
    loop {
        if *phase.borrow_and_update() != Phase::Running {
            break;
        }
        let received = tokio::select! {
            biased;
            changed = phase.changed() => {
                if changed.is_err() {
                    break;
                }
                continue;
            }
            r = sock.recv_from(&mut buf) => r,
        };
        let (n, peer) = match received {
            Ok(r) => r,
            // An ICMP error for an earlier reply (the client went away) surfaces here on some
            // systems; the socket is fine.
            Err(_) => continue,
        };
        let datagram = &buf[..n];
        let served = if engine.may_block() {
            tokio::task::block_in_place(|| answer(&engine, session, datagram))
        } else {
            answer(&engine, session, datagram)
        };
        let replies = match served {
            Ok(r) => r,
            Err(msg) => {
                shared.event(
                    Level::Error,
                    Log::Server,
                    format!("a UDP request from {peer} failed (a bug: {msg}); not answered"),
                );
                continue;
            }
        };
        for d in &replies {
            // A reply the peer can't take is lost, as UDP replies are.
            if sock.send_to(d, peer).await.is_err() {
                break;
            }
        }
    }
}

/// One datagram's replies, with a panic (a bug) contained to it.
fn answer(
    engine: &Arc<Engine>,
    session: SessionConfig,
    datagram: &[u8],
) -> Result<Vec<Vec<u8>>, String> {
    catch_unwind(AssertUnwindSafe(|| udp::serve(engine, session, datagram))).map_err(|p| {
        p.downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".to_string())
    })
}
