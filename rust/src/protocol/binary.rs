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
use crate::disk_wait;
use crate::engine::{Engine, MEMCACHED_VERSION};
use crate::latency::CmdKind;

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
    // Where waits on the disk are refused (`disk_wait`), these run where they may wait: a
    // flush or stats walk the whole cache.
    if matches!(k, Kind::Flush { .. } | Kind::Stat) && engine.may_block() && disk_wait::refuse() {
        return Progress::Waits;
    }
    // A request that must wait on the disk is rolled back: its reply is dropped and its bytes
    // stay in the buffer, to run again where it may wait.
    let mark = out.len();
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
                if disk_wait::refused() {
                    return Progress::Waits;
                }
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
    if disk_wait::refused() {
        out.truncate(mark);
        return Progress::Waits;
    }
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
#[path = "binary_tests.rs"]
mod tests;
