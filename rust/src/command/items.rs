//! The commands on items: get, touch, store, delete, incr/decr, and the item size limit.

use std::sync::atomic::Ordering;

use super::Failure;
use crate::cache::{
    memcached_item_size, DeleteOutcome, DeleteRequest, DeltaOutcome, DeltaRequest, Keyspace,
    MetaEntry, ReadOpts, StoreOutcome, StoreRequest, Ttl,
};
use crate::disk_wait;
use crate::engine::Engine;

impl Engine {
    /// memcached's `item_size_ok`, checked when a storage command arrives, before its value is
    /// read: an item whose [`memcached_item_size`] is over the item size limit (`-I`) is
    /// refused. A refused write that would have replaced the value (`drop_old`: a `set`, any
    /// meta set) also deletes the key's old value, as memcached's does, so a stale value
    /// can't outlive a failed update. A classic store (text or binary) counts in `stats detail`
    /// here, whether it fits or not.
    pub fn admit(
        &self,
        key: &[u8],
        value_len: usize,
        flags: u32,
        drop_old: bool,
    ) -> Result<(), Failure> {
        let admitted = self.meta_admit(key, value_len, flags, drop_old);
        if !disk_wait::refused() {
            self.runtime.detail.record_set(key);
        }
        admitted
    }

    /// [`admit`](Self::admit) for a meta set: memcached's meta commands are not in
    /// `stats detail`.
    pub fn meta_admit(
        &self,
        key: &[u8],
        value_len: usize,
        flags: u32,
        drop_old: bool,
    ) -> Result<(), Failure> {
        if self.item_size(key.len(), value_len, flags) <= self.config().max_item_size {
            return Ok(());
        }
        if drop_old {
            let _ = self.cache().delete(key, &DeleteRequest::default());
            if disk_wait::refused() {
                return Err(Failure::DiskError); // rolled back, runs again (`disk_wait`)
            }
        }
        self.counters
            .store_too_large
            .fetch_add(1, Ordering::Relaxed);
        Err(Failure::TooLarge)
    }

    /// memcached's size of an item ([`memcached_item_size`]), with or without the CAS field as
    /// the cache gives CAS uniques or not (`-C`).
    pub fn item_size(&self, key_len: usize, value_len: usize, flags: u32) -> usize {
        memcached_item_size(key_len, value_len, flags, self.cache().config().cas_uniques)
    }

    /// A read of `key`: `touch` also gives it a new lifetime (`gat`). `f` sees the live entry.
    #[inline]
    pub fn get<R>(
        &self,
        key: &[u8],
        touch: Option<Ttl>,
        f: impl FnOnce(&MetaEntry<'_>) -> R,
    ) -> Option<R> {
        let r = match touch {
            None => self.cache().read(key, ReadOpts::GET, |e| f(e)),
            Some(ttl) => self.cache().read(key, ReadOpts::GAT, |e| {
                e.set_ttl(ttl);
                f(e)
            }),
        };
        if !disk_wait::refused() {
            self.runtime.detail.record_get(key, r.is_some());
        }
        r
    }

    /// memcached's `touch`: a new lifetime for a live item; its flags and CAS unique.
    pub fn touch(&self, key: &[u8], ttl: Ttl) -> Option<(u32, u64)> {
        self.cache().read(key, ReadOpts::TOUCH, |e| {
            e.set_ttl(ttl);
            (e.flags(), e.cas())
        })
    }

    /// Every storage command. An append or prepend whose result would be over the item size
    /// limit is not stored, as memcached can't allocate it.
    pub fn store(&self, req: StoreRequest<'_>) -> Result<StoreOutcome, Failure> {
        let req = StoreRequest {
            max_item_size: self.config().max_item_size,
            ..req
        };
        match self.cache().store(&req) {
            Ok(StoreOutcome::NoRoom) => Err(self.no_memory()),
            Ok(out) => Ok(out),
            Err(e) => Err(self.failed(Failure::of(&e))),
        }
    }

    /// A classic delete (text or binary), counted in `stats detail`.
    pub fn delete(&self, key: &[u8], req: DeleteRequest) -> Result<DeleteOutcome, Failure> {
        let r = self.meta_delete(key, req);
        if !disk_wait::refused() {
            self.runtime.detail.record_delete(key);
        }
        r
    }

    /// A delete, with memcached's rules for a CAS unique and invalidation (`md`: not in
    /// `stats detail`).
    pub fn meta_delete(&self, key: &[u8], req: DeleteRequest) -> Result<DeleteOutcome, Failure> {
        self.cache()
            .delete(key, &req)
            .map_err(|e| self.failed(Failure::of(&e)))
    }

    /// An incr or decr; `f` sees the changed (or created) entry and the number.
    pub fn delta<R>(
        &self,
        key: &[u8],
        req: DeltaRequest,
        f: impl FnOnce(&mut MetaEntry<'_>, u64) -> R,
    ) -> Result<DeltaOutcome<R>, Failure> {
        self.cache()
            .delta(key, &req, f)
            .map_err(|e| self.failed(Failure::of(&e)))
    }

    /// Counts a failure in memcached's counters (`store_no_memory`) and logs a disk failure.
    fn failed(&self, f: Failure) -> Failure {
        if f == Failure::NoMemory {
            self.counters
                .store_no_memory
                .fetch_add(1, Ordering::Relaxed);
        }
        f
    }

    fn no_memory(&self) -> Failure {
        self.failed(Failure::NoMemory)
    }
}

#[cfg(test)]
mod tests {
    use crate::cache::{CacheConfig, Keyspace, StoreMode, StoreOutcome, StoreRequest};
    use crate::command::Failure;
    use crate::engine::EngineConfig;
    use crate::testkit::engine_with;
    use std::sync::atomic::Ordering;

    fn engine_1k() -> std::sync::Arc<crate::engine::Engine> {
        let cfg = EngineConfig {
            max_item_size: 1024,
            ..Default::default()
        };
        engine_with(CacheConfig::default(), cfg).0
    }

    #[test]
    fn the_item_size_counts_memcacheds_header_and_flags() {
        let e = engine_1k();
        // 59 bytes of header + a 1-byte key + the value; 4 more when flags are set.
        assert_eq!(e.admit(b"k", 964, 0, false), Ok(()));
        assert_eq!(e.admit(b"k", 965, 0, false), Err(Failure::TooLarge));
        assert_eq!(e.admit(b"k", 960, 5, false), Ok(()));
        assert_eq!(e.admit(b"k", 961, 5, false), Err(Failure::TooLarge));
        assert_eq!(e.counters.store_too_large.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_refused_set_drops_the_old_value_and_a_refused_add_keeps_it() {
        let e = engine_1k();
        let put = |k: &[u8]| e.store(StoreRequest::set(k, b"old")).unwrap();
        put(b"set");
        put(b"add");
        assert!(e.admit(b"set", 2000, 0, true).is_err());
        assert!(e.admit(b"add", 2000, 0, false).is_err());
        assert!(!e.cache().contains(b"set"));
        assert!(e.cache().contains(b"add"));
    }

    #[test]
    fn an_append_that_grows_past_the_limit_is_not_stored() {
        let e = engine_1k();
        e.store(StoreRequest::set(b"g", b"x").flags(5)).unwrap();
        let grow = vec![b'd'; 960];
        assert_eq!(e.admit(b"g", grow.len(), 0, false), Ok(()));
        let out = e.store(StoreRequest::new(StoreMode::Append, b"g", &grow));
        assert_eq!(out, Ok(StoreOutcome::NotStored));
        assert_eq!(e.cache().get(b"g").unwrap().value.as_ref(), b"x");
    }

    #[test]
    fn an_item_over_a_shards_budget_is_out_of_memory() {
        let cache = CacheConfig {
            max_memory: 64 << 10,
            shards: 1,
            ..Default::default()
        };
        let (e, _) = engine_with(cache, EngineConfig::default());
        let big = vec![0u8; 200 << 10];
        assert_eq!(
            e.store(StoreRequest::set(b"big", &big)),
            Err(Failure::NoMemory)
        );
        assert_eq!(e.counters.store_no_memory.load(Ordering::Relaxed), 1);
    }
}
