//! What tests build again and again: an engine over an in-memory cache on a manual clock, and a
//! session on it. Used by the unit tests, `rust/tests/` and the fuzz targets; not an API.

use std::sync::Arc;

use crate::cache::{Cache, CacheConfig, ManualClock};
use crate::engine::{Engine, EngineConfig};
use crate::protocol::Session;
use crate::tiered::Tiered;

/// The time the manual clocks start at (unix ms).
pub const T0: u64 = 1_700_000_000_000;

/// A manual clock at [`T0`].
pub fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(T0))
}

/// An engine with the default settings over an in-memory cache on the system clock.
pub fn engine() -> Engine {
    let cache = Cache::new(CacheConfig::default()).expect("the default config is valid");
    Engine::new(Tiered::memory(cache), EngineConfig::default())
}

/// An engine over an in-memory cache on a manual clock, without the background sweeper.
pub fn engine_on_clock() -> (Engine, Arc<ManualClock>) {
    let (e, clock) = engine_with(CacheConfig::default(), EngineConfig::default());
    (Arc::into_inner(e).expect("not shared yet"), clock)
}

/// An engine with these settings over an in-memory cache on a manual clock (the cache's
/// sweeper off).
pub fn engine_with(cache: CacheConfig, engine: EngineConfig) -> (Arc<Engine>, Arc<ManualClock>) {
    let clock = clock();
    let cfg = CacheConfig {
        cleanup_interval_ms: 0,
        ..cache
    };
    let cache = Cache::with_clock(cfg, clock.clone()).expect("a valid test config");
    (Arc::new(Engine::new(Tiered::memory(cache), engine)), clock)
}

/// A session on a fresh engine with the default settings, and its clock.
pub fn session() -> (Session, Arc<Engine>, Arc<ManualClock>) {
    session_with(CacheConfig::default(), EngineConfig::default())
}

/// A session on a fresh engine with these settings (the cache's sweeper off), and its clock.
pub fn session_with(
    cache: CacheConfig,
    engine: EngineConfig,
) -> (Session, Arc<Engine>, Arc<ManualClock>) {
    let (engine, clock) = engine_with(cache, engine);
    (Session::new(engine.clone()), engine, clock)
}

/// One shard, no sweeper: CAS uniques count 1, 2, 3 as memcached's do, and nothing changes
/// behind a test's back.
pub fn one_shard() -> CacheConfig {
    CacheConfig {
        shards: 1,
        cleanup_interval_ms: 0,
        ..Default::default()
    }
}

/// [`one_shard`] with memcached's 250-byte key limit, as the server configures its cache.
pub fn server_cache() -> CacheConfig {
    CacheConfig {
        max_key_len: crate::cache::MEMCACHED_MAX_KEY_LEN,
        ..one_shard()
    }
}

/// An engine with these settings over an in-memory cache on the system clock, for tests whose
/// time is real (sockets, idle timeouts, absolute exptimes).
pub fn engine_on_system_clock(cache: CacheConfig, engine: EngineConfig) -> Arc<Engine> {
    let cache = Cache::new(cache).expect("a valid test config");
    Arc::new(Engine::new(Tiered::memory(cache), engine))
}

/// A session over one shard on the system clock, for byte streams whose absolute exptimes are
/// real unix times (the transcripts).
pub fn session_on_system_clock(engine: EngineConfig) -> Session {
    Session::new(engine_on_system_clock(one_shard(), engine))
}

use crate::cache::{
    DeleteOutcome, DeleteRequest, Delta, DeltaOutcome, DeltaRequest, Item, ItemState, Keyspace,
    ReadOpts, StoreMode, StoreOutcome, StoreRequest, Ttl,
};
use crate::error::CoreError;

/// The operations tests spell often, over the four of `cache::ops`, for any [`Keyspace`]
/// (a `Cache` or a `Tiered`); a disk error fails the test.
pub trait Ops: Keyspace {
    /// A store in `mode`.
    fn put(
        &self,
        key: &[u8],
        value: &[u8],
        flags: u32,
        ttl: Ttl,
        mode: StoreMode,
    ) -> Result<StoreOutcome, CoreError> {
        self.store(&StoreRequest::new(mode, key, value).flags(flags).ttl(ttl))
    }

    /// memcached's `cas`.
    fn put_cas(
        &self,
        key: &[u8],
        value: &[u8],
        flags: u32,
        ttl: Ttl,
        cas: u64,
    ) -> Result<StoreOutcome, CoreError> {
        self.store(&StoreRequest::set(key, value).flags(flags).ttl(ttl).cas(cas))
    }

    /// memcached's `touch`: the item (with its old deadline).
    fn touch(&self, key: &[u8], ttl: Ttl) -> Option<Item> {
        self.read(key, ReadOpts::TOUCH, |e| {
            let item = e.item();
            e.set_ttl(ttl);
            item
        })
    }

    /// memcached's `gat`.
    fn gat(&self, key: &[u8], ttl: Ttl) -> Option<Item> {
        self.read(key, ReadOpts::GAT, |e| {
            e.set_ttl(ttl);
            e.item()
        })
    }

    /// A plain delete; whether something was deleted.
    fn del(&self, key: &[u8]) -> bool {
        Keyspace::delete(self, key, &DeleteRequest::default()).expect("no disk error in a test")
            == DeleteOutcome::Deleted
    }

    /// A plain incr or decr: the number and the new CAS unique.
    fn incr_decr(&self, key: &[u8], d: Delta) -> DeltaOutcome<(u64, u64)> {
        Keyspace::delta(self, key, &DeltaRequest::of(d), |e, n| (n, e.cas()))
            .expect("no disk error in a test")
    }

    /// The item and its meta state, not counted as a read.
    fn peek_meta(&self, key: &[u8]) -> Option<(Item, ItemState)> {
        self.read(key, ReadOpts::PEEK, |e| (e.item(), e.state()))
    }
}

impl<K: Keyspace> Ops for K {}
