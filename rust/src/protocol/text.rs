//! memcached's text protocol (protocol.txt), reproduced byte for byte against memcached 1.6.18.
//!
//! A line is read up to `\n` (a preceding `\r` is dropped), split on spaces, and dispatched by
//! its first token with memcached's token-count rules (a wrong count is `ERROR`). Storage commands
//! then wait for `<bytes>\r\n` of data. Meta commands (`mg`, `ms`, ...) and the streaming
//! extension share this line reader and hand over to `meta` and `streaming`.

use bytes::{Bytes, BytesMut};

use super::exptime::ttl_from_exptime;
use super::limits::{
    KEY_MAX_LENGTH, MAX_DECLARED_VALUE_LEN, MAX_LINE_WITHOUT_NEWLINE, MAX_MULTIGET_LINE,
};
use super::meta;
use super::session::{spliced_len, Progress, Splice};
use super::streaming;
use super::tokens::{parse_flags, parse_i64, parse_u64, split};
use crate::cache::{Delta, DeltaOutcome, StoreMode, StoreOutcome, Ttl};
use crate::engine::{Engine, MEMCACHED_VERSION};
use crate::error::CoreError;

/// memcached's `MAX_TOKENS` less the terminating empty token: longer lines are not a valid
/// command for anything but the get family.
const MAX_TOKENS: usize = 23;

pub(crate) const ERROR: &[u8] = b"ERROR\r\n";
pub(crate) const BAD_FORMAT: &[u8] = b"CLIENT_ERROR bad command line format\r\n";
pub(crate) const BAD_CHUNK: &[u8] = b"CLIENT_ERROR bad data chunk\r\n";
pub(crate) const TOO_LARGE: &[u8] = b"SERVER_ERROR object too large for cache\r\n";
pub(crate) const NO_MEMORY: &[u8] = b"SERVER_ERROR out of memory storing object\r\n";
/// An L2 write failed for lack of space: the item may be in memory but is not persisted.
pub(crate) const NO_DISK: &[u8] = b"SERVER_ERROR out of disk space\r\n";
pub(crate) const DISK_ERROR: &[u8] = b"SERVER_ERROR disk error\r\n";

/// The reply to a store that failed with `e`.
pub(crate) fn store_failure(e: &crate::error::CoreError) -> &'static [u8] {
    use crate::error::CoreError::*;
    match e {
        DiskFull(_) => NO_DISK,
        Disk(_) | Persistence(_) | Closed => DISK_ERROR,
        _ => NO_MEMORY,
    }
}
const BAD_EXPTIME: &[u8] = b"CLIENT_ERROR invalid exptime argument\r\n";
const BAD_DELTA: &[u8] = b"CLIENT_ERROR invalid numeric delta argument\r\n";
const NON_NUMERIC: &[u8] = b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n";

/// What a command waiting for its data block will do with it.
pub(crate) enum Pending {
    Store {
        mode: StoreMode,
        key: Vec<u8>,
        flags: u32,
        ttl: Ttl,
        noreply: bool,
    },
    Meta(meta::PendingSet),
    Chunk(streaming::PendingChunk),
}

/// What a command that may carry a data block leaves the connection waiting for.
pub(crate) enum Next<P> {
    /// Nothing: the command was answered.
    Done,
    /// Read `len` bytes plus `\r\n`, then complete `pending` with them.
    Read { len: usize, pending: P },
    /// The command was refused (already answered); discard this many bytes to stay in sync.
    Swallow(usize),
}

/// Arms the connection for what a command left it waiting for.
fn wait_for<P>(st: &mut TextState, next: Next<P>, wrap: fn(P) -> Pending) -> Progress {
    match next {
        Next::Done => {}
        Next::Read { len, pending } => {
            st.wait = Wait::Data {
                pending: wrap(pending),
                len,
            }
        }
        Next::Swallow(len) => st.wait = Wait::Swallow(len),
    }
    Progress::Again
}

#[derive(Default)]
pub(crate) enum Wait {
    #[default]
    Line,
    /// A data block of `len` bytes plus `\r\n`.
    Data { pending: Pending, len: usize },
    /// Bytes to discard (the data of a refused command), to stay in sync.
    Swallow(usize),
}

#[derive(Default)]
pub(crate) struct TextState {
    wait: Wait,
    pub(crate) uploads: streaming::Uploads,
    pub(crate) splices: SpliceSink,
}

/// A `get` (or `streaming_get` chunk) reply shares a value of at least this many bytes with the
/// store instead of copying it, when the I/O engine takes splices (`Session::feed_spliced`):
/// below it, a copy is cheaper than the reference count and the extra write.
pub(crate) const SPLICE_MIN: usize = crate::cache::SHARED_VALUE_MIN;

/// The values a feed's reply shares rather than copies, in order.
#[derive(Default)]
pub(crate) struct SpliceSink {
    /// The engine writes splices (only the native engine does).
    pub(crate) enabled: bool,
    pub(crate) splices: Vec<Splice>,
}

impl SpliceSink {
    pub(crate) fn wants(&self, value_len: usize) -> bool {
        self.enabled && value_len >= SPLICE_MIN
    }

    pub(crate) fn push(&mut self, out: &[u8], bytes: Bytes) {
        self.splices.push(Splice {
            at: out.len(),
            bytes,
        });
    }

    /// Bytes in the splices, for the reply budget (a handful at most: each is 64 KB or more).
    pub(crate) fn len(&self) -> usize {
        spliced_len(&self.splices)
    }
}

impl TextState {
    /// The next step reads a command line (not a data block or bytes to discard).
    pub(crate) fn at_line(&self) -> bool {
        matches!(self.wait, Wait::Line)
    }
}

/// One step: answer one line, complete one data block, or discard swallowed bytes.
pub(crate) fn step(
    st: &mut TextState,
    engine: &Engine,
    buf: &mut BytesMut,
    out: &mut Vec<u8>,
) -> Progress {
    match std::mem::take(&mut st.wait) {
        Wait::Swallow(n) => {
            let k = n.min(buf.len());
            let _ = buf.split_to(k);
            if k < n {
                st.wait = Wait::Swallow(n - k);
                return Progress::NeedMore;
            }
            Progress::Again
        }
        Wait::Data { pending, len } => {
            if buf.len() < len + 2 {
                // Room for the whole block at once (its size was checked against the item
                // limit before we got here), so a large value isn't copied at each doubling.
                buf.reserve(len + 2 - buf.len());
                st.wait = Wait::Data { pending, len };
                return Progress::NeedMore;
            }
            // The block is handed over in place; the cache copies it once, into the entry.
            let block = buf.split_to(len + 2);
            let data = (&block[len..] == b"\r\n").then(|| &block[..len]);
            complete(st, pending, data, engine, out);
            Progress::Again
        }
        Wait::Line => {
            let Some(nl) = memchr::memchr(b'\n', buf) else {
                return line_incomplete(buf);
            };
            let line = buf.split_to(nl + 1);
            let mut l = &line[..nl];
            if let Some(stripped) = l.strip_suffix(b"\r") {
                l = stripped;
            }
            command(st, engine, l, out)
        }
    }
}

/// memcached closes a connection whose line grows past 2048 bytes without a newline, unless it
/// is a multiget.
fn line_incomplete(buf: &BytesMut) -> Progress {
    if buf.len() <= MAX_LINE_WITHOUT_NEWLINE {
        return Progress::NeedMore;
    }
    let trimmed = {
        let lead = buf.iter().take_while(|&&b| b == b' ').count();
        if lead > 100 {
            return Progress::Close;
        }
        &buf[lead..]
    };
    if (trimmed.starts_with(b"get ") || trimmed.starts_with(b"gets "))
        && buf.len() <= MAX_MULTIGET_LINE
    {
        Progress::NeedMore
    } else {
        Progress::Close
    }
}

#[inline]
fn reply(out: &mut Vec<u8>, noreply: bool, msg: &[u8]) {
    if !noreply {
        out.extend_from_slice(msg);
    }
}

pub(crate) fn push_num(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Dispatches one command line, with memcached's token-count rules.
fn command(st: &mut TextState, engine: &Engine, line: &[u8], out: &mut Vec<u8>) -> Progress {
    let mut it = split(line);
    let Some(cmd) = it.next() else {
        out.extend_from_slice(ERROR);
        return Progress::Again;
    };
    // The get family takes any number of keys; everything else fits memcached's token array.
    let mut toks: [&[u8]; MAX_TOKENS] = [&[]; MAX_TOKENS];
    let mut n = 0;
    let is_get = matches!(cmd, b"get" | b"gets" | b"gat" | b"gats" | b"bget");
    if !is_get {
        for t in it.by_ref() {
            if n == MAX_TOKENS {
                n += 1;
                break;
            }
            toks[n] = t;
            n += 1;
        }
    }
    let args = &toks[..n.min(MAX_TOKENS)];
    let n = n + 1; // memcached counts the command token
    if cmd.len() < 2 {
        out.extend_from_slice(ERROR);
        return Progress::Again;
    }
    if cmd.len() == 2 && cmd[0] == b'm' {
        // memcached's cmd_meta counts `me` (meta debug) only; mg, ms... count as gets, sets...
        engine.counters.cmd_meta.fetch_add(
            u64::from(cmd[1] == b'e'),
            std::sync::atomic::Ordering::Relaxed,
        );
        return wait_for(st, meta::command(cmd[1], args, engine, out), Pending::Meta);
    }
    let ok = |lo: usize, hi: usize| (lo..=hi).contains(&n);
    match cmd {
        b"get" | b"bget" => get(engine, line, 1, false, None, &mut st.splices, out),
        b"gets" => get(engine, line, 1, true, None, &mut st.splices, out),
        b"gat" | b"gats" => {
            let mut rest = split(line).skip(1);
            match rest.next() {
                None => out.extend_from_slice(ERROR),
                Some(e) => match parse_i64(e) {
                    None => out.extend_from_slice(BAD_EXPTIME),
                    Some(e) => get(
                        engine,
                        line,
                        2,
                        cmd == b"gats",
                        Some(ttl_from_exptime(e)),
                        &mut st.splices,
                        out,
                    ),
                },
            }
        }
        b"set" if ok(5, 6) => return storage(st, engine, StoreMode::Set, args, out),
        b"add" if ok(5, 6) => return storage(st, engine, StoreMode::Add, args, out),
        b"replace" if ok(5, 6) => return storage(st, engine, StoreMode::Replace, args, out),
        b"append" if ok(5, 6) => return storage(st, engine, StoreMode::Append, args, out),
        b"prepend" if ok(5, 6) => return storage(st, engine, StoreMode::Prepend, args, out),
        b"cas" if ok(6, 7) => return storage(st, engine, StoreMode::Cas(0), args, out),
        b"incr" if ok(3, 4) => arith(engine, true, args, out),
        b"decr" if ok(3, 4) => arith(engine, false, args, out),
        b"delete" if ok(2, 4) => delete(engine, args, out),
        b"touch" if ok(3, 4) => touch(engine, args, out),
        b"flush_all" if ok(1, 3) => flush_all(engine, args, out),
        b"version" => {
            out.extend_from_slice(b"VERSION ");
            out.extend_from_slice(MEMCACHED_VERSION.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        b"quit" => return Progress::Close,
        b"debug" if engine.config().test_hooks && args.first() == Some(&&b"panic"[..]) => {
            panic!("`debug panic`: a test hook standing in for a bug in a command")
        }
        b"verbosity" if ok(2, 3) => verbosity(engine, args, out),
        b"cache_memlimit" if ok(2, 3) => cache_memlimit(engine, args, out),
        b"stats" => stats(engine, args, out),
        b"shutdown" => {
            if engine.config().allow_shutdown {
                engine.request_shutdown();
                return Progress::Close;
            }
            out.extend_from_slice(b"ERROR: shutdown not enabled\r\n");
        }
        b"streaming_get" | b"sget" => streaming::get(engine, args, &mut st.splices, out),
        b"set_begin" => streaming::begin(&mut st.uploads, engine, args, out),
        b"set_end" => streaming::end(&mut st.uploads, engine, args, out),
        b"set_data" => {
            let next = streaming::data_header(&mut st.uploads, args, out);
            return wait_for(st, next, Pending::Chunk);
        }
        _ if args.last().is_some_and(|t| t.starts_with(b"HTTP/")) => return Progress::Close,
        _ => out.extend_from_slice(ERROR),
    }
    Progress::Again
}

/// `get`/`gets`/`gat`/`gats`: keys start at token `first`.
fn get(
    engine: &Engine,
    line: &[u8],
    first: usize,
    with_cas: bool,
    touch: Option<Ttl>,
    sink: &mut SpliceSink,
    out: &mut Vec<u8>,
) {
    let start = out.len();
    let spliced_before = sink.splices.len();
    let mut any = false;
    let cache = engine.cache();
    for key in split(line).skip(first) {
        any = true;
        if key.len() > KEY_MAX_LENGTH {
            out.truncate(start);
            sink.splices.truncate(spliced_before);
            out.extend_from_slice(BAD_FORMAT);
            return;
        }
        // A miss writes nothing: only hits get a VALUE block.
        match touch {
            None => {
                cache.get_with(key, |e| {
                    let cas = with_cas.then_some(e.cas);
                    write_hit(out, sink, key, e.flags, e.value, || e.value_bytes(), cas);
                });
            }
            Some(ttl) => {
                if let Some(i) = cache.get_and_touch(key, ttl) {
                    let cas = with_cas.then_some(i.cas);
                    write_hit(out, sink, key, i.flags, &i.value, || i.value.clone(), cas);
                }
            }
        }
    }
    if !any && touch.is_none() {
        out.extend_from_slice(ERROR);
        return;
    }
    out.extend_from_slice(b"END\r\n");
}

/// A hit's VALUE block; a large value is spliced (`shared` gives the stored bytes) rather than
/// copied when the sink takes it.
fn write_hit(
    out: &mut Vec<u8>,
    sink: &mut SpliceSink,
    key: &[u8],
    flags: u32,
    value: &[u8],
    shared: impl FnOnce() -> Bytes,
    cas: Option<u64>,
) {
    if sink.wants(value.len()) {
        value_line(out, key, flags, value.len(), cas);
        sink.push(out, shared());
        out.extend_from_slice(b"\r\n");
    } else {
        write_value(out, key, flags, value, cas);
    }
}

fn write_value(out: &mut Vec<u8>, key: &[u8], flags: u32, value: &[u8], cas: Option<u64>) {
    out.reserve(key.len() + value.len() + 48);
    value_line(out, key, flags, value.len(), cas);
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// `VALUE <key> <flags> <bytes> [<cas>]\r\n`
fn value_line(out: &mut Vec<u8>, key: &[u8], flags: u32, len: usize, cas: Option<u64>) {
    out.extend_from_slice(b"VALUE ");
    out.extend_from_slice(key);
    out.push(b' ');
    push_num(out, flags as u64);
    out.push(b' ');
    push_num(out, len as u64);
    if let Some(c) = cas {
        out.push(b' ');
        push_num(out, c);
    }
    out.extend_from_slice(b"\r\n");
}

fn is_noreply(args: &[&[u8]]) -> bool {
    args.last().is_some_and(|t| *t == b"noreply")
}

/// `set|add|replace|append|prepend <key> <flags> <exptime> <bytes> [noreply]`, `cas ... <unique>`.
fn storage(
    st: &mut TextState,
    engine: &Engine,
    mode: StoreMode,
    args: &[&[u8]],
    out: &mut Vec<u8>,
) -> Progress {
    let noreply = is_noreply(args);
    let key = args[0];
    if key.len() > KEY_MAX_LENGTH {
        reply(out, noreply, BAD_FORMAT);
        return Progress::Again;
    }
    let (Some(flags), Some(exptime), Some(vlen)) =
        (parse_flags(args[1]), parse_i64(args[2]), parse_i64(args[3]))
    else {
        reply(out, noreply, BAD_FORMAT);
        return Progress::Again;
    };
    let mode = match mode {
        StoreMode::Cas(_) => match parse_u64(args[4]) {
            Some(c) => StoreMode::Cas(c),
            None => {
                reply(out, noreply, BAD_FORMAT);
                return Progress::Again;
            }
        },
        m => m,
    };
    if !(0..=MAX_DECLARED_VALUE_LEN).contains(&vlen) {
        reply(out, noreply, BAD_FORMAT);
        return Progress::Again;
    }
    let len = vlen as usize;
    if !engine.item_fits(key.len(), len) {
        engine
            .counters
            .store_too_large
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        reply(out, noreply, TOO_LARGE);
        // memcached drops the old value of a set that is too large, so a stale value can't
        // outlive a failed update.
        if mode == StoreMode::Set {
            engine.cache().delete(key);
        }
        st.wait = Wait::Swallow(len + 2);
        return Progress::Again;
    }
    st.wait = Wait::Data {
        pending: Pending::Store {
            mode,
            key: key.to_vec(),
            flags,
            ttl: ttl_from_exptime(exptime),
            noreply,
        },
        len,
    };
    Progress::Again
}

/// A data block arrived (`None`: it did not end in `\r\n`).
fn complete(
    st: &mut TextState,
    pending: Pending,
    data: Option<&[u8]>,
    engine: &Engine,
    out: &mut Vec<u8>,
) {
    match pending {
        Pending::Store {
            mode,
            key,
            flags,
            ttl,
            noreply,
        } => {
            let Some(value) = data else {
                reply(out, noreply, BAD_CHUNK);
                return;
            };
            let msg: &[u8] = match engine.cache().store(&key, value, flags, ttl, mode) {
                Ok(StoreOutcome::Stored(_)) => b"STORED\r\n",
                Ok(StoreOutcome::NotStored) => b"NOT_STORED\r\n",
                Ok(StoreOutcome::Exists) => b"EXISTS\r\n",
                Ok(StoreOutcome::NotFound) => b"NOT_FOUND\r\n",
                Err(e @ (CoreError::DiskFull(_) | CoreError::Disk(_))) => store_failure(&e),
                Ok(StoreOutcome::TooLarge) | Err(_) => {
                    engine
                        .counters
                        .store_no_memory
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    NO_MEMORY
                }
            };
            reply(out, noreply, msg);
        }
        Pending::Meta(p) => meta::complete_set(p, data, engine, out),
        Pending::Chunk(p) => streaming::data(&mut st.uploads, p, data, out),
    }
}

fn arith(engine: &Engine, incr: bool, args: &[&[u8]], out: &mut Vec<u8>) {
    let noreply = is_noreply(args);
    let key = args[0];
    if key.len() > KEY_MAX_LENGTH {
        return reply(out, noreply, BAD_FORMAT);
    }
    let Some(delta) = parse_u64(args[1]) else {
        return reply(out, noreply, BAD_DELTA);
    };
    let d = if incr {
        Delta::Incr(delta)
    } else {
        Delta::Decr(delta)
    };
    match engine.cache().delta(key, d) {
        DeltaOutcome::Value(v, _) => {
            if !noreply {
                push_num(out, v);
                out.extend_from_slice(b"\r\n");
            }
        }
        DeltaOutcome::NotFound => reply(out, noreply, b"NOT_FOUND\r\n"),
        DeltaOutcome::NonNumeric => reply(out, noreply, NON_NUMERIC),
    }
}

/// `delete <key> [0] [noreply]`: memcached accepts a hold time only if it is 0.
fn delete(engine: &Engine, args: &[&[u8]], out: &mut Vec<u8>) {
    let noreply = is_noreply(args);
    let valid = match args.len() {
        1 => true,
        2 => args[1] == b"0" || noreply,
        3 => args[1] == b"0" && noreply,
        _ => false,
    };
    if !valid {
        return reply(
            out,
            noreply,
            b"CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n",
        );
    }
    let key = args[0];
    if key.len() > KEY_MAX_LENGTH {
        return reply(out, noreply, BAD_FORMAT);
    }
    let msg: &[u8] = if engine.cache().delete(key) {
        b"DELETED\r\n"
    } else {
        b"NOT_FOUND\r\n"
    };
    reply(out, noreply, msg);
}

fn touch(engine: &Engine, args: &[&[u8]], out: &mut Vec<u8>) {
    let noreply = is_noreply(args);
    let key = args[0];
    if key.len() > KEY_MAX_LENGTH {
        return reply(out, noreply, BAD_FORMAT);
    }
    let Some(exptime) = parse_i64(args[1]) else {
        return reply(out, noreply, BAD_EXPTIME);
    };
    let msg: &[u8] = match engine.cache().touch(key, ttl_from_exptime(exptime)) {
        Some(_) => b"TOUCHED\r\n",
        None => b"NOT_FOUND\r\n",
    };
    reply(out, noreply, msg);
}

/// `flush_all [delay] [noreply]`; a delay over 30 days is an absolute unix time, as exptimes are.
fn flush_all(engine: &Engine, args: &[&[u8]], out: &mut Vec<u8>) {
    let noreply = is_noreply(args);
    if !engine.config().allow_flush {
        return reply(out, noreply, b"CLIENT_ERROR flush_all not allowed\r\n");
    }
    let delay_ms = if args.len() == usize::from(noreply) {
        0
    } else {
        let Some(e) = parse_i64(args[0]) else {
            return reply(out, noreply, BAD_EXPTIME);
        };
        let now = engine.shared_cache().now_ms();
        match ttl_from_exptime(e) {
            Ttl::After(ms) => ms,
            Ttl::At(t) => t.saturating_sub(now),
            _ => 0,
        }
    };
    engine.flush_all(delay_ms);
    reply(out, noreply, b"OK\r\n");
}

/// `cache_memlimit <megabytes> [noreply]`, with memcached's replies: the number parses as its
/// `safe_strtoul` into 32 bits, and below 8 MB or above 10^9 MB is refused.
fn cache_memlimit(engine: &Engine, args: &[&[u8]], out: &mut Vec<u8>) {
    let noreply = is_noreply(args);
    let msg: &[u8] = match super::meta::strtoul_u32(args[0]) {
        None => ERROR,
        Some(mb) if mb < 8 => b"MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m\r\n",
        Some(mb) if mb > 1_000_000_000 => {
            b"MEMLIMIT_ADJUST_FAILED input value is megabytes not bytes\r\n"
        }
        Some(mb) => {
            engine.set_memory_limit_mb(mb);
            b"OK\r\n"
        }
    };
    reply(out, noreply, msg);
}

fn verbosity(engine: &Engine, args: &[&[u8]], out: &mut Vec<u8>) {
    let noreply = is_noreply(args);
    let Some(level) = parse_u64(args[0]) else {
        return reply(out, noreply, BAD_FORMAT);
    };
    if engine.config().allow_verbosity {
        engine.set_verbosity(level.min(u32::MAX as u64) as u32);
    }
    reply(out, noreply, b"OK\r\n");
}

fn stat_line(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(b"STAT ");
    out.extend_from_slice(name.as_bytes());
    out.push(b' ');
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn stats(engine: &Engine, args: &[&[u8]], out: &mut Vec<u8>) {
    match args.first().copied() {
        None => {
            for (k, v) in engine.general_stats() {
                stat_line(out, k, &v);
            }
        }
        Some(b"settings") => {
            for (k, v) in engine.settings_stats() {
                stat_line(out, &k, &v);
            }
        }
        Some(b"items") => {
            let s = engine.shared_cache().stats();
            if s.curr_items > 0 {
                for (k, v) in [
                    ("number", s.curr_items),
                    ("evicted", s.counters.evictions),
                    ("reclaimed", s.counters.expirations),
                    ("mem_requested", s.payload_bytes),
                    ("expired_unfetched", s.counters.expired_unfetched),
                    ("evicted_unfetched", s.counters.evicted_unfetched),
                ] {
                    stat_line(out, &format!("items:1:{k}"), &v.to_string());
                }
            }
        }
        Some(b"slabs") => {
            // One logical class: ratmemcache allocates per item rather than from slab classes.
            let s = engine.shared_cache().stats();
            if s.curr_items > 0 {
                stat_line(out, "1:used_chunks", &s.curr_items.to_string());
                stat_line(out, "1:mem_requested", &s.payload_bytes.to_string());
            }
            stat_line(
                out,
                "active_slabs",
                if s.curr_items > 0 { "1" } else { "0" },
            );
            stat_line(out, "total_malloced", &s.bytes.to_string());
        }
        Some(b"sizes") => {}
        Some(b"conns") => {}
        Some(b"reset") => {
            engine.shared_cache().reset_counters();
            out.extend_from_slice(b"RESET\r\n");
            return;
        }
        Some(b"detail") => {
            out.extend_from_slice(b"CLIENT_ERROR usage: stats detail on|off|dump\r\n");
            return;
        }
        Some(_) => {
            out.extend_from_slice(ERROR);
            return;
        }
    }
    out.extend_from_slice(b"END\r\n");
}
