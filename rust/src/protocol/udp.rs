//! memcached's UDP protocol (protocol.txt, "UDP protocol"), sans-IO: a request datagram in, the
//! reply datagrams out, byte for byte as memcached 1.6.18 sends them.
//!
//! Every datagram starts with an 8-byte frame header of four big-endian u16s: request id,
//! sequence number, total datagrams in the message, reserved (0). A request must fit in one
//! datagram: memcached drops one whose "total" is not 1, and one of 8 bytes or less, without a
//! reply; the sequence number and the reserved field of a request are not looked at.
//!
//! The payload is served by a [`Session`] of its own (text or binary, by its first byte or `-B`),
//! and the replies are framed as memcached frames them. memcached builds a reply out of
//! "response objects", and frames each one on its own: its datagrams carry sequence numbers from
//! 0 and the object's own datagram count, with at most [`DATA_PER_DATAGRAM`] bytes after each
//! header (`UDP_MAX_PAYLOAD_SIZE` is 1400 bytes, header included). One request is one object,
//! except the get family (`get`, `gets`, `gat`, `gats`, `bget`): one object per key (a miss
//! leaves its object empty) with `END` added to the last one. What reaches the wire (memcached's
//! `transmit_udp` and `_transmit_post`, checked against it in tests/test_udp.py):
//!
//! - Objects are sent in batches: one ends after each request of the get family, after a binary
//!   error reply, after `-R`'s requests-per-event budget, and at the end of the datagram.
//! - The first object of a batch is sent even when it is empty: a datagram of the header alone,
//!   whose total is 0. An empty object that follows a sent one is dropped with it.
//! - A text request answered with nothing (`noreply`, meta `q`) has no object at all; a binary
//!   quiet one has an empty object.
//! - `quit` ends the datagram after its batch (its own object is empty). Any other request that
//!   closes a TCP connection (a line too long, an HTTP request, a binary framing error) ends it
//!   and drops every reply not yet sent; a binary error that closes is sent first.
//! - A get-family request with a key over 250 bytes drops the replies of the requests before it
//!   in the datagram (memcached's `conn_release_items`), and the next requests are answered.
//! - A request still incomplete at the end of the datagram is dropped (memcached's connection
//!   would wait for the rest in the next datagram, whatever it is).

use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::session::{Answered, Session, SessionConfig};
use super::tokens::split;
use crate::engine::Engine;

/// The frame header before every datagram's payload.
pub const HEADER_LEN: usize = 8;
/// memcached's `UDP_MAX_PAYLOAD_SIZE`: the most bytes of a reply datagram, header included.
pub const MAX_DATAGRAM: usize = 1400;
/// memcached's `UDP_DATA_SIZE`: reply bytes per datagram after the header.
pub const DATA_PER_DATAGRAM: usize = MAX_DATAGRAM - HEADER_LEN;
/// A reply datagram's "total" field is capped here (memcached's `USHRT_MAX`); sequence numbers
/// wrap past it.
const MAX_TOTAL: usize = u16::MAX as usize;

/// A datagram's frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub request_id: u16,
    pub sequence: u16,
    pub total: u16,
    pub reserved: u16,
}

impl Frame {
    /// The header at the start of `datagram`, if it has 8 bytes.
    pub fn parse(datagram: &[u8]) -> Option<Frame> {
        let h: &[u8; HEADER_LEN] = datagram.get(..HEADER_LEN)?.try_into().ok()?;
        let u = |i: usize| u16::from_be_bytes([h[i], h[i + 1]]);
        Some(Frame {
            request_id: u(0),
            sequence: u(2),
            total: u(4),
            reserved: u(6),
        })
    }

    pub fn to_bytes(self) -> [u8; HEADER_LEN] {
        let mut b = [0; HEADER_LEN];
        b[0..2].copy_from_slice(&self.request_id.to_be_bytes());
        b[2..4].copy_from_slice(&self.sequence.to_be_bytes());
        b[4..6].copy_from_slice(&self.total.to_be_bytes());
        b[6..8].copy_from_slice(&self.reserved.to_be_bytes());
        b
    }
}

/// Why a request datagram gets no reply at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// 8 bytes or less: no payload after the header (memcached reads nothing from it).
    Short,
    /// Its header says the request spans several datagrams (total is not 1): memcached
    /// supports single-datagram requests only.
    MultiDatagram,
}

/// The request id and payload of a request datagram, or why memcached ignores it.
pub fn request(datagram: &[u8]) -> Result<(u16, &[u8]), Dropped> {
    if datagram.len() <= HEADER_LEN {
        return Err(Dropped::Short);
    }
    let frame = Frame::parse(datagram).ok_or(Dropped::Short)?;
    if frame.total != 1 {
        return Err(Dropped::MultiDatagram);
    }
    Ok((frame.request_id, &datagram[HEADER_LEN..]))
}

/// Serves one request datagram: returns the reply datagrams, in the order to send them (none
/// for a datagram that memcached ignores). Counts the datagrams' bytes in `bytes_read` and
/// `bytes_written` as memcached does (headers included; a dropped multi-datagram request is
/// read, a short one is not).
pub fn serve(engine: &Arc<Engine>, config: SessionConfig, datagram: &[u8]) -> Vec<Vec<u8>> {
    let counters = &engine.counters;
    let (id, payload) = match request(datagram) {
        Ok(r) => r,
        Err(Dropped::Short) => return Vec::new(),
        Err(Dropped::MultiDatagram) => {
            counters
                .bytes_read
                .fetch_add(datagram.len() as u64, Ordering::Relaxed);
            return Vec::new();
        }
    };
    counters
        .bytes_read
        .fetch_add(datagram.len() as u64, Ordering::Relaxed);
    let mut session = Session::for_datagram(Arc::clone(engine), config);
    let mut out = Vec::new();
    session.feed(payload, &mut out);
    while session.has_more() {
        session.feed(&[], &mut out);
    }
    let answered = session.take_answered();
    drop(session);
    let per_event = match config.reqs_per_event {
        0 => usize::MAX,
        n => n,
    };
    let sends = responses(payload, &out, &answered, per_event);
    let datagrams = frame(id, &out, &sends);
    let written: usize = datagrams.iter().map(Vec::len).sum();
    counters
        .bytes_written
        .fetch_add(written as u64, Ordering::Relaxed);
    datagrams
}

/// One of memcached's response objects: a range of the session's reply.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Resp(Range<usize>);

impl Resp {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Gathers response objects into batches and decides which are sent (see the module docs).
#[derive(Default)]
struct Sender {
    pending: Vec<Resp>,
    sent: Vec<Resp>,
}

impl Sender {
    /// memcached's `transmit_udp` loop over the pending objects.
    fn flush(&mut self) {
        let mut i = 0;
        while i < self.pending.len() {
            self.sent.push(self.pending[i].clone());
            i += 1;
            // `_transmit_post` finishes the objects with nothing left to send along with the
            // one just sent.
            while i < self.pending.len() && self.pending[i].is_empty() {
                i += 1;
            }
        }
        self.pending.clear();
    }

    fn cull(&mut self) {
        self.pending.clear();
    }
}

/// The response objects that reach the wire, in order.
fn responses(payload: &[u8], out: &[u8], answered: &[Answered], per_event: usize) -> Vec<Resp> {
    let mut tx = Sender::default();
    let (mut in_at, mut out_at) = (0, 0);
    // memcached's first event of a datagram answers one request more than a resumed one.
    let mut left = per_event.saturating_add(1);
    for a in answered {
        let input = &payload[in_at..a.consumed];
        let reply = out_at..a.out_end;
        (in_at, out_at) = (a.consumed, a.out_end);
        let mut flush = false;
        if a.binary {
            // A binary request always has an object; an error reply is a write of its own.
            flush = binary_status(&out[reply.clone()]).is_some_and(|s| s != 0);
            let said = !reply.is_empty();
            tx.pending.push(Resp(reply));
            if a.closed {
                // A reply before the close is written first (memcached's close_after_write);
                // a silent close (bad magic) drops what was pending.
                if said {
                    tx.flush();
                }
                tx.cull();
                break;
            }
        } else {
            let line = command_line(input);
            let mut tokens = split(line);
            let cmd = tokens.next().unwrap_or_default();
            if a.closed {
                if cmd == b"quit" {
                    tx.pending.push(Resp(reply));
                    tx.flush();
                }
                tx.cull();
                break;
            }
            match get_family(cmd) {
                Some(first_key) => match split_get(out, reply.clone(), split(line).skip(first_key))
                {
                    GetReply::Values(resps) => {
                        tx.pending.extend(resps);
                        flush = true;
                    }
                    GetReply::KeyTooLong => {
                        tx.cull();
                        tx.pending.push(Resp(reply));
                    }
                    GetReply::Other => tx.pending.push(Resp(reply)),
                },
                // A text request answered with nothing (noreply, meta q) sends no object.
                None if reply.is_empty() => {}
                None => tx.pending.push(Resp(reply)),
            }
        }
        left -= 1;
        if left == 0 {
            flush = true;
            left = per_event;
        }
        if flush {
            tx.flush();
        }
    }
    tx.flush();
    tx.sent
}

/// The first line of a text request (a storage command's data block follows it).
fn command_line(input: &[u8]) -> &[u8] {
    let line = match memchr::memchr(b'\n', input) {
        Some(nl) => &input[..nl],
        None => input,
    };
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// For the get family, the token its keys start at.
fn get_family(cmd: &[u8]) -> Option<usize> {
    match cmd {
        b"get" | b"gets" | b"bget" => Some(1),
        b"gat" | b"gats" => Some(2),
        _ => None,
    }
}

enum GetReply {
    /// One object per key, `END` on the last.
    Values(Vec<Resp>),
    /// `CLIENT_ERROR bad command line format`: a key over 250 bytes.
    KeyTooLong,
    /// Any other error line.
    Other,
}

/// Splits a get-family reply (`out[reply]`) into memcached's objects: one per key, a hit's
/// holding its VALUE block, a miss's empty; `END` goes on the last.
fn split_get<'a>(
    out: &[u8],
    reply: Range<usize>,
    keys: impl Iterator<Item = &'a [u8]>,
) -> GetReply {
    let bytes = &out[reply.clone()];
    if bytes == b"CLIENT_ERROR bad command line format\r\n" {
        return GetReply::KeyTooLong;
    }
    if !bytes.ends_with(b"END\r\n") {
        return GetReply::Other;
    }
    let end_at = reply.end - 5;
    let mut resps: Vec<Resp> = Vec::new();
    let mut at = reply.start;
    for key in keys {
        match value_block(out, at, end_at, key) {
            Some(next) => {
                resps.push(Resp(at..next));
                at = next;
            }
            None => resps.push(Resp(at..at)),
        }
    }
    if at != end_at {
        // Not the reply the keys make (cannot happen): one object, as for any other request.
        return GetReply::Values(vec![Resp(reply)]);
    }
    match resps.last_mut() {
        Some(last) => last.0.end = reply.end,
        None => resps.push(Resp(reply)),
    }
    GetReply::Values(resps)
}

/// The end of the `VALUE <key> <flags> <bytes> [<cas>]\r\n<data>\r\n` block of `key` that starts
/// at `out[at]`, if one does (and ends by `limit`).
fn value_block(out: &[u8], at: usize, limit: usize, key: &[u8]) -> Option<usize> {
    let rest = out.get(at..limit)?;
    let line_len = memchr::memmem::find(rest, b"\r\n")?;
    let mut t = split(&rest[..line_len]);
    if t.next()? != b"VALUE" || t.next()? != key {
        return None;
    }
    let _flags = t.next()?;
    let len: usize = std::str::from_utf8(t.next()?).ok()?.parse().ok()?;
    let end = at + line_len + 2 + len + 2;
    (end <= limit).then_some(end)
}

/// The status of the binary response at the start of `reply`, if there is one.
fn binary_status(reply: &[u8]) -> Option<u16> {
    (reply.len() >= 24 && reply[0] == 0x81).then(|| u16::from_be_bytes([reply[6], reply[7]]))
}

/// The datagrams of the objects sent: each object is framed on its own, sequence numbers from
/// 0, an empty one as a lone header with a total of 0.
fn frame(request_id: u16, out: &[u8], sends: &[Resp]) -> Vec<Vec<u8>> {
    let mut datagrams = Vec::new();
    for r in sends {
        let bytes = &out[r.0.clone()];
        let total = bytes.len().div_ceil(DATA_PER_DATAGRAM).min(MAX_TOTAL) as u16;
        let mut chunks = bytes.chunks(DATA_PER_DATAGRAM);
        let mut sequence = 0u16;
        loop {
            let chunk = chunks.next();
            if chunk.is_none() && sequence > 0 {
                break;
            }
            let chunk = chunk.unwrap_or_default();
            let header = Frame {
                request_id,
                sequence,
                total,
                reserved: 0,
            };
            let mut d = Vec::with_capacity(HEADER_LEN + chunk.len());
            d.extend_from_slice(&header.to_bytes());
            d.extend_from_slice(chunk);
            datagrams.push(d);
            sequence = sequence.wrapping_add(1);
        }
    }
    datagrams
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EngineConfig;
    use crate::protocol::{Binding, SessionConfig};
    use crate::testkit;

    fn engine() -> Arc<Engine> {
        testkit::engine_on_system_clock(testkit::server_cache(), EngineConfig::default())
    }

    const CONFIG: SessionConfig = SessionConfig {
        binding: Binding::Auto,
        reqs_per_event: 20,
    };

    fn dgram(id: u16, payload: &[u8]) -> Vec<u8> {
        let mut d = Frame {
            request_id: id,
            sequence: 0,
            total: 1,
            reserved: 0,
        }
        .to_bytes()
        .to_vec();
        d.extend_from_slice(payload);
        d
    }

    fn hdr(id: u16, seq: u16, total: u16) -> Vec<u8> {
        Frame {
            request_id: id,
            sequence: seq,
            total,
            reserved: 0,
        }
        .to_bytes()
        .to_vec()
    }

    fn with(h: Vec<u8>, payload: &[u8]) -> Vec<u8> {
        [h, payload.to_vec()].concat()
    }

    #[test]
    fn the_header_is_four_big_endian_u16s() {
        let f = Frame::parse(&[0x12, 0x34, 0, 2, 0, 3, 0, 0, b'x']).unwrap();
        assert_eq!(
            f,
            Frame {
                request_id: 0x1234,
                sequence: 2,
                total: 3,
                reserved: 0
            }
        );
        assert_eq!(f.to_bytes(), [0x12, 0x34, 0, 2, 0, 3, 0, 0]);
        assert_eq!(request(&[0; 8]), Err(Dropped::Short));
        assert_eq!(
            request(&[0, 1, 0, 0, 0, 2, 0, 0, b'x']),
            Err(Dropped::MultiDatagram)
        );
        // sequence and reserved are not looked at
        assert_eq!(request(&[0, 7, 0, 9, 0, 1, 0, 5, b'x']), Ok((7, &b"x"[..])));
    }

    #[test]
    fn one_object_per_request_and_per_key_of_a_get() {
        let e = engine();
        assert_eq!(
            serve(&e, CONFIG, &dgram(1, b"set a 5 0 3\r\nabc\r\n")),
            vec![with(hdr(1, 0, 1), b"STORED\r\n")]
        );
        let value = b"VALUE a 5 3\r\nabc\r\n";
        let end = [&value[..], b"END\r\n"].concat();
        assert_eq!(
            serve(&e, CONFIG, &dgram(2, b"get a a nope a\r\n")),
            vec![
                with(hdr(2, 0, 1), value),
                with(hdr(2, 0, 1), value),
                with(hdr(2, 0, 1), &end),
            ]
        );
        // a miss first in its batch is a lone header with a total of 0
        assert_eq!(
            serve(&e, CONFIG, &dgram(3, b"get nope a\r\n")),
            vec![hdr(3, 0, 0), with(hdr(3, 0, 1), &end)]
        );
        assert_eq!(
            serve(&e, CONFIG, &dgram(4, b"get a nope\r\n")),
            vec![with(hdr(4, 0, 1), value), with(hdr(4, 0, 1), b"END\r\n")]
        );
        // after another object in the same batch, it is dropped
        assert_eq!(
            serve(&e, CONFIG, &dgram(5, b"version\r\nget nope a\r\n")),
            vec![
                with(hdr(5, 0, 1), b"VERSION 1.6.18\r\n"),
                with(hdr(5, 0, 1), &end)
            ]
        );
        // noreply sends nothing; quit sends its empty object and ends the datagram
        assert_eq!(
            serve(
                &e,
                CONFIG,
                &dgram(6, b"set q 0 0 1 noreply\r\nx\r\nquit\r\nversion\r\n")
            ),
            vec![hdr(6, 0, 0)]
        );
        assert_eq!(
            serve(&e, CONFIG, &dgram(7, b"delete q noreply\r\n")),
            Vec::<Vec<u8>>::new()
        );
    }

    #[test]
    fn a_large_reply_is_split_into_1392_byte_pieces() {
        let e = engine();
        let value: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let mut set = b"set big 1 0 5000\r\n".to_vec();
        set.extend_from_slice(&value);
        set.extend_from_slice(b"\r\n");
        serve(&e, CONFIG, &dgram(1, &set));
        let got = serve(&e, CONFIG, &dgram(9, b"get big\r\n"));
        let whole = [&b"VALUE big 1 5000\r\n"[..], &value, b"\r\nEND\r\n"].concat();
        assert_eq!(got.len(), 4);
        for (i, d) in got.iter().enumerate() {
            assert_eq!(d[..8], hdr(9, i as u16, 4)[..]);
            assert!(d.len() <= MAX_DATAGRAM);
        }
        let joined: Vec<u8> = got.iter().flat_map(|d| d[8..].to_vec()).collect();
        assert_eq!(joined, whole);
        assert_eq!(got[3].len(), 8 + whole.len() - 3 * DATA_PER_DATAGRAM);
    }

    #[test]
    fn a_long_key_drops_the_replies_before_it_and_closing_errors_drop_all() {
        let e = engine();
        let long = [&b"version\r\nget "[..], &[b'k'; 300], b"\r\nversion\r\n"].concat();
        assert_eq!(
            serve(&e, CONFIG, &dgram(1, &long)),
            vec![
                with(hdr(1, 0, 1), b"CLIENT_ERROR bad command line format\r\n"),
                with(hdr(1, 0, 1), b"VERSION 1.6.18\r\n"),
            ]
        );
        let too_long = [&b"version\r\n"[..], &[b'x'; 3000]].concat();
        assert!(serve(&e, CONFIG, &dgram(2, &too_long)).is_empty());
        // an incomplete request at the end is dropped; what came before is answered
        assert_eq!(
            serve(&e, CONFIG, &dgram(3, b"version\r\nset c 0 0 10\r\nabc")),
            vec![with(hdr(3, 0, 1), b"VERSION 1.6.18\r\n")]
        );
    }

    #[test]
    fn bytes_are_counted_with_their_headers_and_no_connection_is() {
        let e = engine();
        let before = e.counters.total_connections.load(Ordering::Relaxed);
        let replies = serve(&e, CONFIG, &dgram(1, b"version\r\n"));
        assert_eq!(e.counters.bytes_read.load(Ordering::Relaxed), 17);
        assert_eq!(e.counters.bytes_written.load(Ordering::Relaxed), 24);
        assert_eq!(replies.len(), 1);
        serve(&e, CONFIG, &[0, 1, 0, 0, 0, 2, 0, 0, b'x']);
        assert_eq!(e.counters.bytes_read.load(Ordering::Relaxed), 26);
        serve(&e, CONFIG, &[0, 1, 0, 0, 0, 1, 0, 0]);
        assert_eq!(e.counters.bytes_read.load(Ordering::Relaxed), 26);
        assert_eq!(e.counters.total_connections.load(Ordering::Relaxed), before);
        assert_eq!(e.counters.curr_connections.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn binary_requests_get_binary_replies_and_quiet_misses_empty_objects() {
        let e = engine();
        let req = |op: u8, key: &[u8], opaque: u8| {
            let mut r = vec![
                0x80,
                op,
                0,
                key.len() as u8,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                key.len() as u8,
            ];
            r.extend_from_slice(&[0, 0, 0, opaque]);
            r.extend_from_slice(&[0; 8]);
            r.extend_from_slice(key);
            r
        };
        // GETQ nope, NOOP
        let payload = [req(0x09, b"nope", 1), req(0x0a, b"", 2)].concat();
        let got = serve(&e, CONFIG, &dgram(4, &payload));
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], hdr(4, 0, 0));
        assert_eq!(got[1][..8], hdr(4, 0, 1)[..]);
        assert_eq!(got[1][8..10], [0x81, 0x0a]);
        // -B ascii reads it as text: no newline, so no complete request
        let ascii = SessionConfig {
            binding: Binding::Ascii,
            ..CONFIG
        };
        assert!(serve(&e, ascii, &dgram(5, &req(0x0b, b"", 0))).is_empty());
    }

    #[test]
    fn the_requests_per_event_budget_ends_a_batch() {
        let e = engine();
        // 3 + 1 requests in the first batch: the miss's empty object after them opens the next
        let few = SessionConfig {
            reqs_per_event: 3,
            ..CONFIG
        };
        let payload = b"set a 0 0 1\r\nx\r\nversion\r\nversion\r\nversion\r\nget nope a\r\n";
        let got = serve(&e, few, &dgram(1, payload));
        assert_eq!(got.len(), 6);
        assert_eq!(got[4], hdr(1, 0, 0));
        let unlimited = SessionConfig {
            reqs_per_event: 0,
            ..CONFIG
        };
        let got = serve(&e, unlimited, &dgram(1, payload));
        assert_eq!(got.len(), 5);
    }
}
