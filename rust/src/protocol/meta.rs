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
pub(crate) fn complete_set(p: PendingSet, data: Option<&[u8]>, engine: &Engine, out: &mut Vec<u8>) {
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
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::cache::{Cache, CacheConfig, ManualClock};
    use crate::engine::EngineConfig;
    use crate::protocol::Session;
    use crate::tiered::Tiered;

    const T0: u64 = 1_700_000_000_000;

    struct Conn {
        session: Session,
        clock: Arc<ManualClock>,
    }

    impl Conn {
        fn new() -> Conn {
            Conn::with_item_size(crate::engine::DEFAULT_MAX_ITEM_SIZE)
        }

        fn with_item_size(max_item_size: usize) -> Conn {
            let clock = Arc::new(ManualClock::new(T0));
            let cfg = CacheConfig {
                shards: 1,
                cleanup_interval_ms: 0,
                ..Default::default()
            };
            let cache = Tiered::memory(Cache::with_clock(cfg, clock.clone()).unwrap());
            let engine = Engine::new(
                cache,
                EngineConfig {
                    max_item_size,
                    ..Default::default()
                },
            );
            Conn {
                session: Session::new(Arc::new(engine)),
                clock,
            }
        }

        /// Sends `data` and returns the reply as a (lossy) string for readable assertions.
        fn send(&mut self, data: &str) -> String {
            let mut out = Vec::new();
            assert!(!self.session.feed(data.as_bytes(), &mut out), "closed");
            String::from_utf8_lossy(&out).into_owned()
        }

        fn cache(&self) -> &Tiered {
            self.session.engine().cache()
        }
    }

    /// Runs `command` directly, for the outcomes the session hides.
    fn outcome(line: &[u8]) -> (Outcome, Vec<u8>) {
        let engine = Engine::new(
            Tiered::memory(Cache::new(CacheConfig::default()).unwrap()),
            EngineConfig::default(),
        );
        let toks: Vec<&[u8]> = super::super::tokens::split(line).collect();
        let mut out = Vec::new();
        let o = command(toks[0][1], &toks[1..], &engine, &mut out);
        engine.shared_cache().stop_background();
        (o, out)
    }

    // -- parsers --------------------------------------------------------------------------

    #[test]
    fn preparse_happy_path() {
        let mut key = Cow::Borrowed(&b"Zm9v"[..]);
        let toks: Vec<&[u8]> = vec![
            b"b", b"q", b"v", b"u", b"N30", b"T-1", b"R5", b"F7", b"C9", b"ME", b"J3", b"D4", b"I",
            b"Oxyz", b"k", b"s", b"t", b"c", b"f", b"h", b"l", b"P", b"L",
        ];
        let f = preparse(&mut key, &toks).unwrap();
        assert_eq!(&key[..], b"foo");
        assert_eq!(
            f,
            MetaFlags {
                base64: true,
                quiet: true,
                value: true,
                no_bump: true,
                locked: true,
                vivify: Some(30),
                ttl: Some(-1),
                recache: Some(5),
                client_flags: 7,
                cas: Some(9),
                mode: Some(b'E'),
                initial: 3,
                delta: Some(4),
                invalidate: true,
            }
        );
        let mut key = Cow::Borrowed(&b"k"[..]);
        let f = preparse(&mut key, &[]).unwrap();
        assert_eq!(f, MetaFlags::default());
        assert!(matches!(key, Cow::Borrowed(b"k")));
    }

    #[test]
    fn preparse_errors() {
        let err = |toks: &[&[u8]]| {
            let mut key = Cow::Borrowed(&b"foo"[..]);
            preparse(&mut key, toks).unwrap_err()
        };
        assert_eq!(err(&[b"v", b"v"]), DUPLICATE_FLAG);
        assert_eq!(err(&[b"O1", b"Oxyz"]), DUPLICATE_FLAG);
        assert_eq!(err(&[b"\x7f"]), DUPLICATE_FLAG);
        assert_eq!(err(&[b"\xc3\xa9"]), DUPLICATE_FLAG);
        for t in [&b"!"[..], b"x", b"E1", b"S2", b"a", b"z", b"Z"] {
            assert_eq!(err(&[t]), INVALID_FLAG, "{t:?}");
        }
        // An invalid flag stops at once, even after a bad argument.
        assert_eq!(err(&[b"Tx", b"!"]), INVALID_FLAG);
        assert_eq!(err(&[b"b"]), BAD_KEY_ENCODING);
        assert_eq!(err(&[b"N"]), BAD_TOKEN);
        assert_eq!(err(&[b"T5x"]), BAD_TOKEN);
        assert_eq!(err(&[b"R"]), BAD_TOKEN);
        assert_eq!(err(&[b"C-1"]), BAD_TOKEN);
        assert_eq!(err(&[b"M"]), BAD_M_LENGTH);
        assert_eq!(err(&[b"MEE"]), BAD_M_LENGTH);
        assert_eq!(err(&[b"J"]), BAD_INITIAL);
        assert_eq!(err(&[b"Dx"]), BAD_DELTA);
        // A bad F has no message of its own; the last message set wins.
        assert_eq!(err(&[b"F"]), BAD_FORMAT);
        assert_eq!(err(&[b"F-1"]), BAD_FORMAT);
        assert_eq!(err(&[b"T", b"F"]), BAD_TOKEN);
        assert_eq!(err(&[b"F", b"T"]), BAD_TOKEN);
        assert_eq!(err(&[b"Jx", b"Dx"]), BAD_DELTA);
        assert_eq!(err(&[b"b", b"Jx"]), BAD_INITIAL);
    }

    #[test]
    fn a_nul_byte_ends_the_line() {
        let args: Vec<&[u8]> = vec![b"k", b"v\x00x", b"s"];
        assert_eq!(&cut_at_nul(&args)[..], &[&b"k"[..], b"v"]);
        let args: Vec<&[u8]> = vec![b"k", b"\x00v", b"s"];
        assert_eq!(&cut_at_nul(&args)[..], &[&b"k"[..]]);
        let args: Vec<&[u8]> = vec![b"k", b"v"];
        assert!(matches!(cut_at_nul(&args), Cow::Borrowed(_)));
    }

    // -- commands ---------------------------------------------------------------------------

    #[test]
    fn mn_and_unknown() {
        let mut c = Conn::new();
        assert_eq!(c.send("mn\r\nmn x y\r\nmz k\r\n"), "MN\r\nMN\r\nERROR\r\n");
    }

    #[test]
    fn mg_flags_in_request_order() {
        let mut c = Conn::new();
        assert_eq!(c.send("mg k v s\r\n"), "EN\r\n");
        assert_eq!(c.send("mg k s v k Oab q t\r\n"), "");
        assert_eq!(c.send("mg k s v k Oab t\r\n"), "EN kk Oab\r\n");
        c.send("ms k 2 F9 T100\r\nhi\r\n");
        c.clock.advance(10_500);
        assert_eq!(
            c.send("mg k s v f t k Oab c\r\n"),
            "VA 2 s2 f9 t90 kk Oab c1\r\nhi\r\n"
        );
        assert_eq!(c.send("mg k Oab k f q\r\n"), "HD Oab kk f9\r\n");
        assert_eq!(c.send("mg k O\r\n"), "HD O\r\n");
        assert_eq!(
            c.send("mg k O12345678901234567890123456789012\r\n"),
            "CLIENT_ERROR opaque token too long\r\n"
        );
        assert_eq!(
            c.send("mg nokey q O12345678901234567890123456789012\r\n"),
            "CLIENT_ERROR opaque token too long\r\n"
        );
    }

    #[test]
    fn mg_hit_and_last_access() {
        let mut c = Conn::new();
        c.send("ms k 1\r\nx\r\n");
        c.clock.advance(4_000);
        assert_eq!(c.send("mg k h l u\r\n"), "HD h0 l4\r\n");
        assert_eq!(c.send("mg k h l\r\n"), "HD h0 l4\r\n");
        c.clock.advance(2_000);
        assert_eq!(c.send("mg k l h\r\n"), "HD l2 h1\r\n");
        assert_eq!(c.send("mg k l h\r\n"), "HD l0 h1\r\n");
        // A failed request skips the delayed bump, as memcached's does.
        c.send("ms j 1\r\nx\r\n");
        c.send("mg j h O12345678901234567890123456789012\r\n");
        assert_eq!(c.send("mg j h\r\n"), "HD h0\r\n");
    }

    #[test]
    fn mg_ttl_updates_in_order() {
        let mut c = Conn::new();
        c.send("ms k 1\r\nx\r\n");
        assert_eq!(c.send("mg k t T300 \r\n"), "HD t-1\r\n");
        assert_eq!(c.send("mg k T30 t\r\n"), "HD t30\r\n");
        c.clock.advance(1);
        assert_eq!(c.send("mg k t\r\n"), "HD t30\r\n");
        c.clock.advance(999);
        assert_eq!(c.send("mg k t\r\n"), "HD t29\r\n");
        assert_eq!(c.send("mg k T0 t\r\n"), "HD t-1\r\n");
        // An absolute time.
        let at = T0 / 1000 + 1_000;
        assert_eq!(c.send(&format!("mg k T{at} t\r\n")), "HD t999\r\n");
        // An expired TTL prints memcached's wrapped number, then the item is gone.
        let reply = c.send("mg k T-1 t\r\n");
        let t: u64 = reply["HD t".len()..reply.len() - 2].parse().unwrap();
        assert!(t > u64::from(u32::MAX) - 1_000, "{reply}");
        assert_eq!(c.send("mg k\r\n"), "EN\r\n");
        let st = c.cache().stats().counters;
        assert_eq!((st.touch_hits, st.touch_misses), (5, 0));
    }

    #[test]
    fn mg_vivify_and_win_tokens() {
        let mut c = Conn::new();
        assert_eq!(c.send("mg k N30 s t v\r\n"), "VA 0 s0 t30 W\r\n\r\n");
        assert_eq!(c.send("mg k N30 s t v\r\n"), "VA 0 s0 t30 Z\r\n\r\n");
        assert_eq!(c.send("mg k t N99 q\r\n"), "HD t30 Z\r\n");
        // The vivified reply shows even in quiet mode; t before N shows no deadline yet.
        assert_eq!(
            c.send("mg j t N10 t q\r\n"),
            "CLIENT_ERROR duplicate flag\r\n"
        );
        assert_eq!(c.send("mg j t N10 q\r\n"), "HD t-1 W\r\n");
        assert_eq!(c.send("mg j t\r\n"), "HD t10 Z\r\n");
        // A new value clears the token.
        c.send("ms k 1\r\nx\r\n");
        assert_eq!(c.send("mg k v\r\n"), "VA 1\r\nx\r\n");
        // b: a vivified binary key shows base64-encoded (memcached forgets; see module docs).
        assert_eq!(c.send("mg AAEC b N0 k\r\n"), "HD kAAEC b W\r\n");
        assert_eq!(c.send("mg AAEC b k\r\n"), "HD kAAEC b Z\r\n");
    }

    #[test]
    fn mg_recache() {
        let mut c = Conn::new();
        c.send("ms k 1 T30\r\nx\r\n");
        assert_eq!(c.send("mg k R30\r\n"), "HD\r\n");
        c.clock.advance(500);
        assert_eq!(c.send("mg k R30\r\n"), "HD\r\n");
        assert_eq!(c.send("mg k R0\r\nmg k R-1\r\n"), "HD\r\nHD\r\n");
        c.clock.advance(500);
        assert_eq!(c.send("mg k R30\r\n"), "HD W\r\n");
        assert_eq!(c.send("mg k R30\r\n"), "HD Z\r\n");
        c.send("ms j 1\r\nx\r\n");
        assert_eq!(c.send("mg j R30\r\n"), "HD\r\n");
        // R sees a T that comes before it.
        assert_eq!(c.send("mg j R30 T10\r\n"), "HD\r\n");
        c.send("ms j 1\r\nx\r\n");
        assert_eq!(c.send("mg j T10 R30\r\n"), "HD W\r\n");
        // An absolute threshold.
        c.send("ms i 1 T30\r\nx\r\n");
        let at = T0 / 1000 + 60;
        assert_eq!(c.send(&format!("mg i R{at}\r\n")), "HD W\r\n");
    }

    #[test]
    fn ms_modes_and_replies() {
        let mut c = Conn::new();
        assert_eq!(c.send("ms k 2 c k Ox\r\nhi\r\n"), "HD c1 kk Ox\r\n");
        assert_eq!(c.send("ms k 2 q\r\nho\r\nmn\r\n"), "MN\r\n");
        assert_eq!(c.send("ms k 1 ME q c\r\nx\r\n"), "NS c0\r\n");
        assert_eq!(c.send("ms j 1 MR q k\r\nx\r\n"), "NS kj\r\n");
        assert_eq!(
            c.send("ms j 1 MA\r\nx\r\nms j 1 MP\r\nx\r\n"),
            "NS\r\nNS\r\n"
        );
        assert_eq!(
            c.send("ms k 1 MA\r\na\r\nms k 1 MP\r\nb\r\n"),
            "HD\r\nHD\r\n"
        );
        assert_eq!(c.send("ms k 1 MR F3\r\nr\r\n"), "HD\r\n");
        assert_eq!(c.send("mg k v f\r\n"), "VA 1 f3\r\nr\r\n");
        assert_eq!(c.send("ms k 1 MS T-1\r\ns\r\nmg k\r\n"), "HD\r\nEN\r\n");
        assert_eq!(
            c.send("ms k 2 F4294967297\r\nhi\r\nmg k f\r\n"),
            "HD\r\nHD f1\r\n"
        );
        // Append keeps the stored flags.
        assert_eq!(
            c.send("ms k 1 MA F7\r\n!\r\nmg k f v\r\n"),
            "HD\r\nVA 3 f1\r\nhi!\r\n"
        );
        // N does not vivify an append in 1.6.18.
        assert_eq!(c.send("ms n 1 MA N0\r\nx\r\n"), "NS\r\n");
        assert_eq!(
            c.send("ms k 2\r\nhiX\r\n"),
            "CLIENT_ERROR bad data chunk\r\nERROR\r\n"
        );
        assert_eq!(
            c.send("ms k 2 q\r\nhiXY\r\n"),
            "CLIENT_ERROR bad data chunk\r\nERROR\r\n"
        );
    }

    #[test]
    fn ms_cas() {
        let mut c = Conn::new();
        assert_eq!(c.send("ms k 1 C5 q\r\nx\r\n"), "NF\r\n");
        assert_eq!(c.send("ms k 1 MR C5\r\nx\r\n"), "NF\r\n");
        assert_eq!(c.send("ms k 1 ME C5 c\r\nx\r\n"), "HD c1\r\n");
        assert_eq!(c.send("ms k 1 C2 c\r\ny\r\n"), "EX c0\r\n");
        assert_eq!(c.send("ms k 1 C0\r\ny\r\n"), "EX\r\n");
        assert_eq!(c.send("ms k 1 C1 c\r\ny\r\n"), "HD c2\r\n");
        assert_eq!(c.send("ms k 1 MA C1\r\nz\r\n"), "EX\r\n");
        assert_eq!(c.send("ms k 1 MA C2 c\r\nz\r\n"), "HD c3\r\n");
        assert_eq!(c.send("ms k 1 MP C0 c\r\na\r\n"), "HD c4\r\n");
        assert_eq!(c.send("mg k v\r\n"), "VA 3\r\nayz\r\n");
        // I with an older CAS stores the value as stale; the next reader wins.
        assert_eq!(c.send("ms k 1 I C3 c\r\ns\r\n"), "HD c5\r\n");
        assert_eq!(c.send("mg k v\r\n"), "VA 1 X W\r\ns\r\n");
        assert_eq!(c.send("ms k 1 I C9\r\nn\r\n"), "EX\r\n");
        // A matching CAS stores a fresh value.
        assert_eq!(
            c.send("ms k 1 I C5\r\nf\r\nmg k v\r\n"),
            "HD\r\nVA 1\r\nf\r\n"
        );
    }

    #[test]
    fn ms_keys() {
        let mut c = Conn::new();
        assert_eq!(c.send("ms AAEC 2 b k\r\nhi\r\n"), "HD kAAEC b\r\n");
        assert_eq!(c.send("mg AAEC b k v\r\n"), "VA 2 kAAEC b\r\nhi\r\n");
        assert_eq!(c.send("mg A-A_EC b s\r\n"), "HD s2\r\n");
        c.send("ms foo 1\r\nx\r\n");
        assert_eq!(c.send("mg Zm9v b k\r\n"), "HD kfoo\r\n");
        let k250 = "k".repeat(250);
        assert_eq!(c.send(&format!("ms {k250} 1\r\nx\r\n")), "HD\r\n");
        assert_eq!(
            c.send(&format!("ms {k250}k 1\r\nx\r\n")),
            "CLIENT_ERROR bad command line format\r\nERROR\r\n"
        );
    }

    #[test]
    fn ms_outcomes() {
        let (o, out) = outcome(b"ms k 5 !");
        assert!(matches!(o, Outcome::Swallow(7)));
        assert_eq!(out, INVALID_FLAG);
        let (o, out) = outcome(b"ms k 5 MX");
        assert!(matches!(o, Outcome::Swallow(7)));
        assert_eq!(out, BAD_MS_MODE);
        let (o, out) = outcome(b"ms k 5 O12345678901234567890123456789012");
        assert!(matches!(o, Outcome::Swallow(7)));
        assert_eq!(out, OPAQUE_TOO_LONG);
        for line in [&b"ms k"[..], b"ms k x", b"ms k -1", b"ms k 2147483646"] {
            let (o, out) = outcome(line);
            assert!(matches!(o, Outcome::Done));
            assert_eq!(out, BAD_FORMAT);
        }
        let (o, out) = outcome(b"ms k 4294967298 T5");
        let Outcome::Read { len: 2, pending } = o else {
            panic!()
        };
        assert!(out.is_empty());
        assert_eq!(pending.ttl, Ttl::After(5_000));
        // 16 flags fit (with the command, the key, the length and the terminal token: 20).
        let (o, out) = outcome(b"ms k 1 s t f h l k u P L R1 J1 D1 I O1 v F1");
        assert!(matches!(o, Outcome::Read { len: 1, .. }));
        assert!(out.is_empty());
        let (o, out) = outcome(b"ms k 1 s t f h l k u P L R1 J1 D1 I O1 v F1 q");
        assert!(matches!(o, Outcome::Done));
        assert_eq!(out, TOO_MANY_FLAGS);
    }

    #[test]
    fn ms_too_large() {
        let mut c = Conn::with_item_size(1024);
        let fits = "a".repeat(1024 - 60);
        assert_eq!(
            c.send(&format!("ms k {}\r\n{fits}\r\n", fits.len())),
            "HD\r\n"
        );
        let over = "a".repeat(1024 - 59);
        for mode in ["", " ME", " MR q", " MA"] {
            c.send("ms k 1\r\nx\r\n");
            assert_eq!(
                c.send(&format!("ms k {}{mode}\r\n{over}\r\nmg k\r\n", over.len())),
                "SERVER_ERROR object too large for cache\r\nEN\r\n",
                "{mode}"
            );
        }
        // Nonzero flags cost 4 bytes, as in memcached.
        let f = "a".repeat(1024 - 63);
        assert_eq!(
            c.send(&format!("ms k {} F1\r\n{f}\r\n", f.len())),
            "SERVER_ERROR object too large for cache\r\n"
        );
        // An append whose result would be too large is NS and keeps the old value.
        c.send("ms k 10\r\n0123456789\r\n");
        let tail = "a".repeat(1024 - 60 - 9);
        assert_eq!(
            c.send(&format!("ms k {} MA\r\n{tail}\r\nmg k s\r\n", tail.len())),
            "NS\r\nHD s10\r\n"
        );
        let st = c
            .session
            .engine()
            .counters
            .store_too_large
            .load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(st, 5);
    }

    #[test]
    fn md_replies() {
        let mut c = Conn::new();
        assert_eq!(c.send("md k\r\nmd k q k O1\r\n"), "NF\r\nNF kk O1\r\n");
        c.send("ms k 1\r\nx\r\n");
        assert_eq!(c.send("md k C99\r\nmd k C0 q\r\n"), "EX\r\nEX\r\n");
        assert_eq!(c.send("md k T30 k\r\nmg k\r\n"), "HD kk\r\nEN\r\n");
        c.send("ms k 1\r\nx\r\n");
        assert_eq!(c.send("md k q\r\nmn\r\n"), "MN\r\n");
        assert_eq!(
            c.send("md k !\r\nmd k k k\r\nmd k b\r\nmd k T\r\n"),
            "CLIENT_ERROR invalid or duplicate flag\r\n".repeat(4)
        );
        assert_eq!(
            c.send("md k O12345678901234567890123456789012\r\n"),
            "CLIENT_ERROR opaque token too long\r\n"
        );
        assert_eq!(c.send("md ZDk= b k\r\n"), "NF kZDk= b\r\n");
    }

    #[test]
    fn md_invalidate() {
        let mut c = Conn::new();
        c.send("ms k 1 c\r\nx\r\n");
        assert_eq!(c.send("md k I T30 q\r\nmn\r\n"), "MN\r\n");
        assert_eq!(c.send("mg k t c v\r\n"), "VA 1 t30 c2 X W\r\nx\r\n");
        assert_eq!(c.send("mg k\r\n"), "HD Z X\r\n");
        assert_eq!(c.send("md k I\r\nmg k\r\n"), "HD\r\nHD X W\r\n");
        assert_eq!(c.send("md k I T-1\r\nmg k\r\n"), "HD\r\nEN\r\n");
    }

    #[test]
    fn ma_replies() {
        let mut c = Conn::new();
        assert_eq!(c.send("ma n\r\nma n q k O1\r\n"), "NF\r\nNF kn O1\r\n");
        assert_eq!(c.send("ma n N0 J10 v\r\n"), "VA 2\r\n10\r\n");
        assert_eq!(c.send("ma n v\r\n"), "VA 2\r\n11\r\n");
        assert_eq!(c.send("ma n v q\r\nmn\r\n"), "MN\r\n");
        // The vivified reply shows even in quiet mode.
        assert_eq!(c.send("ma m N0 v q\r\n"), "VA 1\r\n0\r\n");
        assert_eq!(c.send("ma n MD D5 v\r\n"), "VA 1\r\n7\r\n");
        assert_eq!(c.send("mg n v\r\n"), "VA 2\r\n7 \r\n");
        assert_eq!(
            c.send("ma n M- D100 v\r\nma n M+ D3 v\r\n"),
            "VA 1\r\n0\r\nVA 1\r\n3\r\n"
        );
        assert_eq!(c.send("ma n MI v c k\r\n"), "VA 1 c8 kn\r\n4\r\n");
        assert_eq!(c.send("ma n C1\r\nma n C8 q\r\nmn\r\n"), "EX\r\nMN\r\n");
        assert_eq!(
            c.send("ma n MX\r\nma n M\r\nma n Dx\r\n"),
            "CLIENT_ERROR invalid mode for ma M token\r\n\
             CLIENT_ERROR invalid or duplicate flag\r\n\
             CLIENT_ERROR invalid or duplicate flag\r\n"
        );
        c.send("ms s 2\r\nab\r\nms e 0\r\n\r\n");
        assert_eq!(
            c.send("ma s q\r\nma e C1\r\n"),
            "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n".repeat(2)
        );
        assert_eq!(
            c.send("ma u N0 J18446744073709551615 v\r\nma u v\r\n"),
            "VA 20\r\n18446744073709551615\r\nVA 1\r\n0\r\n"
        );
        assert_eq!(c.send("ma AAEC b N0 k\r\n"), "HD kAAEC b\r\n");
        // The error comes after the change, as in memcached.
        assert_eq!(
            c.send("ma w N0 O12345678901234567890123456789012\r\nmg w v\r\n"),
            "CLIENT_ERROR opaque token too long\r\nVA 1\r\n0\r\n"
        );
    }

    #[test]
    fn ma_ttls() {
        let mut c = Conn::new();
        assert_eq!(
            c.send("ma n t N30 t\r\n"),
            "CLIENT_ERROR invalid or duplicate flag\r\n"
        );
        assert_eq!(c.send("ma n t N30 v\r\n"), "VA 1 t-1\r\n0\r\n");
        assert_eq!(c.send("ma n t T60\r\n"), "HD t30\r\n");
        assert_eq!(c.send("mg n t\r\n"), "HD t60\r\n");
        // T applies even when the number grows (memcached loses it then; see module docs).
        c.send("ms g 1\r\n9\r\n");
        assert_eq!(c.send("ma g T-1\r\nmg g\r\n"), "HD\r\nEN\r\n");
    }

    #[test]
    fn me_output() {
        let mut c = Conn::new();
        assert_eq!(c.send("me k\r\n"), "EN\r\n");
        assert_eq!(c.send("me\r\n"), "CLIENT_ERROR bad command line format\r\n");
        c.send("ms k 1 F1 T100\r\nx\r\n");
        c.clock.advance(3_000);
        assert_eq!(
            c.send("me k\r\n"),
            "ME k exp=-97 la=3 cas=1 fetch=no cls=1 size=65\r\n"
        );
        c.send("mg k\r\n");
        assert_eq!(
            c.send("me k x\r\n"),
            "ME k exp=-97 la=0 cas=1 fetch=yes cls=1 size=65\r\n"
        );
        c.send(&format!("ms e {}\r\n{}\r\n", 100, "a".repeat(100)));
        assert_eq!(
            c.send("me e\r\n"),
            "ME e exp=-1 la=0 cas=2 fetch=no cls=4 size=160\r\n"
        );
        c.send("ms AAEC 1 b\r\nx\r\n");
        assert_eq!(
            c.send("me AAEC b\r\n"),
            "ME AAEC exp=-1 la=0 cas=3 fetch=no cls=1 size=63\r\n"
        );
        assert_eq!(c.send("me AAEC\r\n"), "EN\r\n");
        assert_eq!(
            c.send("me AAE b\r\n"),
            "CLIENT_ERROR bad command line format\r\n"
        );
    }

    #[test]
    fn errors_and_limits() {
        let mut c = Conn::new();
        assert_eq!(c.send("mg\r\nms\r\nmd\r\nma\r\n"), "ERROR\r\n".repeat(4));
        let k251 = "k".repeat(251);
        for cmd in ["mg", "md", "ma", "me"] {
            assert_eq!(
                c.send(&format!("{cmd} {k251}\r\n")),
                "CLIENT_ERROR bad command line format\r\n"
            );
        }
        let flags17 = "s t f h k O1 q u v P L R9 F1 C1 MS J1 D1";
        c.send("ms k 1\r\nx\r\n");
        assert_eq!(
            c.send(&format!("mg k {flags17}\r\n")),
            "VA 1 s1 t-1 f0 h0 kk O1\r\nx\r\n"
        );
        assert_eq!(
            c.send(&format!("mg k {flags17} I\r\n")),
            "CLIENT_ERROR options flags are too long\r\n"
        );
        assert_eq!(
            c.send(&format!("ma k {flags17} I\r\n")),
            "CLIENT_ERROR options flags too long\r\n"
        );
        assert_eq!(c.send("mg k v\x00 s\r\n"), "VA 1\r\nx\r\n");
        assert_eq!(c.send("mg \x00k\r\n"), "ERROR\r\n");
    }
}
