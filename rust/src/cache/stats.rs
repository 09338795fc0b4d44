//! Counters. Each shard keeps its own, updated under the shard lock it already holds, so the hot
//! path pays a plain increment and no atomic traffic; `Cache::stats` sums them.

use std::ops::AddAssign;

use super::sizing::CLASS_COUNT;

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

/// What happened to items of one slab class (see `sizing`), memcached's `stats items` names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClassCount {
    /// Evicted to make room.
    pub evicted: u64,
    /// Evicted while they still had a deadline to live to.
    pub evicted_nonzero: u64,
    /// Evicted without ever being read.
    pub evicted_unfetched: u64,
    /// Seconds since the last access of the most recently evicted item.
    pub evicted_time: u64,
    /// Removed because their deadline passed.
    pub reclaimed: u64,
    /// Expired without ever being read (see `Counters::expired_unfetched`).
    pub expired_unfetched: u64,
    /// Writes refused for lack of memory (evictions off, or larger than a shard's budget).
    pub outofmemory: u64,
    /// Expired items the background sweep (memcached's LRU crawler) reclaimed.
    pub crawler_reclaimed: u64,
    /// Items the background sweep examined.
    pub crawler_items_checked: u64,
}

impl AddAssign for ClassCount {
    fn add_assign(&mut self, o: ClassCount) {
        self.evicted += o.evicted;
        self.evicted_nonzero += o.evicted_nonzero;
        self.evicted_unfetched += o.evicted_unfetched;
        // The latest is not knowable across shards; the largest is the honest summary.
        self.evicted_time = self.evicted_time.max(o.evicted_time);
        self.reclaimed += o.reclaimed;
        self.expired_unfetched += o.expired_unfetched;
        self.outofmemory += o.outofmemory;
        self.crawler_reclaimed += o.crawler_reclaimed;
        self.crawler_items_checked += o.crawler_items_checked;
    }
}

/// [`ClassCount`]s by slab class; index 0 is class 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassCounters(pub [ClassCount; CLASS_COUNT]);

impl Default for ClassCounters {
    fn default() -> Self {
        ClassCounters([ClassCount::default(); CLASS_COUNT])
    }
}

impl ClassCounters {
    /// Every class's counts added up.
    pub fn total(&self) -> ClassCount {
        let mut t = ClassCount::default();
        for c in &self.0 {
            t += *c;
        }
        t
    }

    /// The counts of a class (1-based).
    pub fn class_mut(&mut self, class: usize) -> &mut ClassCount {
        &mut self.0[class - 1]
    }

    pub fn class(&self, class: usize) -> &ClassCount {
        &self.0[class - 1]
    }
}

impl AddAssign<&ClassCounters> for ClassCounters {
    fn add_assign(&mut self, o: &ClassCounters) {
        for (a, b) in self.0.iter_mut().zip(o.0.iter()) {
            *a += *b;
        }
    }
}
