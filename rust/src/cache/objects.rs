//! The object store: entries whose keys and values belong to the caller (Python objects, for
//! `ratmemcache.ObjectCache` and `@cached`), under the same eviction policies and TTL rules as the
//! bytes store.
//!
//! How it differs from the bytes shard, and why:
//! - **The caller hashes and compares keys.** The table never looks inside a key. Python keys
//!   compare with `==`, which can run arbitrary code and fail, so every lookup takes a fallible
//!   `eq`. The full hash is compared first, as dict does, so `eq` runs only on equal hashes.
//! - **One table, no shards.** The Python layer serializes access anyway (the GIL), and one table
//!   makes `max_entries` exact.
//! - **A hit touches two places:** the table's control bytes and a 32-byte bucket (hash, key,
//!   value, slot, and the deadline rounded up to a second, which tells a live entry from an
//!   expired one except in the deadline's last second). What only writes need (the exact deadline,
//!   the entry's weight, the policy's order) lives apart, indexed by slot, so the policies in
//!   `policy/` work here unchanged. A 40-byte bucket with the exact deadline straddled two cache
//!   lines half the time, which showed on reads of large tables.
//! - **Nothing is dropped inside.** Entries that leave go to a `garbage` vector that the caller
//!   drops once it has released its lock: dropping a Python object can run `__del__`, which may
//!   call back into the cache.
//! - **Weights come from the caller** (a Python weigher); the table only sums them.
//!
//! The clock is read lazily, through [`Now`]: a hit on an entry without a deadline never reads it.

use hashbrown::hash_table::{Entry as TableEntry, OccupiedEntry};
use hashbrown::HashTable;

use super::policy::{EntryInfo, Policy, PolicyKind, RemoveReason};

/// The bounds of an object table; `None` means unbounded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ObjectLimits {
    pub max_entries: Option<u64>,
    /// The sum of the entries' weights.
    pub max_weight: Option<u64>,
}

/// What an object table counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ObjectCounters {
    pub hits: u64,
    pub misses: u64,
    pub sets: u64,
    pub evictions: u64,
    pub expirations: u64,
}

/// The current time in unix ms, read at most once and only when a deadline needs it.
pub struct Now<F: Fn() -> u64> {
    read: F,
    value: Option<u64>,
}

impl<F: Fn() -> u64> Now<F> {
    pub fn new(read: F) -> Self {
        Now { read, value: None }
    }

    #[inline]
    pub fn get(&mut self) -> u64 {
        *self.value.get_or_insert_with(|| (self.read)())
    }
}

/// What left the table; the caller drops it after releasing its lock.
pub type Garbage<K, V> = Vec<(K, V)>;

/// A value for [`ObjectTable::put`], with what the table needs to know about it.
pub struct NewEntry<F, V> {
    /// The caller's hash of the key.
    pub hash: u64,
    /// Makes the key to keep, if the entry is new.
    pub key: F,
    pub value: V,
    /// Counted against `max_weight`.
    pub weight: u64,
    /// Unix ms; 0 = never.
    pub expires_at: u64,
}

/// How [`ObjectTable::put`] treats a present entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutMode {
    Overwrite,
    IfAbsent,
}

/// The result of [`ObjectTable::put`].
#[derive(Debug)]
pub enum Put<'a, V> {
    /// A new entry.
    Inserted,
    /// `Overwrite` replaced a present value; the old one comes back to be dropped.
    Replaced { old: V },
    /// `IfAbsent` found a live entry; the caller's value was not used.
    Present { existing: &'a V, value: V },
    /// The entry alone weighs more than `max_weight`: nothing changed.
    TooHeavy { value: V },
}

/// An entry taken out by [`ObjectTable::remove`]; `live` is false when it had expired.
#[derive(Debug)]
pub struct Removed<K, V> {
    pub key: K,
    pub value: V,
    pub live: bool,
}

struct Bucket<K, V> {
    hash: u64,
    key: K,
    value: V,
    slot: u32,
    /// The deadline in unix seconds, rounded up ([`hint_of`]); 0 = never.
    hint: u32,
}

/// A deadline (unix ms, 0 = never) as a bucket keeps it: whole seconds, rounded up, so that
/// `(hint - 1) * 1000 < expires_at <= hint * 1000`. Saturates in 2106.
#[inline]
fn hint_of(expires_at: u64) -> u32 {
    if expires_at == 0 {
        return 0;
    }
    expires_at.div_ceil(1000).min(u64::from(u32::MAX)) as u32
}

#[derive(Debug, Clone, Copy)]
struct SlotInfo {
    hash: u64,
    expires_at: u64,
    weight: u64,
}

/// A bounded map from caller-hashed keys to values, with an eviction policy and deadlines.
pub struct ObjectTable<K, V> {
    table: HashTable<Bucket<K, V>>,
    /// Everything but the table, apart so that a bucket borrowed from the table can be returned
    /// while the bookkeeping changes.
    book: Book,
}

/// The per-slot records, the policy, the sums and the counters.
struct Book {
    slots: Vec<Option<SlotInfo>>,
    free: Vec<u32>,
    policy: Box<dyn Policy>,
    kind: PolicyKind,
    limits: ObjectLimits,
    weight: u64,
    /// Live entries with a deadline; while 0, writes skip the amortized sweep and the clock.
    with_deadline: u64,
    sweep_cursor: usize,
    counters: ObjectCounters,
}

impl Book {
    #[inline]
    fn slot(&self, slot: u32) -> SlotInfo {
        self.slots[slot as usize].expect("live slot")
    }

    /// Whether a bucket's entry has expired. The slot record, with the exact deadline, is read
    /// only within the deadline's last second.
    #[inline]
    fn expired(&self, slot: u32, hint: u32, now: &mut Now<impl Fn() -> u64>) -> bool {
        if hint == 0 {
            return false;
        }
        let now = now.get();
        let upper = u64::from(hint) * 1000;
        if now + 1000 <= upper {
            return false;
        }
        if now >= upper && hint != u32::MAX {
            return true;
        }
        now >= self.slot(slot).expires_at
    }

    /// A bucket's exact deadline (0 = never).
    #[inline]
    fn deadline(&self, slot: u32, hint: u32) -> u64 {
        if hint == 0 {
            0
        } else {
            self.slot(slot).expires_at
        }
    }

    fn over_limits(&self, entries: usize, extra_weight: u64, extra_entries: u64) -> bool {
        self.limits
            .max_entries
            .is_some_and(|max| entries as u64 + extra_entries > max)
            || self
                .limits
                .max_weight
                .is_some_and(|max| self.weight + extra_weight > max)
    }

    /// Frees a slot whose bucket is already out of the table.
    fn release_slot(&mut self, slot: u32, why: RemoveReason) {
        let info = self.slots[slot as usize].take().expect("live slot");
        self.policy.remove(
            slot,
            EntryInfo {
                hash: info.hash,
                expires_at: info.expires_at,
            },
            why,
        );
        self.weight -= info.weight;
        self.with_deadline -= u64::from(info.expires_at != 0);
        self.free.push(slot);
    }

    fn reclaim_expired<K, V>(&mut self, b: Bucket<K, V>, garbage: &mut Garbage<K, V>) {
        self.release_slot(b.slot, RemoveReason::Deleted);
        self.counters.expirations += 1;
        garbage.push((b.key, b.value));
    }

    /// A slot for a new entry, with room in the policy's metadata.
    fn claim_slot(&mut self, info: SlotInfo) -> u32 {
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(None);
                self.policy.ensure(self.slots.len());
                (self.slots.len() - 1) as u32
            }
        };
        self.slots[slot as usize] = Some(info);
        self.weight += info.weight;
        self.with_deadline += u64::from(info.expires_at != 0);
        slot
    }

    /// The slot record and the policy after an entry's value or deadline changed in place.
    /// `hash` and `old_hint` are the bucket's, so an overwrite of an entry without a deadline
    /// that adds none and has no weight (no weights at all: the sum is 0) tells the policy
    /// without reading the slot record, which is a cache miss on a large table.
    #[inline]
    fn rewrite_slot(&mut self, slot: u32, hash: u64, old_hint: u32, expires_at: u64, weight: u64) {
        if old_hint == 0 && expires_at == 0 && weight == 0 && self.weight == 0 {
            let info = EntryInfo { hash, expires_at };
            self.policy.update(slot, info, info);
            return;
        }
        let info = self.slots[slot as usize].as_mut().expect("live slot");
        let old = EntryInfo {
            hash: info.hash,
            expires_at: info.expires_at,
        };
        self.weight = self.weight - info.weight + weight;
        self.with_deadline =
            self.with_deadline - u64::from(old.expires_at != 0) + u64::from(expires_at != 0);
        info.weight = weight;
        info.expires_at = expires_at;
        let new = EntryInfo {
            hash: old.hash,
            expires_at,
        };
        self.policy.update(slot, old, new);
    }
}

/// `HashTable::find_entry` with a test that can fail: the first error stops the search.
#[inline]
pub fn find_entry_or_err<T, E>(
    table: &mut HashTable<T>,
    hash: u64,
    mut is: impl FnMut(&T) -> Result<bool, E>,
) -> Result<Option<OccupiedEntry<'_, T>>, E> {
    let mut err = None;
    // An error ends the search as a match would; it is reported instead of the entry.
    let found = table.find_entry(hash, |t| {
        is(t).unwrap_or_else(|e| {
            err = Some(e);
            true
        })
    });
    match err {
        Some(e) => Err(e),
        None => Ok(found.ok()),
    }
}

/// Finds the bucket for a key: the full hash first, then `eq`, as dict does.
#[inline]
fn probe<'t, K, V, E>(
    table: &'t mut HashTable<Bucket<K, V>>,
    hash: u64,
    mut eq: impl FnMut(&K) -> Result<bool, E>,
) -> Result<Option<OccupiedEntry<'t, Bucket<K, V>>>, E> {
    find_entry_or_err(table, hash, |b| {
        if b.hash == hash {
            eq(&b.key)
        } else {
            Ok(false)
        }
    })
}

/// Whether a deadline has passed (0 never does), as the bytes store decides it.
#[inline]
fn expired(expires_at: u64, now: &mut Now<impl Fn() -> u64>) -> bool {
    expires_at != 0 && now.get() >= expires_at
}

#[cfg(test)]
const _: () = assert!(std::mem::size_of::<Bucket<usize, usize>>() == 32);

/// Slots examined by the amortized sweep on each insert.
const SWEEP_STEP: usize = 2;

impl<K, V> ObjectTable<K, V> {
    pub fn new(kind: PolicyKind, limits: ObjectLimits) -> Self {
        ObjectTable {
            table: HashTable::new(),
            book: Book {
                slots: Vec::new(),
                free: Vec::new(),
                policy: kind.build(),
                kind,
                limits,
                weight: 0,
                with_deadline: 0,
                sweep_cursor: 0,
                counters: ObjectCounters::default(),
            },
        }
    }

    pub fn kind(&self) -> PolicyKind {
        self.book.kind
    }

    pub fn limits(&self) -> ObjectLimits {
        self.book.limits
    }

    /// Entries, expired ones not yet reclaimed included.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// The sum of the entries' weights.
    pub fn weight(&self) -> u64 {
        self.book.weight
    }

    pub fn counters(&self) -> ObjectCounters {
        self.book.counters
    }

    pub fn reset_counters(&mut self) {
        self.book.counters = ObjectCounters::default();
    }

    /// Bytes of bookkeeping per entry: its bucket and control byte, its slot record and the
    /// policy's per-slot metadata (before the table's spare capacity).
    pub fn entry_overhead(&self) -> u64 {
        (std::mem::size_of::<Bucket<K, V>>()
            + 1
            + std::mem::size_of::<Option<SlotInfo>>()
            + self.book.policy.bytes_per_slot()) as u64
    }

    /// The live value for a key, counted as a hit (and told to the policy) or a miss. An
    /// expired entry is reclaimed on the way and counts as a miss.
    #[inline]
    pub fn get<E>(
        &mut self,
        hash: u64,
        eq: impl FnMut(&K) -> Result<bool, E>,
        now: &mut Now<impl Fn() -> u64>,
        garbage: &mut Garbage<K, V>,
    ) -> Result<Option<&V>, E> {
        let book = &mut self.book;
        let Some(entry) = probe(&mut self.table, hash, eq)? else {
            book.counters.misses += 1;
            return Ok(None);
        };
        if book.expired(entry.get().slot, entry.get().hint, now) {
            let (b, _) = entry.remove();
            book.reclaim_expired(b, garbage);
            book.counters.misses += 1;
            return Ok(None);
        }
        book.policy.touch(entry.get().slot);
        book.counters.hits += 1;
        Ok(Some(&entry.into_mut().value))
    }

    /// The live value and its deadline, without counting a read or telling the policy.
    pub fn peek<E>(
        &mut self,
        hash: u64,
        eq: impl FnMut(&K) -> Result<bool, E>,
        now: &mut Now<impl Fn() -> u64>,
        garbage: &mut Garbage<K, V>,
    ) -> Result<Option<(&V, u64)>, E> {
        let book = &mut self.book;
        let Some(entry) = probe(&mut self.table, hash, eq)? else {
            return Ok(None);
        };
        if book.expired(entry.get().slot, entry.get().hint, now) {
            let (b, _) = entry.remove();
            book.reclaim_expired(b, garbage);
            return Ok(None);
        }
        let b = entry.into_mut();
        Ok(Some((&b.value, book.deadline(b.slot, b.hint))))
    }

    /// Stores a value, and evicts by the policy until the limits hold. `Overwrite` replaces a
    /// present entry in place (keeping its key object, as a dict does); `IfAbsent` leaves a
    /// live one alone and counts it as a hit (dict's `setdefault`). `key()` makes the key to
    /// keep; it is called only for a new entry.
    pub fn put<E>(
        &mut self,
        new: NewEntry<impl FnOnce() -> K, V>,
        mode: PutMode,
        eq: impl FnMut(&K) -> Result<bool, E>,
        now: &mut Now<impl Fn() -> u64>,
        garbage: &mut Garbage<K, V>,
    ) -> Result<Put<'_, V>, E> {
        let NewEntry {
            hash,
            key,
            value,
            weight,
            expires_at,
        } = new;
        let too_heavy = self.book.limits.max_weight.is_some_and(|max| weight > max);
        if too_heavy && mode == PutMode::Overwrite {
            return Ok(Put::TooHeavy { value });
        }
        let mut present = None;
        if let Some(entry) = probe(&mut self.table, hash, eq)? {
            if mode == PutMode::Overwrite {
                self.book.counters.sets += 1;
                let b = entry.into_mut();
                let slot = b.slot;
                let old_hint = std::mem::replace(&mut b.hint, hint_of(expires_at));
                let old = std::mem::replace(&mut b.value, value);
                self.book
                    .rewrite_slot(slot, hash, old_hint, expires_at, weight);
                self.fit_after_growth(slot, garbage);
                return Ok(Put::Replaced { old });
            }
            if self.book.expired(entry.get().slot, entry.get().hint, now) {
                let (b, _) = entry.remove();
                self.book.reclaim_expired(b, garbage);
            } else {
                present = Some(entry.get().slot);
            }
        }
        if let Some(slot) = present {
            // Found again by slot (no second `eq`): returning the first borrow would hold the
            // table for the rest of the function.
            self.book.policy.touch(slot);
            self.book.counters.hits += 1;
            let b = self.table.find(hash, |b| b.slot == slot).expect("found");
            return Ok(Put::Present {
                existing: &b.value,
                value,
            });
        }
        if too_heavy {
            return Ok(Put::TooHeavy { value });
        }
        self.book.counters.sets += 1;
        self.add(hash, key(), value, weight, expires_at, now, garbage);
        Ok(Put::Inserted)
    }

    /// Takes an entry out; an expired one comes back with `live == false` (and is counted).
    pub fn remove<E>(
        &mut self,
        hash: u64,
        eq: impl FnMut(&K) -> Result<bool, E>,
        now: &mut Now<impl Fn() -> u64>,
    ) -> Result<Option<Removed<K, V>>, E> {
        let Some(entry) = probe(&mut self.table, hash, eq)? else {
            return Ok(None);
        };
        let live = !self.book.expired(entry.get().slot, entry.get().hint, now);
        let (b, _) = entry.remove();
        if !live {
            self.book.counters.expirations += 1;
        }
        self.book.release_slot(b.slot, RemoveReason::Deleted);
        Ok(Some(Removed {
            key: b.key,
            value: b.value,
            live,
        }))
    }

    /// Gives a live entry a new deadline (0 = never); false if there is none.
    pub fn set_deadline<E>(
        &mut self,
        hash: u64,
        eq: impl FnMut(&K) -> Result<bool, E>,
        expires_at: u64,
        now: &mut Now<impl Fn() -> u64>,
        garbage: &mut Garbage<K, V>,
    ) -> Result<bool, E> {
        let Some(entry) = probe(&mut self.table, hash, eq)? else {
            return Ok(false);
        };
        if self.book.expired(entry.get().slot, entry.get().hint, now) {
            let (b, _) = entry.remove();
            self.book.reclaim_expired(b, garbage);
            return Ok(false);
        }
        let b = entry.into_mut();
        let old_hint = std::mem::replace(&mut b.hint, hint_of(expires_at));
        let slot = b.slot;
        let weight = self.book.slot(slot).weight;
        self.book
            .rewrite_slot(slot, hash, old_hint, expires_at, weight);
        Ok(true)
    }

    /// Takes out the entry the policy would evict next (cachetools' `popitem`); not counted as
    /// an eviction. An expired one comes back with `live == false` (and is counted).
    pub fn pop_victim(&mut self, now: &mut Now<impl Fn() -> u64>) -> Option<Removed<K, V>> {
        let slot = self.book.policy.victim()?;
        let expires_at = self.book.slot(slot).expires_at;
        let b = self.take_slot(slot, RemoveReason::Deleted);
        let live = !expired(expires_at, now);
        if !live {
            self.book.counters.expirations += 1;
        }
        Some(Removed {
            key: b.key,
            value: b.value,
            live,
        })
    }

    /// Empties the table (the counters are kept).
    pub fn clear(&mut self, garbage: &mut Garbage<K, V>) {
        garbage.extend(self.table.drain().map(|b| (b.key, b.value)));
        let book = &mut self.book;
        book.slots.clear();
        book.free.clear();
        book.policy = book.kind.build();
        book.weight = 0;
        book.with_deadline = 0;
        book.sweep_cursor = 0;
    }

    /// Every live entry, in table order (expired ones are skipped, not removed).
    pub fn for_each_live(&self, now: &mut Now<impl Fn() -> u64>, mut f: impl FnMut(&K, &V)) {
        for b in self.table.iter() {
            if !self.book.expired(b.slot, b.hint, now) {
                f(&b.key, &b.value);
            }
        }
    }

    /// Reclaims expired entries among the next `max_slots` slots; returns how many.
    pub fn sweep(
        &mut self,
        now: &mut Now<impl Fn() -> u64>,
        max_slots: usize,
        garbage: &mut Garbage<K, V>,
    ) -> usize {
        let mut reclaimed = 0;
        for _ in 0..max_slots.min(self.book.slots.len()) {
            if self.book.sweep_cursor >= self.book.slots.len() {
                self.book.sweep_cursor = 0;
            }
            let slot = self.book.sweep_cursor as u32;
            self.book.sweep_cursor += 1;
            let Some(info) = self.book.slots[slot as usize] else {
                continue;
            };
            if expired(info.expires_at, now) {
                let b = self.take_slot(slot, RemoveReason::Deleted);
                self.book.counters.expirations += 1;
                garbage.push((b.key, b.value));
                reclaimed += 1;
            }
        }
        reclaimed
    }

    /// Reclaims every expired entry; returns how many.
    pub fn sweep_all(
        &mut self,
        now: &mut Now<impl Fn() -> u64>,
        garbage: &mut Garbage<K, V>,
    ) -> usize {
        self.book.sweep_cursor = 0;
        self.sweep(now, self.book.slots.len(), garbage)
    }

    /// Checks that the table, the slots, the weights and the policy agree.
    pub fn validate(&self) -> Result<(), String> {
        let book = &self.book;
        let mut live = Vec::with_capacity(self.table.len());
        let (mut weight, mut with_deadline) = (0u64, 0u64);
        for b in self.table.iter() {
            let Some(info) = book.slots.get(b.slot as usize).copied().flatten() else {
                return Err(format!("a bucket points at slot {}, which is free", b.slot));
            };
            if info.hash != b.hash || hint_of(info.expires_at) != b.hint {
                return Err(format!("slot {} disagrees with its bucket", b.slot));
            }
            weight += info.weight;
            with_deadline += u64::from(info.expires_at != 0);
            live.push(b.slot);
        }
        let used = book.slots.iter().filter(|s| s.is_some()).count();
        if used != self.table.len() || used + book.free.len() != book.slots.len() {
            return Err(format!(
                "{} buckets, {used} used slots, {} free of {}",
                self.table.len(),
                book.free.len(),
                book.slots.len()
            ));
        }
        if weight != book.weight || with_deadline != book.with_deadline {
            return Err(format!(
                "weight {} (counted {weight}), deadlines {} (counted {with_deadline})",
                book.weight, book.with_deadline
            ));
        }
        if book.over_limits(self.table.len(), 0, 0) {
            return Err(format!(
                "{} entries weighing {} are over the limits {:?}",
                self.table.len(),
                book.weight,
                book.limits
            ));
        }
        book.policy.validate(&live)
    }

    /// Makes room (the amortized sweep first, then eviction) and adds a new entry.
    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        hash: u64,
        key: K,
        value: V,
        weight: u64,
        expires_at: u64,
        now: &mut Now<impl Fn() -> u64>,
        garbage: &mut Garbage<K, V>,
    ) {
        if self.book.with_deadline > 0 {
            self.sweep(now, SWEEP_STEP, garbage);
        }
        while !self.table.is_empty() && self.book.over_limits(self.table.len(), weight, 1) {
            let Some(victim) = self.book.policy.victim() else {
                break;
            };
            self.evict(victim, garbage);
        }
        let slot = self.book.claim_slot(SlotInfo {
            hash,
            expires_at,
            weight,
        });
        self.table.insert_unique(
            hash,
            Bucket {
                hash,
                key,
                value,
                slot,
                hint: hint_of(expires_at),
            },
            |b| b.hash,
        );
        self.book
            .policy
            .insert(slot, EntryInfo { hash, expires_at });
    }

    fn evict(&mut self, slot: u32, garbage: &mut Garbage<K, V>) {
        let b = self.take_slot(slot, RemoveReason::Evicted);
        self.book.counters.evictions += 1;
        garbage.push((b.key, b.value));
    }

    /// After an entry grew in place: evicts other entries until the limits hold again, never
    /// the one in `slot` (the policy forgets it while victims are chosen and takes it back as a
    /// new arrival, as the bytes shard does).
    fn fit_after_growth(&mut self, slot: u32, garbage: &mut Garbage<K, V>) {
        if !self.book.over_limits(self.table.len(), 0, 0) {
            return;
        }
        let info = self.book.slot(slot);
        let entry = EntryInfo {
            hash: info.hash,
            expires_at: info.expires_at,
        };
        self.book.policy.remove(slot, entry, RemoveReason::Deleted);
        while self.table.len() > 1 && self.book.over_limits(self.table.len(), 0, 0) {
            let Some(victim) = self.book.policy.victim() else {
                break;
            };
            self.evict(victim, garbage);
        }
        self.book.policy.insert(slot, entry);
    }

    /// Removes the entry in `slot` from the table and the bookkeeping.
    fn take_slot(&mut self, slot: u32, why: RemoveReason) -> Bucket<K, V> {
        let hash = self.book.slot(slot).hash;
        let b = match self.table.entry(hash, |b| b.slot == slot, |b| b.hash) {
            TableEntry::Occupied(o) => o.remove().0,
            TableEntry::Vacant(_) => unreachable!("slot {slot} has no bucket"),
        };
        self.book.release_slot(slot, why);
        b
    }
}

#[cfg(test)]
mod tests;
