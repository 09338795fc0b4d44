//! The two tiers as one cache: the L1 in memory and, optionally, the L2 on disk.
//!
//! Every command sees one cache. Without an L2 each call goes straight to the L1. With one:
//!
//! - **Reads** try the L1 first; a miss looks in the L2. A small item found there is promoted
//!   into the L1; a large one (over `large_value_threshold`) is served without taking L1 memory.
//!   Expired records are never returned, and are deleted.
//! - **Writes** run where the item lives, under a lock striped by key (so a promotion and a
//!   write of the same key never interleave), and the result is then written where it belongs:
//!   large values only in the L2; small ones in the L1, and with `write_through` in the L2 too.
//!   A command on a large item runs on a private one-entry cache (`Cache::detached`) loaded
//!   from the L2, so every memcached rule (CAS, append, incr, the meta flags) is the L1's own
//!   code, whichever tier holds the item.
//! - **write_through** (the default): every write reaches the L2, so the L1 is a subset of it
//!   and a restart loses nothing acknowledged (with `sync = "always"`, not even a crash).
//!   **write_back**: the tiers are exclusive; the L2 holds what the L1 evicted (and large
//!   values), a promotion moves the item up, and a clean shutdown writes the L1 down. A crash
//!   loses what was only in the L1, never resurrects an old value.
//! - **Warm-up**: after a restart, a background thread fills the L1 from the L2, most recently
//!   written first, until the L1 is full; `get` works from the first moment either way.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;

use bytes::Bytes;
use parking_lot::{Mutex, MutexGuard};

use crate::cache::EntryMeta;
use crate::cache::{
    Cache, CacheStats, Counted, DeleteOutcome, DeleteRequest, DeltaOutcome, DeltaRequest, ItemInfo,
    Keyspace, MetaEntry, ReadOpts, Snapshot, StoreOutcome, StoreRequest, Ttl,
};
use crate::disk_wait;
use crate::error::CoreError;
use crate::store::{DiskConfig, DiskStats, DiskStore, Header};

/// How writes reach the L2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WriteStrategy {
    #[default]
    WriteThrough,
    WriteBack,
}

/// The default [`TierConfig::large_value_threshold`]: values over 10 KiB live only in the L2.
pub const DEFAULT_LARGE_VALUE_THRESHOLD: usize = 10 * 1024;

/// How the tiers cooperate.
#[derive(Debug, Clone, Copy)]
pub struct TierConfig {
    pub strategy: WriteStrategy,
    /// Values longer than this live only in the L2.
    pub large_value_threshold: usize,
    /// Fill the L1 from the L2 in the background at startup.
    pub warm_up: bool,
}

impl Default for TierConfig {
    fn default() -> Self {
        TierConfig {
            strategy: WriteStrategy::WriteThrough,
            large_value_threshold: DEFAULT_LARGE_VALUE_THRESHOLD,
            warm_up: true,
        }
    }
}

/// Key stripes for the write lock: enough that unrelated keys rarely share one.
const STRIPES: usize = 1024;
/// Keys read per step of the warm-up.
const WARM_STEP: usize = 256;
/// The warm-up stops after this many records in a row found no room in the L1.
const WARM_FULL_AFTER: u32 = 64;

/// Warm-up progress, for `stats` and the log.
#[derive(Debug, Default)]
pub struct WarmUp {
    pub loaded: AtomicU64,
    pub running: AtomicBool,
    stop: AtomicBool,
}

struct L2 {
    disk: Arc<DiskStore>,
    config: TierConfig,
    stripes: Box<[Mutex<()>]>,
    stripe_hasher: foldhash::fast::FixedState,
    promotions: AtomicU64,
    demotions: Arc<AtomicU64>,
    read_errors: AtomicU64,
    warm: Arc<WarmUp>,
    warm_thread: Mutex<Option<JoinHandle<()>>>,
    closed: AtomicBool,
}

/// Counters of the tier machinery, for `stats`.
#[derive(Debug, Default, Clone, Copy)]
pub struct TierStats {
    pub disk: DiskStats,
    pub promotions: u64,
    pub demotions: u64,
    pub read_errors: u64,
    pub warm_loaded: u64,
    pub warm_running: bool,
}

impl TierStats {
    /// The counters by the names `stats` shows them under (memcached has no L2; its extstore
    /// fields mean something else, so these names are ratmemcache's own).
    pub fn fields(&self) -> Vec<(&'static str, u64)> {
        let d = &self.disk;
        vec![
            ("l2_items", d.items),
            ("l2_bytes", d.bytes),
            ("l2_file_bytes", d.file_bytes),
            ("l2_reads", d.reads),
            ("l2_hits", d.hits),
            ("l2_writes", d.writes),
            ("l2_commits", d.commits),
            ("l2_evictions", d.evictions),
            ("l2_expirations", d.expirations),
            ("l2_errors", d.errors + self.read_errors),
            ("l2_file_errors", d.file_errors),
            ("l2_orphans_removed", d.orphans_removed),
            ("l2_promotions", self.promotions),
            ("l2_demotions", self.demotions),
            ("l2_warmup_loaded", self.warm_loaded),
            ("l2_warmup_running", u64::from(self.warm_running)),
        ]
    }
}

/// A key, and whether the library stored it as text.
pub type KeyOf = (Box<[u8]>, bool);

/// Where a command runs.
enum Place {
    L1,
    /// A large item (or one that can't fit a shard), loaded into a private cache.
    Detached(Cache),
    /// A large item as read from the L2, for a read that needs no cache around it.
    Loaded(Snapshot),
}

/// What a read found.
enum Looked<R> {
    /// In a cache: the read's own result.
    Hit(R),
    /// A large item in the L2, served straight from the record (one copy, no L1 memory).
    Large(Snapshot),
    Miss,
}

impl<R> Looked<R> {
    fn into_option(self, from_record: impl FnOnce(Snapshot) -> R) -> Option<R> {
        match self {
            Looked::Hit(r) => Some(r),
            Looked::Large(s) => Some(from_record(s)),
            Looked::Miss => None,
        }
    }
}

pub struct Tiered {
    l1: Arc<Cache>,
    l2: Option<L2>,
}

fn header_of(s: &Snapshot, now: u64) -> Header {
    Header {
        meta: s.meta,
        flags: s.flags,
        cas: s.cas,
        expires_at: s.expires_at,
        stored_at: now,
        value_len: s.value.len() as u32,
    }
}

fn snapshot_of(h: Header, value: Bytes) -> Snapshot {
    Snapshot {
        value,
        flags: h.flags,
        cas: h.cas,
        expires_at: h.expires_at,
        meta: h.meta,
    }
}

/// What identifies a version of an entry: a write changes its CAS unique or its deadline.
fn version(s: &Option<Snapshot>) -> Option<(u64, u64, u8)> {
    s.as_ref().map(|s| (s.cas, s.expires_at, s.meta))
}

impl Tiered {
    /// The L1 alone.
    pub fn memory(l1: Cache) -> Arc<Tiered> {
        Arc::new(Tiered {
            l1: Arc::new(l1),
            l2: None,
        })
    }

    /// Opens the L2 that `disk` describes (on the L1's clock) and puts the L1 over it.
    pub fn open(l1: Cache, disk: DiskConfig, config: TierConfig) -> Result<Arc<Tiered>, CoreError> {
        let store = DiskStore::open(disk, l1.clock())?;
        Ok(Tiered::with_l2(l1, store, config))
    }

    /// The L1 over an opened L2. Starts the warm-up when asked and the L2 holds anything.
    pub fn with_l2(l1: Cache, disk: DiskStore, config: TierConfig) -> Arc<Tiered> {
        let l1 = Arc::new(l1);
        l1.raise_cas_floor(disk.max_cas());
        let disk = Arc::new(disk);
        let demotions = Arc::new(AtomicU64::new(0));
        if config.strategy == WriteStrategy::WriteBack {
            let (d, count, clock) = (Arc::downgrade(&disk), demotions.clone(), l1.clone());
            l1.set_demotion(Box::new(move |key, snap| {
                let Some(disk) = d.upgrade() else { return };
                let h = header_of(&snap, clock.now_ms());
                match disk.put(key, &h, &snap.value, false) {
                    Ok(()) => {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => log::warn!("an evicted item could not be written to L2: {e}"),
                }
            }));
        }
        let warm = !disk.is_empty() && config.warm_up;
        let t = Arc::new(Tiered {
            l1,
            l2: Some(L2 {
                disk,
                config,
                stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
                stripe_hasher: foldhash::fast::FixedState::default(),
                promotions: AtomicU64::new(0),
                demotions,
                read_errors: AtomicU64::new(0),
                warm: Arc::new(WarmUp::default()),
                warm_thread: Mutex::new(None),
                closed: AtomicBool::new(false),
            }),
        });
        if warm {
            t.start_warm_up();
        }
        t
    }

    /// The L1 (for its config, clock and invariant checks).
    #[inline]
    pub fn l1(&self) -> &Cache {
        &self.l1
    }

    pub fn has_l2(&self) -> bool {
        self.l2.is_some()
    }

    #[inline]
    pub fn now_ms(&self) -> u64 {
        self.l1.now_ms()
    }

    pub fn config(&self) -> &crate::cache::CacheConfig {
        self.l1.config()
    }

    pub fn check_key(&self, key: &[u8]) -> Result<(), CoreError> {
        self.l1.check_key(key)
    }

    pub fn deadline(&self, ttl: Ttl, now: u64) -> Option<u64> {
        self.l1.deadline(ttl, now)
    }

    // ---------------------------------------------------------------------------------------
    // The machinery
    // ---------------------------------------------------------------------------------------

    fn stripe<'a>(&self, l2: &'a L2, key: &[u8]) -> MutexGuard<'a, ()> {
        let i = l2.stripe_hasher.hash_one(key) as usize % STRIPES;
        l2.stripes[i].lock()
    }

    /// `key`'s stripe, for a write. Where waits are refused (`disk_wait`), a stripe another
    /// thread holds (for its disk work, most likely) is a refused wait.
    fn write_stripe<'a>(&self, l2: &'a L2, key: &[u8]) -> Result<MutexGuard<'a, ()>, CoreError> {
        if !disk_wait::refusing() {
            return Ok(self.stripe(l2, key));
        }
        let i = l2.stripe_hasher.hash_one(key) as usize % STRIPES;
        match l2.stripes[i].try_lock() {
            Some(g) => Ok(g),
            None => {
                disk_wait::refuse();
                Err(CoreError::WouldWait)
            }
        }
    }

    /// Looks in the L2 for `key`, which the L1 doesn't hold (the caller holds its stripe). A
    /// small item is promoted into the L1; a large one is returned as read.
    fn fault_in(&self, l2: &L2, key: &[u8]) -> Result<Option<Place>, CoreError> {
        if disk_wait::refuse() {
            return Err(CoreError::WouldWait);
        }
        let Some((h, v)) = l2.disk.get(key)? else {
            return Ok(None);
        };
        let snap = snapshot_of(h, v);
        if snap.value.len() <= l2.config.large_value_threshold {
            let mut deleted = Ok(());
            if self.l1.restore_then(key, &snap, false, true, || {
                deleted = self.drop_promoted(l2, key);
            }) {
                l2.promotions.fetch_add(1, Ordering::Relaxed);
                deleted?;
                return Ok(Some(Place::L1));
            }
        }
        Ok(Some(Place::Loaded(snap)))
    }

    /// With write_back an item lives in one tier: once promoted into the L1 (this runs under
    /// its shard lock, see `Cache::restore_then`), its L2 record goes.
    fn drop_promoted(&self, l2: &L2, key: &[u8]) -> Result<(), CoreError> {
        if l2.config.strategy == WriteStrategy::WriteBack {
            l2.disk.delete(key, false)?;
        }
        Ok(())
    }

    /// A private cache holding `snap`, for a command on an item that lives in the L2.
    fn detach(&self, key: &[u8], snap: &Snapshot) -> Place {
        let d = self.l1.detached(key);
        d.restore(key, snap, true, true);
        Place::Detached(d)
    }

    /// Where `key` lives now, faulting it in from the L2 when the L1 doesn't have it.
    fn locate(&self, l2: &L2, key: &[u8]) -> Result<Place, CoreError> {
        if self.l1.contains(key) {
            return Ok(Place::L1);
        }
        Ok(match self.fault_in(l2, key)? {
            Some(Place::Loaded(snap)) => self.detach(key, &snap),
            Some(p) => p,
            None => Place::L1,
        })
    }

    /// A read: the L1, then the L2. `op` runs at most twice (a miss, then on the promoted item);
    /// a large item comes back as its record.
    fn read_tiers<R>(
        &self,
        key: &[u8],
        counted: bool,
        mut op: impl FnMut(&Cache) -> Option<R>,
    ) -> Looked<R> {
        let found = |r: Option<R>| r.map_or(Looked::Miss, Looked::Hit);
        let Some(l2) = &self.l2 else {
            return found(op(&self.l1));
        };
        if let Some(r) = op(&self.l1) {
            return Looked::Hit(r);
        }
        if disk_wait::refuse() {
            // The L2 may have it: this read runs again where it may wait (`disk_wait`).
            if counted {
                self.l1.uncount_miss(key);
            }
            return Looked::Miss;
        }
        let _g = self.stripe(l2, key);
        let mut attempts = 0;
        let place = loop {
            // Another reader, or the warm-up, may have promoted it while this one waited.
            let faulted = if self.l1.contains(key) {
                Ok(Some(Place::L1))
            } else {
                self.fault_in(l2, key)
            };
            let place = match faulted {
                Ok(Some(p)) => p,
                Ok(None) => return Looked::Miss,
                Err(e) => {
                    l2.read_errors.fetch_add(1, Ordering::Relaxed);
                    log::error!("{e}");
                    return Looked::Miss;
                }
            };
            if counted && attempts == 0 {
                self.l1.uncount_miss(key);
            }
            if let Place::L1 = place {
                if let Some(r) = op(&self.l1) {
                    return Looked::Hit(r);
                }
                // Another thread's write evicted it between the promotion and this read (the
                // eviction demoted it to the L2 again, under its shard lock): fault it in again.
                if counted {
                    self.l1.uncount_miss(key);
                }
                attempts += 1;
                if attempts < 4 {
                    continue;
                }
            }
            break place;
        };
        match place {
            Place::L1 => Looked::Miss,
            Place::Loaded(snap) => {
                if counted {
                    self.l1.count_hit(key);
                }
                Looked::Large(snap)
            }
            Place::Detached(d) => {
                let r = op(&d);
                self.l1.absorb_counters(key, &d);
                found(r)
            }
        }
    }

    /// A command that may change `key`: runs where the item lives, then writes the result where
    /// it belongs. `needs_prior`: the command's outcome depends on the current item (all but a
    /// plain set). `large`: it stores a value over the threshold, which must not land in the L1.
    fn write<R>(
        &self,
        key: &[u8],
        needs_prior: bool,
        large: bool,
        op: impl FnOnce(&Cache) -> R,
    ) -> Result<R, CoreError> {
        let Some(l2) = &self.l2 else {
            return Ok(op(&self.l1));
        };
        // Where waits are refused, give up now, before anything changes, if the write would
        // wait to be written down (a value file, `sync = "always"`, the writer's backlog), or
        // if an earlier step of the same request was refused (it is rolled back whole).
        if disk_wait::refusing()
            && (disk_wait::refused() || large || l2.disk.writes_wait())
            && disk_wait::refuse()
        {
            return Err(CoreError::WouldWait);
        }
        let _g = self.write_stripe(l2, key)?;
        let place = if large {
            let current = match (needs_prior, self.l1.export(key)) {
                (false, _) => None,
                (true, Some(s)) => Some(s),
                (true, None) => l2.disk.get(key)?.map(|(h, v)| snapshot_of(h, v)),
            };
            match current {
                Some(s) => self.detach(key, &s),
                None => Place::Detached(self.l1.detached(key)),
            }
        } else if needs_prior {
            self.locate(l2, key)?
        } else {
            Place::L1
        };
        let cache = match &place {
            Place::Detached(d) => d,
            _ => &*self.l1,
        };
        // A plain set or a large write is always written down; anything else only if it changed
        // the item (a failed add or cas, a delete of nothing, a plain read writes nothing).
        let always = large || !needs_prior;
        let before = if always {
            None
        } else {
            version(&cache.export(key))
        };
        let r = op(cache);
        let after = cache.export(key);
        if let Place::Detached(d) = &place {
            self.l1.absorb_counters(key, d);
        }
        if always || before != version(&after) {
            self.settle(l2, key, &place, after)?;
        }
        Ok(r)
    }

    /// Writes an item's new state to the tier it belongs in.
    fn settle(
        &self,
        l2: &L2,
        key: &[u8],
        place: &Place,
        now: Option<Snapshot>,
    ) -> Result<(), CoreError> {
        let through = l2.config.strategy == WriteStrategy::WriteThrough;
        let detached = matches!(place, Place::Detached(_));
        match now {
            None => {
                if detached {
                    self.l1.remove_quiet(key);
                }
                if through || detached {
                    l2.disk.delete(key, false)?;
                }
            }
            Some(s) if s.value.len() > l2.config.large_value_threshold => {
                self.l1.remove_quiet(key);
                l2.disk
                    .put(key, &header_of(&s, self.now_ms()), &s.value, false)?;
            }
            Some(s) => {
                if detached && !self.l1.restore(key, &s, true, true) {
                    // Too large for a shard: it stays in the L2 whatever the threshold says.
                    return l2
                        .disk
                        .put(key, &header_of(&s, self.now_ms()), &s.value, false);
                }
                if through {
                    l2.disk
                        .put(key, &header_of(&s, self.now_ms()), &s.value, false)?;
                } else {
                    // write_back: the item now lives in the L1 only; drop any older L2 copy.
                    l2.disk.delete(key, false)?;
                }
            }
        }
        Ok(())
    }

    /// For commands whose replies have no room for a disk error: log it, keep the L1 result.
    fn logged<R>(&self, r: Result<R, CoreError>, fallback: impl FnOnce() -> R) -> R {
        r.unwrap_or_else(|e| {
            if !matches!(e, CoreError::WouldWait) {
                log::error!("{e}");
            }
            fallback()
        })
    }

    /// A store whose value alone is over the threshold: it goes to the L2 without touching the
    /// L1. (An append or prepend grows an existing value; `settle` moves it down if it must.)
    fn is_large_store(&self, req: &StoreRequest<'_>) -> bool {
        !req.concatenates()
            && self
                .l2
                .as_ref()
                .is_some_and(|l2| req.value.len() > l2.config.large_value_threshold)
    }

    // ---------------------------------------------------------------------------------------
    // Whole-cache operations
    // ---------------------------------------------------------------------------------------

    /// Removes every item from both tiers (memcached's `flush_all`).
    pub fn clear(&self) {
        self.l1.clear();
        if let Some(l2) = &self.l2 {
            if let Err(e) = l2.disk.clear(false) {
                log::error!("{e}");
            }
        }
    }

    pub fn reset_counters(&self) {
        self.l1.reset_counters();
    }

    /// Items held: the L1's, plus the L2's that the L1 doesn't also hold.
    pub fn len(&self) -> u64 {
        let Some(l2) = &self.l2 else {
            return self.l1.len();
        };
        if let Err(e) = l2.disk.flush(false) {
            log::error!("{e}");
        }
        match l2.config.strategy {
            // The L1 is a subset of the L2, except for promoted items already gone from it.
            WriteStrategy::WriteThrough => l2.disk.len().max(self.l1.len()),
            WriteStrategy::WriteBack => l2.disk.len() + self.l1.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The live keys of both tiers, each with whether the library stored it as text.
    pub fn keys(&self) -> Result<Vec<KeyOf>, CoreError> {
        let mut keys = self.l1.keys();
        if let Some(l2) = &self.l2 {
            l2.disk.walk(|k, h| {
                if !self.l1.contains(k) {
                    keys.push((k.into(), EntryMeta::persisted_text_key(h.meta)));
                }
            })?;
        }
        Ok(keys)
    }

    /// Calls `f` on every live item of both tiers (see `Cache::walk`); an item in both is seen
    /// once, as the L1 holds it.
    pub fn walk(&self, mut f: impl FnMut(&ItemInfo<'_>)) -> Result<(), CoreError> {
        self.l1.walk(&mut f);
        if let Some(l2) = &self.l2 {
            l2.disk.walk(|k, h| {
                if !self.l1.contains(k) {
                    let state = EntryMeta::persisted_state(h.meta);
                    f(&ItemInfo {
                        key: k,
                        value_len: h.value_len as usize,
                        flags: h.flags,
                        cas: h.cas,
                        expires_at: h.expires_at,
                        last_access_s: h.stored_at / 1000,
                        fetched: state.fetched,
                        binary_key: state.binary_key,
                    });
                }
            })?;
        }
        Ok(())
    }

    /// The L1's statistics.
    pub fn stats(&self) -> CacheStats {
        self.l1.stats()
    }

    /// The L2's and the tiers' counters, if there is an L2.
    pub fn tier_stats(&self) -> Option<TierStats> {
        let l2 = self.l2.as_ref()?;
        Some(TierStats {
            disk: l2.disk.stats(),
            promotions: l2.promotions.load(Ordering::Relaxed),
            demotions: l2.demotions.load(Ordering::Relaxed),
            read_errors: l2.read_errors.load(Ordering::Relaxed),
            warm_loaded: l2.warm.loaded.load(Ordering::Relaxed),
            warm_running: l2.warm.running.load(Ordering::Relaxed),
        })
    }

    /// Expired items reclaimed now from both tiers.
    pub fn sweep_expired(&self) -> Result<u64, CoreError> {
        let mut n = self.l1.sweep_expired() as u64;
        if let Some(l2) = &self.l2 {
            n += l2.disk.sweep_expired()?;
        }
        Ok(n)
    }

    /// Waits until every L2 write so far is committed; `durable` also fsyncs.
    pub fn flush(&self, durable: bool) -> Result<(), CoreError> {
        match &self.l2 {
            Some(l2) => l2.disk.flush(durable),
            None => Ok(()),
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        self.l1.validate()
    }

    /// Stops the background threads. With an L2: stops the warm-up, writes the L1 down
    /// (write_back), commits durably and closes the file. The cache stays usable in memory.
    pub fn close(&self) -> Result<(), CoreError> {
        self.l1.stop_background();
        let Some(l2) = &self.l2 else {
            return Ok(());
        };
        if l2.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        l2.warm.stop.store(true, Ordering::Relaxed);
        if let Some(h) = l2.warm_thread.lock().take() {
            let _ = h.join();
        }
        if l2.config.strategy == WriteStrategy::WriteBack {
            let now = self.now_ms();
            for (k, _) in self.l1.keys() {
                if let Some(s) = self.l1.export(&k) {
                    l2.disk.put(&k, &header_of(&s, now), &s.value, false)?;
                }
            }
        }
        l2.disk.close()
    }

    /// Stops only the background sweeper (the library's `stop_background`).
    pub fn stop_background(&self) {
        self.l1.stop_background();
    }

    pub fn raise_cas_floor(&self, floor: u64) {
        self.l1.raise_cas_floor(floor);
    }

    // ---------------------------------------------------------------------------------------
    // Warm-up
    // ---------------------------------------------------------------------------------------

    fn start_warm_up(self: &Arc<Self>) {
        let l2 = self.l2.as_ref().expect("warm-up needs an L2");
        l2.warm.running.store(true, Ordering::Relaxed);
        let weak = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("ratmemcache-warmup".into())
            .spawn(move || warm_up(weak));
        match spawned {
            Ok(h) => *l2.warm_thread.lock() = Some(h),
            Err(e) => {
                l2.warm.running.store(false, Ordering::Relaxed);
                log::warn!("cannot start the L2 warm-up thread: {e}; the L1 fills as it is used");
            }
        }
    }

    /// One warm-up step: loads the next keys after `cursor`, adding how many it looked at to
    /// `seen`. `None` when finished.
    fn warm_step(
        &self,
        cursor: Option<(u64, Vec<u8>)>,
        full: &mut u32,
        seen: &mut u64,
    ) -> Option<(u64, Vec<u8>)> {
        let l2 = self.l2.as_ref()?;
        let keys = match l2.disk.recent_keys(cursor.as_ref(), WARM_STEP) {
            Ok(k) => k,
            Err(e) => {
                log::error!("L2 warm-up stopped: {e}");
                return None;
            }
        };
        let last = keys.last().cloned()?;
        for (_, key) in &keys {
            if l2.warm.stop.load(Ordering::Relaxed) {
                return None;
            }
            *seen += 1;
            let _g = self.stripe(l2, key);
            if self.l1.contains(key) {
                continue;
            }
            let max_len = u32::try_from(l2.config.large_value_threshold).unwrap_or(u32::MAX);
            let Ok(Some((h, v))) = l2.disk.get_at_most(key, max_len) else {
                continue; // absent, or too large for the L1 (not read)
            };
            if self
                .l1
                .restore_then(key, &snapshot_of(h, v), false, false, || {
                    let _ = self.drop_promoted(l2, key);
                })
            {
                *full = 0;
                l2.warm.loaded.fetch_add(1, Ordering::Relaxed);
            } else {
                *full += 1;
                if *full >= WARM_FULL_AFTER {
                    return None;
                }
            }
        }
        Some(last)
    }
}

/// The four operations (see `cache::ops`).
impl Keyspace for Tiered {
    /// A read (see `Cache::read`). With an L2, a miss looks there: a small item is promoted, a
    /// large one is read from its record. A read that may change the entry (`opts.writes`, or a
    /// vivify) runs where the item lives, and its change is written there. A disk error is
    /// logged and read as a miss.
    #[inline]
    fn read<R>(
        &self,
        key: &[u8],
        opts: ReadOpts,
        f: impl FnOnce(&mut MetaEntry<'_>) -> R,
    ) -> Option<R> {
        if self.l2.is_none() {
            return self.l1.read(key, opts, f);
        }
        if opts.writes || opts.vivify.is_some() {
            let r = self.write(key, true, false, |c| c.read(key, opts, f));
            return self.logged(r, || None);
        }
        let mut f = Some(f);
        let counted = opts.counted != Counted::No;
        let looked = self.read_tiers(key, counted, |c| {
            c.read(key, opts, |e| (f.take().expect("runs once on a hit"))(e))
        });
        looked.into_option(|snap| {
            let cfg = self.l1.config();
            let mut me = MetaEntry::of_record(key, &snap, self.now_ms(), cfg);
            (f.take().expect("not run on a large item"))(&mut me)
        })
    }

    /// Every write of a value (see `Cache::store`): a large value goes to the L2 only.
    fn store(&self, req: &StoreRequest<'_>) -> Result<StoreOutcome, CoreError> {
        if self.l2.is_none() {
            return self.l1.store(req);
        }
        self.l1.check_key(req.key)?;
        let large = self.is_large_store(req);
        // An append or prepend may grow the value into a file of its own.
        if req.concatenates() && disk_wait::refuse() {
            return Err(CoreError::WouldWait);
        }
        self.write(req.key, req.needs_prior(), large, |c| c.store(req))?
    }

    /// A delete (see `Cache::delete`), in whichever tier holds the item.
    fn delete(&self, key: &[u8], req: &DeleteRequest) -> Result<DeleteOutcome, CoreError> {
        if self.l2.is_none() {
            return Ok(self.l1.delete(key, req));
        }
        self.write(key, true, false, |c| c.delete(key, req))
    }

    /// An incr or decr (see `Cache::delta`), where the item lives.
    fn delta<R>(
        &self,
        key: &[u8],
        req: &DeltaRequest,
        f: impl FnOnce(&mut MetaEntry<'_>, u64) -> R,
    ) -> Result<DeltaOutcome<R>, CoreError> {
        if self.l2.is_none() {
            return Ok(self.l1.delta(key, req, f));
        }
        self.write(key, true, false, |c| c.delta(key, req, f))
    }
}

/// How often the warm-up reports its progress.
const WARM_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

fn warm_up(weak: Weak<Tiered>) {
    let started = std::time::Instant::now();
    let total = match weak.upgrade() {
        Some(t) => t.l2.as_ref().map_or(0, |l2| l2.disk.stats().items),
        None => return,
    };
    log::info!("L2 warm-up: loading up to {total} items into L1, most recent first");
    let mut cursor = None;
    let mut full = 0;
    let mut seen = 0;
    let mut next_log = started + WARM_LOG_EVERY;
    loop {
        let Some(t) = weak.upgrade() else { return };
        cursor = t.warm_step(cursor, &mut full, &mut seen);
        let l2 = t.l2.as_ref().expect("warm-up needs an L2");
        let loaded = l2.warm.loaded.load(Ordering::Relaxed);
        if cursor.is_none() {
            l2.warm.running.store(false, Ordering::Relaxed);
            let why = if l2.warm.stop.load(Ordering::Relaxed) {
                " (stopped: the cache is closing)"
            } else if full >= WARM_FULL_AFTER {
                " (the L1 is full)"
            } else {
                ""
            };
            log::info!(
                "L2 warm-up done: {seen}/{total} items read, {loaded} loaded into L1, in \
                 {:.1}s{why}",
                started.elapsed().as_secs_f64()
            );
            return;
        }
        let now = std::time::Instant::now();
        if now >= next_log {
            next_log = now + WARM_LOG_EVERY;
            log::info!("{}", warm_progress(seen, total, loaded));
        }
    }
}

/// The periodic warm-up line: "L2 warm-up: N/M items, X% (K loaded into L1)".
fn warm_progress(seen: u64, total: u64, loaded: u64) -> String {
    let pct = if total == 0 {
        100.0
    } else {
        (seen as f64 * 100.0 / total as f64).min(100.0)
    };
    format!("L2 warm-up: {seen}/{total} items, {pct:.0}% ({loaded} loaded into L1)")
}

impl Drop for Tiered {
    fn drop(&mut self) {
        if self.l2.is_some() {
            if let Err(e) = self.close() {
                log::error!("closing the L2: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::warm_progress;

    #[test]
    fn warm_up_progress_reads_n_of_m() {
        assert_eq!(
            warm_progress(250, 1000, 200),
            "L2 warm-up: 250/1000 items, 25% (200 loaded into L1)"
        );
        assert_eq!(
            warm_progress(0, 0, 0),
            "L2 warm-up: 0/0 items, 100% (0 loaded into L1)"
        );
        // records written while it runs can make it read more than it counted at the start
        assert!(warm_progress(1200, 1000, 1000).contains("100%"));
    }
}
