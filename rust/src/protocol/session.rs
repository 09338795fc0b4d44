//! One client connection's protocol state: the read buffer, the protocol in use, and any command
//! that is waiting for its data block.

use std::sync::Arc;

use bytes::BytesMut;

use super::{binary, text};
use crate::engine::Engine;

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
}

impl Session {
    pub fn new(engine: Arc<Engine>) -> Session {
        engine.connection_opened();
        Session {
            engine,
            buf: BytesMut::new(),
            proto: Proto::Unknown,
            text: text::TextState::default(),
            binary: binary::BinaryState::default(),
            closed: false,
        }
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
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
        let close = loop {
            if self.buf.is_empty() {
                break false;
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
                Proto::Text => text::step(&mut self.text, &self.engine, &mut self.buf, out),
                Proto::Binary => binary::step(&mut self.binary, &self.engine, &mut self.buf, out),
            };
            match p {
                Progress::NeedMore => break false,
                Progress::Again => continue,
                Progress::Close => break true,
            }
        };
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
