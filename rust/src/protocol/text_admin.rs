//! The text protocol's commands on the server rather than on items: `stats` and its groups,
//! `flush_all`, `cache_memlimit`, `verbosity`, `shutdown`, `slabs` and `lru_crawler`. Each parses
//! its tokens with memcached's rules, calls the command layer and writes memcached's reply.

use percent_encoding::{percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::text::{push_num, ERROR};
use crate::cache::ItemInfo;
use crate::command::numbers::{safe_strtol, safe_strtoul};
use crate::command::{
    AutomoveOutcome, CrawlerOutcome, CrawlerSetting, FlushOutcome, MemlimitOutcome,
    ReassignOutcome, ShutdownOutcome, StatsGroup, MAX_CLASS_ID,
};
use crate::engine::Engine;

const BAD_FORMAT: &[u8] = b"CLIENT_ERROR bad command line format\r\n";
const BAD_EXPTIME: &[u8] = b"CLIENT_ERROR invalid exptime argument\r\n";
const OK: &[u8] = b"OK\r\n";

/// What a server command asks of the connection.
pub(crate) enum After {
    /// Read the next command.
    Continue,
    /// Close the connection (a `shutdown` that stops the server).
    Close,
}

/// Runs the server command `cmd` with `args` (the tokens after it) and writes its reply;
/// `None` if `cmd` is not one of them. `n` is memcached's token count (the command included).
pub(crate) fn command(
    engine: &Engine,
    cmd: &[u8],
    args: &[&[u8]],
    out: &mut Vec<u8>,
) -> Option<After> {
    let n = args.len() + 1;
    let ok = |lo: usize, hi: usize| (lo..=hi).contains(&n);
    match cmd {
        b"stats" => stats(engine, args, out),
        b"flush_all" if ok(1, 3) => flush_all(engine, args, out),
        b"verbosity" if ok(2, 3) => verbosity(engine, args, out),
        b"cache_memlimit" if ok(2, 3) => cache_memlimit(engine, args, out),
        b"shutdown" => return Some(shutdown(engine, args, out)),
        b"slabs" => slabs(engine, args, out),
        b"lru_crawler" => lru_crawler(engine, args, out),
        _ => return None,
    }
    Some(After::Continue)
}

fn is_noreply(args: &[&[u8]]) -> bool {
    args.last().is_some_and(|t| *t == b"noreply")
}

fn reply(out: &mut Vec<u8>, noreply: bool, msg: &[u8]) {
    if !noreply {
        out.extend_from_slice(msg);
    }
}

/// `flush_all [delay] [noreply]`.
fn flush_all(engine: &Engine, args: &[&[u8]], out: &mut Vec<u8>) {
    let noreply = is_noreply(args);
    let exptime = if args.len() == usize::from(noreply) {
        None
    } else {
        match safe_strtol(args[0]) {
            Some(e) => Some(i64::from(e)),
            None => return reply(out, noreply, BAD_EXPTIME),
        }
    };
    let msg: &[u8] = match engine.flush_all_at(exptime) {
        FlushOutcome::Flushed => OK,
        FlushOutcome::Disabled => b"CLIENT_ERROR flush_all not allowed\r\n",
    };
    reply(out, noreply, msg);
}

/// `cache_memlimit <megabytes> [noreply]`.
fn cache_memlimit(engine: &Engine, args: &[&[u8]], out: &mut Vec<u8>) {
    let noreply = is_noreply(args);
    let msg: &[u8] = match safe_strtoul(args[0]).map(|mb| engine.cache_memlimit(mb)) {
        None => ERROR,
        Some(MemlimitOutcome::TooSmall) => {
            b"MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m\r\n"
        }
        Some(MemlimitOutcome::TooLarge) => {
            b"MEMLIMIT_ADJUST_FAILED input value is megabytes not bytes\r\n"
        }
        Some(MemlimitOutcome::Set) => OK,
    };
    reply(out, noreply, msg);
}

/// `verbosity <level> [noreply]`.
fn verbosity(engine: &Engine, args: &[&[u8]], out: &mut Vec<u8>) {
    let noreply = is_noreply(args);
    let Some(level) = safe_strtoul(args[0]) else {
        return reply(out, noreply, BAD_FORMAT);
    };
    engine.verbosity_command(level);
    reply(out, noreply, OK);
}

/// `shutdown [graceful]`: the connection closes without a reply when the server stops.
fn shutdown(engine: &Engine, args: &[&[u8]], out: &mut Vec<u8>) -> After {
    let mode = match args {
        [] => None,
        [m] => Some(*m),
        _ => Some(&b""[..]),
    };
    match engine.shutdown_command(mode) {
        ShutdownOutcome::Stopping => return After::Close,
        ShutdownOutcome::NotEnabled => out.extend_from_slice(b"ERROR: shutdown not enabled\r\n"),
        ShutdownOutcome::InvalidMode => {
            out.extend_from_slice(b"CLIENT_ERROR invalid shutdown mode\r\n")
        }
    }
    After::Continue
}

/// `slabs reassign <src> <dst>`, `slabs automove <0|1|2>`, `slabs automove ratio <r>`.
fn slabs(engine: &Engine, args: &[&[u8]], out: &mut Vec<u8>) {
    let msg: &[u8] = match args {
        [b"reassign", src, dst] => match (safe_strtol(src), safe_strtol(dst)) {
            (Some(src), Some(dst)) => match engine.slabs_reassign(src, dst) {
                ReassignOutcome::Ok => OK,
                ReassignOutcome::BadClass => b"BADCLASS invalid src or dst class id\r\n",
                ReassignOutcome::NoSpare => b"NOSPARE source class has no spare pages\r\n",
                ReassignOutcome::Same => b"SAME src and dst class are identical\r\n",
            },
            _ => BAD_FORMAT,
        },
        [b"automove", arg, rest @ ..] => {
            let ratio = if *arg == b"ratio" && !rest.is_empty() {
                Some(rest[0])
            } else {
                None
            };
            match engine.slabs_automove(arg, ratio) {
                AutomoveOutcome::Ok => OK,
                AutomoveOutcome::Error => ERROR,
                AutomoveOutcome::BadFormat => BAD_FORMAT,
            }
        }
        _ => ERROR,
    };
    out.extend_from_slice(msg);
}

/// `lru_crawler crawl|metadump <classes>`, `sleep|tocrawl <n>`, `enable|disable`.
fn lru_crawler(engine: &Engine, args: &[&[u8]], out: &mut Vec<u8>) {
    let setting = match args {
        [b"crawl", classes] => {
            let outcome = match engine.crawler_classes(classes, false) {
                Some(set) => engine.crawl(&set),
                None => CrawlerOutcome::BadClass,
            };
            return crawler_reply(outcome, out, |(), out| out.extend_from_slice(OK));
        }
        [b"metadump", classes] => return metadump(engine, classes, out),
        [b"sleep", us] => engine.lru_crawler_sleep(us),
        [b"tocrawl", n] => engine.lru_crawler_tocrawl(n),
        [b"enable"] => engine.lru_crawler_switch(true),
        [b"disable"] => engine.lru_crawler_switch(false),
        _ => return out.extend_from_slice(ERROR),
    };
    out.extend_from_slice(match setting {
        CrawlerSetting::Ok => OK,
        CrawlerSetting::AlreadyRunning => b"ERROR failed to start lru crawler thread\r\n",
        CrawlerSetting::SleepTooLong => b"CLIENT_ERROR sleep must be one second or less\r\n",
        CrawlerSetting::BadFormat => BAD_FORMAT,
    });
}

fn crawler_reply<T>(
    outcome: CrawlerOutcome<T>,
    out: &mut Vec<u8>,
    done: impl FnOnce(T, &mut Vec<u8>),
) {
    match outcome {
        CrawlerOutcome::Done(t) => done(t, out),
        CrawlerOutcome::BadClass => out.extend_from_slice(b"BADCLASS invalid class id\r\n"),
        CrawlerOutcome::Disabled => out.extend_from_slice(b"CLIENT_ERROR lru crawler disabled\r\n"),
    }
}

/// memcached's `uriencode`: letters, digits and `-._~` stay, every other byte is `%XX`.
const URI_RESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `lru_crawler metadump <classes>`: one `key=... exp=... la=... cas=... fetch=... cls=...
/// size=...` line per live item (ended by `\n` alone, as memcached's are), then `END`.
fn metadump(engine: &Engine, classes: &[u8], out: &mut Vec<u8>) {
    let outcome = match engine.crawler_classes(classes, true) {
        None => CrawlerOutcome::BadClass,
        Some(set) => engine.metadump(&set, |i: &ItemInfo<'_>, class, size| {
            out.extend_from_slice(b"key=");
            out.extend(percent_encode(i.key, URI_RESERVED).flat_map(str::bytes));
            out.extend_from_slice(b" exp=");
            if i.expires_at == 0 {
                out.extend_from_slice(b"-1");
            } else {
                push_num(out, i.expires_at.div_ceil(1000));
            }
            out.extend_from_slice(b" la=");
            push_num(out, i.last_access_s);
            out.extend_from_slice(b" cas=");
            push_num(out, i.cas);
            out.extend_from_slice(if i.fetched {
                b" fetch=yes"
            } else {
                b" fetch=no"
            });
            out.extend_from_slice(b" cls=");
            push_num(out, class as u64);
            out.extend_from_slice(b" size=");
            push_num(out, size as u64);
            out.push(b'\n');
        }),
    };
    crawler_reply(outcome, out, |(), out| out.extend_from_slice(b"END\r\n"));
}

fn stat_line(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(b"STAT ");
    out.extend_from_slice(name.as_bytes());
    out.push(b' ');
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// `stats [group]`, `stats reset`, `stats detail on|off|dump`, `stats cachedump <class>
/// <limit>`.
fn stats(engine: &Engine, args: &[&[u8]], out: &mut Vec<u8>) {
    let name = args.first().copied().unwrap_or(b"");
    match name {
        b"reset" => {
            engine.reset_stats();
            out.extend_from_slice(b"RESET\r\n");
        }
        b"detail" => match args.get(1).copied() {
            Some(b"on") => {
                engine.stats_detail(true);
                out.extend_from_slice(OK);
            }
            Some(b"off") => {
                engine.stats_detail(false);
                out.extend_from_slice(OK);
            }
            Some(b"dump") => out.extend_from_slice(&engine.prefix_dump()),
            _ => out.extend_from_slice(b"CLIENT_ERROR usage: stats detail on|off|dump\r\n"),
        },
        b"cachedump" => cachedump(engine, args, out),
        _ => match StatsGroup::named(name) {
            None => out.extend_from_slice(ERROR),
            Some(group) => {
                for (k, v) in engine.stats(group) {
                    stat_line(out, &k, &v);
                }
                out.extend_from_slice(b"END\r\n");
            }
        },
    }
}

/// `stats cachedump <class> <limit>`: `ITEM <key> [<bytes> b; <expiry> s]` lines, then `END`.
fn cachedump(engine: &Engine, args: &[&[u8]], out: &mut Vec<u8>) {
    if args.len() < 3 {
        return out.extend_from_slice(b"CLIENT_ERROR bad command line\r\n");
    }
    let (Some(class), Some(limit)) = (safe_strtoul(args[1]), safe_strtoul(args[2])) else {
        return out.extend_from_slice(BAD_FORMAT);
    };
    if class > MAX_CLASS_ID {
        return out.extend_from_slice(b"CLIENT_ERROR Illegal slab id\r\n");
    }
    for item in engine.cachedump(class, limit) {
        out.extend_from_slice(b"ITEM ");
        out.extend_from_slice(&item.key);
        out.extend_from_slice(b" [");
        push_num(out, item.value_len as u64);
        out.extend_from_slice(b" b; ");
        push_num(out, item.expires_s);
        out.extend_from_slice(b" s]\r\n");
    }
    out.extend_from_slice(b"END\r\n");
}
