//! memcached's binary protocol (`protocol_binary.h`), reproduced against memcached 1.6.18.
//!
//! A request is a 24-byte header, then `extlen` bytes of extras, `keylen` bytes of key and the
//! rest of `bodylen` as the value. As memcached does, a request is judged as soon as its header,
//! extras and key are in: a malformed one is answered at once (and the connection closed), and
//! a value that can never be stored is answered `E2BIG` and skipped as it streams in, so a huge
//! declared body is never buffered. Only a value that will be stored waits in the buffer.
//!
//! Replies are written straight into the output buffer; a get copies the value there under the
//! shard lock, so a request allocates nothing but the stored value (and `stat`'s strings).
//!
//! Quiet opcodes (`...Q`) suppress success replies (and a get's miss) but still send errors.
//!
//! SASL PLAIN (`-S`) is checked in `sasl`; without it, the SASL opcodes are "Unknown command", as
//! in memcached without `-S`.
//!
//! Where memcached misbehaves, this module does the sane thing instead (docs/compatibility.md):
//! - an unknown opcode (or SASL without `-S`) has exactly its remaining body skipped: memcached
//!   skips `bodylen` bytes *after* the extras and key, swallowing the start of the next
//!   request, and skips nothing at all when `bodylen` is 2^31 or more;
//! - `touch`, `gat`, `gatk` and `stat` with a value they don't use are malformed here (status
//!   0x04, then close); memcached ignores the surplus and parses it as the next request;
//! - a `set` whose declared value is 2 GiB or more is answered `E2BIG` and its value skipped;
//!   memcached answers `E2BIG` but skips nothing;
//! - `stat` with a key matches `reset` and `settings` as prefixes (as memcached does) but never
//!   reads past the key; `stat detail ...` is "Not found", as no prefix statistics are kept.

use std::sync::atomic::Ordering;

use bytes::{Buf, BytesMut};

use super::auth::Credentials;
use super::limits::KEY_MAX_LENGTH;
use super::sasl;
use super::session::Progress;
use crate::cache::{
    DeleteOutcome, DeleteRequest, Delta, DeltaOutcome, DeltaRequest, StoreMode, StoreOutcome,
    StoreRequest, Ttl,
};
use crate::command::{ttl_from_exptime, Failure, FlushOutcome, StatsGroup};
use crate::engine::{CmdKind, Engine, MEMCACHED_VERSION};

/// `PROTOCOL_BINARY_REQ`: a connection whose first byte is this speaks the binary protocol.
pub(crate) const MAGIC_REQUEST: u8 = 0x80;
/// `PROTOCOL_BINARY_RES`.
const MAGIC_RESPONSE: u8 = 0x81;
const HEADER_LEN: usize = 24;

/// Opcodes (`protocol_binary_command`).
mod op {
    pub const GET: u8 = 0x00;
    pub const SET: u8 = 0x01;
    pub const ADD: u8 = 0x02;
    pub const REPLACE: u8 = 0x03;
    pub const DELETE: u8 = 0x04;
    pub const INCREMENT: u8 = 0x05;
    pub const DECREMENT: u8 = 0x06;
    pub const QUIT: u8 = 0x07;
    pub const FLUSH: u8 = 0x08;
    pub const GETQ: u8 = 0x09;
    pub const NOOP: u8 = 0x0a;
    pub const VERSION: u8 = 0x0b;
    pub const GETK: u8 = 0x0c;
    pub const GETKQ: u8 = 0x0d;
    pub const APPEND: u8 = 0x0e;
    pub const PREPEND: u8 = 0x0f;
    pub const STAT: u8 = 0x10;
    pub const SETQ: u8 = 0x11;
    pub const ADDQ: u8 = 0x12;
    pub const REPLACEQ: u8 = 0x13;
    pub const DELETEQ: u8 = 0x14;
    pub const INCREMENTQ: u8 = 0x15;
    pub const DECREMENTQ: u8 = 0x16;
    pub const QUITQ: u8 = 0x17;
    pub const FLUSHQ: u8 = 0x18;
    pub const APPENDQ: u8 = 0x19;
    pub const PREPENDQ: u8 = 0x1a;
    /// memcached 1.6.18 does not implement it: "Unknown command", like any unknown opcode.
    pub const VERBOSITY: u8 = 0x1b;
    pub const TOUCH: u8 = 0x1c;
    pub const GAT: u8 = 0x1d;
    pub const GATQ: u8 = 0x1e;
    pub const SASL_LIST_MECHS: u8 = 0x20;
    pub const SASL_AUTH: u8 = 0x21;
    pub const SASL_STEP: u8 = 0x22;
    pub const GATK: u8 = 0x23;
    pub const GATKQ: u8 = 0x24;
}

/// Response statuses (`protocol_binary_response_status`).
mod status {
    pub const SUCCESS: u16 = 0x0000;
    pub const KEY_ENOENT: u16 = 0x0001;
    pub const KEY_EEXISTS: u16 = 0x0002;
    pub const E2BIG: u16 = 0x0003;
    pub const EINVAL: u16 = 0x0004;
    pub const NOT_STORED: u16 = 0x0005;
    pub const DELTA_BADVAL: u16 = 0x0006;
    pub const AUTH_ERROR: u16 = 0x0020;
    pub const AUTH_CONTINUE: u16 = 0x0021;
    pub const UNKNOWN_COMMAND: u16 = 0x0081;
    pub const ENOMEM: u16 = 0x0082;
    /// memcached never sends these two; they say an L2 failure (docs/compatibility.md).
    pub const EINTERNAL: u16 = 0x0084;
    pub const ETMPFAIL: u16 = 0x0086;
}

/// The body memcached's `write_bin_error` sends with each status.
fn message(status: u16) -> &'static [u8] {
    match status {
        status::KEY_ENOENT => b"Not found",
        status::KEY_EEXISTS => b"Data exists for key.",
        status::E2BIG => b"Too large.",
        status::EINVAL => b"Invalid arguments",
        status::NOT_STORED => b"Not stored.",
        status::DELTA_BADVAL => b"Non-numeric server-side value for incr or decr",
        status::AUTH_ERROR => b"Auth failure.",
        status::UNKNOWN_COMMAND => b"Unknown command",
        status::EINTERNAL => b"Internal error",
        status::ETMPFAIL => b"Temporary failure",
        _ => b"Out of memory",
    }
}

/// The status that says a failure.
fn failure_status(f: Failure) -> u16 {
    match f {
        Failure::TooLarge => status::E2BIG,
        Failure::NoMemory => status::ENOMEM,
        Failure::NoDisk => status::ETMPFAIL,
        Failure::DiskError => status::EINTERNAL,
    }
}

/// The kind of the request whose header starts `buf` (its opcode, the second byte), for the
/// latency histograms.
#[inline]
pub(crate) fn kind_of(buf: &[u8]) -> CmdKind {
    match buf.get(1) {
        // GET, GETQ, GETK, GETKQ
        Some(0x00 | 0x09 | 0x0c | 0x0d) => CmdKind::Get,
        // SET, ADD, REPLACE, APPEND, PREPEND and their quiet forms
        Some(0x01..=0x03 | 0x0e | 0x0f | 0x11..=0x13 | 0x19 | 0x1a) => CmdKind::Set,
        Some(0x04 | 0x14) => CmdKind::Delete,
        Some(0x05 | 0x06 | 0x15 | 0x16) => CmdKind::IncrDecr,
        // TOUCH, GAT, GATQ, GATK, GATKQ
        Some(0x1c..=0x1e | 0x23 | 0x24) => CmdKind::Touch,
        _ => CmdKind::Other,
    }
}

/// memcached's incr/decr with this exptime fails on a miss instead of creating the item.
const NO_AUTOVIVIFY: u32 = 0xffff_ffff;

/// Per-connection state between requests.
#[derive(Default)]
pub(crate) struct BinaryState {
    /// Body bytes of a refused request still to be discarded.
    swallow: usize,
    /// SASL progress (only consulted when the server has SASL on).
    sasl: sasl::SaslState,
}

impl BinaryState {
    /// The next step reads a request header (not the body of a refused request).
    pub(crate) fn at_header(&self) -> bool {
        self.swallow == 0
    }
}

/// A request header, in host order. The opaque is echoed verbatim, so it stays as bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub magic: u8,
    pub opcode: u8,
    pub keylen: u16,
    pub extlen: u8,
    pub bodylen: u32,
    pub opaque: [u8; 4],
    pub cas: u64,
}

impl Header {
    /// Parses the first 24 bytes; `None` until they have all arrived. The data type and the
    /// vbucket are ignored, as memcached ignores them.
    pub(crate) fn parse(b: &[u8]) -> Option<Header> {
        let b: &[u8; HEADER_LEN] = b.get(..HEADER_LEN)?.try_into().ok()?;
        Some(Header {
            magic: b[0],
            opcode: b[1],
            keylen: u16::from_be_bytes([b[2], b[3]]),
            extlen: b[4],
            bodylen: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
            opaque: [b[12], b[13], b[14], b[15]],
            cas: u64::from_be_bytes(b[16..24].try_into().expect("8 bytes")),
        })
    }

    /// Header, extras and key: what memcached waits for before judging a request.
    fn prefix_len(&self) -> usize {
        HEADER_LEN + self.extlen as usize + self.keylen as usize
    }

    /// The value length, once `extlen + keylen <= bodylen` has been checked.
    fn value_len(&self) -> usize {
        self.bodylen as usize - self.extlen as usize - self.keylen as usize
    }
}

/// What an opcode does, and whether it is quiet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Get { quiet: bool, with_key: bool },
    Gat { quiet: bool, with_key: bool },
    Touch,
    Store { mode: StoreMode, quiet: bool },
    Concat { append: bool, quiet: bool },
    Delete { quiet: bool },
    Arith { incr: bool, quiet: bool },
    Flush { quiet: bool },
    Quit { quiet: bool },
    Noop,
    Version,
    Stat,
    SaslList,
    SaslAuth,
    Unknown,
}

fn kind(opcode: u8) -> Kind {
    use Kind::*;
    let (q, nq) = (true, false);
    match opcode {
        op::GET => Get {
            quiet: nq,
            with_key: false,
        },
        op::GETQ => Get {
            quiet: q,
            with_key: false,
        },
        op::GETK => Get {
            quiet: nq,
            with_key: true,
        },
        op::GETKQ => Get {
            quiet: q,
            with_key: true,
        },
        op::GAT => Gat {
            quiet: nq,
            with_key: false,
        },
        op::GATQ => Gat {
            quiet: q,
            with_key: false,
        },
        op::GATK => Gat {
            quiet: nq,
            with_key: true,
        },
        op::GATKQ => Gat {
            quiet: q,
            with_key: true,
        },
        op::TOUCH => Touch,
        op::SET => Store {
            mode: StoreMode::Set,
            quiet: nq,
        },
        op::SETQ => Store {
            mode: StoreMode::Set,
            quiet: q,
        },
        op::ADD => Store {
            mode: StoreMode::Add,
            quiet: nq,
        },
        op::ADDQ => Store {
            mode: StoreMode::Add,
            quiet: q,
        },
        op::REPLACE => Store {
            mode: StoreMode::Replace,
            quiet: nq,
        },
        op::REPLACEQ => Store {
            mode: StoreMode::Replace,
            quiet: q,
        },
        op::APPEND => Concat {
            append: true,
            quiet: nq,
        },
        op::APPENDQ => Concat {
            append: true,
            quiet: q,
        },
        op::PREPEND => Concat {
            append: false,
            quiet: nq,
        },
        op::PREPENDQ => Concat {
            append: false,
            quiet: q,
        },
        op::DELETE => Delete { quiet: nq },
        op::DELETEQ => Delete { quiet: q },
        op::INCREMENT => Arith {
            incr: true,
            quiet: nq,
        },
        op::INCREMENTQ => Arith {
            incr: true,
            quiet: q,
        },
        op::DECREMENT => Arith {
            incr: false,
            quiet: nq,
        },
        op::DECREMENTQ => Arith {
            incr: false,
            quiet: q,
        },
        op::FLUSH => Flush { quiet: nq },
        op::FLUSHQ => Flush { quiet: q },
        op::QUIT => Quit { quiet: nq },
        op::QUITQ => Quit { quiet: q },
        op::NOOP => Noop,
        op::VERSION => Version,
        op::STAT => Stat,
        op::SASL_LIST_MECHS => SaslList,
        op::SASL_AUTH | op::SASL_STEP => SaslAuth,
        op::VERBOSITY => Unknown,
        _ => Unknown,
    }
}

/// memcached's per-opcode checks of the extras, key and body lengths (`dispatch_bin_command`),
/// plus "no value where none is read" for touch/gat/stat, which memcached leaves unchecked.
fn well_formed(k: Kind, h: &Header) -> bool {
    let (ext, key, body) = (h.extlen as u32, h.keylen as u32, h.bodylen);
    match k {
        Kind::Noop | Kind::Version | Kind::Quit { .. } | Kind::SaslList => body == 0,
        Kind::Flush { .. } => key == 0 && body == ext && (ext == 0 || ext == 4),
        Kind::Store { .. } => ext == 8 && key != 0,
        Kind::Get { .. } | Kind::Delete { .. } => ext == 0 && key != 0 && body == key,
        Kind::Arith { .. } => ext == 20 && key != 0 && body == key + ext,
        Kind::Concat { .. } => ext == 0 && key != 0,
        Kind::Stat => ext == 0 && body == key,
        Kind::SaslAuth => ext == 0 && key != 0,
        Kind::Touch | Kind::Gat { .. } => ext == 4 && key != 0 && body == key + ext,
        Kind::Unknown => true,
    }
}

/// One step: answer one request, or discard part of a refused request's body.
pub(crate) fn step(
    st: &mut BinaryState,
    engine: &Engine,
    buf: &mut BytesMut,
    out: &mut Vec<u8>,
) -> Progress {
    if st.swallow > 0 {
        let k = st.swallow.min(buf.len());
        buf.advance(k);
        st.swallow -= k;
        return if st.swallow > 0 {
            Progress::NeedMore
        } else {
            Progress::Again
        };
    }
    let Some(h) = Header::parse(buf) else {
        return Progress::NeedMore;
    };
    if h.magic != MAGIC_REQUEST {
        // memcached closes without a reply: the stream can't be trusted any more.
        return Progress::Close;
    }
    let prefix = h.prefix_len();
    if buf.len() < prefix {
        return Progress::NeedMore;
    }
    if h.extlen as u32 + h.keylen as u32 > h.bodylen {
        error(out, &h, status::UNKNOWN_COMMAND);
        return Progress::Close;
    }
    let k = kind(h.opcode);
    let sasl = engine.config().sasl.as_deref();
    // memcached -S (`dispatch_bin_command`): before anything else is checked, an
    // unauthenticated connection may only list mechanisms, authenticate or ask the version.
    if sasl.is_some()
        && !st.sasl.authenticated
        && !matches!(k, Kind::SaslList | Kind::SaslAuth | Kind::Version)
    {
        error(out, &h, status::AUTH_ERROR);
        return Progress::Close;
    }
    // The binary protocol allows 16-bit keys; memcached (and the text protocol) stop at 250.
    if h.keylen as usize > KEY_MAX_LENGTH {
        error(out, &h, status::EINVAL);
        return Progress::Close;
    }
    if !well_formed(k, &h) {
        error(out, &h, status::EINVAL);
        return Progress::Close;
    }
    let vlen = h.value_len();
    match (k, sasl) {
        (Kind::SaslList, Some(_)) => {
            put_header(out, &h, status::SUCCESS, 0, 0, sasl::MECHANISMS.len(), 0);
            out.extend_from_slice(sasl::MECHANISMS);
            buf.advance(prefix);
            return Progress::Again;
        }
        (Kind::SaslAuth, Some(creds)) => return sasl_auth(st, engine, creds, &h, buf, out),
        (Kind::Unknown | Kind::SaslAuth, _) => {
            // SASL is not offered: memcached without -S answers its opcodes like unknown ones.
            error(out, &h, status::UNKNOWN_COMMAND);
            return refuse(st, buf, prefix, vlen);
        }
        (Kind::SaslList, None) => {
            error(out, &h, status::UNKNOWN_COMMAND);
            return refuse(st, buf, prefix, 0);
        }
        (Kind::Store { .. } | Kind::Concat { .. }, _) => {
            let flags = match k {
                Kind::Store { .. } => be_u32(&buf[HEADER_LEN..]),
                _ => 0,
            };
            let key = &buf[HEADER_LEN + h.extlen as usize..prefix];
            // A set that is too large drops the old value; add, replace and append keep theirs.
            let drop_old = matches!(h.opcode, op::SET | op::SETQ);
            if let Err(f) = engine.admit(key, vlen, flags, drop_old) {
                error(out, &h, failure_status(f));
                return refuse(st, buf, prefix, vlen);
            }
        }
        _ => {}
    }
    let total = prefix + vlen;
    if buf.len() < total {
        return Progress::NeedMore;
    }
    let ext_end = HEADER_LEN + h.extlen as usize;
    let req = Request {
        h: &h,
        extras: &buf[HEADER_LEN..ext_end],
        key: &buf[ext_end..prefix],
        value: &buf[prefix..total],
    };
    let p = execute(k, &req, engine, out);
    buf.advance(total);
    p
}

/// `SASL_AUTH` or `SASL_STEP` on a server with SASL on (see `sasl`). A failure, even after an
/// earlier success, leaves the connection unauthenticated.
fn sasl_auth(
    st: &mut BinaryState,
    engine: &Engine,
    creds: &Credentials,
    h: &Header,
    buf: &mut BytesMut,
    out: &mut Vec<u8>,
) -> Progress {
    let (prefix, vlen) = (h.prefix_len(), h.value_len());
    if h.keylen as usize > sasl::MAX_MECH_LEN {
        error(out, h, status::EINVAL);
        return refuse(st, buf, prefix, vlen);
    }
    let readable = vlen <= sasl::MAX_MESSAGE_LEN;
    if readable && buf.len() < prefix + vlen {
        return Progress::NeedMore;
    }
    let message = readable.then(|| &buf[prefix..prefix + vlen]);
    let step = h.opcode == op::SASL_STEP;
    let outcome = st
        .sasl
        .attempt(creds, step, &buf[HEADER_LEN..prefix], message);
    let counters = &engine.counters;
    counters.auth_cmds.fetch_add(1, Ordering::Relaxed);
    match outcome {
        sasl::Outcome::Authenticated => {
            put_header(out, h, status::SUCCESS, 0, 0, sasl::AUTHENTICATED.len(), 0);
            out.extend_from_slice(sasl::AUTHENTICATED);
        }
        sasl::Outcome::Continue => put_header(out, h, status::AUTH_CONTINUE, 0, 0, 0, 0),
        sasl::Outcome::Failed => {
            counters.auth_errors.fetch_add(1, Ordering::Relaxed);
            error(out, h, status::AUTH_ERROR);
        }
    }
    if !readable {
        return refuse(st, buf, prefix, vlen);
    }
    buf.advance(prefix + vlen);
    Progress::Again
}

/// Consumes the header, extras and key of a refused request, and arranges for its value to be
/// discarded as it arrives.
fn refuse(st: &mut BinaryState, buf: &mut BytesMut, prefix: usize, vlen: usize) -> Progress {
    buf.advance(prefix);
    st.swallow = vlen;
    Progress::Again
}

/// A complete, well-formed request, borrowed from the read buffer.
struct Request<'a> {
    h: &'a Header,
    extras: &'a [u8],
    key: &'a [u8],
    value: &'a [u8],
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes(b[..4].try_into().expect("4 bytes"))
}

fn be_u64(b: &[u8]) -> u64 {
    u64::from_be_bytes(b[..8].try_into().expect("8 bytes"))
}

fn execute(k: Kind, r: &Request<'_>, engine: &Engine, out: &mut Vec<u8>) -> Progress {
    let h = r.h;
    match k {
        Kind::Get { quiet, with_key } => get(r, engine, quiet, with_key, None, out),
        Kind::Gat { quiet, with_key } => {
            let ttl = ttl_from_exptime(i64::from(be_u32(r.extras)));
            get(r, engine, quiet, with_key, Some(ttl), out)
        }
        Kind::Touch => {
            let ttl = ttl_from_exptime(i64::from(be_u32(r.extras)));
            match engine.touch(r.key, ttl) {
                Some((flags, cas)) => item_reply(out, h, flags, None, &[], cas),
                None => error(out, h, status::KEY_ENOENT),
            }
        }
        Kind::Store { mode, quiet } => store(r, engine, mode, quiet, out),
        Kind::Concat { append, quiet } => {
            let mode = if append {
                StoreMode::Append
            } else {
                StoreMode::Prepend
            };
            store(r, engine, mode, quiet, out)
        }
        Kind::Delete { quiet } => {
            let req = DeleteRequest {
                cas: cas_of(h),
                ..DeleteRequest::default()
            };
            match engine.delete(r.key, req) {
                Ok(DeleteOutcome::Deleted | DeleteOutcome::Invalidated) => {
                    success(out, h, quiet, 0)
                }
                Ok(DeleteOutcome::NotFound) => error(out, h, status::KEY_ENOENT),
                Ok(DeleteOutcome::Exists) => error(out, h, status::KEY_EEXISTS),
                Err(f) => error(out, h, failure_status(f)),
            }
        }
        Kind::Arith { incr, quiet } => arith(r, engine, incr, quiet, out),
        Kind::Flush { quiet } => {
            let exptime = (r.extras.len() == 4).then(|| i64::from(be_u32(r.extras)));
            match engine.flush_all_at(exptime) {
                FlushOutcome::Flushed => success(out, h, quiet, 0),
                // memcached -F answers a binary flush with an auth error.
                FlushOutcome::Disabled => error(out, h, status::AUTH_ERROR),
            }
        }
        Kind::Quit { quiet } => {
            success(out, h, quiet, 0);
            return Progress::Close;
        }
        Kind::Noop => success(out, h, false, 0),
        Kind::Version => {
            let v = MEMCACHED_VERSION.as_bytes();
            put_header(out, h, status::SUCCESS, 0, 0, v.len(), 0);
            out.extend_from_slice(v);
        }
        Kind::Stat => stat(r, engine, out),
        // Answered in `step` before the value arrives.
        Kind::SaslList | Kind::SaslAuth | Kind::Unknown => unreachable!("refused in step"),
    }
    Progress::Again
}

/// The CAS unique in a request header (0: none).
fn cas_of(h: &Header) -> Option<u64> {
    (h.cas != 0).then_some(h.cas)
}

/// get, getq, getk, getkq, and (with `touch`) gat, gatq, gatk, gatkq.
fn get(
    r: &Request<'_>,
    engine: &Engine,
    quiet: bool,
    with_key: bool,
    touch: Option<Ttl>,
    out: &mut Vec<u8>,
) {
    let h = r.h;
    let key = with_key.then_some(r.key);
    let hit = engine
        .get(r.key, touch, |e| {
            item_reply(out, h, e.flags(), key, e.value(), e.cas())
        })
        .is_some();
    if hit || quiet {
        return;
    }
    match key {
        // getk's miss carries the key and no message.
        Some(k) => {
            put_header(out, h, status::KEY_ENOENT, 0, k.len(), k.len(), 0);
            out.extend_from_slice(k);
        }
        None => error(out, h, status::KEY_ENOENT),
    }
}

/// set, add, replace, append, prepend and their quiet forms. A CAS unique in the header makes
/// a set, add or replace a compare-and-swap, as in memcached; an append or prepend compares it.
fn store(r: &Request<'_>, engine: &Engine, mode: StoreMode, quiet: bool, out: &mut Vec<u8>) {
    let h = r.h;
    let mut req = StoreRequest::new(mode, r.key, r.value);
    req.cas = cas_of(h);
    if !req.concatenates() {
        req = req
            .flags(be_u32(r.extras))
            .ttl(ttl_from_exptime(i64::from(be_u32(&r.extras[4..]))));
    }
    // memcached's `complete_update_bin`: a refused add means the key exists, a refused replace
    // that it doesn't.
    let st = match engine.store(req) {
        Ok(StoreOutcome::Stored(cas)) => return success(out, h, quiet, cas),
        Ok(StoreOutcome::Exists) => status::KEY_EEXISTS,
        Ok(StoreOutcome::NotFound) => status::KEY_ENOENT,
        Ok(StoreOutcome::NotStored) => match mode {
            StoreMode::Add => status::KEY_EEXISTS,
            StoreMode::Replace => status::KEY_ENOENT,
            _ => status::NOT_STORED,
        },
        Ok(StoreOutcome::NoRoom) => status::ENOMEM,
        Err(f) => failure_status(f),
    };
    error(out, h, st)
}

/// incr, decr and their quiet forms: extras are the delta, the initial value and an exptime
/// (0xffffffff: fail on a miss rather than create). The reply body is the new value; a created
/// item holds the initial value (the delta is not applied) and gets the exptime.
fn arith(r: &Request<'_>, engine: &Engine, incr: bool, quiet: bool, out: &mut Vec<u8>) {
    let h = r.h;
    let (delta, initial, exptime) = (
        be_u64(r.extras),
        be_u64(&r.extras[8..]),
        be_u32(&r.extras[16..]),
    );
    let req = DeltaRequest {
        delta: if incr {
            Delta::Incr(delta)
        } else {
            Delta::Decr(delta)
        },
        cas: cas_of(h),
        vivify: (exptime != NO_AUTOVIVIFY).then_some(initial),
        binary_key: false,
    };
    let outcome = engine.delta(r.key, req, |e, n| {
        if e.created {
            e.set_ttl(ttl_from_exptime(i64::from(exptime)));
        }
        (n, e.cas())
    });
    match outcome {
        Ok(DeltaOutcome::Done((v, cas))) => counter_reply(out, h, quiet, v, cas),
        Ok(DeltaOutcome::NonNumeric) => error(out, h, status::DELTA_BADVAL),
        Ok(DeltaOutcome::NotFound) => error(out, h, status::KEY_ENOENT),
        Ok(DeltaOutcome::Exists) => error(out, h, status::KEY_EEXISTS),
        Err(f) => error(out, h, failure_status(f)),
    }
}

fn counter_reply(out: &mut Vec<u8>, h: &Header, quiet: bool, value: u64, cas: u64) {
    if !quiet {
        put_header(out, h, status::SUCCESS, 0, 0, 8, cas);
        out.extend_from_slice(&value.to_be_bytes());
    }
}

/// `stat` with no key (the general statistics), `settings`, `reset`, `items`, `slabs` or
/// `sizes`: one packet per statistic, then an empty one. Any other key is "Not found".
fn stat(r: &Request<'_>, engine: &Engine, out: &mut Vec<u8>) {
    let (h, key) = (r.h, r.key);
    // memcached matches `reset` and `settings` as prefixes.
    let group = if key.starts_with(b"reset") {
        engine.reset_stats();
        None
    } else if let Some(sub) = key.strip_prefix(b"detail") {
        // memcached compares the subcommand as a prefix too; `dump` is one statistic,
        // `detailed`, whose value is the text dump.
        if sub.starts_with(b" dump") {
            stat_packet(out, h, b"detailed", &engine.prefix_dump());
        } else if sub.starts_with(b" on") {
            engine.stats_detail(true);
        } else if sub.starts_with(b" off") {
            engine.stats_detail(false);
        } else {
            return error(out, h, status::KEY_ENOENT);
        }
        None
    } else if key.starts_with(b"settings") {
        Some(StatsGroup::Settings)
    } else {
        // memcached's binary `stat` has no `conns` (its text `stats` does).
        match StatsGroup::named(key) {
            Some(StatsGroup::Conns) | None => return error(out, h, status::KEY_ENOENT),
            Some(g) => Some(g),
        }
    };
    for (name, v) in group.map(|g| engine.stats(g)).unwrap_or_default() {
        stat_packet(out, h, name.as_bytes(), v.as_bytes());
    }
    stat_packet(out, h, b"", b"");
}

/// One statistic: the name as the key, the value as the value.
fn stat_packet(out: &mut Vec<u8>, h: &Header, name: &[u8], value: &[u8]) {
    put_header(
        out,
        h,
        status::SUCCESS,
        0,
        name.len(),
        name.len() + value.len(),
        0,
    );
    out.extend_from_slice(name);
    out.extend_from_slice(value);
}

/// A response header. The opcode (quiet or not) and the opaque are the request's.
#[inline]
fn put_header(
    out: &mut Vec<u8>,
    h: &Header,
    status: u16,
    extlen: u8,
    keylen: usize,
    bodylen: usize,
    cas: u64,
) {
    let mut b = [0u8; HEADER_LEN];
    b[0] = MAGIC_RESPONSE;
    b[1] = h.opcode;
    b[2..4].copy_from_slice(&(keylen as u16).to_be_bytes());
    b[4] = extlen;
    b[6..8].copy_from_slice(&status.to_be_bytes());
    b[8..12].copy_from_slice(&(bodylen as u32).to_be_bytes());
    b[12..16].copy_from_slice(&h.opaque);
    b[16..24].copy_from_slice(&cas.to_be_bytes());
    out.extend_from_slice(&b);
}

/// A bodiless success, unless the opcode is quiet.
#[inline]
fn success(out: &mut Vec<u8>, h: &Header, quiet: bool, cas: u64) {
    if !quiet {
        put_header(out, h, status::SUCCESS, 0, 0, 0, cas);
    }
}

/// An error with memcached's message. Errors are sent even for quiet opcodes.
fn error(out: &mut Vec<u8>, h: &Header, status: u16) {
    let msg = message(status);
    put_header(out, h, status, 0, 0, msg.len(), 0);
    out.extend_from_slice(msg);
}

/// A hit: the flags as extras, then the key (getk, gatk) and the value (not for touch).
fn item_reply(
    out: &mut Vec<u8>,
    h: &Header,
    flags: u32,
    key: Option<&[u8]>,
    value: &[u8],
    cas: u64,
) {
    let klen = key.map_or(0, <[u8]>::len);
    let body = 4 + klen + value.len();
    if body > u32::MAX as usize {
        // Only a library-stored value over 4 GiB can get here; the framing can't carry it.
        return error(out, h, status::E2BIG);
    }
    out.reserve(HEADER_LEN + body);
    put_header(out, h, status::SUCCESS, 4, klen, body, cas);
    out.extend_from_slice(&flags.to_be_bytes());
    if let Some(k) = key {
        out.extend_from_slice(k);
    }
    out.extend_from_slice(value);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::cache::{Cache, CacheConfig, ManualClock};
    use crate::engine::EngineConfig;
    use crate::protocol::Session;
    use crate::tiered::Tiered;

    const T0: u64 = 1_700_000_000_000;

    fn engine_with(cfg: EngineConfig) -> (Arc<Engine>, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(T0));
        let cache = Cache::with_clock(
            CacheConfig {
                shards: 1,
                cleanup_interval_ms: 0,
                ..Default::default()
            },
            clock.clone(),
        )
        .unwrap();
        (Arc::new(Engine::new(Tiered::memory(cache), cfg)), clock)
    }

    fn engine() -> Arc<Engine> {
        engine_with(EngineConfig::default()).0
    }

    /// A request packet; the lengths in the header come from the parts.
    fn req(opcode: u8, key: &[u8], extras: &[u8], value: &[u8]) -> Vec<u8> {
        req_full(opcode, key, extras, value, 0, 0)
    }

    fn req_full(
        opcode: u8,
        key: &[u8],
        extras: &[u8],
        value: &[u8],
        cas: u64,
        opaque: u32,
    ) -> Vec<u8> {
        let body = extras.len() + key.len() + value.len();
        raw(
            opcode,
            key.len() as u16,
            extras.len() as u8,
            body as u32,
            cas,
            opaque,
        )
        .into_iter()
        .chain(extras.iter().copied())
        .chain(key.iter().copied())
        .chain(value.iter().copied())
        .collect()
    }

    /// A bare header with arbitrary lengths.
    fn raw(opcode: u8, keylen: u16, extlen: u8, bodylen: u32, cas: u64, opaque: u32) -> Vec<u8> {
        let mut b = vec![MAGIC_REQUEST, opcode];
        b.extend_from_slice(&keylen.to_be_bytes());
        b.push(extlen);
        b.extend_from_slice(&[0, 0, 0]);
        b.extend_from_slice(&bodylen.to_be_bytes());
        b.extend_from_slice(&opaque.to_be_bytes());
        b.extend_from_slice(&cas.to_be_bytes());
        b
    }

    fn set_extras(flags: u32, exptime: u32) -> Vec<u8> {
        [flags.to_be_bytes(), exptime.to_be_bytes()].concat()
    }

    fn arith_extras(delta: u64, initial: u64, exptime: u32) -> Vec<u8> {
        [
            &delta.to_be_bytes()[..],
            &initial.to_be_bytes(),
            &exptime.to_be_bytes(),
        ]
        .concat()
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Resp {
        opcode: u8,
        status: u16,
        extras: Vec<u8>,
        key: Vec<u8>,
        value: Vec<u8>,
        opaque: u32,
        cas: u64,
    }

    impl Resp {
        fn ok(&self) -> bool {
            self.status == 0
        }
    }

    fn parse_all(mut b: &[u8]) -> Vec<Resp> {
        let mut v = Vec::new();
        while !b.is_empty() {
            assert!(b.len() >= HEADER_LEN, "truncated response header: {b:?}");
            assert_eq!(b[0], MAGIC_RESPONSE);
            assert_eq!(b[5], 0, "data type");
            let kl = u16::from_be_bytes([b[2], b[3]]) as usize;
            let el = b[4] as usize;
            let bl = u32::from_be_bytes(b[8..12].try_into().unwrap()) as usize;
            let body = &b[HEADER_LEN..HEADER_LEN + bl];
            v.push(Resp {
                opcode: b[1],
                status: u16::from_be_bytes([b[6], b[7]]),
                extras: body[..el].to_vec(),
                key: body[el..el + kl].to_vec(),
                value: body[el + kl..].to_vec(),
                opaque: u32::from_be_bytes(b[12..16].try_into().unwrap()),
                cas: u64::from_be_bytes(b[16..24].try_into().unwrap()),
            });
            b = &b[HEADER_LEN + bl..];
        }
        v
    }

    /// Feeds `data` to a session and parses what comes back.
    fn feed(s: &mut Session, data: &[u8]) -> (Vec<Resp>, bool) {
        let mut out = Vec::new();
        let close = s.feed(data, &mut out);
        s.engine().shared_cache().validate().unwrap();
        (parse_all(&out), close)
    }

    fn one(s: &mut Session, data: &[u8]) -> Resp {
        let (mut r, close) = feed(s, data);
        assert!(!close);
        assert_eq!(r.len(), 1, "{r:?}");
        r.pop().unwrap()
    }

    fn err(s: &mut Session, data: &[u8], status: u16) {
        let r = one(s, data);
        assert_eq!(r.status, status, "{r:?}");
        assert_eq!(r.value, message(status));
        assert_eq!((r.cas, r.extras.len(), r.key.len()), (0, 0, 0));
    }

    /// A malformed request: status 0x04 with its message, then the connection closes.
    fn invalid(data: &[u8]) {
        let mut s = Session::new(engine());
        let (r, close) = feed(&mut s, &[data, &req(op::NOOP, b"", b"", b"")].concat());
        assert!(close, "not closed: {r:?}");
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!(r[0].status, status::EINVAL);
        assert_eq!(r[0].value, b"Invalid arguments");
    }

    fn set(s: &mut Session, key: &[u8], value: &[u8], flags: u32) -> u64 {
        let r = one(s, &req(op::SET, key, &set_extras(flags, 0), value));
        assert!(r.ok(), "{r:?}");
        r.cas
    }

    fn get_value(s: &mut Session, key: &[u8]) -> Option<Vec<u8>> {
        let r = one(s, &req(op::GET, key, b"", b""));
        r.ok().then_some(r.value)
    }

    #[test]
    fn header_parser() {
        let b = req_full(
            op::SET,
            b"key",
            &set_extras(7, 9),
            b"value",
            0x0102030405060708,
            0xdeadbeef,
        );
        let h = Header::parse(&b).unwrap();
        assert_eq!(
            h,
            Header {
                magic: MAGIC_REQUEST,
                opcode: op::SET,
                keylen: 3,
                extlen: 8,
                bodylen: 16,
                opaque: 0xdeadbeefu32.to_be_bytes(),
                cas: 0x0102030405060708,
            }
        );
        assert_eq!(h.prefix_len(), 24 + 8 + 3);
        assert_eq!(h.value_len(), 5);
        for n in 0..HEADER_LEN {
            assert_eq!(Header::parse(&b[..n]), None);
        }
        // The data type and vbucket are ignored.
        let mut odd = raw(op::NOOP, 0, 0, 0, 0, 0);
        odd[5] = 1;
        odd[6] = 0xff;
        let mut s = Session::new(engine());
        assert!(one(&mut s, &odd).ok());
    }

    #[test]
    fn opcode_table() {
        assert_eq!(
            kind(op::GETKQ),
            Kind::Get {
                quiet: true,
                with_key: true
            }
        );
        assert_eq!(
            kind(op::GATQ),
            Kind::Gat {
                quiet: true,
                with_key: false
            }
        );
        assert_eq!(kind(op::VERBOSITY), Kind::Unknown);
        assert_eq!(kind(0xff), Kind::Unknown);
        assert_eq!(kind(op::SASL_STEP), Kind::SaslAuth);
        assert_eq!(message(status::ENOMEM), b"Out of memory");
    }

    #[test]
    fn set_get_getk_and_misses() {
        let mut s = Session::new(engine());
        let r = one(
            &mut s,
            &req_full(op::SET, b"k", &set_extras(5, 0), b"v1", 0, 7),
        );
        assert_eq!((r.opcode, r.status, r.opaque, r.cas), (op::SET, 0, 7, 1));
        assert!(r.extras.is_empty() && r.key.is_empty() && r.value.is_empty());
        let r = one(&mut s, &req_full(op::GET, b"k", b"", b"", 0, 8));
        assert_eq!(
            (r.extras, r.key, r.value, r.cas, r.opaque),
            (5u32.to_be_bytes().to_vec(), vec![], b"v1".to_vec(), 1, 8)
        );
        let r = one(&mut s, &req(op::GETK, b"k", b"", b""));
        assert_eq!(
            (r.opcode, r.key, r.value),
            (op::GETK, b"k".to_vec(), b"v1".to_vec())
        );
        err(&mut s, &req(op::GET, b"zz", b"", b""), status::KEY_ENOENT);
        // getk's miss has the key and no message.
        let r = one(&mut s, &req(op::GETK, b"zz", b"", b""));
        assert_eq!(
            (r.status, r.key, r.value, r.cas),
            (1, b"zz".to_vec(), vec![], 0)
        );
    }

    #[test]
    fn pipelined_quiet_gets_then_noop() {
        let mut s = Session::new(engine());
        set(&mut s, b"a", b"A", 1);
        set(&mut s, b"b", b"B", 2);
        let mut data = Vec::new();
        for (i, k) in [&b"a"[..], b"x", b"b", b"y"].iter().enumerate() {
            data.extend(req_full(op::GETQ, k, b"", b"", 0, i as u32));
            data.extend(req_full(op::GETKQ, k, b"", b"", 0, 10 + i as u32));
        }
        data.extend(req_full(op::NOOP, b"", b"", b"", 0, 99));
        let (r, close) = feed(&mut s, &data);
        assert!(!close);
        let got: Vec<(u8, u32, &[u8], &[u8])> = r
            .iter()
            .map(|r| (r.opcode, r.opaque, &r.key[..], &r.value[..]))
            .collect();
        assert_eq!(
            got,
            vec![
                (op::GETQ, 0, &b""[..], &b"A"[..]),
                (op::GETKQ, 10, b"a", b"A"),
                (op::GETQ, 2, b"", b"B"),
                (op::GETKQ, 12, b"b", b"B"),
                (op::NOOP, 99, b"", b""),
            ]
        );
    }

    #[test]
    fn packets_split_across_feeds() {
        let e = engine();
        let mut data = req(op::SET, b"key", &set_extras(3, 0), b"hello world");
        data.extend(req(op::GETK, b"key", b"", b""));
        data.extend(req(op::INCREMENT, b"n", &arith_extras(1, 5, 0), b""));
        data.extend(req(op::NOOP, b"", b"", b""));
        // Byte at a time, and at every two-way split: the same replies as in one feed.
        let mut whole = Session::new(e.clone());
        let mut expect = Vec::new();
        assert!(!whole.feed(&data, &mut expect));
        for cut in 0..=data.len() {
            let e = engine();
            let mut s = Session::new(e);
            let mut out = Vec::new();
            assert!(!s.feed(&data[..cut], &mut out));
            assert!(!s.feed(&data[cut..], &mut out));
            let norm = |v: &[u8]| {
                parse_all(v)
                    .into_iter()
                    .map(|r| (r.opcode, r.status, r.value))
                    .collect::<Vec<_>>()
            };
            assert_eq!(norm(&out), norm(&expect), "cut at {cut}");
        }
        let mut s = Session::new(engine());
        let mut out = Vec::new();
        for b in &data {
            assert!(!s.feed(std::slice::from_ref(b), &mut out));
        }
        assert_eq!(parse_all(&out).len(), 4);
        assert_eq!(s.buffered(), 0);
    }

    #[test]
    fn step_progress() {
        let e = engine();
        let mut st = BinaryState::default();
        let mut out = Vec::new();
        let data = [req(op::NOOP, b"", b"", b""), req(op::GET, b"k", b"", b"")].concat();
        let mut buf = BytesMut::from(&data[..10]);
        assert_eq!(step(&mut st, &e, &mut buf, &mut out), Progress::NeedMore);
        assert!(out.is_empty());
        buf.extend_from_slice(&data[10..30]);
        assert_eq!(step(&mut st, &e, &mut buf, &mut out), Progress::Again);
        assert_eq!(buf.len(), 6, "exactly one packet consumed");
        assert_eq!(step(&mut st, &e, &mut buf, &mut out), Progress::NeedMore);
        buf.extend_from_slice(&data[30..]);
        assert_eq!(step(&mut st, &e, &mut buf, &mut out), Progress::Again);
        assert!(buf.is_empty());
        assert_eq!(parse_all(&out).len(), 2);
        let mut buf = BytesMut::from(&req(op::QUIT, b"", b"", b"")[..]);
        assert_eq!(step(&mut st, &e, &mut buf, &mut out), Progress::Close);
    }

    #[test]
    fn add_replace_and_cas() {
        let mut s = Session::new(engine());
        let c = set(&mut s, b"k", b"v", 0);
        err(
            &mut s,
            &req(op::ADD, b"k", &set_extras(0, 0), b"x"),
            status::KEY_EEXISTS,
        );
        err(
            &mut s,
            &req(op::REPLACE, b"nope", &set_extras(0, 0), b"x"),
            status::KEY_ENOENT,
        );
        assert!(one(&mut s, &req(op::ADD, b"new", &set_extras(0, 0), b"x")).ok());
        // A CAS unique makes set, add and replace compare-and-swaps.
        let cas = |op, key: &[u8], cas| req_full(op, key, &set_extras(0, 0), b"y", cas, 0);
        err(&mut s, &cas(op::SET, b"k", c + 100), status::KEY_EEXISTS);
        err(&mut s, &cas(op::SET, b"missing", 5), status::KEY_ENOENT);
        err(&mut s, &cas(op::ADD, b"missing", 5), status::KEY_ENOENT);
        err(
            &mut s,
            &cas(op::REPLACE, b"k", c + 100),
            status::KEY_EEXISTS,
        );
        let r = one(&mut s, &cas(op::REPLACE, b"k", c));
        assert!(r.ok() && r.cas > c);
        assert_eq!(get_value(&mut s, b"k").unwrap(), b"y");
    }

    #[test]
    fn quiet_stores_hide_success_but_not_errors() {
        let mut s = Session::new(engine());
        set(&mut s, b"k", b"v", 0);
        let e = set_extras(0, 0);
        let data = [
            req(op::SETQ, b"q", &e, b"x"),
            req(op::ADDQ, b"k", &e, b"x"),
            req(op::REPLACEQ, b"nope", &e, b"x"),
            req(op::APPENDQ, b"q", b"", b"y"),
            req(op::PREPENDQ, b"nope", b"", b"y"),
            req(op::DELETEQ, b"nope", b"", b""),
            req(op::DELETEQ, b"k", b"", b""),
            req(op::INCREMENTQ, b"n", &arith_extras(1, 0, 0), b""),
            req(op::DECREMENTQ, b"q", &arith_extras(1, 0, 0), b""),
            req(op::FLUSHQ, b"", b"", b""),
            req(op::NOOP, b"", b"", b""),
        ]
        .concat();
        let (r, _) = feed(&mut s, &data);
        let got: Vec<(u8, u16)> = r.iter().map(|r| (r.opcode, r.status)).collect();
        assert_eq!(
            got,
            vec![
                (op::ADDQ, status::KEY_EEXISTS),
                (op::REPLACEQ, status::KEY_ENOENT),
                (op::PREPENDQ, status::NOT_STORED),
                (op::DELETEQ, status::KEY_ENOENT),
                (op::DECREMENTQ, status::DELTA_BADVAL),
                (op::NOOP, 0),
            ]
        );
        assert_eq!(get_value(&mut s, b"q"), None, "flushed");
    }

    #[test]
    fn append_prepend() {
        let mut s = Session::new(engine());
        set(&mut s, b"s", b"abc", 3);
        let c1 = one(&mut s, &req(op::APPEND, b"s", b"", b"X")).cas;
        let r = one(&mut s, &req(op::PREPEND, b"s", b"", b"Y"));
        assert!(r.ok() && r.cas > c1);
        let r = one(&mut s, &req(op::GET, b"s", b"", b""));
        assert_eq!(
            (r.value, r.extras),
            (b"YabcX".to_vec(), 3u32.to_be_bytes().to_vec())
        );
        err(
            &mut s,
            &req(op::APPEND, b"zz", b"", b"X"),
            status::NOT_STORED,
        );
        err(
            &mut s,
            &req_full(op::APPEND, b"s", b"", b"Q", r.cas + 1, 0),
            status::KEY_EEXISTS,
        );
        assert!(one(&mut s, &req_full(op::APPEND, b"s", b"", b"Q", r.cas, 0)).ok());
        assert_eq!(get_value(&mut s, b"s").unwrap(), b"YabcXQ");
        // An empty value is allowed.
        assert!(one(&mut s, &req(op::APPEND, b"s", b"", b"")).ok());
    }

    #[test]
    fn append_past_the_item_limit_is_not_stored() {
        let mut s = Session::new(engine());
        let half = vec![b'y'; 600 * 1024];
        set(&mut s, b"k", &half, 0);
        err(
            &mut s,
            &req(op::APPEND, b"k", b"", &half),
            status::NOT_STORED,
        );
        assert_eq!(get_value(&mut s, b"k").unwrap().len(), half.len());
    }

    #[test]
    fn delete_with_and_without_cas() {
        let mut s = Session::new(engine());
        let c = set(&mut s, b"k", b"v", 0);
        err(
            &mut s,
            &req_full(op::DELETE, b"k", b"", b"", c + 1, 0),
            status::KEY_EEXISTS,
        );
        let r = one(&mut s, &req_full(op::DELETE, b"k", b"", b"", c, 0));
        assert!(r.ok());
        assert_eq!(r.cas, 0);
        err(&mut s, &req(op::DELETE, b"k", b"", b""), status::KEY_ENOENT);
        err(
            &mut s,
            &req_full(op::DELETE, b"k", b"", b"", c, 0),
            status::KEY_ENOENT,
        );
        set(&mut s, b"k", b"v", 0);
        assert!(one(&mut s, &req(op::DELETE, b"k", b"", b"")).ok());
    }

    fn counter(r: &Resp) -> u64 {
        assert!(r.ok(), "{r:?}");
        u64::from_be_bytes(r.value[..].try_into().unwrap())
    }

    #[test]
    fn incr_decr() {
        let mut s = Session::new(engine());
        let inc = |k: &[u8], d, i, e| req(op::INCREMENT, k, &arith_extras(d, i, e), b"");
        let dec = |k: &[u8], d, i, e| req(op::DECREMENT, k, &arith_extras(d, i, e), b"");
        // A miss creates the initial value; the delta is not applied.
        let r = one(&mut s, &inc(b"c", 1, 10, 0));
        assert_eq!((counter(&r), r.extras.len(), r.key.len()), (10, 0, 0));
        assert_eq!(get_value(&mut s, b"c").unwrap(), b"10");
        assert_eq!(counter(&one(&mut s, &inc(b"c", 5, 0, 0))), 15);
        assert_eq!(
            counter(&one(&mut s, &dec(b"c", 100, 0, 0))),
            0,
            "decr stops at 0"
        );
        assert_eq!(get_value(&mut s, b"c").unwrap(), b"0 ", "keeps its length");
        err(&mut s, &inc(b"n", 1, 5, NO_AUTOVIVIFY), status::KEY_ENOENT);
        err(&mut s, &dec(b"n", 1, 5, NO_AUTOVIVIFY), status::KEY_ENOENT);
        set(&mut s, b"w", b"18446744073709551615", 0);
        assert_eq!(counter(&one(&mut s, &inc(b"w", 2, 0, 0))), 1, "incr wraps");
        set(&mut s, b"s", b"abc", 0);
        err(&mut s, &inc(b"s", 1, 0, 0), status::DELTA_BADVAL);
        // A CAS unique must match an existing item; a miss still creates.
        let c = set(&mut s, b"p", b"100", 0);
        let with_cas =
            |k: &[u8], cas| req_full(op::INCREMENT, k, &arith_extras(1, 42, 0), b"", cas, 0);
        err(&mut s, &with_cas(b"p", c + 7), status::KEY_EEXISTS);
        let r = one(&mut s, &with_cas(b"p", c));
        assert_eq!(counter(&r), 101);
        assert!(r.cas > c);
        assert_eq!(counter(&one(&mut s, &with_cas(b"fresh", 777))), 42);
    }

    #[test]
    fn touch_gat_gatk() {
        let (e, clock) = engine_with(EngineConfig::default());
        let mut s = Session::new(e);
        let c = set(&mut s, b"s", b"abc", 3);
        let exp = |t: u32| t.to_be_bytes();
        let r = one(&mut s, &req(op::TOUCH, b"s", &exp(100), b""));
        assert_eq!(
            (r.status, r.extras, r.key, r.value, r.cas),
            (0, 3u32.to_be_bytes().to_vec(), vec![], vec![], c)
        );
        let r = one(&mut s, &req(op::GAT, b"s", &exp(100), b""));
        assert_eq!((r.value, r.key, r.cas), (b"abc".to_vec(), vec![], c));
        let r = one(&mut s, &req(op::GATK, b"s", &exp(100), b""));
        assert_eq!((r.value, r.key), (b"abc".to_vec(), b"s".to_vec()));
        err(
            &mut s,
            &req(op::TOUCH, b"zz", &exp(1), b""),
            status::KEY_ENOENT,
        );
        err(
            &mut s,
            &req(op::GAT, b"zz", &exp(1), b""),
            status::KEY_ENOENT,
        );
        let r = one(&mut s, &req(op::GATK, b"zz", &exp(1), b""));
        assert_eq!((r.status, r.key, r.value), (1, b"zz".to_vec(), vec![]));
        let (r, _) = feed(
            &mut s,
            &[
                req(op::GATQ, b"zz", &exp(1), b""),
                req(op::GATKQ, b"zz", &exp(1), b""),
                req(op::GATKQ, b"s", &exp(1), b""),
                req(op::NOOP, b"", b"", b""),
            ]
            .concat(),
        );
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].opcode, &r[0].key[..]), (op::GATKQ, &b"s"[..]));
        // The last touch set one second.
        clock.advance(1_000);
        assert_eq!(get_value(&mut s, b"s"), None);
    }

    #[test]
    fn exptime_is_unsigned() {
        let (e, clock) = engine_with(EngineConfig::default());
        let mut s = Session::new(e);
        let put = |k: &[u8], exptime| req(op::SET, k, &set_extras(0, exptime), b"v");
        let (r, _) = feed(
            &mut s,
            &[
                put(b"2106", 0xffff_ffff),
                put(b"past", 2_592_001),
                put(b"2038", 0x8000_0000),
                put(b"rel", 2_592_000),
                put(b"one", 1),
            ]
            .concat(),
        );
        assert!(r.iter().all(Resp::ok));
        assert!(get_value(&mut s, b"2106").is_some());
        assert!(get_value(&mut s, b"past").is_none());
        assert!(get_value(&mut s, b"2038").is_some());
        assert!(get_value(&mut s, b"rel").is_some());
        clock.advance(1_000);
        assert!(get_value(&mut s, b"one").is_none());
        // incr's creation takes the same exptime rules.
        let r = one(
            &mut s,
            &req(op::INCREMENT, b"e", &arith_extras(1, 7, 2_592_001), b""),
        );
        assert_eq!(counter(&r), 7);
        assert!(get_value(&mut s, b"e").is_none());
    }

    #[test]
    fn too_large() {
        let mut s = Session::new(engine());
        let max = 1024 * 1024 - 59 - 1;
        set(&mut s, b"k", &vec![b'z'; max], 0);
        let big = vec![b'x'; max + 1];
        // add, replace and append keep the old value; set drops it (with or without a CAS).
        for opcode in [op::ADD, op::REPLACE, op::SETQ, op::SET] {
            err(
                &mut s,
                &req(opcode, b"k", &set_extras(0, 0), &big),
                status::E2BIG,
            );
            let present = get_value(&mut s, b"k").is_some();
            assert_eq!(
                present,
                !matches!(opcode, op::SET | op::SETQ),
                "opcode {opcode:#x}"
            );
            set(&mut s, b"k", b"v", 0);
        }
        err(&mut s, &req(op::APPEND, b"k", b"", &big), status::E2BIG);
        err(
            &mut s,
            &req_full(op::SET, b"k", &set_extras(0, 0), &big, 99, 0),
            status::E2BIG,
        );
        assert_eq!(get_value(&mut s, b"k"), None);
        // The reply comes before the value has arrived, and the value is skipped as it streams.
        let data = req(op::SET, b"k", &set_extras(0, 0), &big);
        let (r, _) = feed(&mut s, &data[..40]);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].status, status::E2BIG);
        let (r, _) = feed(&mut s, &data[40..]);
        assert!(r.is_empty());
        assert!(one(&mut s, &req(op::NOOP, b"", b"", b"")).ok());
    }

    #[test]
    fn huge_declared_value_is_skipped_not_buffered() {
        let mut s = Session::new(engine());
        let mut data = raw(op::SET, 1, 8, 0xffff_ffff, 0, 0);
        data.extend(set_extras(0, 0));
        data.push(b'k');
        err(&mut s, &data, status::E2BIG);
        let (r, _) = feed(&mut s, &vec![0u8; 64 * 1024]);
        assert!(r.is_empty());
        assert_eq!(s.buffered(), 0);
    }

    #[test]
    fn out_of_memory() {
        let clock = Arc::new(ManualClock::new(T0));
        let cache = Cache::with_clock(
            CacheConfig {
                shards: 1,
                cleanup_interval_ms: 0,
                max_memory: 4096,
                ..Default::default()
            },
            clock,
        )
        .unwrap();
        let mut s = Session::new(Arc::new(Engine::new(
            Tiered::memory(cache),
            EngineConfig::default(),
        )));
        err(
            &mut s,
            &req(op::SET, b"k", &set_extras(0, 0), &[b'x'; 8192]),
            status::ENOMEM,
        );
        err(
            &mut s,
            &req(op::SETQ, b"k", &set_extras(0, 0), &[b'x'; 8192]),
            status::ENOMEM,
        );
    }

    #[test]
    fn flush_now_later_and_disabled() {
        let (e, clock) = engine_with(EngineConfig::default());
        let mut s = Session::new(e);
        set(&mut s, b"k", b"v", 0);
        assert!(one(&mut s, &req(op::FLUSH, b"", &10u32.to_be_bytes(), b"")).ok());
        assert!(get_value(&mut s, b"k").is_some());
        clock.advance(10_000);
        assert!(get_value(&mut s, b"k").is_none());
        set(&mut s, b"k", b"v", 0);
        assert!(one(&mut s, &req(op::FLUSH, b"", &0u32.to_be_bytes(), b"")).ok());
        assert!(get_value(&mut s, b"k").is_none());
        let (e, _) = engine_with(EngineConfig {
            allow_flush: false,
            ..Default::default()
        });
        let mut s = Session::new(e);
        set(&mut s, b"k", b"v", 0);
        err(&mut s, &req(op::FLUSH, b"", b"", b""), status::AUTH_ERROR);
        err(&mut s, &req(op::FLUSHQ, b"", b"", b""), status::AUTH_ERROR);
        assert!(get_value(&mut s, b"k").is_some());
    }

    #[test]
    fn noop_version_quit() {
        let mut s = Session::new(engine());
        let r = one(&mut s, &req_full(op::NOOP, b"", b"", b"", 0, 42));
        assert_eq!(
            (r.opcode, r.status, r.opaque, r.value.len()),
            (op::NOOP, 0, 42, 0)
        );
        let r = one(&mut s, &req(op::VERSION, b"", b"", b""));
        assert_eq!(r.value, MEMCACHED_VERSION.as_bytes());
        let (r, close) = feed(
            &mut s,
            &[
                req_full(op::QUIT, b"", b"", b"", 0, 3),
                req(op::NOOP, b"", b"", b""),
            ]
            .concat(),
        );
        assert!(close);
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].opcode, r[0].opaque), (op::QUIT, 3));
        let mut s = Session::new(engine());
        let (r, close) = feed(
            &mut s,
            &[req(op::QUITQ, b"", b"", b""), req(op::NOOP, b"", b"", b"")].concat(),
        );
        assert!(close && r.is_empty());
    }

    #[test]
    fn stats() {
        let mut s = Session::new(engine());
        let (r, _) = feed(&mut s, &req_full(op::STAT, b"", b"", b"", 0, 5));
        let last = r.last().unwrap();
        assert!(last.key.is_empty() && last.value.is_empty() && last.ok());
        assert!(r
            .iter()
            .all(|p| p.opcode == op::STAT && p.opaque == 5 && p.cas == 0));
        assert_eq!(r[0].key, b"pid");
        let version = r.iter().find(|p| p.key == b"version").unwrap();
        assert_eq!(version.value, MEMCACHED_VERSION.as_bytes());
        let (r, _) = feed(&mut s, &req(op::STAT, b"settings", b"", b""));
        assert_eq!(r[0].key, b"maxbytes");
        assert!(r.last().unwrap().key.is_empty());
        set(&mut s, b"k", b"v", 0);
        for key in [&b"items"[..], b"slabs", b"sizes"] {
            let (r, _) = feed(&mut s, &req(op::STAT, key, b"", b""));
            assert!(r.len() >= 2, "{key:?}");
            assert!(r.last().unwrap().key.is_empty());
        }
        for key in [&b"reset"[..], b"resetXX"] {
            let (r, _) = feed(&mut s, &req(op::STAT, key, b"", b""));
            assert_eq!(r.len(), 1);
            assert!(r[0].ok() && r[0].key.is_empty());
        }
        for key in [
            &b"res"[..],
            b"bogus",
            b"conns",
            b"itemsX",
            b"detail",
            b"detail x",
        ] {
            err(&mut s, &req(op::STAT, key, b"", b""), status::KEY_ENOENT);
        }
    }

    #[test]
    fn unknown_opcodes_and_sasl() {
        let mut s = Session::new(engine());
        for opcode in [op::VERBOSITY, 0x50, 0xff, op::SASL_LIST_MECHS] {
            err(&mut s, &req(opcode, b"", b"", b""), status::UNKNOWN_COMMAND);
        }
        // Exactly the unknown request's body is skipped (memcached skips into the next one).
        let data = [
            req_full(0x50, b"abc", b"1234", b"value", 0, 9),
            req(op::VERBOSITY, b"", &1u32.to_be_bytes(), b""),
            req(op::SASL_AUTH, b"PLAIN", b"", b"\0u\0p"),
            req(op::SASL_STEP, b"PLAIN", b"", b"abc"),
            req(op::NOOP, b"", b"", b""),
        ]
        .concat();
        let (r, close) = feed(&mut s, &data);
        assert!(!close);
        let got: Vec<(u8, u16)> = r.iter().map(|r| (r.opcode, r.status)).collect();
        assert_eq!(
            got,
            vec![
                (0x50, 0x81),
                (op::VERBOSITY, 0x81),
                (op::SASL_AUTH, 0x81),
                (op::SASL_STEP, 0x81),
                (op::NOOP, 0)
            ]
        );
        assert_eq!(r[0].opaque, 9);
        // An unknown body is skipped as it streams in, split anywhere.
        let data = [
            req(0x50, b"", b"", &[0x80; 100]),
            req(op::NOOP, b"", b"", b""),
        ]
        .concat();
        let mut s = Session::new(engine());
        let mut out = Vec::new();
        for part in data.chunks(7) {
            assert!(!s.feed(part, &mut out));
        }
        assert_eq!(parse_all(&out).len(), 2);
    }

    #[test]
    fn malformed_packets_close() {
        let e8 = set_extras(0, 0);
        invalid(&req(op::GET, &[b'k'; 251], b"", b""));
        invalid(&req(0x50, &[b'k'; 251], b"", b""));
        invalid(&req(op::GET, b"", b"", b""));
        invalid(&req(op::GET, b"abc", b"1234", b""));
        invalid(&req(op::GET, b"abc", b"", b"zz"));
        invalid(&req(op::GETKQ, b"", b"", b""));
        invalid(&req(op::SET, b"abc", b"1234", b"v"));
        invalid(&req(op::SET, b"", &e8, b"v"));
        invalid(&req(op::ADDQ, b"k", b"", b"v"));
        invalid(&req(op::INCREMENT, b"abc", &e8, b""));
        invalid(&req(op::DECREMENT, b"abc", &[0; 20], b"1"));
        invalid(&req(op::INCREMENT, b"", &[0; 20], b""));
        invalid(&req(op::DELETE, b"abc", b"1234", b""));
        invalid(&req(op::DELETEQ, b"abc", b"", b"1234"));
        invalid(&req(op::APPEND, b"abc", &e8, b"x"));
        invalid(&req(op::PREPEND, b"", b"", b"x"));
        invalid(&req(op::TOUCH, b"abc", b"", b""));
        invalid(&req(op::TOUCH, b"", b"1234", b""));
        invalid(&req(op::GAT, b"abc", b"1234", b"surplus"));
        invalid(&req(op::GATKQ, b"abc", b"12345678", b""));
        invalid(&req(op::FLUSH, b"k", b"", b""));
        invalid(&req(op::FLUSH, b"", &e8, b""));
        invalid(&req(op::FLUSHQ, b"", b"", b"x"));
        invalid(&req(op::NOOP, b"", b"", b"x"));
        invalid(&req(op::NOOP, b"k", b"", b""));
        invalid(&req(op::VERSION, b"", b"", b"x"));
        invalid(&req(op::QUIT, b"", b"", b"x"));
        invalid(&req(op::QUITQ, b"", b"1234", b""));
        invalid(&req(op::STAT, b"", b"1234", b""));
        invalid(&req(op::STAT, b"reset", b"", b"surplus"));
        invalid(&req(op::SASL_LIST_MECHS, b"", b"", b"x"));
        invalid(&req(op::SASL_AUTH, b"", b"", b"abc"));
        invalid(&req(op::SASL_AUTH, b"PLAIN", b"1234", b""));
    }

    #[test]
    fn framing_errors_close() {
        // Extras and key longer than the body: "Unknown command", then close.
        let mut s = Session::new(engine());
        let mut data = raw(op::GET, 3, 0, 2, 0, 0);
        data.extend_from_slice(b"abc");
        let (r, close) = feed(&mut s, &data);
        assert!(close);
        assert_eq!(
            (r.len(), r[0].status, &r[0].value[..]),
            (1, 0x81, &b"Unknown command"[..])
        );
        // A bad magic after the first request: close with no reply.
        let mut s = Session::new(engine());
        let mut bad = req(op::NOOP, b"", b"", b"");
        bad[0] = 0x81;
        let (r, close) = feed(&mut s, &[req(op::NOOP, b"", b"", b""), bad].concat());
        assert!(close);
        assert_eq!(r.len(), 1);
        // Earlier pipelined replies are kept when a later request is malformed.
        let mut s = Session::new(engine());
        set(&mut s, b"a", b"A", 0);
        let data = [
            req(op::GETQ, b"a", b"", b""),
            req(op::GET, &[b'k'; 300], b"", b""),
        ]
        .concat();
        let (r, close) = feed(&mut s, &data);
        assert!(close);
        assert_eq!(
            (r.len(), &r[0].value[..], r[1].status),
            (2, &b"A"[..], status::EINVAL)
        );
        // A key is judged only once it has all arrived.
        let mut s = Session::new(engine());
        let data = req(op::GET, &[b'k'; 300], b"", b"");
        let (r, close) = feed(&mut s, &data[..100]);
        assert!(!close && r.is_empty());
    }

    #[test]
    fn binary_keys_and_flags() {
        let mut s = Session::new(engine());
        let key = b"\x00 \r\n\xff key";
        set(&mut s, key, b"", 0xdead_beef);
        let r = one(&mut s, &req(op::GETK, key, b"", b""));
        assert_eq!(
            (r.key, r.extras, r.value),
            (key.to_vec(), 0xdead_beefu32.to_be_bytes().to_vec(), vec![])
        );
        let k250 = [b'k'; 250];
        set(&mut s, &k250, b"v", 0);
        assert_eq!(get_value(&mut s, &k250).unwrap(), b"v");
    }

    #[test]
    fn incr_padding_shows_in_get() {
        let mut s = Session::new(engine());
        set(&mut s, b"p", b"100", 0);
        let r = one(
            &mut s,
            &req(op::DECREMENT, b"p", &arith_extras(1, 0, 0), b""),
        );
        assert_eq!(counter(&r), 99);
        assert_eq!(get_value(&mut s, b"p").unwrap(), b"99 ");
    }

    #[test]
    fn commands_are_classified_by_their_opcode() {
        for (op, kind) in [
            (0x00u8, CmdKind::Get),
            (0x0d, CmdKind::Get),
            (0x01, CmdKind::Set),
            (0x19, CmdKind::Set),
            (0x04, CmdKind::Delete),
            (0x16, CmdKind::IncrDecr),
            (0x1c, CmdKind::Touch),
            (0x24, CmdKind::Touch),
            (0x0a, CmdKind::Other),
            (0x10, CmdKind::Other),
        ] {
            assert_eq!(kind_of(&[0x80, op]), kind, "{op:#x}");
        }
        assert_eq!(kind_of(&[0x80]), CmdKind::Other);
    }
}
