//! The commands on items: get, touch, store, delete, incr/decr, and the item size limit.

use std::sync::atomic::Ordering;

use super::Failure;
use crate::cache::{
    memcached_item_size, DeleteOutcome, DeleteRequest, DeltaOutcome, DeltaRequest, Keyspace,
    MetaEntry, ReadOpts, StoreOutcome, StoreRequest, Ttl,
};
use crate::engine::Engine;

impl Engine {
    /// memcached's `item_size_ok`, checked when a storage command arrives, before its value is
    /// read: an item whose [`memcached_item_size`] is over the item size limit (`-I`) is
    /// refused. A refused write that would have replaced the value (`drop_old`: a `set`, any
    /// meta set) also deletes the key's old value, as memcached's does, so a stale value
    /// can't outlive a failed update.
    pub fn admit(
        &self,
        key: &[u8],
        value_len: usize,
        flags: u32,
        drop_old: bool,
    ) -> Result<(), Failure> {
        if memcached_item_size(key.len(), value_len, flags) <= self.config().max_item_size {
            return Ok(());
        }
        self.counters
            .store_too_large
            .fetch_add(1, Ordering::Relaxed);
        if drop_old {
            let _ = self.cache().delete(key, &DeleteRequest::default());
        }
        Err(Failure::TooLarge)
    }

    /// A read of `key`: `touch` also gives it a new lifetime (`gat`). `f` sees the live entry.
    #[inline]
    pub fn get<R>(
        &self,
        key: &[u8],
        touch: Option<Ttl>,
        f: impl FnOnce(&MetaEntry<'_>) -> R,
    ) -> Option<R> {
        match touch {
            None => self.cache().read(key, ReadOpts::GET, |e| f(e)),
            Some(ttl) => self.cache().read(key, ReadOpts::GAT, |e| {
                e.set_ttl(ttl);
                f(e)
            }),
        }
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
            Ok(StoreOutcome::TooLarge) => Err(self.no_memory()),
            Ok(out) => Ok(out),
            Err(e) => Err(self.failed(Failure::of(&e))),
        }
    }

    /// A delete, with memcached's rules for a CAS unique and invalidation.
    pub fn delete(&self, key: &[u8], req: DeleteRequest) -> Result<DeleteOutcome, Failure> {
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
