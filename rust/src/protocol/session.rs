//! One client connection's protocol state: the read buffer, the protocol in use, and any command
//! that is waiting for its data block.

use std::sync::Arc;

use bytes::BytesMut;

use super::limits::REPLY_BUDGET;
use super::{auth, binary, text};
use crate::engine::{CmdKind, CommandTimer, Engine};

/// What one step of a protocol handler achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Progress {
    /// Nothing more can be done until more bytes arrive.
    NeedMore,
    /// Something was consumed; try again.
    Again,
    /// Send what has been written, then close the connection.
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Unknown,
    Text,
    Binary,
}

/// A connection's protocol engine. Feed it what the socket read; send what it returns.
pub struct Session {
    engine: Arc<Engine>,
    buf: BytesMut,
    proto: Proto,
    text: text::TextState,
    binary: binary::BinaryState,
    closed: bool,
    /// The last feed stopped at the reply budget with complete requests still buffered.
    more: bool,
    /// Set while the connection has yet to authenticate (the server has an authfile).
    auth: Option<auth::AuthState>,
    timer: CommandTimer,
}

impl Session {
    pub fn new(engine: Arc<Engine>) -> Session {
        engine.connection_opened();
        Session {
            auth: engine
                .config()
                .auth
                .as_ref()
                .map(|_| auth::AuthState::default()),
            timer: CommandTimer::new(&engine),
            engine,
            buf: BytesMut::new(),
            proto: Proto::Unknown,
            text: text::TextState::default(),
            binary: binary::BinaryState::default(),
            closed: false,
            more: false,
        }
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The last `feed` stopped at [`REPLY_BUDGET`] with requests left in the buffer: send its
    /// reply, then call `feed(&[])` before reading more from the socket.
    pub fn has_more(&self) -> bool {
        self.more && !self.closed
    }

    /// Bytes buffered but not yet answered (an incomplete command or data block).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Parses and answers every complete request in `data` (plus what was buffered before),
    /// appending the replies to `out`. Returns true when the connection must be closed after
    /// `out` is sent.
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) -> bool {
        if self.closed {
            return true;
        }
        let written_before = out.len();
        self.engine
            .counters
            .bytes_read
            .fetch_add(data.len() as u64, std::sync::atomic::Ordering::Relaxed);
        self.buf.extend_from_slice(data);
        self.more = false;
        let close = loop {
            if self.buf.is_empty() {
                break false;
            }
            if out.len() - written_before >= REPLY_BUDGET {
                // Send this first; the engine feeds again (with no new bytes) after sending.
                self.more = true;
                let yields = &self.engine.counters.conn_yields;
                yields.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                break false;
            }
            if let Some(st) = &mut self.auth {
                let creds = self
                    .engine
                    .config()
                    .auth
                    .as_deref()
                    .expect("auth configured");
                let (p, checked) = auth::step(st, creds, &mut self.buf, out);
                if let Some(ok) = checked {
                    let c = &self.engine.counters;
                    c.auth_cmds
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if ok {
                        self.auth = None;
                    } else {
                        c.auth_errors
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                match p {
                    Progress::NeedMore => break false,
                    Progress::Again => continue,
                    Progress::Close => break true,
                }
            }
            let p = match self.proto {
                Proto::Unknown => {
                    self.proto = if self.buf[0] == binary::MAGIC_REQUEST {
                        Proto::Binary
                    } else {
                        Proto::Text
                    };
                    continue;
                }
                Proto::Text => {
                    let starts = self.text.at_line().then(|| CmdKind::of_text(&self.buf));
                    self.timer.begin(starts);
                    let p = text::step(&mut self.text, &self.engine, &mut self.buf, out);
                    self.timer
                        .end(&self.engine, p != Progress::NeedMore, self.text.at_line());
                    p
                }
                Proto::Binary => {
                    let starts = self
                        .binary
                        .at_header()
                        .then(|| CmdKind::of_binary(&self.buf));
                    self.timer.begin(starts);
                    let p = binary::step(&mut self.binary, &self.engine, &mut self.buf, out);
                    self.timer.end(
                        &self.engine,
                        p != Progress::NeedMore,
                        self.binary.at_header(),
                    );
                    p
                }
            };
            match p {
                Progress::NeedMore => break false,
                Progress::Again => continue,
                Progress::Close => break true,
            }
        };
        self.timer.pause(&self.engine);
        self.engine.counters.bytes_written.fetch_add(
            (out.len() - written_before) as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        if close {
            self.close();
        }
        close
    }

    /// The connection is gone; frees buffers and unfinished uploads. Idempotent.
    pub fn close(&mut self) {
        if !self.closed {
            self.closed = true;
            self.buf = BytesMut::new();
            self.text = text::TextState::default();
            self.engine.connection_closed();
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::Session;
    use crate::cache::{Cache, CacheConfig};
    use crate::engine::{Engine, EngineConfig};
    use crate::protocol::limits::REPLY_BUDGET;
    use crate::tiered::Tiered;

    #[test]
    fn pipelined_replies_stop_at_the_budget_and_resume_on_an_empty_feed() {
        let cfg = CacheConfig {
            shards: 1,
            cleanup_interval_ms: 0,
            ..Default::default()
        };
        let cache = Tiered::memory(Cache::new(cfg).unwrap());
        let mut s = Session::new(Arc::new(Engine::new(cache, EngineConfig::default())));
        let mut out = Vec::new();
        let value = vec![b'v'; 100_000];
        let mut set = format!("set k 0 0 {}\r\n", value.len()).into_bytes();
        set.extend_from_slice(&value);
        set.extend_from_slice(b"\r\n");
        s.feed(&set, &mut out);
        assert_eq!(out, b"STORED\r\n");
        let gets = b"get k\r\n".repeat(100);
        out.clear();
        assert!(!s.feed(&gets, &mut out));
        assert!(s.has_more(), "100 x 100 KB of replies exceed the budget");
        assert!(out.len() >= REPLY_BUDGET && out.len() < REPLY_BUDGET + 200_000);
        let mut feeds = 1;
        while s.has_more() {
            s.feed(&[], &mut out);
            feeds += 1;
        }
        assert!(feeds >= 10, "{feeds} feeds");
        let one = [
            b"VALUE k 0 100000\r\n".as_slice(),
            &value,
            b"\r\nEND\r\n".as_slice(),
        ]
        .concat();
        assert_eq!(out, one.repeat(100), "every reply, in order");
        assert_eq!(s.buffered(), 0);
    }
}
