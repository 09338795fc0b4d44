//! One client connection's protocol state: the read buffer, the protocol in use, and any command
//! that is waiting for its data block.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::limits::REPLY_BUDGET;
use super::{auth, binary, text};
use crate::disk_wait;
use crate::engine::Engine;
use crate::latency::CommandTimer;

/// What one step of a protocol handler achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Progress {
    /// Nothing more can be done until more bytes arrive.
    NeedMore,
    /// Something was consumed; try again.
    Again,
    /// Send what has been written, then close the connection.
    Close,
    /// The request at the head of the buffer must wait on the disk, where waits are refused
    /// (`disk_wait`): it was rolled back, its bytes are still buffered.
    Waits,
}

/// memcached's `-B`: which protocol a connection may speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Binding {
    /// The first byte decides: 0x80 is binary, anything else text (memcached's default).
    #[default]
    Auto,
    /// Text only: a binary request is read as a text line, as memcached -B ascii reads it.
    Ascii,
    /// Binary only: a text request is read as a binary header, whose bad magic closes the
    /// connection without a reply (after 24 bytes), as memcached -B binary does.
    Binary,
}

impl Binding {
    /// The name memcached's `stats settings` prints for it (`binding_protocol`).
    pub fn stats_name(self) -> &'static str {
        match self {
            Binding::Auto => "auto-negotiate",
            Binding::Ascii => "ascii",
            Binding::Binary => "binary",
        }
    }
}

/// Per-connection protocol settings of a server (memcached's `-B` and `-R`), the same for
/// every connection; the I/O engines hand them to each [`Session`] they create.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SessionConfig {
    pub binding: Binding,
    /// memcached's `-R` (`reqs_per_event`): a feed answers at most this many requests, plus one
    /// when it brought new bytes (memcached's count), before it yields with the rest still
    /// buffered ([`Session::has_more`], counted in `conn_yields`). 0: no limit, only the reply
    /// budget.
    pub reqs_per_event: usize,
}

/// Where one request's reply ends, recorded for UDP ([`Session::for_datagram`]): the UDP
/// framing needs memcached's reply boundaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Answered {
    /// Input bytes consumed so far, this request included.
    pub consumed: usize,
    /// Reply bytes written so far, this request's included.
    pub out_end: usize,
    /// It was a binary request.
    pub binary: bool,
    /// The session closed after it.
    pub closed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Unknown,
    Text,
    Binary,
}

/// A stored value that a reply shares instead of copying ([`Session::feed_spliced`]): its bytes
/// belong at offset `at` of the reply buffer.
#[derive(Debug, Clone)]
pub struct Splice {
    pub at: usize,
    pub bytes: Bytes,
}

/// The bytes a reply's splices add to it.
pub fn spliced_len(splices: &[Splice]) -> usize {
    splices.iter().map(|s| s.bytes.len()).sum()
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
    /// Set while a text connection has yet to pass ASCII auth (the server has an authfile).
    auth: Option<auth::AuthState>,
    timer: CommandTimer,
    config: SessionConfig,
    /// Requests answered by the current feed, for `reqs_per_event`.
    answered: usize,
    /// The last text request begun was of the get family (memcached writes its replies at once).
    last_get: bool,
    /// Bytes fed so far (UDP's request boundaries are offsets into them).
    fed: usize,
    /// A UDP datagram's session: not a connection (not counted, no byte counts), and it records
    /// where each request's reply ends.
    record: Option<Vec<Answered>>,
    /// The I/O engine runs feeds where they must not wait on the disk (`disk_wait`): a request
    /// that would is rolled back and left for [`must_wait`](Session::must_wait).
    hands_off_waits: bool,
    /// The last feed stopped at a request that must wait on the disk.
    must_wait: bool,
}

impl Session {
    pub fn new(engine: Arc<Engine>) -> Session {
        Session::with_config(engine, SessionConfig::default())
    }

    /// A connection's session with the server's `-B`/`-R` settings.
    pub fn with_config(engine: Arc<Engine>, config: SessionConfig) -> Session {
        engine.connection_opened();
        Session::build(engine, config, None)
    }

    /// The session of one UDP datagram: it is not a connection (`curr_connections` does not
    /// count it, and the UDP layer counts the bytes of the datagrams), and it records where each
    /// request's reply ends, for `protocol::udp`.
    pub(crate) fn for_datagram(engine: Arc<Engine>, config: SessionConfig) -> Session {
        Session::build(engine, config, Some(Vec::new()))
    }

    fn build(engine: Arc<Engine>, config: SessionConfig, record: Option<Vec<Answered>>) -> Session {
        Session {
            config,
            answered: 0,
            last_get: false,
            fed: 0,
            record,
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
            hands_off_waits: false,
            must_wait: false,
        }
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The `-B`/`-R` settings this session was made with.
    pub fn config(&self) -> SessionConfig {
        self.config
    }

    /// Where each request's reply ended (a datagram's session only; empty otherwise).
    pub(crate) fn take_answered(&mut self) -> Vec<Answered> {
        self.record.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// The last `feed` stopped at [`REPLY_BUDGET`] with requests left in the buffer: send its
    /// reply, then call `feed(&[])` before reading more from the socket.
    pub fn has_more(&self) -> bool {
        (self.more || self.must_wait) && !self.closed
    }

    /// Feeds must not wait on the disk (`disk_wait`): a request that would (an L1 miss with an
    /// L2, a write that goes down to it at once) stops the feed, with [`must_wait`] set and the
    /// request still buffered. The engine sends what was answered, then calls `feed(&[])` again
    /// where waiting is fine; that feed waits for that request and the ones after it, until it
    /// ends. Off by default: every feed may wait.
    ///
    /// [`must_wait`]: Session::must_wait
    pub fn set_hands_off_waits(&mut self, on: bool) {
        self.hands_off_waits = on;
    }

    /// Feeds stop at requests that must wait on the disk ([`set_hands_off_waits`](Session::set_hands_off_waits)).
    pub fn hands_off_waits(&self) -> bool {
        self.hands_off_waits
    }

    /// The last feed stopped at a request that must wait on the disk
    /// ([`set_hands_off_waits`](Session::set_hands_off_waits)): send its reply, then call
    /// `feed(&[])` where waiting is fine, before reading more from the socket.
    pub fn must_wait(&self) -> bool {
        self.must_wait && !self.closed
    }

    /// Bytes buffered but not yet answered (an incomplete command or data block).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Parses and answers every complete request in `data` (plus what was buffered before),
    /// appending the replies to `out`. Returns true when the connection must be closed after
    /// `out` is sent.
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) -> bool {
        self.text.splices.enabled = false;
        let close = self.feed_inner(data, out);
        self.close_if(close)
    }

    /// `feed`, except that large values read by `get` (`text::SPLICE_MIN` and up) are not copied
    /// into `out`: each is appended to `splices` with the offset in `out` where its bytes go,
    /// sharing the stored buffer. The reply is `out` with every splice inserted at its offset.
    /// `splices` must start empty, and `out` too.
    pub fn feed_spliced(
        &mut self,
        data: &[u8],
        out: &mut Vec<u8>,
        splices: &mut Vec<Splice>,
    ) -> bool {
        debug_assert!(out.is_empty() && splices.is_empty());
        let sink = &mut self.text.splices;
        sink.enabled = true;
        std::mem::swap(&mut sink.splices, splices);
        let close = self.feed_inner(data, out);
        std::mem::swap(&mut self.text.splices.splices, splices);
        self.close_if(close)
    }

    fn close_if(&mut self, close: bool) -> bool {
        if close {
            self.close();
        }
        close
    }

    fn feed_inner(&mut self, data: &[u8], out: &mut Vec<u8>) -> bool {
        if self.closed {
            return true;
        }
        let written_before = out.len();
        let counted = self.record.is_none();
        if counted {
            self.engine
                .counters
                .bytes_read
                .fetch_add(data.len() as u64, std::sync::atomic::Ordering::Relaxed);
        }
        self.buf.extend_from_slice(data);
        self.fed += data.len();
        // memcached's -R: a read's event answers N + 1 requests (the first is parsed before
        // the count starts), a resumed one N.
        let budget = match self.config.reqs_per_event {
            0 => usize::MAX,
            n if data.is_empty() && self.more => n,
            n => n + 1,
        };
        self.answered = 0;
        self.more = false;
        // A feed after one that stopped at a wait may wait (the engine moved it where it may).
        let _refusing = (self.hands_off_waits && !self.must_wait && self.engine.may_block())
            .then(disk_wait::Refusing::enter);
        self.must_wait = false;
        let close = loop {
            if self.buf.is_empty() {
                // memcached counts a yield when the read used its whole budget, or all but one
                // and then spent that one writing the pending replies (a get's went at once).
                if budget != usize::MAX
                    && (self.answered >= budget || self.answered + 1 == budget && !self.last_get)
                {
                    let yields = &self.engine.counters.conn_yields;
                    yields.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                break false;
            }
            if self.answered >= budget
                || out.len() - written_before + self.text.splices.len() >= REPLY_BUDGET
            {
                // Send this first; the engine feeds again (with no new bytes) after sending.
                self.more = true;
                let yields = &self.engine.counters.conn_yields;
                yields.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                break false;
            }
            if self.proto == Proto::Unknown {
                self.proto = self.pick_protocol();
                if self.proto == Proto::Unknown {
                    // SASL only: memcached -S speaks nothing but the binary protocol.
                    break true;
                }
            }
            if let (Some(st), Proto::Text) = (&mut self.auth, self.proto) {
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
                    Progress::Waits => unreachable!("auth reads no item"),
                }
            }
            let (p, complete) = match self.proto {
                Proto::Unknown => unreachable!("picked above"),
                Proto::Text => {
                    let starts = self.text.at_line().then(|| text::kind_of(&self.buf));
                    if starts.is_some() && budget != usize::MAX {
                        self.last_get = is_get_family(&self.buf);
                    }
                    self.timer.begin(starts);
                    let p = text::step(&mut self.text, &self.engine, &mut self.buf, out);
                    let complete = self.text.at_line();
                    self.timer.end(&self.engine, progressed(p), complete);
                    (p, complete)
                }
                Proto::Binary => {
                    let starts = self.binary.at_header().then(|| binary::kind_of(&self.buf));
                    self.timer.begin(starts);
                    let p = binary::step(&mut self.binary, &self.engine, &mut self.buf, out);
                    let complete = self.binary.at_header();
                    self.timer.end(&self.engine, progressed(p), complete);
                    (p, complete)
                }
            };
            if p == Progress::Close || (p == Progress::Again && complete) {
                self.answered += 1;
                if let Some(record) = &mut self.record {
                    record.push(Answered {
                        consumed: self.fed - self.buf.len(),
                        out_end: out.len(),
                        binary: self.proto == Proto::Binary,
                        closed: p == Progress::Close,
                    });
                }
            }
            match p {
                Progress::NeedMore => break false,
                Progress::Again => continue,
                Progress::Close => break true,
                Progress::Waits => {
                    // Send what was answered; the request runs again where it may wait.
                    self.must_wait = true;
                    break false;
                }
            }
        };
        self.timer.pause(&self.engine);
        if counted {
            self.engine.counters.bytes_written.fetch_add(
                (out.len() - written_before + self.text.splices.len()) as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        close
    }

    /// The protocol of a new connection: the one `-B` binds, else from its first byte (0x80 is
    /// binary, as in memcached), or `Unknown` for one that may not connect at all. With ASCII auth (`-Y`) and no SASL,
    /// every connection is text, as memcached then binds the ASCII protocol only; with SASL and
    /// no ASCII auth (`-S`), a text connection is refused, as memcached then binds binary only.
    fn pick_protocol(&self) -> Proto {
        match self.config.binding {
            Binding::Ascii => return Proto::Text,
            Binding::Binary => return Proto::Binary,
            Binding::Auto => {}
        }
        let cfg = self.engine.config();
        let binary = self.buf[0] == binary::MAGIC_REQUEST;
        match (cfg.auth.is_some(), cfg.sasl.is_some()) {
            (true, false) => Proto::Text,
            (false, true) if !binary => Proto::Unknown,
            _ if binary => Proto::Binary,
            _ => Proto::Text,
        }
    }

    /// The connection is gone; frees buffers and unfinished uploads. Idempotent.
    pub fn close(&mut self) {
        if !self.closed {
            self.closed = true;
            self.buf = BytesMut::new();
            self.text = text::TextState::default();
            if self.record.is_none() {
                self.engine.connection_closed();
            }
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }
}

/// The step did something worth timing (it neither waited for bytes nor was rolled back).
fn progressed(p: Progress) -> bool {
    !matches!(p, Progress::NeedMore | Progress::Waits)
}

/// The line in `buf` starts a `get`, `gets`, `gat`, `gats` or `bget`.
fn is_get_family(buf: &[u8]) -> bool {
    let start = buf.iter().position(|&b| b != b' ').unwrap_or(buf.len());
    let rest = &buf[start..];
    let end = rest
        .iter()
        .position(|&b| b == b' ' || b == b'\r' || b == b'\n')
        .unwrap_or(rest.len());
    matches!(&rest[..end], b"get" | b"gets" | b"gat" | b"gats" | b"bget")
}

impl Drop for Session {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{Session, Splice};
    use crate::engine::EngineConfig;
    use crate::protocol::limits::REPLY_BUDGET;
    use crate::testkit;

    #[test]
    fn pipelined_replies_stop_at_the_budget_and_resume_on_an_empty_feed() {
        let mut s = testkit::session_on_system_clock(EngineConfig::default());
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

    fn configured(config: super::SessionConfig) -> Session {
        let engine = testkit::engine_on_system_clock(testkit::one_shard(), EngineConfig::default());
        Session::with_config(engine, config)
    }

    #[test]
    fn binding_ascii_reads_binary_as_text_and_binary_closes_on_text() {
        use super::{Binding, SessionConfig};
        let version = [0x80u8, 0x0b, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
            .into_iter()
            .chain([0; 12])
            .collect::<Vec<u8>>();
        let mut out = Vec::new();
        let mut auto = configured(SessionConfig::default());
        assert!(!auto.feed(&version, &mut out));
        assert_eq!(&out[..2], [0x81, 0x0b]);
        // -B ascii: a text line with no newline yet; a newline makes it an unknown command
        let mut ascii = configured(SessionConfig {
            binding: Binding::Ascii,
            ..Default::default()
        });
        out.clear();
        assert!(!ascii.feed(&version, &mut out));
        assert!(out.is_empty());
        assert!(!ascii.feed(b"\r\nversion\r\n", &mut out));
        assert_eq!(out, b"ERROR\r\nVERSION 1.6.18\r\n");
        // -B binary: a text request is a bad header once 24 bytes are in: closed, no reply
        let mut binary = configured(SessionConfig {
            binding: Binding::Binary,
            ..Default::default()
        });
        out.clear();
        assert!(!binary.feed(b"version\r\n", &mut out));
        assert!(binary.feed(b"get aaaaaaaaaaaaaaaaa\r\n", &mut out));
        assert!(out.is_empty());
    }

    #[test]
    fn reqs_per_event_yields_after_n_plus_one_then_n_requests() {
        let mut s = configured(super::SessionConfig {
            reqs_per_event: 3,
            ..Default::default()
        });
        let engine = Arc::clone(s.engine());
        let yields = || {
            engine
                .counters
                .conn_yields
                .load(std::sync::atomic::Ordering::Relaxed)
        };
        let before = yields();
        let mut out = Vec::new();
        s.feed(&b"version\r\n".repeat(10), &mut out);
        assert_eq!(out, b"VERSION 1.6.18\r\n".repeat(4));
        assert!(s.has_more());
        out.clear();
        s.feed(&[], &mut out);
        assert_eq!(out, b"VERSION 1.6.18\r\n".repeat(3));
        out.clear();
        s.feed(&[], &mut out);
        assert_eq!(out, b"VERSION 1.6.18\r\n".repeat(3));
        assert!(!s.has_more());
        // the last turn used its whole budget: memcached counts that as a yield too
        assert_eq!(yields() - before, 3);
        // a read's event has 4: two leave room; four use it up; three use it up with the write
        // of their replies, unless the last was a get (its reply went at once)
        for (batch, more) in [
            (b"version\r\n".repeat(2), 0),
            (b"version\r\n".repeat(4), 1),
            (b"version\r\n".repeat(3), 1),
            (
                [b"version\r\n".repeat(2), b"get a\r\n".to_vec()].concat(),
                0,
            ),
            (
                [b"version\r\n".repeat(3), b"get a\r\n".to_vec()].concat(),
                1,
            ),
        ] {
            let was = yields();
            out.clear();
            s.feed(&batch, &mut out);
            assert!(!s.has_more());
            assert_eq!(yields() - was, more);
        }
    }

    fn session() -> Session {
        testkit::session_on_system_clock(EngineConfig {
            max_item_size: 4 << 20,
            ..Default::default()
        })
    }

    fn set(key: &str, value: &[u8]) -> Vec<u8> {
        let mut req = format!("set {key} 7 0 {}\r\n", value.len()).into_bytes();
        req.extend_from_slice(value);
        req.extend_from_slice(b"\r\n");
        req
    }

    /// `out` with every splice put back where it belongs.
    fn reassemble(out: &[u8], splices: &[Splice]) -> Vec<u8> {
        let mut whole = Vec::new();
        let mut from = 0;
        for sp in splices {
            whole.extend_from_slice(&out[from..sp.at]);
            whole.extend_from_slice(&sp.bytes);
            from = sp.at;
        }
        whole.extend_from_slice(&out[from..]);
        whole
    }

    #[test]
    fn spliced_replies_are_the_same_bytes_without_the_copies() {
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let mid = vec![b'm'; 100_000];
        let (mut plain, mut spliced) = (session(), session());
        let mut load = set("big", &big);
        load.extend(set("mid", &mid));
        load.extend(set("small", b"s"));
        for s in [&mut plain, &mut spliced] {
            let mut out = Vec::new();
            s.feed(&load, &mut out);
            assert_eq!(out, b"STORED\r\n".repeat(3));
        }
        for req in [
            &b"get big\r\n"[..],
            b"gets small big mid nope\r\n",
            b"gat 100 mid big\r\n",
            b"streaming_get big\r\nstreaming_get mid 70000\r\nstreaming_get big 1000\r\n",
            b"get big mid small\r\nget mid\r\n",
            // A bad key after hits: the reply is only the error, and its splices go too.
            &[
                b"get big mid ".as_slice(),
                &[b'k'; 300],
                b"\r\nget small\r\n",
            ]
            .concat(),
        ] {
            let mut want = Vec::new();
            plain.feed(req, &mut want);
            while plain.has_more() {
                plain.feed(&[], &mut want);
            }
            let mut got = Vec::new();
            let mut first = true;
            loop {
                let (mut out, mut splices) = (Vec::new(), Vec::new());
                let input = if first { req } else { &[][..] };
                first = false;
                spliced.feed_spliced(input, &mut out, &mut splices);
                got.extend(reassemble(&out, &splices));
                if !spliced.has_more() {
                    break;
                }
            }
            assert_eq!(
                got,
                want,
                "{:?}",
                String::from_utf8_lossy(&req[..20.min(req.len())])
            );
        }
        // The values were shared, not copied: a splice points into the stored buffer.
        let (mut out, mut splices) = (Vec::new(), Vec::new());
        spliced.feed_spliced(b"get big\r\n", &mut out, &mut splices);
        assert_eq!(splices.len(), 1);
        assert_eq!(&splices[0].bytes[..], &big[..]);
        assert!(out.len() < 100);
        // An update while a reply still holds the old value leaves that reply intact.
        let mut o = Vec::new();
        spliced.feed(&set("big", &vec![b'x'; big.len()]), &mut o);
        assert_eq!(&splices[0].bytes[..], &big[..]);
    }
}
