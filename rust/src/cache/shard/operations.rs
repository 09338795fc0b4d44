//! The four operations on one shard (see `cache::ops`): read, store, delete and incr/decr, with
//! memcached's rules for each mode, CAS uniques, invalidation and vivify. The slab, the index and
//! the accounting they work on are the parent module's.

use super::*;

impl Shard {
    /// A read: counted as `opts` says, and `f` sees the live entry (or the one a vivify
    /// created) as it was before this request; the lifetime and win token it sets, and the
    /// access, apply afterwards. The clock is read only when the key is found or vivified.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub(crate) fn read<R>(
        &mut self,
        hash: u64,
        key: &[u8],
        opts: ReadOpts,
        now: impl FnOnce() -> u64,
        cfg: &CacheConfig,
        evicted: &mut Vec<Entry>,
        f: impl FnOnce(&mut MetaEntry<'_>) -> R,
    ) -> Option<R> {
        let found = self.find(hash, key);
        let now = if found.is_some() || opts.vivify.is_some() {
            now()
        } else {
            0
        };
        let live = match found {
            Some(s) if self.entry(s).is_live(now) => Some(s),
            Some(s) => {
                evicted.push(self.expire_slot(s));
                if matches!(opts.counted, Counted::Get | Counted::MetaTouch) {
                    self.counters.get_expired += 1;
                }
                None
            }
            None => None,
        };
        let (slot, created) = match live {
            Some(s) => {
                match opts.counted {
                    Counted::Get => self.counters.get_hits += 1,
                    Counted::Touch | Counted::MetaTouch => self.counters.touch_hits += 1,
                    Counted::No => {}
                }
                (s, false)
            }
            None => {
                match opts.counted {
                    Counted::Get | Counted::MetaTouch => self.counters.get_misses += 1,
                    Counted::Touch => self.counters.touch_misses += 1,
                    Counted::No => {}
                }
                let binary_key = opts.vivify?;
                let s = self.vivify(hash, key, &[], binary_key, now, evicted)?;
                (s, true)
            }
        };
        let mut me = MetaEntry::new(self.entry(slot), created, opts.bump != Bump::No, now, cfg);
        let r = f(&mut me);
        let (deadline, win, bump) = (me.new_deadline, me.win, me.bump);
        let bump = if bump { opts.bump } else { Bump::No };
        self.finish(slot, deadline, win, bump, now, evicted);
        Some(r)
    }

    /// Every write of a value, with memcached's rules for each mode, a CAS unique, and the
    /// meta set's invalidation. `expires_at` is `None` when the deadline has already passed:
    /// the write succeeds as memcached's does, and the item is gone at once.
    pub(crate) fn store(
        &mut self,
        hash: u64,
        req: &StoreRequest<'_>,
        expires_at: Option<u64>,
        now: u64,
        evicted: &mut Vec<Entry>,
    ) -> StoreOutcome {
        let (key, mode) = (req.key, req.mode);
        self.counters.cmd_set += 1;
        self.now_hint = now;
        let existing = self.find_live(hash, key, now);
        // memcached's `cas`: a set, add or replace with a unique to compare.
        let swap = req.cas.is_some() && !req.concatenates();
        // memcached's CAS_STALE: an invalidating CAS store older than the entry still lands.
        let mut stale = false;
        // Append and prepend build the combined value here; everything else stores `value`.
        let combined: Vec<u8>;
        let value: &[u8] = match existing {
            None if swap => {
                self.counters.cas_misses += 1;
                return StoreOutcome::NotFound;
            }
            None if matches!(mode, StoreMode::Set | StoreMode::Add) => req.value,
            None => return StoreOutcome::NotStored,
            Some(s) if swap => {
                let cur = self.entry(s).cas;
                // A unique of 0 never matches (nor does any, with CAS uniques off: every
                // entry's is 0).
                if req.cas != Some(0) && !cas_mismatch(req.cas, cur) {
                    self.counters.cas_hits += 1;
                } else if req.invalidate && req.cas.is_some_and(|c| c != 0 && c < cur) {
                    self.counters.cas_hits += 1;
                    stale = true;
                } else {
                    self.counters.cas_badval += 1;
                    return StoreOutcome::Exists;
                }
                req.value
            }
            Some(_) if mode == StoreMode::Add => return StoreOutcome::NotStored,
            Some(s) if req.concatenates() => {
                let e = self.entry(s);
                // memcached's append compares a CAS unique only when it is not 0, and only
                // with an entry that has one (with CAS uniques off, none has).
                if e.cas != 0 && cas_mismatch(req.cas.filter(|&c| c != 0), e.cas) {
                    return StoreOutcome::Exists;
                }
                let len = e.value_len() + req.value.len();
                if req.max_item_size != 0
                    && memcached_item_size(key.len(), len, e.flags, self.cas_uniques)
                        > req.max_item_size
                {
                    return StoreOutcome::NotStored;
                }
                let mut v = Vec::with_capacity(len);
                if mode == StoreMode::Append {
                    v.extend_from_slice(e.value());
                    v.extend_from_slice(req.value);
                } else {
                    v.extend_from_slice(req.value);
                    v.extend_from_slice(e.value());
                }
                combined = v;
                &combined
            }
            Some(_) => req.value,
        };
        let charge = self.charge(key.len(), value.len());
        // Without evictions the new value must fit beside the old one, as memcached allocates
        // the new item before it unlinks the old.
        let (extra_bytes, extra_entries) = match existing {
            Some(s) if self.evictions => {
                let e = self.entry(s);
                let old = self.charge(e.key().len(), e.value_len());
                (charge.saturating_sub(old), 0)
            }
            Some(_) => (charge, 0),
            None => (charge, 1),
        };
        if charge > self.limit_bytes || !self.has_room(extra_bytes, extra_entries, now, evicted) {
            // memcached drops the old value when a set finds no memory, so that a stale value
            // can't outlive a failed update; the other modes keep it.
            if let Some(s) = existing.filter(|_| mode == StoreMode::Set && req.cas.is_none()) {
                evicted.push(self.remove_slot(s, RemoveReason::Deleted));
            }
            self.count_no_room(key.len(), value.len(), req.flags);
            // memcached counts a store once its item is allocated: a refused one is not.
            self.counters.cmd_set -= 1;
            return StoreOutcome::NoRoom;
        }
        let binary = if req.binary_key {
            EntryMeta::BINARY_KEY
        } else {
            0
        };
        match existing {
            Some(s) => {
                let e = self.entry(s);
                let (flags, expires_at, meta_flags) = if req.concatenates() {
                    (e.flags, Some(e.expires_at), binary)
                } else if stale {
                    let kept = e.meta.flags() & EntryMeta::WIN_SENT;
                    (
                        req.flags,
                        Some(e.expires_at),
                        binary | EntryMeta::STALE | kept,
                    )
                } else {
                    (req.flags, expires_at, binary)
                };
                let Some(deadline) = expires_at else {
                    evicted.push(self.remove_slot(s, RemoveReason::Deleted));
                    self.count_born_expired(req);
                    return StoreOutcome::Stored(self.next_cas());
                };
                let cas = self.overwrite(s, hash, value, flags, deadline, meta_flags, now);
                self.fit_after_growth(s, evicted);
                StoreOutcome::Stored(cas)
            }
            None => {
                let Some(deadline) = expires_at else {
                    self.count_born_expired(req);
                    return StoreOutcome::Stored(self.next_cas());
                };
                let charge = self.charge(key.len(), value.len());
                self.make_room(charge, 1, evicted);
                let text = if req.text_key { EntryMeta::TEXT_KEY } else { 0 };
                let meta = EntryMeta::new(text | binary, now);
                let (_, cas) = self.insert_new(hash, key, value, req.flags, deadline, meta);
                self.sweep(now, 2, evicted);
                StoreOutcome::Stored(cas)
            }
        }
    }

    /// memcached's delete: refused on a CAS mismatch; with `invalidate` the entry is kept,
    /// marked stale with a new CAS unique and its win token cleared, and `new_deadline` (if
    /// any) applies (`None` inside expires it).
    pub(crate) fn delete(
        &mut self,
        hash: u64,
        key: &[u8],
        req: &DeleteRequest,
        new_deadline: Option<Option<u64>>,
        now: u64,
        evicted: &mut Vec<Entry>,
    ) -> DeleteOutcome {
        let Some(s) = self.find_live(hash, key, now) else {
            self.counters.delete_misses += 1;
            return DeleteOutcome::NotFound;
        };
        if cas_mismatch(req.cas, self.entry(s).cas) {
            if req.mismatch_is_miss {
                self.counters.delete_misses += 1;
            }
            return DeleteOutcome::Exists;
        }
        if !req.invalidate {
            self.counters.delete_hits += 1;
            evicted.push(self.remove_hashed(s, hash, RemoveReason::Deleted));
            return DeleteOutcome::Deleted;
        }
        let cas = self.next_cas();
        let e = self.entry_mut(s);
        e.cas = cas;
        e.meta.set(EntryMeta::STALE, true);
        e.meta.set(EntryMeta::WIN_SENT, false);
        match new_deadline {
            None => {}
            Some(None) => evicted.push(self.remove_slot(s, RemoveReason::Deleted)),
            Some(Some(d)) => self.set_deadline(s, d),
        }
        DeleteOutcome::Invalidated
    }

    /// memcached's incr/decr (`do_add_delta`): an empty value is non-numeric, then the CAS
    /// unique is compared, then the value must be a decimal u64; incr wraps at 2^64, decr stops
    /// at 0. On a miss with `vivify` the entry is created holding that number (the delta is not
    /// applied). `f` sees the updated entry and the number, and may set a TTL.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn delta<R>(
        &mut self,
        hash: u64,
        key: &[u8],
        req: &DeltaRequest,
        now: u64,
        cfg: &CacheConfig,
        evicted: &mut Vec<Entry>,
        f: impl FnOnce(&mut MetaEntry<'_>, u64) -> R,
    ) -> DeltaOutcome<R> {
        let (slot, number, created) = match self.find_live(hash, key, now) {
            None => {
                let Some(initial) = req.vivify else {
                    self.count_delta_miss(req.delta);
                    return DeltaOutcome::NotFound;
                };
                let value = initial.to_string();
                match self.vivify(hash, key, value.as_bytes(), req.binary_key, now, evicted) {
                    Some(s) => (s, initial, true),
                    None => return DeltaOutcome::NotFound,
                }
            }
            Some(s) => {
                let e = self.entry(s);
                if e.value_len() == 0 {
                    return DeltaOutcome::NonNumeric;
                }
                // memcached's `do_add_delta` compares a CAS unique only when it is not 0.
                if cas_mismatch(req.cas.filter(|&c| c != 0), e.cas) {
                    return DeltaOutcome::Exists;
                }
                match self.apply_delta(s, hash, req.delta, now, evicted) {
                    Some(n) => (s, n, false),
                    None => return DeltaOutcome::NonNumeric,
                }
            }
        };
        let mut me = MetaEntry::new(self.entry(slot), created, false, now, cfg);
        let r = f(&mut me, number);
        let (deadline, win) = (me.new_deadline, me.win);
        self.finish(slot, deadline, win, Bump::No, now, evicted);
        DeltaOutcome::Done(r)
    }

    fn count_delta_miss(&mut self, delta: Delta) {
        match delta {
            Delta::Incr(_) => self.counters.incr_misses += 1,
            Delta::Decr(_) => self.counters.decr_misses += 1,
        }
    }

    /// incr/decr on the live entry in `slot`: the new number, or `None` when the value is not a
    /// number. A result shorter than the old value is padded with spaces to the old length and
    /// rewritten in place, as memcached does; a longer one is a new item in memcached, so it
    /// loses the fetched, stale and win marks.
    fn apply_delta(
        &mut self,
        s: u32,
        hash: u64,
        delta: Delta,
        now: u64,
        evicted: &mut Vec<Entry>,
    ) -> Option<u64> {
        let e = self.entry(s);
        let (old_len, flags, exp, meta) = (e.value_len(), e.flags, e.expires_at, e.meta);
        let cur = parse_decimal(e.value())?;
        let new = match delta {
            Delta::Incr(d) => {
                self.counters.incr_hits += 1;
                cur.wrapping_add(d)
            }
            Delta::Decr(d) => {
                self.counters.decr_hits += 1;
                cur.saturating_sub(d)
            }
        };
        let mut digits = new.to_string().into_bytes();
        let meta_flags = if digits.len() <= old_len {
            meta.flags()
        } else {
            meta.flags() & EntryMeta::BINARY_KEY
        };
        if digits.len() < old_len {
            digits.resize(old_len, b' ');
        }
        let grew = digits.len() > old_len;
        self.overwrite(s, hash, &digits, flags, exp, meta_flags, now);
        if !grew {
            // Rewritten in place: memcached counts no new item (`total_items`).
            self.counters.total_items -= 1;
        }
        self.fit_after_growth(s, evicted);
        Some(new)
    }

    /// Applies the deadline change and win token a callback asked for, then the access.
    fn finish(
        &mut self,
        slot: u32,
        new_deadline: Option<Option<u64>>,
        win: bool,
        bump: Bump,
        now: u64,
        evicted: &mut Vec<Entry>,
    ) {
        if win {
            self.entry_mut(slot).meta.set(EntryMeta::WIN_SENT, true);
        }
        if bump != Bump::No {
            self.entry_mut(slot).meta.fetched_at(now);
            if bump == Bump::Read {
                self.policy.touch(slot);
            }
        }
        match new_deadline {
            None => {}
            Some(None) => evicted.push(self.remove_slot(slot, RemoveReason::Deleted)),
            Some(Some(d)) => self.set_deadline(slot, d),
        }
    }

    fn set_deadline(&mut self, slot: u32, d: u64) {
        let old = self.info(slot);
        self.entry_mut(slot).expires_at = d;
        let hash = old.hash;
        self.policy.update(
            slot,
            old,
            EntryInfo {
                hash,
                expires_at: d,
            },
        );
    }

    /// Creates the empty or numeric entry a meta command vivifies on a miss: flags 0, no
    /// deadline (the request sets one). `None` if it can never fit.
    fn vivify(
        &mut self,
        hash: u64,
        key: &[u8],
        value: &[u8],
        binary_key: bool,
        now: u64,
        evicted: &mut Vec<Entry>,
    ) -> Option<u32> {
        let charge = self.charge(key.len(), value.len());
        if charge > self.limit_bytes {
            return None;
        }
        self.make_room(charge, 1, evicted);
        let bits = if binary_key { EntryMeta::BINARY_KEY } else { 0 };
        let (slot, _) = self.insert_new(hash, key, value, 0, 0, EntryMeta::new(bits, now));
        Some(slot)
    }
}
