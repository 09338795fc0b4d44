//! Counters. Each shard keeps its own, updated under the shard lock it already holds, so the hot
//! path pays a plain increment and no atomic traffic; `Cache::stats` sums them.

use std::ops::AddAssign;

/// memcached's names where one exists (`get_hits`, `evictions`, ...).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub get_hits: u64,
    pub get_misses: u64,
    /// Reads that found an entry past its deadline (also counted in `get_misses`).
    pub get_expired: u64,
    /// Store commands of every kind (set, add, replace, append, prepend, cas), as memcached
    /// counts them: incr and decr are not stores there.
    pub cmd_set: u64,
    /// Items written as new (stores, and incr/decr results that outgrew the old value).
    pub total_items: u64,
    pub delete_hits: u64,
    pub delete_misses: u64,
    pub incr_hits: u64,
    pub incr_misses: u64,
    pub decr_hits: u64,
    pub decr_misses: u64,
    pub cas_hits: u64,
    pub cas_misses: u64,
    pub cas_badval: u64,
    pub touch_hits: u64,
    pub touch_misses: u64,
    /// Entries removed to make room.
    pub evictions: u64,
    /// Entries removed because their deadline passed (lazily or by the sweep).
    pub expirations: u64,
    /// Evicted entries that were never read (memcached's `evicted_unfetched`).
    pub evicted_unfetched: u64,
    /// Expired entries that were never read, reclaimed by the background sweep, and stores
    /// whose deadline had already passed (memcached's `expired_unfetched`: its LRU crawler's
    /// count; a lookup that meets an expired item counts `get_expired` or a miss instead).
    pub expired_unfetched: u64,
}

impl AddAssign for Counters {
    fn add_assign(&mut self, o: Counters) {
        self.get_hits += o.get_hits;
        self.get_misses += o.get_misses;
        self.get_expired += o.get_expired;
        self.cmd_set += o.cmd_set;
        self.total_items += o.total_items;
        self.delete_hits += o.delete_hits;
        self.delete_misses += o.delete_misses;
        self.incr_hits += o.incr_hits;
        self.incr_misses += o.incr_misses;
        self.decr_hits += o.decr_hits;
        self.decr_misses += o.decr_misses;
        self.cas_hits += o.cas_hits;
        self.cas_misses += o.cas_misses;
        self.cas_badval += o.cas_badval;
        self.touch_hits += o.touch_hits;
        self.touch_misses += o.touch_misses;
        self.evictions += o.evictions;
        self.expirations += o.expirations;
        self.evicted_unfetched += o.evicted_unfetched;
        self.expired_unfetched += o.expired_unfetched;
    }
}

/// A snapshot of the whole cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub counters: Counters,
    /// Live entries (expired ones not yet reclaimed included, as in memcached's `curr_items`).
    pub curr_items: u64,
    /// Bytes charged against `max_memory` (see `entry` for the formula).
    pub bytes: u64,
    /// Key and value bytes only.
    pub payload_bytes: u64,
    pub limit_maxbytes: u64,
    pub limit_entries: u64,
    pub shards: u64,
}

impl CacheStats {
    pub fn gets(&self) -> u64 {
        self.counters.get_hits + self.counters.get_misses
    }
}
