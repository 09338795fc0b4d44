//! One shard: a hash table of slot indices, the slots, and an eviction policy.
//!
//! Single-threaded by design: every method takes `&mut self`, and the facade in `mod.rs` holds
//! the shard's lock around each call. Hashes are computed once by the facade and passed in;
//! entries do not store theirs, so the shard recomputes one from the key (with the facade's
//! hasher) when the table grows or an entry leaves.

use std::hash::BuildHasher;

use hashbrown::HashTable;

use super::entry::{value_overhead, Entry, EntryMeta, ENTRY_OVERHEAD};
use super::ops::{
    cas_mismatch, Bump, Counted, DeleteOutcome, DeleteRequest, Delta, DeltaOutcome, DeltaRequest,
    MetaEntry, ReadOpts, Snapshot, StoreMode, StoreOutcome, StoreRequest,
};
use super::policy::{EntryInfo, Policy, PolicyKind, RemoveReason};
use super::sizing::{memcached_item_size, slab_class};
use super::stats::{ClassCounters, Counters};
use super::CacheConfig;

mod operations;

/// The hasher the facade hashes keys with; the shard uses the same one to rehash.
pub(crate) type KeyHasher = foldhash::fast::RandomState;

pub(crate) struct Shard {
    table: HashTable<u32>,
    hasher: KeyHasher,
    slots: Vec<Option<Entry>>,
    free: Vec<u32>,
    policy: Box<dyn Policy>,
    kind: PolicyKind,
    per_entry: u64,
    len: u64,
    bytes: u64,
    payload: u64,
    limit_bytes: u64,
    limit_entries: u64,
    cas_counter: u64,
    cas_shift: u32,
    cas_tag: u64,
    sweep_cursor: usize,
    /// The time of the latest write, for the counters of the evictions it causes.
    now_hint: u64,
    /// `CacheConfig::evictions`.
    evictions: bool,
    /// `CacheConfig::cas_uniques`.
    cas_uniques: bool,
    pub counters: Counters,
    /// What happened to items, by the slab class memcached would keep them in.
    pub classes: ClassCounters,
}

impl Shard {
    pub(crate) fn new(
        config: &CacheConfig,
        limit_bytes: u64,
        limit_entries: u64,
        index: u64,
        shard_bits: u32,
        hasher: KeyHasher,
    ) -> Self {
        let kind = config.eviction;
        let policy = kind.build();
        let per_entry = (ENTRY_OVERHEAD + policy.bytes_per_slot()) as u64;
        Shard {
            table: HashTable::new(),
            hasher,
            slots: Vec::new(),
            free: Vec::new(),
            policy,
            kind,
            per_entry,
            len: 0,
            bytes: 0,
            payload: 0,
            limit_bytes,
            limit_entries,
            cas_counter: 0,
            cas_shift: shard_bits,
            cas_tag: index,
            sweep_cursor: 0,
            now_hint: 0,
            evictions: config.evictions,
            cas_uniques: config.cas_uniques,
            counters: Counters::default(),
            classes: ClassCounters::default(),
        }
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    pub(crate) fn payload_bytes(&self) -> u64 {
        self.payload
    }

    /// The bytes an entry with this key and value is charged (see `entry` for the formula).
    #[inline]
    pub(crate) fn charge(&self, key_len: usize, value_len: usize) -> u64 {
        (key_len + value_len + value_overhead(value_len)) as u64 + self.per_entry
    }

    /// The hash the facade computed for this key.
    #[inline]
    fn hash_of(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    /// `EntryInfo` for the policy, for the entry in `slot`.
    #[inline]
    fn info(&self, slot: u32) -> EntryInfo {
        let e = self.entry(slot);
        EntryInfo {
            hash: self.hash_of(e.key()),
            expires_at: e.expires_at,
        }
    }

    /// CAS uniques are unique across shards: the shard index sits in the low bits.
    fn next_cas(&mut self) -> u64 {
        if !self.cas_uniques {
            return 0;
        }
        self.cas_counter += 1;
        (self.cas_counter << self.cas_shift) | self.cas_tag
    }

    /// Makes every future CAS unique larger than `floor` (used when reloading persisted items).
    pub(crate) fn raise_cas_floor(&mut self, floor: u64) {
        let c = floor >> self.cas_shift;
        if c > self.cas_counter {
            self.cas_counter = c;
        }
    }

    #[inline]
    fn entry(&self, slot: u32) -> &Entry {
        self.slots[slot as usize].as_ref().expect("live slot")
    }

    #[inline]
    fn entry_mut(&mut self, slot: u32) -> &mut Entry {
        self.slots[slot as usize].as_mut().expect("live slot")
    }

    #[inline]
    fn find(&self, hash: u64, key: &[u8]) -> Option<u32> {
        let slots = &self.slots;
        self.table
            .find(hash, |&s| {
                slots[s as usize].as_ref().is_some_and(|e| {
                    e.prefetch_value();
                    e.key() == key
                })
            })
            .copied()
    }

    /// Finds a live entry; an expired one is reclaimed on the spot and reported as absent.
    #[inline]
    fn find_live(&mut self, hash: u64, key: &[u8], now: u64) -> Option<u32> {
        let slot = self.find(hash, key)?;
        if self.entry(slot).is_live(now) {
            Some(slot)
        } else {
            self.expire_slot(slot);
            None
        }
    }

    /// The slab class memcached would keep an item of these sizes in (see `sizing`).
    #[inline]
    fn class_of(&self, key_len: usize, value_len: usize, flags: u32) -> usize {
        slab_class(memcached_item_size(
            key_len,
            value_len,
            flags,
            self.cas_uniques,
        ))
    }

    fn class_of_entry(&self, e: &Entry) -> usize {
        self.class_of(e.key().len(), e.value_len(), e.flags)
    }

    /// Removes an entry whose deadline passed, counting it.
    fn expire_slot(&mut self, slot: u32) -> Entry {
        self.counters.expirations += 1;
        let e = self.remove_slot(slot, RemoveReason::Deleted);
        let class = self.class_of_entry(&e);
        self.classes.class_mut(class).reclaimed += 1;
        e
    }

    /// A store whose deadline had already passed: memcached stores the item and it expires,
    /// unread, at once; the counters say the same.
    fn count_born_expired(&mut self, req: &StoreRequest<'_>) {
        self.counters.total_items += 1;
        self.counters.expirations += 1;
        self.counters.expired_unfetched += 1;
        let class = self.class_of(req.key.len(), req.value.len(), req.flags);
        let c = self.classes.class_mut(class);
        c.reclaimed += 1;
        c.expired_unfetched += 1;
    }

    /// Removes the policy's victim to make room, counting it (and whether it was ever read).
    fn evict_slot(&mut self, slot: u32) -> Entry {
        let e = self.remove_slot(slot, RemoveReason::Evicted);
        self.counters.evictions += 1;
        let unfetched = !e.meta.has(EntryMeta::FETCHED);
        if unfetched {
            self.counters.evicted_unfetched += 1;
        }
        let idle = u64::from(e.meta.idle_secs(self.now_hint));
        let class = self.class_of_entry(&e);
        let c = self.classes.class_mut(class);
        c.evicted += 1;
        c.evicted_nonzero += u64::from(e.expires_at != 0);
        c.evicted_unfetched += u64::from(unfetched);
        c.evicted_time = idle;
        e
    }

    /// A write that found no room: memcached's `outofmemory`, by class.
    fn count_no_room(&mut self, key_len: usize, value_len: usize, flags: u32) {
        let class = self.class_of(key_len, value_len, flags);
        self.classes.class_mut(class).outofmemory += 1;
    }

    /// With evictions off (memcached's `-M`): whether `extra` more bytes and entries fit once
    /// expired entries are reclaimed. With evictions on there is always room.
    fn has_room(
        &mut self,
        extra_bytes: u64,
        extra_entries: u64,
        now: u64,
        evicted: &mut Vec<Entry>,
    ) -> bool {
        if self.evictions || !self.over_limits(extra_bytes, extra_entries) {
            return true;
        }
        let n = self.slots.len();
        self.sweep(now, n, evicted);
        !self.over_limits(extra_bytes, extra_entries)
    }

    fn remove_slot(&mut self, slot: u32, why: RemoveReason) -> Entry {
        let hash = self.hash_of(self.entry(slot).key());
        self.remove_hashed(slot, hash, why)
    }

    /// `remove_slot` when the caller has the key's hash at hand.
    fn remove_hashed(&mut self, slot: u32, hash: u64, why: RemoveReason) -> Entry {
        let e = self.slots[slot as usize].take().expect("live slot");
        let info = EntryInfo {
            hash,
            expires_at: e.expires_at,
        };
        self.policy.remove(slot, info, why);
        if let Ok(o) = self.table.find_entry(info.hash, |&s| s == slot) {
            o.remove();
        }
        self.free.push(slot);
        self.len -= 1;
        self.bytes -= self.charge(e.key().len(), e.value_len());
        self.payload -= e.payload_len() as u64;
        e
    }

    /// A new memory budget; evicts down to it at once when it is lower.
    pub(crate) fn set_limit_bytes(&mut self, limit: u64, evicted: &mut Vec<Entry>) {
        self.limit_bytes = limit;
        self.make_room(0, 0, evicted);
    }

    fn over_limits(&self, extra_bytes: u64, extra_entries: u64) -> bool {
        self.bytes + extra_bytes > self.limit_bytes || self.len + extra_entries > self.limit_entries
    }

    /// Evicts until `extra` more bytes and entries fit. Returns the evicted entries so the caller
    /// can drop (free) them after releasing the lock.
    fn make_room(&mut self, extra_bytes: u64, extra_entries: u64, evicted: &mut Vec<Entry>) {
        if !self.evictions {
            return;
        }
        while self.len > 0 && self.over_limits(extra_bytes, extra_entries) {
            let Some(v) = self.policy.victim() else { break };
            evicted.push(self.evict_slot(v));
        }
    }

    /// After an entry in `slot` grew in place: evicts other entries until the limits hold again,
    /// never the one just written. The policy forgets the slot while victims are chosen (a FIFO
    /// would otherwise name it, still being the oldest) and then takes it back as a new arrival,
    /// as memcached relinks a replaced item at the head.
    fn fit_after_growth(&mut self, slot: u32, evicted: &mut Vec<Entry>) {
        if !self.evictions || !self.over_limits(0, 0) {
            return;
        }
        let info = self.info(slot);
        self.policy.remove(slot, info, RemoveReason::Deleted);
        while self.over_limits(0, 0) {
            let Some(v) = self.policy.victim() else { break };
            evicted.push(self.evict_slot(v));
        }
        self.policy.insert(slot, info);
    }

    fn insert_new(
        &mut self,
        hash: u64,
        key: &[u8],
        value: &[u8],
        flags: u32,
        expires_at: u64,
        meta: EntryMeta,
    ) -> (u32, u64) {
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(None);
                let n = self.slots.len();
                self.policy.ensure(n);
                (n - 1) as u32
            }
        };
        let cas = self.next_cas();
        self.bytes += self.charge(key.len(), value.len());
        self.payload += (key.len() + value.len()) as u64;
        self.len += 1;
        self.slots[slot as usize] = Some(Entry::new(key, value, cas, expires_at, flags, meta));
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.table.insert_unique(hash, slot, |&s| {
            slots[s as usize]
                .as_ref()
                .map_or(0, |e| hasher.hash_one(e.key()))
        });
        self.policy.insert(slot, EntryInfo { hash, expires_at });
        self.counters.total_items += 1;
        (slot, cas)
    }

    /// Replaces an existing entry's value and metadata in place, keeping its policy standing.
    /// As memcached makes a new item, the entry's meta flags become `meta_flags` (the library's
    /// `TEXT_KEY` is kept) and its last access is now.
    #[allow(clippy::too_many_arguments)]
    fn overwrite(
        &mut self,
        slot: u32,
        hash: u64,
        value: &[u8],
        flags: u32,
        expires_at: u64,
        meta_flags: u32,
        now: u64,
    ) -> u64 {
        let cas = self.next_cas();
        let (old_len, key_len, old_exp) = {
            let e = self.entry(slot);
            (e.value_len(), e.key().len(), e.expires_at)
        };
        let new_len = value.len();
        let e = self.entry_mut(slot);
        e.set_value(value);
        e.flags = flags;
        e.expires_at = expires_at;
        e.cas = cas;
        e.meta = EntryMeta::new(
            (e.meta.flags() & EntryMeta::TEXT_KEY) | (meta_flags & !EntryMeta::TEXT_KEY),
            now,
        );
        self.bytes = self.bytes - self.charge(key_len, old_len) + self.charge(key_len, new_len);
        self.payload = self.payload - old_len as u64 + new_len as u64;
        let old = EntryInfo {
            hash,
            expires_at: old_exp,
        };
        self.policy
            .update(slot, old, EntryInfo { hash, expires_at });
        self.counters.total_items += 1;
        cas
    }

    /// A live entry's whole state, without counting a read or touching the eviction order.
    pub(crate) fn export(&mut self, hash: u64, key: &[u8], now: u64) -> Option<Snapshot> {
        let s = self.find_live(hash, key, now)?;
        Some(Snapshot::of_entry(self.entry(s)))
    }

    /// Puts an entry back exactly as it was (its CAS unique, flags, deadline and meta bits), for
    /// promotion from the L2 and warm-up. An existing entry is kept unless `replace`. With
    /// `evict` off nothing is evicted to make room, and the entry is not stored if it doesn't
    /// fit. Returns whether it was stored. Not counted as a command.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn restore(
        &mut self,
        hash: u64,
        key: &[u8],
        snap: &Snapshot,
        replace: bool,
        evict: bool,
        now: u64,
        evicted: &mut Vec<Entry>,
    ) -> bool {
        if snap.expires_at != 0 && snap.expires_at <= now {
            return false;
        }
        let charge = self.charge(key.len(), snap.value.len());
        if charge > self.limit_bytes {
            return false;
        }
        if let Some(s) = self.find_live(hash, key, now) {
            if !replace {
                return false;
            }
            evicted.push(self.remove_slot(s, RemoveReason::Deleted));
        }
        if !evict && self.over_limits(charge, 1) {
            return false;
        }
        self.make_room(charge, 1, evicted);
        let meta = EntryMeta::from_persisted(snap.meta, now);
        let (slot, _) = self.insert_new(hash, key, &snap.value, snap.flags, snap.expires_at, meta);
        self.counters.total_items -= 1;
        self.raise_cas_floor(snap.cas);
        self.entry_mut(slot).cas = snap.cas;
        true
    }

    /// Removes an entry without counting a delete (it moved to the other tier).
    pub(crate) fn remove_quiet(&mut self, hash: u64, key: &[u8]) -> Option<Entry> {
        let s = self.find(hash, key)?;
        Some(self.remove_slot(s, RemoveReason::Deleted))
    }

    /// Hands out `n` CAS uniques for a detached shard to use ([`Shard::adopt_cas`]), so an
    /// item operated on outside the L1 still gets uniques that no L1 entry has.
    pub(crate) fn reserve_cas(&mut self, n: u64) -> (u64, u32, u64) {
        let start = self.cas_counter;
        self.cas_counter += n;
        (start, self.cas_shift, self.cas_tag)
    }

    pub(crate) fn adopt_cas(&mut self, (counter, shift, tag): (u64, u32, u64)) {
        self.cas_counter = counter;
        self.cas_shift = shift;
        self.cas_tag = tag;
    }

    pub(crate) fn reset_counters(&mut self) {
        self.counters = Counters::default();
        self.classes = ClassCounters::default();
    }

    /// Drops everything; returns the entries so they are freed outside the lock.
    pub(crate) fn clear(&mut self) -> Vec<Option<Entry>> {
        let old = std::mem::take(&mut self.slots);
        self.table = HashTable::new();
        self.free.clear();
        self.policy = self.kind.build();
        self.len = 0;
        self.bytes = 0;
        self.payload = 0;
        self.sweep_cursor = 0;
        old
    }

    /// Examines up to `budget` slots from the sweep cursor, wrapping around, and reclaims the
    /// expired entries among them. Returns how many it reclaimed. Writes call it with a small
    /// budget, so memory held by expired items is reclaimed as the cache is used.
    pub(crate) fn sweep(&mut self, now: u64, budget: usize, evicted: &mut Vec<Entry>) -> usize {
        self.sweep_slots(now, budget, evicted, false)
    }

    /// [`sweep`](Self::sweep) for the background sweeper, memcached's LRU crawler: it also
    /// counts what it examined and reclaimed, by class (`crawler_items_checked`,
    /// `crawler_reclaimed`).
    pub(crate) fn crawl(&mut self, now: u64, budget: usize, evicted: &mut Vec<Entry>) -> usize {
        self.sweep_slots(now, budget, evicted, true)
    }

    fn sweep_slots(
        &mut self,
        now: u64,
        budget: usize,
        evicted: &mut Vec<Entry>,
        crawler: bool,
    ) -> usize {
        let n = self.slots.len();
        let mut reclaimed = 0;
        for _ in 0..budget.min(n) {
            if self.sweep_cursor >= n {
                self.sweep_cursor = 0;
            }
            let i = self.sweep_cursor;
            self.sweep_cursor += 1;
            let Some(e) = self.slots[i].as_ref() else {
                continue;
            };
            let live = e.is_live(now);
            if crawler {
                let class = self.class_of_entry(e);
                let c = self.classes.class_mut(class);
                c.crawler_items_checked += 1;
                c.crawler_reclaimed += u64::from(!live);
            }
            if !live {
                let e = self.expire_slot(i as u32);
                // As memcached's LRU crawler: an expired item reclaimed in the background
                // counts as unfetched if it was never read (a lookup that meets it does not).
                if !e.meta.has(EntryMeta::FETCHED) {
                    self.counters.expired_unfetched += 1;
                    let class = self.class_of_entry(&e);
                    self.classes.class_mut(class).expired_unfetched += 1;
                }
                evicted.push(e);
                reclaimed += 1;
            }
        }
        reclaimed
    }

    /// Slots in the slab, live or free: what one full sweep pass examines.
    pub(crate) fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// The buckets of the key index (memcached's hash table size, for `stats`).
    pub(crate) fn index_buckets(&self) -> usize {
        // hashbrown keeps 1/8 of its buckets free.
        (self.table.capacity() * 8 / 7).next_power_of_two()
    }

    /// Calls `f` on every live entry.
    pub(crate) fn for_each_live(&self, now: u64, mut f: impl FnMut(&Entry)) {
        for e in self.slots.iter().flatten() {
            if e.is_live(now) {
                f(e);
            }
        }
    }

    /// Checks the table, the slots, the accounting and the policy against each other.
    pub(crate) fn validate(&self) -> Result<(), String> {
        let live: Vec<u32> = (0..self.slots.len() as u32)
            .filter(|&s| self.slots[s as usize].is_some())
            .collect();
        if live.len() as u64 != self.len {
            return Err(format!(
                "len is {} but {} slots are live",
                self.len,
                live.len()
            ));
        }
        if self.table.len() != live.len() {
            return Err(format!(
                "table has {} entries for {} live slots",
                self.table.len(),
                live.len()
            ));
        }
        if self.free.len() + live.len() != self.slots.len() {
            return Err("free list and live slots do not cover the slab".into());
        }
        let (mut bytes, mut payload) = (0, 0);
        for &s in &live {
            let e = self.entry(s);
            if self.find(self.hash_of(e.key()), e.key()) != Some(s) {
                return Err(format!("slot {s} is not reachable through the table"));
            }
            bytes += self.charge(e.key().len(), e.value_len());
            payload += e.payload_len() as u64;
        }
        if bytes != self.bytes || payload != self.payload {
            return Err(format!(
                "accounting: {} bytes recorded, {bytes} counted",
                self.bytes
            ));
        }
        if self.len > self.limit_entries || self.bytes > self.limit_bytes {
            return Err(format!(
                "over limits: {} entries (limit {}), {} bytes (limit {})",
                self.len, self.limit_entries, self.bytes, self.limit_bytes
            ));
        }
        self.policy.validate(&live)
    }
}

/// memcached's `safe_strtoull` on an item: C's `strtoull` (leading whitespace, an optional sign,
/// decimal digits) that must stop at whitespace or the end; whatever follows the whitespace is
/// ignored, so "0  7" is 0, as in memcached. A negative number is refused.
fn parse_decimal(v: &[u8]) -> Option<u64> {
    let space = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r');
    let mut i = v.iter().position(|&b| !space(b)).unwrap_or(v.len());
    let negative = match v.get(i) {
        Some(b'+') => {
            i += 1;
            false
        }
        Some(b'-') => {
            i += 1;
            true
        }
        _ => false,
    };
    let start = i;
    let mut n: u64 = 0;
    while let Some(d) = v.get(i).filter(|b| b.is_ascii_digit()) {
        n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
        i += 1;
    }
    if i == start || v.get(i).is_some_and(|&b| !space(b)) {
        return None;
    }
    if negative {
        // strtoull negates modulo 2^64; memcached refuses the result when it reads as negative.
        let r = n.wrapping_neg();
        return ((r as i64) >= 0).then_some(r);
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::parse_decimal;

    #[test]
    fn decimal_values() {
        assert_eq!(parse_decimal(b"42"), Some(42));
        assert_eq!(parse_decimal(b"99 "), Some(99));
        assert_eq!(parse_decimal(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_decimal(b"18446744073709551616"), None);
        assert_eq!(parse_decimal(b"12abc"), None);
        assert_eq!(parse_decimal(b"-1"), None);
        assert_eq!(parse_decimal(b""), None);
        // strtoull's rules, as memcached applies them: what follows whitespace is ignored.
        assert_eq!(parse_decimal(b"0  7"), Some(0));
        assert_eq!(parse_decimal(b"  12\r\nxyz"), Some(12));
        assert_eq!(parse_decimal(b"+5"), Some(5));
        assert_eq!(parse_decimal(b"-0"), Some(0));
        assert_eq!(parse_decimal(b" "), None);
        assert_eq!(parse_decimal(b"12 abc"), Some(12));
    }
}
