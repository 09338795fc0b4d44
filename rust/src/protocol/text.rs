//! memcached's text protocol (protocol.txt), reproduced byte for byte against memcached 1.6.18.
//!
//! A line is read up to `\n` (a preceding `\r` is dropped), split on spaces, and dispatched by
//! its first token with memcached's token-count rules (a wrong count is `ERROR`). Storage commands
//! then wait for `<bytes>\r\n` of data. Meta commands (`mg`, `ms`, ...) and the streaming
//! extension share this line reader and hand over to `meta` and `streaming`.

use bytes::{Buf, Bytes, BytesMut};

use super::limits::{
    KEY_MAX_LENGTH, MAX_DECLARED_VALUE_LEN, MAX_LINE_WITHOUT_NEWLINE, MAX_MULTIGET_LINE,
};
use super::meta;
use super::session::{spliced_len, Progress, Splice};
use super::streaming;
use super::text_admin;
use super::tokens::split;
use crate::cache::{
    DeleteOutcome, DeleteRequest, Delta, DeltaOutcome, DeltaRequest, StoreMode, StoreOutcome,
    StoreRequest, Ttl,
};
use crate::command::numbers::{safe_strtol, safe_strtoul, safe_strtoull};
use crate::command::{ttl_from_exptime, Failure};
use crate::disk_wait;
use crate::engine::{Engine, MEMCACHED_VERSION};
use crate::latency::CmdKind;

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

/// memcached's line for a command that failed (text and meta commands).
pub(crate) fn failure_line(f: Failure) -> &'static [u8] {
    match f {
        Failure::TooLarge => TOO_LARGE,
        Failure::NoMemory => NO_MEMORY,
        Failure::NoDisk => NO_DISK,
        Failure::DiskError => DISK_ERROR,
    }
}

/// The kind of the text command whose line starts `buf` (its first token), for the latency
/// histograms.
#[inline]
pub(crate) fn kind_of(buf: &[u8]) -> CmdKind {
    let start = buf.iter().position(|&b| b != b' ').unwrap_or(buf.len());
    let rest = &buf[start..];
    let end = rest
        .iter()
        .position(|&b| b == b' ' || b == b'\r' || b == b'\n')
        .unwrap_or(rest.len());
    match &rest[..end] {
        b"get" | b"gets" | b"bget" | b"streaming_get" | b"sget" => CmdKind::Get,
        b"set" | b"add" | b"replace" | b"append" | b"prepend" | b"cas" | b"set_begin"
        | b"set_data" | b"set_end" => CmdKind::Set,
        b"delete" => CmdKind::Delete,
        b"incr" | b"decr" => CmdKind::IncrDecr,
        b"touch" | b"gat" | b"gats" => CmdKind::Touch,
        [b'm', _] => CmdKind::Meta,
        _ => CmdKind::Other,
    }
}
const BAD_EXPTIME: &[u8] = b"CLIENT_ERROR invalid exptime argument\r\n";
const BAD_DELTA: &[u8] = b"CLIENT_ERROR invalid numeric delta argument\r\n";
const NON_NUMERIC: &[u8] = b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n";

/// What a command waiting for its data block will do with it.
pub(crate) enum Pending {
    Store {
        mode: StoreMode,
        /// `cas`'s unique.
        cas: Option<u64>,
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
    /// A multi-key get stopped at a key that must wait on the disk (`disk_wait`): the offsets,
    /// in its line, of its first key and of that key. The keys before it were answered.
    resume_get: Option<(usize, usize)>,
}

/// Where a request's reply began, to drop it when the request is rolled back (`disk_wait`).
#[derive(Clone, Copy)]
struct ReplyMark {
    out: usize,
    splices: usize,
}

impl ReplyMark {
    fn of(out: &[u8], sink: &SpliceSink) -> ReplyMark {
        ReplyMark {
            out: out.len(),
            splices: sink.splices.len(),
        }
    }

    fn roll_back(self, out: &mut Vec<u8>, sink: &mut SpliceSink) {
        out.truncate(self.out);
        sink.splices.truncate(self.splices);
    }
}

/// Puts `front` (bytes split off the head of `buf`) back at its head: O(1) when they are still
/// contiguous, as they are when nothing was read in between.
fn put_back(buf: &mut BytesMut, mut front: BytesMut) {
    front.unsplit(std::mem::take(buf));
    *buf = front;
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
            let mark = ReplyMark::of(out, &st.splices);
            let pending = match pending {
                Pending::Chunk(p) => {
                    // An upload's chunk is buffered, never written down: it can't wait.
                    streaming::data(&mut st.uploads, p, data, out);
                    return Progress::Again;
                }
                p => p,
            };
            complete(&pending, data, engine, out);
            if disk_wait::refused() {
                mark.roll_back(out, &mut st.splices);
                put_back(buf, block);
                st.wait = Wait::Data { pending, len };
                return Progress::Waits;
            }
            Progress::Again
        }
        Wait::Line => {
            let Some(nl) = memchr::memchr(b'\n', buf) else {
                return line_incomplete(buf);
            };
            let mut line = buf.split_to(nl + 1);
            let mut l = &line[..nl];
            if let Some(stripped) = l.strip_suffix(b"\r") {
                l = stripped;
            }
            let mark = ReplyMark::of(out, &st.splices);
            let p = command(st, engine, l, out);
            if !disk_wait::refused() {
                return p;
            }
            // The command must wait on the disk: roll it back, to run again where it may.
            st.wait = Wait::Line; // whatever it armed is armed again when it runs
            match st.resume_get.take() {
                Some((first, at)) => {
                    // A multi-key get answered the keys before `at`: what runs again is the
                    // command (and its exptime) with the keys from `at` on.
                    line.copy_within(0..first, at - first);
                    line.advance(at - first);
                }
                None => mark.roll_back(out, &mut st.splices),
            }
            put_back(buf, line);
            Progress::Waits
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
        b"get" | b"bget" => st.resume_get = get(engine, line, 1, false, None, &mut st.splices, out),
        b"gets" => st.resume_get = get(engine, line, 1, true, None, &mut st.splices, out),
        b"gat" | b"gats" => {
            let mut rest = split(line).skip(1);
            match rest.next() {
                None => out.extend_from_slice(ERROR),
                Some(e) => match safe_strtol(e) {
                    None => out.extend_from_slice(BAD_EXPTIME),
                    Some(e) => {
                        st.resume_get = get(
                            engine,
                            line,
                            2,
                            cmd == b"gats",
                            Some(ttl_from_exptime(i64::from(e))),
                            &mut st.splices,
                            out,
                        )
                    }
                },
            }
        }
        b"set" if ok(5, 6) => return storage(st, engine, StoreMode::Set, false, args, out),
        b"add" if ok(5, 6) => return storage(st, engine, StoreMode::Add, false, args, out),
        b"replace" if ok(5, 6) => return storage(st, engine, StoreMode::Replace, false, args, out),
        b"append" if ok(5, 6) => return storage(st, engine, StoreMode::Append, false, args, out),
        b"prepend" if ok(5, 6) => return storage(st, engine, StoreMode::Prepend, false, args, out),
        b"cas" if ok(6, 7) => return storage(st, engine, StoreMode::Set, true, args, out),
        b"incr" if ok(3, 4) => arith(engine, true, args, out),
        b"decr" if ok(3, 4) => arith(engine, false, args, out),
        b"delete" if ok(2, 4) => delete(engine, args, out),
        b"touch" if ok(3, 4) => touch(engine, args, out),
        b"version" => {
            out.extend_from_slice(b"VERSION ");
            out.extend_from_slice(MEMCACHED_VERSION.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        b"quit" => return Progress::Close,
        b"debug" if engine.config().test_hooks && args.first() == Some(&&b"panic"[..]) => {
            panic!("`debug panic`: a test hook standing in for a bug in a command")
        }
        // These read or write whole values, or the whole cache, in more than one step: where
        // waits are refused they run where they may wait, from the start (`disk_wait`).
        b"streaming_get" | b"sget" | b"set_end" if engine.may_block() && disk_wait::refuse() => {}
        _ if is_admin(cmd) && engine.may_block() && disk_wait::refuse() => {}
        b"streaming_get" | b"sget" => streaming::get(engine, args, &mut st.splices, out),
        b"set_begin" => streaming::begin(&mut st.uploads, engine, args, out),
        b"set_end" => streaming::end(&mut st.uploads, engine, args, out),
        b"set_data" => {
            let next = streaming::data_header(&mut st.uploads, args, out);
            return wait_for(st, next, Pending::Chunk);
        }
        _ if args.last().is_some_and(|t| t.starts_with(b"HTTP/")) => return Progress::Close,
        _ => match text_admin::command(engine, cmd, args, out) {
            Some(text_admin::After::Close) => return Progress::Close,
            Some(text_admin::After::Continue) => {}
            None => out.extend_from_slice(ERROR),
        },
    }
    Progress::Again
}

/// The commands `text_admin` answers.
fn is_admin(cmd: &[u8]) -> bool {
    matches!(
        cmd,
        b"stats"
            | b"flush_all"
            | b"verbosity"
            | b"cache_memlimit"
            | b"shutdown"
            | b"slabs"
            | b"lru_crawler"
    )
}

/// `get`/`gets`/`gat`/`gats`: keys start at token `first`. When a key after the first must
/// wait on the disk (`disk_wait`), the keys before it are answered and this returns the offsets
/// in `line` of the first key and of that one, for the rest to run again.
fn get(
    engine: &Engine,
    line: &[u8],
    first: usize,
    with_cas: bool,
    touch: Option<Ttl>,
    sink: &mut SpliceSink,
    out: &mut Vec<u8>,
) -> Option<(usize, usize)> {
    // A key too long anywhere in the line makes the whole reply an error, after every get
    // before it ran (and counted): where waits are refused, such a line can't be answered in
    // part, so it runs where it may wait, from the start.
    if disk_wait::refusing()
        && split(line).skip(first).any(|k| k.len() > KEY_MAX_LENGTH)
        && disk_wait::refuse()
    {
        return None;
    }
    let start = out.len();
    let spliced_before = sink.splices.len();
    let mut first_at = None;
    let offset = |key: &[u8]| key.as_ptr() as usize - line.as_ptr() as usize;
    for key in split(line).skip(first) {
        let first_at = *first_at.get_or_insert_with(|| offset(key));
        if key.len() > KEY_MAX_LENGTH {
            out.truncate(start);
            sink.splices.truncate(spliced_before);
            out.extend_from_slice(BAD_FORMAT);
            return None;
        }
        // A miss writes nothing: only hits get a VALUE block.
        engine.get(key, touch, |e| {
            let cas = with_cas.then_some(e.cas());
            write_hit(
                out,
                sink,
                key,
                e.flags(),
                e.value(),
                || e.value_bytes(),
                cas,
            );
        });
        if disk_wait::refused() {
            let at = offset(key);
            return (at != first_at).then_some((first_at, at));
        }
    }
    if first_at.is_none() && touch.is_none() {
        out.extend_from_slice(ERROR);
        return None;
    }
    out.extend_from_slice(b"END\r\n");
    None
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
    is_cas: bool,
    args: &[&[u8]],
    out: &mut Vec<u8>,
) -> Progress {
    let noreply = is_noreply(args);
    let key = args[0];
    if key.len() > KEY_MAX_LENGTH {
        reply(out, noreply, BAD_FORMAT);
        return Progress::Again;
    }
    let (Some(flags), Some(exptime), Some(vlen)) = (
        safe_strtoul(args[1]),
        safe_strtol(args[2]),
        safe_strtol(args[3]),
    ) else {
        reply(out, noreply, BAD_FORMAT);
        return Progress::Again;
    };
    let cas = if is_cas {
        match safe_strtoull(args[4]) {
            Some(c) => Some(c),
            None => {
                reply(out, noreply, BAD_FORMAT);
                return Progress::Again;
            }
        }
    } else {
        None
    };
    if !(0..=MAX_DECLARED_VALUE_LEN).contains(&i64::from(vlen)) {
        reply(out, noreply, BAD_FORMAT);
        return Progress::Again;
    }
    let len = vlen as usize;
    if let Err(f) = engine.admit(key, len, flags, mode == StoreMode::Set && !is_cas) {
        reply(out, noreply, failure_line(f));
        st.wait = Wait::Swallow(len + 2);
        return Progress::Again;
    }
    st.wait = Wait::Data {
        pending: Pending::Store {
            mode,
            cas,
            key: key.to_vec(),
            flags,
            ttl: ttl_from_exptime(i64::from(exptime)),
            noreply,
        },
        len,
    };
    Progress::Again
}

/// A data block arrived (`None`: it did not end in `\r\n`).
fn complete(pending: &Pending, data: Option<&[u8]>, engine: &Engine, out: &mut Vec<u8>) {
    match pending {
        Pending::Store {
            mode,
            cas,
            key,
            flags,
            ttl,
            noreply,
        } => {
            let (noreply, cas) = (*noreply, *cas);
            let Some(value) = data else {
                reply(out, noreply, BAD_CHUNK);
                return;
            };
            let req = StoreRequest {
                cas,
                ..StoreRequest::new(*mode, key, value).flags(*flags).ttl(*ttl)
            };
            let msg: &[u8] = match engine.store(req) {
                Ok(StoreOutcome::Stored(_)) => b"STORED\r\n",
                Ok(StoreOutcome::NotStored) => b"NOT_STORED\r\n",
                Ok(StoreOutcome::Exists) => b"EXISTS\r\n",
                Ok(StoreOutcome::NotFound) => b"NOT_FOUND\r\n",
                Ok(StoreOutcome::NoRoom) => NO_MEMORY,
                Err(f) => failure_line(f),
            };
            reply(out, noreply, msg);
        }
        Pending::Meta(p) => meta::complete_set(p, data, engine, out),
        Pending::Chunk(_) => unreachable!("an upload's chunk is taken before"),
    }
}

fn arith(engine: &Engine, incr: bool, args: &[&[u8]], out: &mut Vec<u8>) {
    let noreply = is_noreply(args);
    let key = args[0];
    if key.len() > KEY_MAX_LENGTH {
        return reply(out, noreply, BAD_FORMAT);
    }
    let Some(delta) = safe_strtoull(args[1]) else {
        return reply(out, noreply, BAD_DELTA);
    };
    let d = if incr {
        Delta::Incr(delta)
    } else {
        Delta::Decr(delta)
    };
    match engine.delta(key, DeltaRequest::of(d), |_, n| n) {
        Ok(DeltaOutcome::Done(v)) => {
            if !noreply {
                push_num(out, v);
                out.extend_from_slice(b"\r\n");
            }
        }
        Ok(DeltaOutcome::NotFound | DeltaOutcome::Exists) => reply(out, noreply, b"NOT_FOUND\r\n"),
        Ok(DeltaOutcome::NonNumeric) => reply(out, noreply, NON_NUMERIC),
        Err(f) => reply(out, noreply, failure_line(f)),
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
    let msg: &[u8] = match engine.delete(key, DeleteRequest::default()) {
        Ok(DeleteOutcome::Deleted | DeleteOutcome::Invalidated) => b"DELETED\r\n",
        Ok(DeleteOutcome::NotFound | DeleteOutcome::Exists) => b"NOT_FOUND\r\n",
        Err(f) => failure_line(f),
    };
    reply(out, noreply, msg);
}

fn touch(engine: &Engine, args: &[&[u8]], out: &mut Vec<u8>) {
    let noreply = is_noreply(args);
    let key = args[0];
    if key.len() > KEY_MAX_LENGTH {
        return reply(out, noreply, BAD_FORMAT);
    }
    let Some(exptime) = safe_strtol(args[1]) else {
        return reply(out, noreply, BAD_EXPTIME);
    };
    let msg: &[u8] = match engine.touch(key, ttl_from_exptime(i64::from(exptime))) {
        Some(_) => b"TOUCHED\r\n",
        None => b"NOT_FOUND\r\n",
    };
    reply(out, noreply, msg);
}

#[cfg(test)]
mod tests {
    use super::kind_of;
    use crate::latency::CmdKind;

    #[test]
    fn commands_are_classified_by_their_first_token() {
        for (line, kind) in [
            (&b"get a b\r\n"[..], CmdKind::Get),
            (b"gets a", CmdKind::Get),
            (b"  get a", CmdKind::Get),
            (b"set a 0 0 1\r\n", CmdKind::Set),
            (b"cas a 0 0 1 5", CmdKind::Set),
            (b"append a 0 0 1", CmdKind::Set),
            (b"delete a", CmdKind::Delete),
            (b"incr a 1", CmdKind::IncrDecr),
            (b"decr a 1", CmdKind::IncrDecr),
            (b"touch a 1", CmdKind::Touch),
            (b"gat 1 a", CmdKind::Touch),
            (b"mg a v", CmdKind::Meta),
            (b"mn\r\n", CmdKind::Meta),
            (b"stats\r\n", CmdKind::Other),
            (b"getx a", CmdKind::Other),
            (b"", CmdKind::Other),
        ] {
            assert_eq!(kind_of(line), kind, "{}", String::from_utf8_lossy(line));
        }
    }
}
