//! memcached's meta protocol (`mg`, `ms`, `md`, `ma`, `me`, `mn`), reproduced byte for byte
//! against memcached 1.6.18 (`proto_text.c`: `process_mget_command` and its siblings).
//!
//! A meta command is `<cmd> <key> [<flag>...]`: each flag is one token whose first byte names it
//! and whose remainder is its argument (`T30`, `Oopaque`). Flags are validated first, in one pass
//! (`preparse`, memcached's `_meta_flag_preparse`); then the command runs, and its reply echoes
//! the return flags in the order the request gave them. Replies are `HD` (done), `VA <len>` (a
//! value follows), `EN` (miss), `NF`, `NS`, `EX`, then the flags.
//!
//! This module parses and formats; the per-item state the meta commands expose (fetched, last
//! access, stale, win token, base64 key) lives in the cache entry, and every read-modify-write
//! runs under one shard lock through the cache's meta methods.
//!
//! memcached 1.6.18 quirks reproduced here, checked against the real server:
//! - quiet mode (`q`) hides only the nominal reply: `mg` hides `EN` (hits still show), `ms` and
//!   `md` hide `HD` (`NS`, `NF` and `EX` still show), `ma` hides `HD`/`VA` unless it vivified;
//!   errors always show;
//! - flags act in request order, so `mg k t T30` prints the TTL from before `T30`;
//! - numbers parse like C's `strtol`/`strtoull`: leading whitespace, a sign, trailing whitespace
//!   then anything; `T`, `N`, `R` and `ms`'s length are truncated to 32 bits (`T4294967296` is
//!   `T0`); `F` wraps at 2^32;
//! - a NUL byte ends the command line (memcached's tokenizer stops at it);
//! - the key length limit (250) applies to the token as sent, before base64 decoding;
//! - `md` and `ma` report every flag error as "invalid or duplicate flag";
//! - a too-large `ms` deletes the old value whatever the mode; an append that would outgrow the
//!   item size limit is `NS`;
//! - flags of later memcacheds are not 1.6.18's: `E` (set the CAS), `x` (`md`: drop the value)
//!   and `S` (`ms`: the old size flag) are "invalid flag", and `ms` ignores `N` (no vivifying
//!   append).
//!
//! Deliberate differences (docs/compatibility.md): an `ma` whose result grows longer than the
//! stored number applies `T` (memcached applies it to the replaced item, so it is lost); items
//! that `mg N` or `ma N` vivify with a base64 key keep showing it base64-encoded (memcached
//! forgets, and prints the raw binary key); the last-access time (`l`, `la`) is refreshed on every
//! access (memcached's segmented LRU refreshes it lazily).

use std::borrow::Cow;

use super::base64::{base64_decode, base64_encode};
use super::limits::{KEY_MAX_LENGTH, MAX_DECLARED_VALUE_LEN};
use super::text::{failure_line, push_num, Next, BAD_CHUNK, BAD_FORMAT, ERROR, NO_MEMORY};
use crate::cache::{
    DeleteOutcome, DeleteRequest, Delta, DeltaOutcome, DeltaRequest, MetaEntry, StoreMode,
    StoreOutcome, StoreRequest, Ttl,
};
use crate::command::meta::{mg_opts, ms_cas, settle_win, shown_ttl, under_recache};
use crate::command::numbers::{safe_strtol, safe_strtoul, safe_strtoull};
use crate::command::ttl_from_exptime;
use crate::engine::Engine;

/// memcached's `MFLAG_MAX_OPT_LENGTH`: a meta command line may have at most this many tokens,
/// counting the command, the key and memcached's terminal empty token.
const MFLAG_MAX_OPT_LENGTH: usize = 20;
/// memcached's `MFLAG_MAX_OPAQUE_LENGTH`: the longest `O` token, `O` included.
const MFLAG_MAX_OPAQUE_LENGTH: usize = 32;

const DUPLICATE_FLAG: &[u8] = b"CLIENT_ERROR duplicate flag\r\n";
const INVALID_FLAG: &[u8] = b"CLIENT_ERROR invalid flag\r\n";
const BAD_KEY_ENCODING: &[u8] = b"CLIENT_ERROR error decoding key\r\n";
const BAD_TOKEN: &[u8] = b"CLIENT_ERROR bad token in command line format\r\n";
const BAD_M_LENGTH: &[u8] = b"CLIENT_ERROR incorrect length for M token\r\n";
const BAD_INITIAL: &[u8] = b"CLIENT_ERROR invalid numeric initial value\r\n";
const BAD_DELTA: &[u8] = b"CLIENT_ERROR invalid numeric delta value\r\n";
const OPAQUE_TOO_LONG: &[u8] = b"CLIENT_ERROR opaque token too long\r\n";
/// `mg`'s wording; the other commands say "options flags too long".
const MG_TOO_MANY_FLAGS: &[u8] = b"CLIENT_ERROR options flags are too long\r\n";
const TOO_MANY_FLAGS: &[u8] = b"CLIENT_ERROR options flags too long\r\n";
const BAD_MS_MODE: &[u8] = b"CLIENT_ERROR invalid mode for ms M token\r\n";
const BAD_MA_MODE: &[u8] = b"CLIENT_ERROR invalid mode for ma M token\r\n";
/// `md` and `ma` ignore the parser's message and say this for every flag error.
const INVALID_OR_DUPLICATE: &[u8] = b"CLIENT_ERROR invalid or duplicate flag\r\n";
const NON_NUMERIC: &[u8] = b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n";

/// An `ms` whose data block is being read.
pub(crate) struct PendingSet {
    /// The key, base64-decoded when `binary`.
    key: Vec<u8>,
    binary: bool,
    flags: u32,
    ttl: Ttl,
    mode: StoreMode,
    /// `C<cas>`, as the mode compares it.
    cas: Option<u64>,
    invalidate: bool,
    quiet: bool,
    /// The return flags to echo, in request order: `k`, `c`, or `O` followed by a length byte
    /// and the opaque token.
    echo: Vec<u8>,
}

/// What an `ms` leaves the connection waiting for: its data block goes to [`complete_set`].
pub(crate) type Outcome = Next<PendingSet>;

/// Runs one meta command; `sub` is the command's second letter and `args` the tokens after it.
pub(crate) fn command(sub: u8, args: &[&[u8]], engine: &Engine, out: &mut Vec<u8>) -> Outcome {
    let args = cut_at_nul(args);
    match sub {
        b'n' => out.extend_from_slice(b"MN\r\n"),
        b'g' => mget(&args, engine, out),
        b's' => return mset(&args, engine, out),
        b'd' => mdelete(&args, engine, out),
        b'a' => marith(&args, engine, out),
        b'e' => mdebug(&args, engine, out),
        _ => out.extend_from_slice(ERROR),
    }
    Outcome::Done
}

/// memcached tokenizes a C string: a NUL byte ends the command line.
fn cut_at_nul<'b, 'a>(args: &'b [&'a [u8]]) -> Cow<'b, [&'a [u8]]> {
    let Some(i) = args.iter().position(|t| t.contains(&0)) else {
        return Cow::Borrowed(args);
    };
    let mut v = args[..i].to_vec();
    let head = &args[i][..memchr::memchr(0, args[i]).unwrap_or(0)];
    if !head.is_empty() {
        v.push(head);
    }
    Cow::Owned(v)
}

/// memcached's `META_KEY`: ` k<key>`, or ` k<base64> b` for a binary key.
fn push_key(out: &mut Vec<u8>, key: &[u8], binary: bool) {
    out.extend_from_slice(b" k");
    if binary {
        base64_encode(key, out);
        out.extend_from_slice(b" b");
    } else {
        out.extend_from_slice(key);
    }
}

// ---------------------------------------------------------------------------------------------
// Flags.

/// What the flags of one request ask for (memcached's `struct _meta_flags`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct MetaFlags {
    /// `b`: the key is base64; it has been decoded.
    base64: bool,
    /// `q`
    quiet: bool,
    /// `v`
    value: bool,
    /// `u`: don't count the read as an access.
    no_bump: bool,
    /// `h`, `l`, `T`, `N` or `R`: memcached locks the item and bumps it after the reply.
    locked: bool,
    /// `N<ttl>`
    vivify: Option<i32>,
    /// `T<ttl>`
    ttl: Option<i32>,
    /// `R<ttl>`
    recache: Option<i32>,
    /// `F<flags>`
    client_flags: u32,
    /// `C<cas>`
    cas: Option<u64>,
    /// `M<mode>`
    mode: Option<u8>,
    /// `J<initial>`
    initial: u64,
    /// `D<delta>`
    delta: Option<u64>,
    /// `I`
    invalidate: bool,
}

/// memcached's `_meta_flag_preparse`: every flag token is checked before anything runs. An
/// unknown or repeated flag fails at once; a bad argument is remembered and parsing goes on, so
/// the last bad argument names the error. `b` decodes `key` in place.
fn preparse(key: &mut Cow<'_, [u8]>, flags: &[&[u8]]) -> Result<MetaFlags, &'static [u8]> {
    let mut f = MetaFlags::default();
    let mut seen = [false; 128];
    let mut error: Option<&'static [u8]> = None;
    let mut has_error = false;
    let mut bad = |msg: Option<&'static [u8]>| {
        has_error = true;
        if msg.is_some() {
            error = msg;
        }
    };
    for t in flags {
        let o = t[0];
        if o >= 127 || seen[o as usize] {
            return Err(DUPLICATE_FLAG);
        }
        seen[o as usize] = true;
        let arg = &t[1..];
        match o {
            b'b' => {
                f.base64 = true;
                match base64_decode(key) {
                    Some(k) => *key = Cow::Owned(k),
                    None => {
                        *key = Cow::Borrowed(&[]);
                        bad(Some(BAD_KEY_ENCODING));
                    }
                }
            }
            b'N' | b'T' | b'R' => {
                f.locked = true;
                match safe_strtol(arg) {
                    Some(v) if o == b'N' => f.vivify = Some(v),
                    Some(v) if o == b'T' => f.ttl = Some(v),
                    Some(v) => f.recache = Some(v),
                    None => bad(Some(BAD_TOKEN)),
                }
            }
            b'l' | b'h' => f.locked = true,
            b'O' | b'P' | b'L' | b'k' | b's' | b't' | b'c' | b'f' => {}
            b'v' => f.value = true,
            b'u' => f.no_bump = true,
            b'q' => f.quiet = true,
            // memcached sets no message for a bad F: the default (or an earlier one) is shown.
            b'F' => match safe_strtoul(arg) {
                Some(v) => f.client_flags = v,
                None => bad(None),
            },
            b'C' => match safe_strtoull(arg) {
                Some(v) => f.cas = Some(v),
                None => bad(Some(BAD_TOKEN)),
            },
            b'M' => {
                if t.len() != 2 {
                    bad(Some(BAD_M_LENGTH));
                } else {
                    f.mode = Some(t[1]);
                }
            }
            b'J' => match safe_strtoull(arg) {
                Some(v) => f.initial = v,
                None => bad(Some(BAD_INITIAL)),
            },
            b'D' => match safe_strtoull(arg) {
                Some(v) => f.delta = Some(v),
                None => bad(Some(BAD_DELTA)),
            },
            b'I' => f.invalidate = true,
            _ => return Err(INVALID_FLAG),
        }
    }
    if has_error {
        Err(error.unwrap_or(BAD_FORMAT))
    } else {
        Ok(f)
    }
}

/// memcached's token count for a meta command: the command, `args`, and a terminal token.
fn ntokens(args: &[&[u8]]) -> usize {
    args.len() + 2
}

fn opaque_ok(t: &[u8]) -> bool {
    t.len() <= MFLAG_MAX_OPAQUE_LENGTH
}

fn push_opaque(out: &mut Vec<u8>, t: &[u8]) {
    out.push(b' ');
    out.extend_from_slice(t);
}

/// Echoes `O` and `k` (all a miss or a failure shows); `Err` when an opaque is too long.
fn echo_opaque_and_key(
    out: &mut Vec<u8>,
    flags: &[&[u8]],
    key: &[u8],
    binary: bool,
) -> Result<(), &'static [u8]> {
    for t in flags {
        match t[0] {
            b'O' if !opaque_ok(t) => return Err(OPAQUE_TOO_LONG),
            b'O' => push_opaque(out, t),
            b'k' => push_key(out, key, binary),
            _ => {}
        }
    }
    Ok(())
}

/// Replaces whatever was written since `start` with an error line.
fn fail(out: &mut Vec<u8>, start: usize, msg: &[u8]) {
    out.truncate(start);
    out.extend_from_slice(msg);
}

/// What `t` prints: the seconds left, or `-1` without a deadline.
fn push_ttl(out: &mut Vec<u8>, e: &MetaEntry<'_>, engine: &Engine) {
    match shown_ttl(engine, e) {
        Some(secs) => push_num(out, secs),
        None => out.extend_from_slice(b"-1"),
    }
}

// ---------------------------------------------------------------------------------------------
// mg

/// The checks every keyed meta command but `ms` makes first, in memcached's order: a key, its
/// length, the number of flags, then the flags themselves. `too_many` is the command's own line
/// for too many flags; `bad_flag`, if given, replaces the flag parser's message.
fn parse_request<'a>(
    args: &[&'a [u8]],
    too_many: &'static [u8],
    bad_flag: Option<&'static [u8]>,
) -> Result<(Cow<'a, [u8]>, MetaFlags), &'static [u8]> {
    if args.is_empty() {
        return Err(ERROR);
    }
    if args[0].len() > KEY_MAX_LENGTH {
        return Err(BAD_FORMAT);
    }
    if ntokens(args) > MFLAG_MAX_OPT_LENGTH {
        return Err(too_many);
    }
    let mut key = Cow::Borrowed(args[0]);
    let f = preparse(&mut key, &args[1..]).map_err(|msg| bad_flag.unwrap_or(msg))?;
    Ok((key, f))
}

fn mget(args: &[&[u8]], engine: &Engine, out: &mut Vec<u8>) {
    let (key, f) = match parse_request(args, MG_TOO_MANY_FLAGS, None) {
        Ok(parsed) => parsed,
        Err(msg) => return out.extend_from_slice(msg),
    };
    let tokens = &args[1..];
    let opts = mg_opts(f.ttl.is_some(), f.no_bump, f.vivify.is_some(), f.base64);
    let start = out.len();
    let hit = engine.meta_get(&key, opts, |e| {
        mget_hit(e, &f, tokens, engine, out).inspect_err(|_| {
            // memcached bails out before its delayed bump.
            if f.locked {
                e.bump = false;
            }
        })
    });
    match hit {
        Some(Ok(())) => {}
        Some(Err(msg)) => fail(out, start, msg),
        None => {
            out.extend_from_slice(b"EN");
            if let Err(msg) = echo_opaque_and_key(out, tokens, &key, f.base64) {
                return fail(out, start, msg);
            }
            if f.quiet {
                out.truncate(start);
            } else {
                out.extend_from_slice(b"\r\n");
            }
        }
    }
}

/// The reply to an `mg` that found (or vivified) the entry, flags in request order.
fn mget_hit(
    e: &mut MetaEntry<'_>,
    f: &MetaFlags,
    tokens: &[&[u8]],
    engine: &Engine,
    out: &mut Vec<u8>,
) -> Result<(), &'static [u8]> {
    let before = e.state();
    let mut won = false;
    let value = e.value();
    if f.value {
        out.extend_from_slice(b"VA ");
        push_num(out, value.len() as u64);
    } else {
        out.extend_from_slice(b"HD");
    }
    for t in tokens {
        match t[0] {
            b'T' => e.set_ttl(exptime(f.ttl)),
            b'N' if e.created => {
                e.set_ttl(exptime(f.vivify));
                won = true;
            }
            b'R' if !before.win_sent && !e.created && under_recache(e, f.recache.unwrap_or(0)) => {
                won = true;
            }
            b's' => {
                out.extend_from_slice(b" s");
                push_num(out, value.len() as u64);
            }
            b't' => {
                out.extend_from_slice(b" t");
                push_ttl(out, e, engine);
            }
            b'c' => {
                out.extend_from_slice(b" c");
                push_num(out, e.cas());
            }
            b'f' => {
                out.extend_from_slice(b" f");
                push_num(out, u64::from(e.flags()));
            }
            b'l' => {
                out.extend_from_slice(b" l");
                push_num(out, u64::from(before.idle_secs));
            }
            b'h' => out.extend_from_slice(if before.fetched { b" h1" } else { b" h0" }),
            b'O' if !opaque_ok(t) => return Err(OPAQUE_TOO_LONG),
            b'O' => push_opaque(out, t),
            b'k' => push_key(out, e.key(), before.binary_key),
            _ => {}
        }
    }
    let w = settle_win(e, before, won);
    for (on, flag) in [(w.z, b" Z"), (w.x, b" X"), (w.w, b" W")] {
        if on {
            out.extend_from_slice(flag);
        }
    }
    out.extend_from_slice(b"\r\n");
    if f.value {
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    Ok(())
}

/// A `T`, `N` or `R` argument as a lifetime (absent means 0).
fn exptime(v: Option<i32>) -> Ttl {
    ttl_from_exptime(v.map_or(0, i64::from))
}

// ---------------------------------------------------------------------------------------------
// ms

fn mset(args: &[&[u8]], engine: &Engine, out: &mut Vec<u8>) -> Outcome {
    if args.is_empty() {
        out.extend_from_slice(ERROR);
        return Outcome::Done;
    }
    // Errors before the length is known leave the data block to be read as a command.
    if args[0].len() > KEY_MAX_LENGTH || args.len() == 1 {
        out.extend_from_slice(BAD_FORMAT);
        return Outcome::Done;
    }
    if ntokens(args) > MFLAG_MAX_OPT_LENGTH {
        out.extend_from_slice(TOO_MANY_FLAGS);
        return Outcome::Done;
    }
    let len = match safe_strtol(args[1]) {
        Some(v) if (0..=MAX_DECLARED_VALUE_LEN).contains(&i64::from(v)) => v as usize,
        _ => {
            out.extend_from_slice(BAD_FORMAT);
            return Outcome::Done;
        }
    };
    // From here on a refused command swallows its data block.
    let refuse = |out: &mut Vec<u8>, msg: &[u8]| {
        out.extend_from_slice(msg);
        Outcome::Swallow(len + 2)
    };
    let tokens = &args[2..];
    let mut key = Cow::Borrowed(args[0]);
    let f = match preparse(&mut key, tokens) {
        Ok(f) => f,
        Err(msg) => return refuse(out, msg),
    };
    let mut echo = Vec::new();
    let mut opaque_error = false;
    for t in tokens {
        match t[0] {
            b'O' if !opaque_ok(t) => opaque_error = true,
            b'O' => {
                echo.push(b'O');
                echo.push(t.len() as u8);
                echo.extend_from_slice(t);
            }
            b'k' | b'c' => echo.push(t[0]),
            _ => {}
        }
    }
    let mode = match f.mode {
        None | Some(b'S') => StoreMode::Set,
        Some(b'E') => StoreMode::Add,
        Some(b'A') => StoreMode::Append,
        Some(b'P') => StoreMode::Prepend,
        Some(b'R') => StoreMode::Replace,
        Some(_) => return refuse(out, BAD_MS_MODE),
    };
    if opaque_error {
        return refuse(out, OPAQUE_TOO_LONG);
    }
    if let Err(fail) = engine.meta_admit(&key, len, f.client_flags, true) {
        return refuse(out, failure_line(fail));
    }
    Outcome::Read {
        len,
        pending: PendingSet {
            key: key.into_owned(),
            binary: f.base64,
            flags: f.client_flags,
            ttl: exptime(f.ttl),
            mode,
            cas: ms_cas(mode, f.cas),
            invalidate: f.invalidate,
            quiet: f.quiet,
            echo,
        },
    }
}

/// The data block of an `ms` arrived (`None`: it did not end in `\r\n`).
pub(crate) fn complete_set(
    p: &PendingSet,
    data: Option<&[u8]>,
    engine: &Engine,
    out: &mut Vec<u8>,
) {
    let Some(value) = data else {
        return out.extend_from_slice(BAD_CHUNK);
    };
    let req = StoreRequest {
        cas: p.cas,
        invalidate: p.invalidate,
        binary_key: p.binary,
        ..StoreRequest::new(p.mode, &p.key, value)
            .flags(p.flags)
            .ttl(p.ttl)
    };
    let (code, cas): (&[u8], u64) = match engine.store(req) {
        Ok(StoreOutcome::Stored(cas)) => {
            if p.quiet {
                return;
            }
            (b"HD", cas)
        }
        Ok(StoreOutcome::NotStored) => (b"NS", 0),
        Ok(StoreOutcome::Exists) => (b"EX", 0),
        Ok(StoreOutcome::NotFound) => (b"NF", 0),
        Ok(StoreOutcome::NoRoom) => return out.extend_from_slice(NO_MEMORY),
        Err(f) => return out.extend_from_slice(failure_line(f)),
    };
    out.extend_from_slice(code);
    let mut i = 0;
    while i < p.echo.len() {
        match p.echo[i] {
            b'O' => {
                let n = p.echo[i + 1] as usize;
                push_opaque(out, &p.echo[i + 2..i + 2 + n]);
                i += 2 + n;
                continue;
            }
            b'k' => push_key(out, &p.key, p.binary),
            _ => {
                out.extend_from_slice(b" c");
                push_num(out, cas);
            }
        }
        i += 1;
    }
    out.extend_from_slice(b"\r\n");
}

// ---------------------------------------------------------------------------------------------
// md

fn mdelete(args: &[&[u8]], engine: &Engine, out: &mut Vec<u8>) {
    // md and ma report every flag error as "invalid or duplicate flag".
    let (key, f) = match parse_request(args, TOO_MANY_FLAGS, Some(INVALID_OR_DUPLICATE)) {
        Ok(parsed) => parsed,
        Err(msg) => return out.extend_from_slice(msg),
    };
    let tokens = &args[1..];
    let mut echo = Vec::new();
    if let Err(msg) = echo_opaque_and_key(&mut echo, tokens, &key, f.base64) {
        return out.extend_from_slice(msg);
    }
    let req = DeleteRequest {
        cas: f.cas,
        invalidate: f.invalidate,
        ttl: f.ttl.filter(|_| f.invalidate).map(|t| exptime(Some(t))),
        mismatch_is_miss: true,
    };
    let code: &[u8] = match engine.meta_delete(&key, req) {
        Ok(DeleteOutcome::Deleted | DeleteOutcome::Invalidated) if f.quiet => return,
        Ok(DeleteOutcome::Deleted | DeleteOutcome::Invalidated) => b"HD",
        Ok(DeleteOutcome::NotFound) => b"NF",
        Ok(DeleteOutcome::Exists) => b"EX",
        Err(fail) => return out.extend_from_slice(failure_line(fail)),
    };
    out.extend_from_slice(code);
    out.extend_from_slice(&echo);
    out.extend_from_slice(b"\r\n");
}

// ---------------------------------------------------------------------------------------------
// ma

fn marith(args: &[&[u8]], engine: &Engine, out: &mut Vec<u8>) {
    // md and ma report every flag error as "invalid or duplicate flag".
    let (key, f) = match parse_request(args, TOO_MANY_FLAGS, Some(INVALID_OR_DUPLICATE)) {
        Ok(parsed) => parsed,
        Err(msg) => return out.extend_from_slice(msg),
    };
    let tokens = &args[1..];
    let delta = f.delta.unwrap_or(1);
    let delta = match f.mode {
        None | Some(b'I' | b'+') => Delta::Incr(delta),
        Some(b'D' | b'-') => Delta::Decr(delta),
        Some(_) => return out.extend_from_slice(BAD_MA_MODE),
    };
    let req = DeltaRequest {
        delta,
        cas: f.cas,
        vivify: f.vivify.map(|_| f.initial),
        binary_key: f.base64,
    };
    let start = out.len();
    let res = engine.delta(&key, req, |e, n| {
        marith_hit(e, n, &f, tokens, &key, engine, out)
    });
    let code: &[u8] = match res {
        Ok(DeltaOutcome::Done(Ok(()))) => return,
        Ok(DeltaOutcome::Done(Err(msg))) => return fail(out, start, msg),
        Ok(DeltaOutcome::NonNumeric) => return out.extend_from_slice(NON_NUMERIC),
        Ok(DeltaOutcome::NotFound) => b"NF",
        Ok(DeltaOutcome::Exists) => b"EX",
        Err(fail) => return out.extend_from_slice(failure_line(fail)),
    };
    out.extend_from_slice(code);
    if let Err(msg) = echo_opaque_and_key(out, tokens, &key, f.base64) {
        return fail(out, start, msg);
    }
    out.extend_from_slice(b"\r\n");
}

/// The reply to an `ma` that changed (or vivified) the number `n`.
fn marith_hit(
    e: &mut MetaEntry<'_>,
    n: u64,
    f: &MetaFlags,
    tokens: &[&[u8]],
    key: &[u8],
    engine: &Engine,
    out: &mut Vec<u8>,
) -> Result<(), &'static [u8]> {
    let start = out.len();
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(n).as_bytes();
    if f.value {
        out.extend_from_slice(b"VA ");
        push_num(out, digits.len() as u64);
    } else {
        out.extend_from_slice(b"HD");
    }
    for t in tokens {
        match t[0] {
            b'c' => {
                out.extend_from_slice(b" c");
                push_num(out, e.cas());
            }
            b't' => {
                out.extend_from_slice(b" t");
                push_ttl(out, e, engine);
            }
            b'T' => e.set_ttl(exptime(f.ttl)),
            b'N' if e.created => e.set_ttl(exptime(f.vivify)),
            b'O' if !opaque_ok(t) => return Err(OPAQUE_TOO_LONG),
            b'O' => push_opaque(out, t),
            b'k' => push_key(out, key, f.base64),
            _ => {}
        }
    }
    if f.value {
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(digits);
    }
    out.extend_from_slice(b"\r\n");
    // Quiet hides a nominal reply, but memcached still shows the one that vivified.
    if f.quiet && !e.created {
        out.truncate(start);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// me

/// `me <key> [b]`: memcached's debug line for one item.
fn mdebug(args: &[&[u8]], engine: &Engine, out: &mut Vec<u8>) {
    if args.is_empty() || args[0].len() > KEY_MAX_LENGTH {
        return out.extend_from_slice(BAD_FORMAT);
    }
    let mut key = Cow::Borrowed(args[0]);
    if args.get(1) == Some(&&b"b"[..]) {
        match base64_decode(args[0]) {
            Some(k) => key = Cow::Owned(k),
            None => return out.extend_from_slice(BAD_FORMAT),
        }
    }
    let Some(d) = engine.meta_debug(&key) else {
        return out.extend_from_slice(b"EN\r\n");
    };
    out.extend_from_slice(b"ME ");
    if d.state.binary_key {
        base64_encode(&key, out);
    } else {
        out.extend_from_slice(&key);
    }
    // memcached prints `current_time - exptime`: minus the seconds left.
    out.extend_from_slice(b" exp=");
    match d.exp {
        None => out.extend_from_slice(b"-1"),
        Some(secs) => {
            out.push(b'-');
            push_num(out, secs);
        }
    }
    out.extend_from_slice(b" la=");
    push_num(out, u64::from(d.state.idle_secs));
    out.extend_from_slice(b" cas=");
    push_num(out, d.cas);
    out.extend_from_slice(if d.state.fetched {
        b" fetch=yes cls="
    } else {
        b" fetch=no cls="
    });
    push_num(out, d.class as u64);
    out.extend_from_slice(b" size=");
    push_num(out, d.size as u64);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
#[path = "meta_tests.rs"]
mod tests;
