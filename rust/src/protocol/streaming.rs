//! ratmemcache's streaming extension for large values (the original RatMemCache's
//! `streaming_get`, finished). The wire format is documented in docs/streaming.md.
//!
//! Download: `streaming_get <key> [chunk_size]` (alias `sget`) answers
//! `STREAM_BEGIN <key> <total_size> <chunk_count>`, then `STREAM_DATA <key> <n> <len>` + data for
//! each chunk, then `STREAM_END <key>`.
//!
//! Upload: `set_begin <key> <total_size> <chunk_count> <flags> [exptime]` → `OK`; then
//! `set_data <key> <n> <len>` + data for n = 0, 1, ... → `OK` each; then `set_end <key>` →
//! `STORED`. The value is stored only when complete; an abandoned or failed upload stores nothing
//! and its buffer is freed (at the latest when the connection closes).
//!
//! Errors are one line, `STREAM_ERROR <reason>`. A `set_data` whose header is refused has its
//! data swallowed so the connection stays in sync.

use hashbrown::HashMap;

use super::limits::{DEFAULT_STREAM_CHUNK, KEY_MAX_LENGTH, MAX_DECLARED_VALUE_LEN};
use super::text::{failure_line, push_num, Next, SpliceSink};
use crate::cache::{StoreOutcome, StoreRequest, Ttl};
use crate::command::numbers::{safe_strtol, safe_strtoul, safe_strtoull};
use crate::command::ttl_from_exptime;
use crate::engine::Engine;

/// Uploads in progress on one connection, by key.
pub(crate) type Uploads = HashMap<Vec<u8>, Upload, foldhash::fast::RandomState>;

pub(crate) struct Upload {
    total: usize,
    chunks: u64,
    next: u64,
    flags: u32,
    ttl: Ttl,
    data: Vec<u8>,
}

/// A `set_data` header that was accepted; its data block is being read.
pub(crate) struct PendingChunk {
    key: Vec<u8>,
}

/// What a `set_data` header leaves the connection waiting for: its data goes to [`data`].
pub(crate) type DataHeader = Next<PendingChunk>;

fn error(out: &mut Vec<u8>, reason: &str) {
    out.extend_from_slice(b"STREAM_ERROR ");
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn line(out: &mut Vec<u8>, word: &[u8], key: &[u8], nums: &[u64]) {
    out.extend_from_slice(word);
    out.push(b' ');
    out.extend_from_slice(key);
    for &n in nums {
        out.push(b' ');
        push_num(out, n);
    }
    out.extend_from_slice(b"\r\n");
}

fn key_ok(key: &[u8]) -> bool {
    !key.is_empty() && key.len() <= KEY_MAX_LENGTH
}

/// `streaming_get <key> [chunk_size]`. Chunks of `text::SPLICE_MIN` bytes and up share the
/// stored value when the engine takes splices.
pub(crate) fn get(engine: &Engine, args: &[&[u8]], sink: &mut SpliceSink, out: &mut Vec<u8>) {
    if args.is_empty() || args.len() > 2 {
        return error(out, "usage: streaming_get <key> [chunk_size]");
    }
    let key = args[0];
    if !key_ok(key) {
        return error(out, "bad key");
    }
    let chunk = match args.get(1) {
        None => DEFAULT_STREAM_CHUNK,
        Some(t) => match safe_strtoull(t) {
            Some(c) if c > 0 && c <= engine.config().max_item_size as u64 => c as usize,
            _ => return error(out, "invalid chunk size"),
        },
    };
    let Some(v) = engine.get(key, None, |e| e.value_bytes()) else {
        return error(out, "not found");
    };
    let count = v.len().div_ceil(chunk);
    let shared = sink.wants(chunk.min(v.len()));
    out.reserve(if shared { 0 } else { v.len() } + count * (key.len() + 32) + 64);
    line(out, b"STREAM_BEGIN", key, &[v.len() as u64, count as u64]);
    for i in 0..count {
        let c = i * chunk..v.len().min((i + 1) * chunk);
        line(out, b"STREAM_DATA", key, &[i as u64, c.len() as u64]);
        if shared {
            sink.push(out, v.slice(c));
        } else {
            out.extend_from_slice(&v[c]);
        }
        out.extend_from_slice(b"\r\n");
    }
    line(out, b"STREAM_END", key, &[]);
}

/// `set_begin <key> <total_size> <chunk_count> <flags> [exptime]`; restarts any upload of `key`.
pub(crate) fn begin(uploads: &mut Uploads, engine: &Engine, args: &[&[u8]], out: &mut Vec<u8>) {
    if !(4..=5).contains(&args.len()) {
        return error(
            out,
            "usage: set_begin <key> <total_size> <chunk_count> <flags> [exptime]",
        );
    }
    let key = args[0];
    if !key_ok(key) {
        return error(out, "bad key");
    }
    let (Some(total), Some(chunks), Some(flags)) = (
        safe_strtoull(args[1]),
        safe_strtoull(args[2]),
        safe_strtoul(args[3]),
    ) else {
        return error(out, "bad command line format");
    };
    let exptime = match args.get(4) {
        None => 0,
        Some(t) => match safe_strtol(t) {
            Some(e) => i64::from(e),
            None => return error(out, "invalid exptime argument"),
        },
    };
    if total > MAX_DECLARED_VALUE_LEN as u64
        || engine.admit(key, total as usize, flags, false).is_err()
    {
        uploads.remove(key);
        return error(out, "object too large for cache");
    }
    if (total == 0) != (chunks == 0) || chunks > total.max(1) {
        return error(out, "chunk count does not fit the total size");
    }
    uploads.insert(
        key.to_vec(),
        Upload {
            total: total as usize,
            chunks,
            next: 0,
            flags,
            ttl: ttl_from_exptime(exptime),
            data: Vec::new(),
        },
    );
    out.extend_from_slice(b"OK\r\n");
}

/// `set_data <key> <chunk_number> <len>`: checks the header before any data is buffered.
pub(crate) fn data_header(uploads: &mut Uploads, args: &[&[u8]], out: &mut Vec<u8>) -> DataHeader {
    let len = args
        .get(2)
        .and_then(|t| safe_strtol(t))
        .map(i64::from)
        .filter(|l| (0..=MAX_DECLARED_VALUE_LEN).contains(l));
    if args.len() != 3 {
        error(out, "usage: set_data <key> <chunk_number> <len>");
        return DataHeader::Done;
    }
    let Some(len) = len.map(|l| l as usize) else {
        error(out, "bad command line format");
        return DataHeader::Done;
    };
    let key = args[0];
    let Some(up) = uploads.get_mut(key) else {
        error(out, "no upload in progress for this key");
        return DataHeader::Swallow(len + 2);
    };
    let index = safe_strtoull(args[1]);
    if index != Some(up.next) {
        uploads.remove(key);
        error(out, "chunk out of order; upload aborted");
        return DataHeader::Swallow(len + 2);
    }
    if up.data.len() + len > up.total || up.next >= up.chunks {
        uploads.remove(key);
        error(out, "more data than announced; upload aborted");
        return DataHeader::Swallow(len + 2);
    }
    DataHeader::Read {
        len,
        pending: PendingChunk { key: key.to_vec() },
    }
}

/// The data of a `set_data` arrived.
pub(crate) fn data(uploads: &mut Uploads, p: PendingChunk, data: Option<&[u8]>, out: &mut Vec<u8>) {
    let Some(up) = uploads.get_mut(&p.key) else {
        return error(out, "no upload in progress for this key");
    };
    let Some(data) = data else {
        uploads.remove(&p.key);
        return error(out, "bad data chunk; upload aborted");
    };
    if up.data.capacity() == 0 {
        up.data.reserve_exact(up.total);
    }
    up.data.extend_from_slice(data);
    up.next += 1;
    out.extend_from_slice(b"OK\r\n");
}

/// `set_end <key>`: stores the value if every byte and chunk arrived.
pub(crate) fn end(uploads: &mut Uploads, engine: &Engine, args: &[&[u8]], out: &mut Vec<u8>) {
    if args.len() != 1 {
        return error(out, "usage: set_end <key>");
    }
    let key = args[0];
    let Some(up) = uploads.remove(key) else {
        return error(out, "no upload in progress for this key");
    };
    if up.data.len() != up.total || up.next != up.chunks {
        let msg = format!(
            "incomplete upload: {} of {} bytes in {} of {} chunks; nothing stored",
            up.data.len(),
            up.total,
            up.next,
            up.chunks
        );
        return error(out, &msg);
    }
    let req = StoreRequest::set(key, &up.data).flags(up.flags).ttl(up.ttl);
    match engine.store(req) {
        Ok(StoreOutcome::Stored(_)) => out.extend_from_slice(b"STORED\r\n"),
        Ok(_) => error(out, "out of memory storing object"),
        Err(f) => out.extend_from_slice(failure_line(f)),
    }
}
