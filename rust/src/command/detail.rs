//! memcached's per-prefix statistics (`stats detail on|off|dump`, `-D`): with detail on, every
//! get, set and delete of a key that contains the delimiter counts under the key's prefix (the
//! part before the first delimiter). Keys without one are not counted.
//!
//! `dump` lists the prefixes in memcached's order: by the MurmurHash3 of the prefix modulo 256,
//! and within a bucket the newest prefix first, so a dump reads the same as memcached's.

use std::io::Cursor;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

/// memcached's `PREFIX_HASH_SIZE`.
const BUCKETS: usize = 256;

/// The counts of one prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrefixCounts {
    pub prefix: Box<[u8]>,
    pub gets: u64,
    pub hits: u64,
    pub sets: u64,
    pub deletes: u64,
}

/// The per-prefix counters and whether they are being kept.
pub struct PrefixStats {
    delimiter: u8,
    enabled: AtomicBool,
    buckets: Mutex<Vec<Vec<PrefixCounts>>>,
}

impl PrefixStats {
    pub fn new(delimiter: u8) -> Self {
        PrefixStats {
            delimiter,
            enabled: AtomicBool::new(false),
            buckets: Mutex::new(vec![Vec::new(); BUCKETS]),
        }
    }

    pub fn delimiter(&self) -> u8 {
        self.delimiter
    }

    /// `stats detail on` / `off`; the counts are kept either way.
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }

    #[inline]
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    #[inline]
    pub fn record_get(&self, key: &[u8], hit: bool) {
        if self.enabled() {
            self.with(key, |p| {
                p.gets += 1;
                p.hits += u64::from(hit);
            });
        }
    }

    #[inline]
    pub fn record_set(&self, key: &[u8]) {
        if self.enabled() {
            self.with(key, |p| p.sets += 1);
        }
    }

    #[inline]
    pub fn record_delete(&self, key: &[u8]) {
        if self.enabled() {
            self.with(key, |p| p.deletes += 1);
        }
    }

    /// Every prefix, in memcached's dump order.
    pub fn dump(&self) -> Vec<PrefixCounts> {
        self.buckets.lock().iter().flatten().cloned().collect()
    }

    /// memcached's `stats_prefix_dump`: a `PREFIX <p> get <n> hit <n> set <n> del <n>` line
    /// per prefix and `END`, the text both protocols send (binary as one statistic's value).
    pub fn dump_text(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for p in self.dump() {
            out.extend_from_slice(b"PREFIX ");
            out.extend_from_slice(&p.prefix);
            for (label, n) in [
                (&b" get "[..], p.gets),
                (b" hit ", p.hits),
                (b" set ", p.sets),
                (b" del ", p.deletes),
            ] {
                out.extend_from_slice(label);
                out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            }
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"END\r\n");
        out
    }

    /// Forgets every prefix (`stats reset`).
    pub fn clear(&self) {
        for b in self.buckets.lock().iter_mut() {
            b.clear();
        }
    }

    fn with(&self, key: &[u8], f: impl FnOnce(&mut PrefixCounts)) {
        let Some(end) = key.iter().position(|&b| b == self.delimiter) else {
            return;
        };
        let prefix = &key[..end];
        let hash = murmur3::murmur3_32(&mut Cursor::new(prefix), 0).expect("reads from memory");
        let mut buckets = self.buckets.lock();
        let bucket = &mut buckets[hash as usize % BUCKETS];
        match bucket.iter_mut().find(|p| &*p.prefix == prefix) {
            Some(p) => f(p),
            None => {
                let mut p = PrefixCounts {
                    prefix: prefix.into(),
                    ..Default::default()
                };
                f(&mut p);
                bucket.insert(0, p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_keys_with_the_delimiter_count_and_only_when_on() {
        let s = PrefixStats::new(b':');
        s.record_get(b"foo:1", true);
        assert!(s.dump().is_empty());
        s.set_enabled(true);
        s.record_get(b"foo:1", true);
        s.record_get(b"foo:2", false);
        s.record_set(b"foo:2");
        s.record_delete(b"foo:3");
        s.record_get(b"nocolon", false);
        s.set_enabled(false);
        s.record_get(b"foo:1", true);
        let d = s.dump();
        assert_eq!(d.len(), 1);
        assert_eq!(
            (&*d[0].prefix, d[0].gets, d[0].hits, d[0].sets, d[0].deletes),
            (&b"foo"[..], 2, 1, 1, 1)
        );
        s.clear();
        assert!(s.dump().is_empty());
    }

    #[test]
    fn the_dump_follows_memcacheds_hash_order() {
        // memcached 1.6.18 dumped `foo` before `bar` after a get of foo:1 and then bar:1.
        let s = PrefixStats::new(b':');
        s.set_enabled(true);
        s.record_get(b"foo:1", true);
        s.record_get(b"bar:1", false);
        let order: Vec<_> = s.dump().into_iter().map(|p| p.prefix).collect();
        assert_eq!(order, vec![b"foo"[..].into(), b"bar"[..].into()]);
    }
}
