//! The L1: a sharded, concurrent, in-memory store with pluggable eviction and TTLs.
//!
//! The facade hashes a key once (foldhash, randomly seeded per cache), picks a shard from bits
//! 32..48 of the hash (hashbrown uses the low bits for the bucket and the top 7 for its control
//! byte, so the three don't correlate), locks only that shard, and runs the shard's
//! single-threaded code. Entries that a write evicts or reclaims are dropped after the lock is
//! released, so freeing large values never lengthens a critical section.
//!
//! Expired entries are reclaimed three ways, none of them stop-the-world: lazily when a read or
//! write finds one, by an amortized step of two slots on every insert, and by a background
//! sweeper that visits each shard every `cleanup_interval` in batches of 256 slots per lock.

mod clock;
mod config;
mod entry;
pub mod objects;
mod ops;
pub mod policy;
mod shard;
mod sizing;
mod stats;

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex, MutexGuard};

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{
    parse_size, CacheConfig, DEFAULT_MAX_MEMORY, LIBRARY_MAX_KEY_LEN, MEMCACHED_MAX_KEY_LEN,
};
pub use entry::{ItemState, ALLOC_OVERHEAD, ENTRY_OVERHEAD, SHARED_VALUE_MIN};
pub use ops::{
    Bump, Counted, DeleteOutcome, DeleteRequest, Delta, DeltaOutcome, DeltaRequest, Item, ItemInfo,
    Keyspace, MetaEntry, ReadOpts, Snapshot, StoreMode, StoreOutcome, StoreRequest,
};
pub use policy::{PolicyKind, UnknownPolicy};
pub use sizing::{
    chunk_size, chunks_per_page, memcached_item_size, slab_class, CLASS_COUNT, SLAB_CLASSES,
    SLAB_PAGE_SIZE,
};
pub use stats::{CacheStats, ClassCount, ClassCounters, Counters};

use crate::error::CoreError;
use entry::Entry;
pub(crate) use entry::EntryMeta;
use shard::Shard;

/// A write's lifetime, before the cache's `default_ttl` and `max_ttl` are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    /// The cache's `default_ttl` (which may itself be "never").
    Default,
    /// No deadline (still bounded by `max_ttl`).
    Never,
    /// This many milliseconds from now.
    After(u64),
    /// At this unix time, in milliseconds; a time in the past means already expired.
    At(u64),
    /// Already expired: the write succeeds and the item is gone at once, as in memcached.
    Expired,
}

/// Shard `i`'s part of a limit split over `n` shards. Limits are split exactly: the first
/// `limit % n` shards get one more, so the shards together never hold more than the total. A
/// share is at least `min` (each shard may hold at least one entry: only an explicit `shards`
/// above `max_entries` rounds up). A limit of 0 means unlimited.
fn shard_share(limit: u64, n: u64, i: u64, min: u64) -> u64 {
    if limit == 0 {
        return u64::MAX;
    }
    (limit / n + u64::from(i < limit % n)).max(min)
}

/// The lifetime rules every store applies: a default for writes that give none, and a cap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TtlRules {
    /// For `Ttl::Default`, in ms; 0 means never expire.
    pub default_ttl_ms: u64,
    /// Upper bound on any lifetime, "never" included, in ms; 0 means no bound.
    pub max_ttl_ms: u64,
}

impl TtlRules {
    pub fn of(cfg: &CacheConfig) -> TtlRules {
        TtlRules {
            default_ttl_ms: cfg.default_ttl_ms,
            max_ttl_ms: cfg.max_ttl_ms,
        }
    }

    /// Whether `ttl` gives a deadline that needs the time: a lifetime ending "never" doesn't.
    pub fn needs_clock(&self, ttl: Ttl) -> bool {
        let never = match ttl {
            Ttl::Never => true,
            Ttl::Default => self.default_ttl_ms == 0,
            _ => false,
        };
        self.max_ttl_ms > 0 || !never
    }

    /// The deadline in unix ms for a write at `now`: `Some(0)` means never, `None` means
    /// already expired. `now` is read only when [`needs_clock`](Self::needs_clock) says so.
    pub fn deadline(&self, ttl: Ttl, now: impl FnOnce() -> u64) -> Option<u64> {
        if !self.needs_clock(ttl) {
            return Some(0);
        }
        let now = now();
        let after = |ms: u64| now.saturating_add(ms);
        let d = match ttl {
            Ttl::Default if self.default_ttl_ms == 0 => 0,
            Ttl::Default => after(self.default_ttl_ms),
            Ttl::Never => 0,
            Ttl::After(ms) => after(ms),
            Ttl::At(t) if t <= now => return None,
            Ttl::At(t) => t,
            Ttl::Expired => return None,
        };
        if self.max_ttl_ms > 0 {
            let cap = after(self.max_ttl_ms);
            if d == 0 || d > cap {
                return Some(cap);
            }
        }
        Some(d)
    }
}

/// [`Cache::deadline`] for a given config.
pub(crate) fn deadline_for(cfg: &CacheConfig, ttl: Ttl, now: u64) -> Option<u64> {
    TtlRules::of(cfg).deadline(ttl, || now)
}

#[repr(align(128))]
struct Padded(Mutex<Shard>);

struct Inner {
    shards: Box<[Padded]>,
    shard_mask: u64,
    hasher: shard::KeyHasher,
    clock: Arc<dyn Clock>,
    /// `max_memory` now: the config's, until `set_max_memory` changes it.
    max_memory: AtomicU64,
    config: CacheConfig,
    /// Where live entries go when they are evicted (the L2's write-back), if anywhere.
    demote: OnceLock<Demote>,
}

/// Receives each live entry that eviction pushes out of the L1, after the shard lock is released.
pub type Demote = Box<dyn Fn(&[u8], Snapshot) + Send + Sync>;

/// Batch size of the background sweep: slots examined per lock acquisition.
const SWEEP_BATCH: usize = 256;

impl Inner {
    /// One full pass over every shard, releasing each lock every `SWEEP_BATCH` slots.
    fn sweep_all(&self) -> usize {
        let mut reclaimed = 0;
        for p in self.shards.iter() {
            let total = p.0.lock().slot_count();
            let mut examined = 0;
            while examined < total {
                let mut dead = Vec::new();
                reclaimed +=
                    p.0.lock()
                        .crawl(self.clock.now_ms(), SWEEP_BATCH, &mut dead);
                drop(dead);
                examined += SWEEP_BATCH;
            }
        }
        reclaimed
    }
}

/// Stops and joins the background sweeper when the cache goes away.
struct Sweeper {
    stop: Arc<(Mutex<bool>, Condvar)>,
    handle: Option<JoinHandle<()>>,
}

impl Sweeper {
    fn start(inner: Weak<Inner>, every: Duration) -> std::io::Result<Sweeper> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let signal = stop.clone();
        let handle = std::thread::Builder::new()
            .name("ratmemcache-sweep".into())
            .spawn(move || loop {
                {
                    let mut stopped = signal.0.lock();
                    if !*stopped {
                        signal.1.wait_for(&mut stopped, every);
                    }
                    if *stopped {
                        return;
                    }
                }
                match inner.upgrade() {
                    Some(inner) => {
                        inner.sweep_all();
                    }
                    None => return,
                }
            })?;
        Ok(Sweeper {
            stop,
            handle: Some(handle),
        })
    }

    fn stop(&mut self) {
        *self.stop.0.lock() = true;
        self.stop.1.notify_all();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The L1 cache. Cheap to share: wrap it in an `Arc`; every method takes `&self`.
pub struct Cache {
    inner: Arc<Inner>,
    sweeper: Mutex<Option<Sweeper>>,
}

impl Cache {
    pub fn new(config: CacheConfig) -> Result<Cache, CoreError> {
        Cache::with_clock(config, Arc::new(SystemClock))
    }

    pub fn with_clock(config: CacheConfig, clock: Arc<dyn Clock>) -> Result<Cache, CoreError> {
        config.validate()?;
        let n = config.shard_count();
        let bits = n.trailing_zeros();
        let per = |limit: u64, i: u64, min: u64| shard_share(limit, n as u64, i, min);
        let hasher = shard::KeyHasher::default();
        let shards = (0..n)
            .map(|i| {
                Padded(Mutex::new(Shard::new(
                    &config,
                    per(config.max_memory, i as u64, 0),
                    per(config.max_entries, i as u64, 1),
                    i as u64,
                    bits,
                    hasher.clone(),
                )))
            })
            .collect();
        let inner = Arc::new(Inner {
            shards,
            shard_mask: n as u64 - 1,
            hasher,
            clock,
            max_memory: AtomicU64::new(config.max_memory),
            config,
            demote: OnceLock::new(),
        });
        let sweeper = match inner.config.cleanup_interval_ms {
            0 => None,
            ms => Some(
                Sweeper::start(Arc::downgrade(&inner), Duration::from_millis(ms)).map_err(|e| {
                    CoreError::Config(format!("cannot start the sweeper thread: {e}"))
                })?,
            ),
        };
        Ok(Cache {
            inner,
            sweeper: Mutex::new(sweeper),
        })
    }

    pub fn config(&self) -> &CacheConfig {
        &self.inner.config
    }

    /// The memory limit in force (`max_memory`, or what `set_max_memory` made it); 0 = none.
    pub fn max_memory(&self) -> u64 {
        self.inner.max_memory.load(Ordering::Relaxed)
    }

    /// Changes the memory limit at run time (memcached's `cache_memlimit`); 0 = unlimited. A
    /// lower limit evicts at once, shard by shard, by the eviction policy (live entries go to the
    /// demotion hook, as any eviction's do); a higher one lets the cache grow.
    pub fn set_max_memory(&self, bytes: u64) {
        self.inner.max_memory.store(bytes, Ordering::Relaxed);
        let n = self.inner.shards.len() as u64;
        for (i, p) in self.inner.shards.iter().enumerate() {
            let mut evicted = Vec::new();
            let mut s = p.0.lock();
            s.set_limit_bytes(shard_share(bytes, n, i as u64, 0), &mut evicted);
            self.release(s, &[], evicted);
        }
    }

    /// Sends every live entry that eviction pushes out from now on to `f` (once per cache).
    pub fn set_demotion(&self, f: Demote) {
        let _ = self.inner.demote.set(f);
    }

    /// Ends a write: live entries that it evicted (other than `key` itself) go to the demotion
    /// hook, if there is one, while the shard is still locked; then the lock is released and
    /// what the write dropped is freed.
    ///
    /// Demoting under the lock orders a demotion with every other change of the same key: the
    /// L2's write-back queues the evicted item before any later write of that key can be queued
    /// (a promotion's delete from the L2 runs under the key's shard lock too, see
    /// `restore_then`), so a key promoted and evicted again at the same moment is never
    /// deleted from both tiers.
    #[inline]
    fn release(&self, shard: MutexGuard<'_, Shard>, key: &[u8], dropped: Vec<Entry>) {
        if dropped.is_empty() {
            drop(shard);
        } else {
            self.release_dropped(shard, key, dropped);
        }
    }

    #[cold]
    fn release_dropped(&self, shard: MutexGuard<'_, Shard>, key: &[u8], dropped: Vec<Entry>) {
        if let Some(demote) = self.inner.demote.get() {
            let now = self.now_ms();
            for e in &dropped {
                if e.is_live(now) && e.key() != key {
                    demote(e.key(), Snapshot::of_entry(e));
                }
            }
        }
        drop(shard);
        drop(dropped);
    }

    #[inline]
    pub fn now_ms(&self) -> u64 {
        self.inner.clock.now_ms()
    }

    pub fn clock(&self) -> Arc<dyn Clock> {
        self.inner.clock.clone()
    }

    #[inline]
    fn locate(&self, key: &[u8]) -> (u64, &Mutex<Shard>) {
        let h = self.inner.hasher.hash_one(key);
        let i = ((h >> 32) & self.inner.shard_mask) as usize;
        (h, &self.inner.shards[i].0)
    }

    /// Applies `default_ttl` and `max_ttl`. `Some(0)` means never; `None` means already expired.
    pub fn deadline(&self, ttl: Ttl, now: u64) -> Option<u64> {
        deadline_for(&self.inner.config, ttl, now)
    }

    /// Rejects an empty key or one over `max_key_len`.
    pub fn check_key(&self, key: &[u8]) -> Result<(), CoreError> {
        if key.is_empty() {
            return Err(CoreError::BadKey("the key is empty".into()));
        }
        let max = self.inner.config.max_key_len;
        if key.len() > max {
            return Err(CoreError::BadKey(format!(
                "the key is {} bytes, over the limit of {max}",
                key.len()
            )));
        }
        Ok(())
    }

    // ---------------------------------------------------------------------------------------
    // The four operations (see `ops`): each locks the key's shard, runs the shard's code, and
    // releases what it dropped.

    /// A read counted as `opts` says; `f` sees the live entry under the shard lock (see
    /// `Shard::read`).
    #[inline]
    pub fn read<R>(
        &self,
        key: &[u8],
        opts: ReadOpts,
        f: impl FnOnce(&mut MetaEntry<'_>) -> R,
    ) -> Option<R> {
        let (h, shard) = self.locate(key);
        let mut dropped = Vec::new();
        let mut s = shard.lock();
        let out = s.read(
            h,
            key,
            opts,
            || self.now_ms(),
            &self.inner.config,
            &mut dropped,
            f,
        );
        self.release(s, key, dropped);
        out
    }

    /// Every write of a value (see `Shard::store`).
    pub fn store(&self, req: &StoreRequest<'_>) -> Result<StoreOutcome, CoreError> {
        self.check_key(req.key)?;
        let now = self.now_ms();
        let deadline = self.deadline(req.ttl, now);
        let (h, shard) = self.locate(req.key);
        let mut dropped = Vec::new();
        let mut s = shard.lock();
        let out = s.store(h, req, deadline, now, &mut dropped);
        self.release(s, req.key, dropped);
        Ok(out)
    }

    /// A delete (see `Shard::delete`).
    pub fn delete(&self, key: &[u8], req: &DeleteRequest) -> DeleteOutcome {
        let now = self.now_ms();
        let deadline = req.ttl.map(|t| self.deadline(t, now));
        let (h, shard) = self.locate(key);
        let mut dropped = Vec::new();
        let mut s = shard.lock();
        let out = s.delete(h, key, req, deadline, now, &mut dropped);
        self.release(s, key, dropped);
        out
    }

    /// An incr or decr; `f` sees the updated entry and the number under the shard lock, and may
    /// set a TTL (see `Shard::delta`).
    pub fn delta<R>(
        &self,
        key: &[u8],
        req: &DeltaRequest,
        f: impl FnOnce(&mut MetaEntry<'_>, u64) -> R,
    ) -> DeltaOutcome<R> {
        let now = self.now_ms();
        let (h, shard) = self.locate(key);
        let mut dropped = Vec::new();
        let mut s = shard.lock();
        let out = s.delta(h, key, req, now, &self.inner.config, &mut dropped, f);
        self.release(s, key, dropped);
        out
    }

    /// Removes every entry. Counters are kept, as memcached's `flush_all` keeps them.
    pub fn clear(&self) {
        for p in self.inner.shards.iter() {
            let old = p.0.lock().clear();
            drop(old);
        }
    }

    /// Zeroes the counters (memcached's `stats reset`).
    pub fn reset_counters(&self) {
        for p in self.inner.shards.iter() {
            p.0.lock().reset_counters();
        }
    }

    /// Entries currently held (expired ones not yet reclaimed included).
    pub fn len(&self) -> u64 {
        self.inner.shards.iter().map(|p| p.0.lock().len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The live keys, each with whether it was stored as text by the library.
    pub fn keys(&self) -> Vec<(Box<[u8]>, bool)> {
        let now = self.now_ms();
        let mut out = Vec::new();
        for p in self.inner.shards.iter() {
            p.0.lock()
                .for_each_live(now, |e| out.push((e.key().into(), e.text_key())));
        }
        out
    }

    /// Calls `f` on every live item, a shard at a time under its lock (so `f` must not use
    /// the cache). The order is the slab's, not the eviction order.
    pub fn walk(&self, mut f: impl FnMut(&ItemInfo<'_>)) {
        let now = self.now_ms();
        let now_s = now / 1000;
        for p in self.inner.shards.iter() {
            p.0.lock().for_each_live(now, |e| {
                let state = e.meta.state(now);
                f(&ItemInfo {
                    key: e.key(),
                    value_len: e.value_len(),
                    flags: e.flags,
                    cas: e.cas,
                    expires_at: e.expires_at,
                    last_access_s: now_s.saturating_sub(u64::from(state.idle_secs)),
                    fetched: state.fetched,
                    binary_key: state.binary_key,
                })
            });
        }
    }

    /// The buckets of the key index over all shards (memcached's `hash_power_level` is its
    /// log2).
    pub fn index_buckets(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|p| p.0.lock().index_buckets())
            .sum()
    }

    /// What happened to items, by the slab class memcached would keep them in.
    pub fn class_counters(&self) -> ClassCounters {
        let mut out = ClassCounters::default();
        for p in self.inner.shards.iter() {
            out += &p.0.lock().classes;
        }
        out
    }

    pub fn stats(&self) -> CacheStats {
        let mut s = CacheStats {
            limit_maxbytes: self.max_memory(),
            limit_entries: self.inner.config.max_entries,
            shards: self.inner.shards.len() as u64,
            ..Default::default()
        };
        for p in self.inner.shards.iter() {
            let g = p.0.lock();
            s.counters += g.counters;
            s.curr_items += g.len();
            s.bytes += g.bytes();
            s.payload_bytes += g.payload_bytes();
        }
        s
    }

    /// One full sweep pass now (the background sweeper does the same every
    /// `cleanup_interval`). Returns the number of expired entries reclaimed.
    pub fn sweep_expired(&self) -> usize {
        self.inner.sweep_all()
    }

    /// Stops the background sweeper; the cache stays usable. Idempotent.
    pub fn stop_background(&self) {
        if let Some(mut s) = self.sweeper.lock().take() {
            s.stop();
        }
    }

    /// Checks every shard's invariants; for tests and debugging.
    pub fn validate(&self) -> Result<(), String> {
        for (i, p) in self.inner.shards.iter().enumerate() {
            p.0.lock()
                .validate()
                .map_err(|e| format!("shard {i}: {e}"))?;
        }
        Ok(())
    }

    /// A live entry's whole state, without counting a read or touching the eviction order.
    pub fn export(&self, key: &[u8]) -> Option<Snapshot> {
        let now = self.now_ms();
        let (h, shard) = self.locate(key);
        shard.lock().export(h, key, now)
    }

    /// Puts an entry back as it was (see `Shard::restore`); returns whether it was stored.
    pub fn restore(&self, key: &[u8], snap: &Snapshot, replace: bool, evict: bool) -> bool {
        self.restore_then(key, snap, replace, evict, || {})
    }

    /// `restore`, and `then()` under the key's shard lock if it was stored: a tier that moves
    /// the entry here deletes its own copy there, ordered with any demotion of the same key
    /// (see `release`).
    pub fn restore_then(
        &self,
        key: &[u8],
        snap: &Snapshot,
        replace: bool,
        evict: bool,
        then: impl FnOnce(),
    ) -> bool {
        let now = self.now_ms();
        let (h, shard) = self.locate(key);
        let mut dropped = Vec::new();
        let mut s = shard.lock();
        let stored = s.restore(h, key, snap, replace, evict, now, &mut dropped);
        if stored {
            then();
        }
        self.release(s, key, dropped);
        stored
    }

    /// Removes an entry without counting a delete (it moved to another tier).
    pub fn remove_quiet(&self, key: &[u8]) -> bool {
        let (h, shard) = self.locate(key);
        let removed = shard.lock().remove_quiet(h, key);
        removed.is_some()
    }

    /// A private one-shard cache with this cache's rules, no limits and no sweeper, for running
    /// one command on an item that lives outside the L1 (a large value in the L2). Its CAS
    /// uniques come from `key`'s shard, so they are unique in this cache too.
    pub fn detached(&self, key: &[u8]) -> Cache {
        let config = CacheConfig {
            max_memory: 0,
            max_entries: 0,
            eviction: PolicyKind::Fifo,
            cleanup_interval_ms: 0,
            shards: 1,
            ..self.inner.config.clone()
        };
        let scratch = Cache::with_clock(config, self.inner.clock.clone())
            .expect("a copy of a valid config with one shard is valid");
        let cas = self.locate(key).1.lock().reserve_cas(16);
        scratch.inner.shards[0].0.lock().adopt_cas(cas);
        scratch
    }

    /// Adds a detached cache's counters to `key`'s shard, so `stats` counts its commands.
    pub fn absorb_counters(&self, key: &[u8], other: &Cache) {
        let c = other.inner.shards[0].0.lock().counters;
        self.locate(key).1.lock().counters += c;
    }

    /// Counts a get hit served by a lower tier.
    pub fn count_hit(&self, key: &[u8]) {
        self.locate(key).1.lock().counters.get_hits += 1;
    }

    /// Takes back a get miss that a lower tier turned into a hit.
    pub fn uncount_miss(&self, key: &[u8]) {
        let mut s = self.locate(key).1.lock();
        s.counters.get_misses = s.counters.get_misses.saturating_sub(1);
    }

    /// Makes every future CAS unique larger than `floor`.
    pub fn raise_cas_floor(&self, floor: u64) {
        for p in self.inner.shards.iter() {
            p.0.lock().raise_cas_floor(floor);
        }
    }
}

/// The four operations (see `ops`); an L1 alone never fails on disk.
impl Keyspace for Cache {
    #[inline]
    fn read<R>(
        &self,
        key: &[u8],
        opts: ReadOpts,
        f: impl FnOnce(&mut MetaEntry<'_>) -> R,
    ) -> Option<R> {
        Cache::read(self, key, opts, f)
    }
    fn store(&self, req: &StoreRequest<'_>) -> Result<StoreOutcome, CoreError> {
        Cache::store(self, req)
    }
    fn delete(&self, key: &[u8], req: &DeleteRequest) -> Result<DeleteOutcome, CoreError> {
        Ok(Cache::delete(self, key, req))
    }
    fn delta<R>(
        &self,
        key: &[u8],
        req: &DeltaRequest,
        f: impl FnOnce(&mut MetaEntry<'_>, u64) -> R,
    ) -> Result<DeltaOutcome<R>, CoreError> {
        Ok(Cache::delta(self, key, req, f))
    }
}

#[cfg(test)]
mod meta_tests;
#[cfg(test)]
mod tests;
