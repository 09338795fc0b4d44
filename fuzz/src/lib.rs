//! Shared by the fuzz targets: a session over a fresh engine with a manual clock, the input
//! encodings that bias raw fuzzer bytes toward each protocol, and the reply normalisation used by
//! the split oracle.

use std::sync::Arc;

use ratmemcache::cache::{CacheConfig, ManualClock};
use ratmemcache::engine::EngineConfig;
use ratmemcache::protocol::Session;
use ratmemcache::testkit;

/// 2023-11-14, so absolute exptimes (above 30 days) can land both in the past and the future.
pub const START_MS: u64 = testkit::T0;

/// A session on its own engine and cache, with a clock that moves only when told.
pub fn session(max_memory: u64, max_item_size: usize) -> (Session, Arc<ManualClock>) {
    let cache = CacheConfig {
        max_memory,
        ..testkit::one_shard()
    };
    let engine = EngineConfig {
        max_item_size,
        ..Default::default()
    };
    let (session, _, clock) = testkit::session_with(cache, engine);
    (session, clock)
}

/// What a protocol target does with its session.
pub enum Op {
    Send(Vec<u8>),
    /// Move the manual clock forward, in milliseconds.
    Advance(u64),
}

/// Turns fuzzer bytes into a text-protocol byte stream, line by line (lines end at `\n`, which is
/// kept, so the fuzzer still controls `\r`):
/// - a line starting with 0xFF is not sent: it moves the clock forward by its next byte, in
///   seconds, and then the line's other bytes are sent as their own line;
/// - a line starting with a byte of 0xE0..=0xFD starts with `words[b % words.len()]` instead;
/// - inside a line, a byte of 0xC0..=0xDF becomes `" " + args[b % args.len()]`;
/// - 0xFE quotes the byte after it, so every byte value can still reach the parser.
///
/// The line starts and argument tokens let the fuzzer reach deep states in a few mutations,
/// while every byte sequence stays expressible.
pub fn text_stream(data: &[u8], words: &[&[u8]], args: &[&[u8]]) -> Vec<Op> {
    let mut ops = Vec::new();
    let mut cur = Vec::with_capacity(data.len() * 2);
    for line in data.split_inclusive(|&b| b == b'\n') {
        let mut rest = line;
        if let [0xFF, secs, tail @ ..] = rest {
            if !cur.is_empty() {
                ops.push(Op::Send(std::mem::take(&mut cur)));
            }
            ops.push(Op::Advance(u64::from(*secs) * 1000));
            rest = tail;
        }
        if let [b @ 0xE0..=0xFD, tail @ ..] = rest {
            cur.extend_from_slice(words[usize::from(*b) % words.len()]);
            rest = tail;
        }
        let mut it = rest.iter();
        while let Some(&b) = it.next() {
            match b {
                0xFE => cur.extend(it.next()),
                0xC0..=0xDF => {
                    cur.push(b' ');
                    cur.extend_from_slice(args[usize::from(b) % args.len()]);
                }
                _ => cur.push(b),
            }
        }
    }
    if !cur.is_empty() {
        ops.push(Op::Send(cur));
    }
    ops
}

/// A text-protocol target's whole run: `data` as a `text_stream` of `words` and `args` (a
/// leading 0x80 made a space, so the session stays on the text protocols), fed to a session
/// over 256 KiB of memory and 1 KiB items, so eviction and "too large" are reachable.
pub fn run_text_stream(data: &[u8], words: &[&[u8]], args: &[&[u8]]) {
    let mut ops = text_stream(data, words, args);
    if let Some(Op::Send(first)) = ops.iter_mut().find(|o| matches!(o, Op::Send(_))) {
        if first.first() == Some(&0x80) {
            first[0] = b' ';
        }
    }
    let (mut s, clock) = session(256 << 10, 1024);
    run_ops(&mut s, &clock, &ops);
}

/// Feeds `ops` to `s`, in the order given; stops when the session closes. Returns the replies.
/// After each step, the cache must hold no more than its `max_memory`.
pub fn run_ops(s: &mut Session, clock: &ManualClock, ops: &[Op]) -> Vec<u8> {
    let mut out = Vec::new();
    for op in ops {
        assert_within_memory(s);
        match op {
            Op::Advance(ms) => clock.advance(*ms),
            Op::Send(b) => {
                if feed_all(s, b, &mut out) {
                    // Once closed, a session stays closed and says nothing more.
                    let n = out.len();
                    assert!(
                        s.feed(b"version\r\n", &mut out),
                        "a closed session reopened"
                    );
                    assert_eq!(out.len(), n, "a closed session replied");
                    break;
                }
            }
        }
    }
    assert_within_memory(s);
    out
}

/// Feeds `data`, then, while the session stopped at its reply budget with requests left, feeds
/// nothing until it has answered them all (what the I/O engines do after sending). Returns true
/// when the session closed.
pub fn feed_all(s: &mut Session, data: &[u8], out: &mut Vec<u8>) -> bool {
    let mut closed = s.feed(data, out);
    while !closed && s.has_more() {
        closed = s.feed(&[], out);
    }
    closed
}

fn assert_within_memory(s: &Session) {
    let st = s.engine().shared_cache().stats();
    assert!(
        st.bytes <= st.limit_maxbytes,
        "{} bytes cached, over max_memory {}",
        st.bytes,
        st.limit_maxbytes
    );
}

/// `stats` values that legitimately differ between two sessions fed the same bytes: the process
/// (pid, CPU time) and the byte counters, which `feed` bumps per call rather than per command.
pub const VOLATILE_STATS: &[&[u8]] = &[
    b"pid",
    b"rusage_user",
    b"rusage_system",
    b"bytes_read",
    b"bytes_written",
];

/// Blanks the volatile `stats` values in a reply stream, text or binary.
pub fn normalize(out: &[u8], binary: bool) -> Vec<u8> {
    if binary {
        normalize_binary(out).unwrap_or_else(|| out.to_vec())
    } else {
        normalize_text(out)
    }
}

fn normalize_text(out: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(out.len());
    for line in out.split_inclusive(|&b| b == b'\n') {
        let volatile = line.strip_prefix(b"STAT ").and_then(|rest| {
            let sp = rest.iter().position(|&b| b == b' ')?;
            VOLATILE_STATS
                .contains(&&rest[..sp])
                .then_some(&line[..5 + sp])
        });
        match volatile {
            Some(head) => {
                v.extend_from_slice(head);
                v.extend_from_slice(b" *\r\n");
            }
            None => v.extend_from_slice(line),
        }
    }
    v
}

/// Walks binary response packets; a STAT (opcode 0x10) packet whose key is volatile loses its
/// value. None if the stream is not a sequence of whole response packets.
fn normalize_binary(out: &[u8]) -> Option<Vec<u8>> {
    let mut v = Vec::with_capacity(out.len());
    let mut rest = out;
    while !rest.is_empty() {
        if rest.len() < 24 || rest[0] != 0x81 {
            return None;
        }
        let key_len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
        let extras = usize::from(rest[4]);
        let body = u32::from_be_bytes(rest[8..12].try_into().ok()?) as usize;
        if rest.len() < 24 + body || extras + key_len > body {
            return None;
        }
        let (pkt, tail) = rest.split_at(24 + body);
        let key = &pkt[24 + extras..24 + extras + key_len];
        if pkt[1] == 0x10 && VOLATILE_STATS.contains(&key) {
            let mut p = pkt[..24 + extras + key_len].to_vec();
            p[8..12].copy_from_slice(&((extras + key_len) as u32).to_be_bytes());
            v.extend_from_slice(&p);
        } else {
            v.extend_from_slice(pkt);
        }
        rest = tail;
    }
    Some(v)
}

/// The split target's input: a count byte `n` (mod 16), then `n` little-endian u16 split offsets
/// (taken modulo the payload length + 1), then the payload.
pub fn decode_splits(data: &[u8]) -> Option<(Vec<usize>, &[u8])> {
    let (&n, rest) = data.split_first()?;
    let n = usize::from(n % 16);
    if rest.len() < 2 * n {
        return None;
    }
    let (offs, payload) = rest.split_at(2 * n);
    let mut cuts: Vec<usize> = offs
        .chunks_exact(2)
        .map(|c| usize::from(u16::from_le_bytes([c[0], c[1]])) % (payload.len() + 1))
        .collect();
    cuts.sort_unstable();
    Some((cuts, payload))
}

/// What a session made of a byte stream.
#[derive(Debug, PartialEq, Eq)]
pub struct Fed {
    pub replies: Vec<u8>,
    pub closed: bool,
    /// Bytes left unanswered at the end (an incomplete request); 0 once closed.
    pub buffered: usize,
}

/// `payload` fed whole, and fed in pieces cut at `cuts` (sorted, each at most `payload.len()`;
/// empty pieces are fed too). Each gets a fresh engine.
pub fn feed_whole_and_split(payload: &[u8], cuts: &[usize]) -> (Fed, Fed) {
    // 64 MiB: far more than an input can store, so nothing is evicted. Which entry is evicted may
    // depend on the per-cache hash seed, which differs between the two engines.
    let (mut a, _ca) = session(64 << 20, ratmemcache::engine::DEFAULT_MAX_ITEM_SIZE);
    let (mut b, _cb) = session(64 << 20, ratmemcache::engine::DEFAULT_MAX_ITEM_SIZE);
    let mut whole = Vec::new();
    let whole_closed = feed_all(&mut a, payload, &mut whole);
    let mut split = Vec::new();
    let mut split_closed = false;
    let mut prev = 0;
    for &c in cuts.iter().chain(std::iter::once(&payload.len())) {
        if feed_all(&mut b, &payload[prev..c], &mut split) {
            split_closed = true;
            break;
        }
        prev = c;
    }
    (
        Fed {
            replies: whole,
            closed: whole_closed,
            buffered: a.buffered(),
        },
        Fed {
            replies: split,
            closed: split_closed,
            buffered: b.buffered(),
        },
    )
}

/// Whether the split oracle applies to `payload`. memcached closes a text connection whose line
/// passes 2048 bytes before its newline arrives, so a longer line is closed or answered depending
/// on how the stream was cut: there the whole and split replies may differ by design.
pub fn split_comparable(payload: &[u8]) -> bool {
    payload.first() == Some(&0x80)
        || payload
            .split(|&b| b == b'\n')
            .all(|l| l.len() <= ratmemcache::protocol::limits::MAX_LINE_WITHOUT_NEWLINE)
}

/// Shows bytes for an assertion message.
pub fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(2000)])
        .escape_debug()
        .to_string()
}
