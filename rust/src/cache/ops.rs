//! The operations of the bytes store, as values: what each tier (`Shard`, `Cache`, `Tiered`)
//! takes and returns. There are four, and every command of every protocol is one of them:
//!
//! - [`ReadOpts`] with a callback: get, gat, touch, memcached's meta get, and the reads that
//!   count nothing (peek, `me`, the library's `ttl`). The callback sees a [`MetaEntry`] under the
//!   shard lock and may set a lifetime or take the win token.
//! - [`StoreRequest`]: every write of a value (set, add, replace, append, prepend, cas, meta
//!   set, the library's writes).
//! - [`DeleteRequest`]: delete, with a CAS unique to compare and memcached's invalidation.
//! - [`DeltaRequest`] with a callback: incr and decr, with a CAS unique and creation on a miss.
//!
//! A CAS unique to compare is an `Option<u64>` field of the last three, checked in one place
//! ([`cas_mismatch`]).

use bytes::Bytes;

use super::entry::{Entry, EntryMeta, ItemState};
use super::{deadline_for, CacheConfig, Ttl};

/// A write's CAS unique against the entry's: a given unique that differs refuses the write.
#[inline]
pub(crate) fn cas_mismatch(given: Option<u64>, entry_cas: u64) -> bool {
    given.is_some_and(|c| c != entry_cas)
}

/// The four operations, over a tier: `Cache` (the L1 alone) and `Tiered` (the L1 with an L2)
/// implement them, and every caller that does not care which (the tests, the library's reads)
/// goes through this trait. Only `Tiered` can fail on disk; `Cache` never returns an `Err` from
/// `delete` or `delta`.
pub trait Keyspace {
    /// A read: `f` sees a live entry under its shard lock (see [`ReadOpts`]).
    fn read<R>(
        &self,
        key: &[u8],
        opts: ReadOpts,
        f: impl FnOnce(&mut MetaEntry<'_>) -> R,
    ) -> Option<R>;
    /// Every write of a value.
    fn store(&self, req: &StoreRequest<'_>) -> Result<StoreOutcome, crate::error::CoreError>;
    /// A delete.
    fn delete(
        &self,
        key: &[u8],
        req: &DeleteRequest,
    ) -> Result<DeleteOutcome, crate::error::CoreError>;
    /// An incr or decr; `f` sees the updated entry and the number.
    fn delta<R>(
        &self,
        key: &[u8],
        req: &DeltaRequest,
        f: impl FnOnce(&mut MetaEntry<'_>, u64) -> R,
    ) -> Result<DeltaOutcome<R>, crate::error::CoreError>;

    /// A `get`: the item, counted as a hit or a miss.
    #[inline]
    fn get(&self, key: &[u8]) -> Option<Item> {
        self.read(key, ReadOpts::GET, |e| e.item())
    }

    /// The item, not counted as a read and not moving the eviction order.
    fn peek(&self, key: &[u8]) -> Option<Item> {
        self.read(key, ReadOpts::PEEK, |e| e.item())
    }

    /// Whether a live item exists; not counted as a read.
    fn contains(&self, key: &[u8]) -> bool {
        self.read(key, ReadOpts::PEEK, |_| ()).is_some()
    }
}

/// An item as a walk over the whole store sees it: what `stats cachedump`,
/// `lru_crawler metadump` and the per-class `stats items` report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemInfo<'a> {
    pub key: &'a [u8],
    pub value_len: usize,
    pub flags: u32,
    pub cas: u64,
    /// Unix ms; 0 means never.
    pub expires_at: u64,
    /// Unix seconds of the last access (for an L2 record: when it was written).
    pub last_access_s: u64,
    /// Read since it was stored.
    pub fetched: bool,
    /// The key came base64-encoded (meta `b`).
    pub binary_key: bool,
}

// ---------------------------------------------------------------------------------------------
// Reads

/// How a read counts in the statistics: memcached counts its commands differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// `get`: a hit, or a miss (and an expired entry also as `get_expired`).
    Get,
    /// `touch` and `gat`: a touch hit or a touch miss.
    Touch,
    /// A meta get with a TTL (`mg ... T`): a hit is a touch hit, a miss a get miss.
    MetaTouch,
    /// Not a command: `peek`, `contains`, `me`, the library's `ttl`.
    No,
}

/// Whether a read counts as an access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bump {
    No,
    /// Marked fetched, last access now (memcached's `touch`).
    Fetched,
    /// That, and the eviction policy sees the read (`get`, `gat`, `mg`).
    Read,
}

/// What a read does besides reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOpts {
    pub counted: Counted,
    pub bump: Bump,
    /// On a miss, create an empty entry with flags 0 and no deadline (`mg ... N`); the value is
    /// whether its key came base64-encoded.
    pub vivify: Option<bool>,
    /// The callback may change the entry (a lifetime, the win token): with an L2, the read runs
    /// where the item lives and the change is written there.
    pub writes: bool,
}

impl ReadOpts {
    /// A `get`.
    pub const GET: ReadOpts = ReadOpts {
        counted: Counted::Get,
        bump: Bump::Read,
        vivify: None,
        writes: false,
    };
    /// A look that is not a command.
    pub const PEEK: ReadOpts = ReadOpts {
        counted: Counted::No,
        bump: Bump::No,
        vivify: None,
        writes: false,
    };
    /// memcached's `touch`: the callback sets the new lifetime.
    pub const TOUCH: ReadOpts = ReadOpts {
        counted: Counted::Touch,
        bump: Bump::Fetched,
        vivify: None,
        writes: true,
    };
    /// memcached's `gat`: a get that sets a new lifetime (in the callback).
    pub const GAT: ReadOpts = ReadOpts {
        counted: Counted::Touch,
        bump: Bump::Read,
        vivify: None,
        writes: true,
    };
}

/// What a [`MetaEntry`] shows: an entry of a cache, or a record read from the L2 (a large item
/// served straight from its record, without a cache around it).
#[derive(Clone, Copy)]
enum View<'a> {
    Entry(&'a Entry),
    Record { key: &'a [u8], snap: &'a Snapshot },
}

/// A live entry as a read or a delta's callback sees it under the shard lock. The lifetime and
/// the win token are changed through it; the changes apply when the callback returns.
pub struct MetaEntry<'a> {
    view: View<'a>,
    /// This request created the entry (a vivify on a miss).
    pub created: bool,
    /// Count the request as an access when it ends; starts as the request's options say.
    pub bump: bool,
    pub(crate) expires_at: u64,
    pub(crate) new_deadline: Option<Option<u64>>,
    pub(crate) win: bool,
    pub(crate) now_ms: u64,
    pub(crate) cfg: &'a CacheConfig,
}

impl<'a> MetaEntry<'a> {
    pub(crate) fn new(
        entry: &'a Entry,
        created: bool,
        bump: bool,
        now_ms: u64,
        cfg: &'a CacheConfig,
    ) -> Self {
        Self::of(
            View::Entry(entry),
            entry.expires_at,
            created,
            bump,
            now_ms,
            cfg,
        )
    }

    /// A record read from the L2, for a read that changes nothing.
    pub fn of_record(key: &'a [u8], snap: &'a Snapshot, now_ms: u64, cfg: &'a CacheConfig) -> Self {
        Self::of(
            View::Record { key, snap },
            snap.expires_at,
            false,
            false,
            now_ms,
            cfg,
        )
    }

    fn of(
        view: View<'a>,
        expires_at: u64,
        created: bool,
        bump: bool,
        now_ms: u64,
        cfg: &'a CacheConfig,
    ) -> Self {
        MetaEntry {
            view,
            created,
            bump,
            expires_at,
            new_deadline: None,
            win: false,
            now_ms,
            cfg,
        }
    }

    #[inline]
    pub fn key(&self) -> &'a [u8] {
        match self.view {
            View::Entry(e) => e.key(),
            View::Record { key, .. } => key,
        }
    }

    #[inline]
    pub fn value(&self) -> &'a [u8] {
        match self.view {
            View::Entry(e) => e.value(),
            View::Record { snap, .. } => &snap.value,
        }
    }

    /// The value as `Bytes`: shared with the store, without a copy, for values of
    /// [`SHARED_VALUE_MIN`](super::SHARED_VALUE_MIN) bytes and up and for L2 records (a later
    /// update never writes into a shared buffer); a copy for smaller ones.
    pub fn value_bytes(&self) -> Bytes {
        match self.view {
            View::Entry(e) => e.value_bytes(),
            View::Record { snap, .. } => snap.value.clone(),
        }
    }

    /// The buffer that holds the value, when it is kept apart (large values, L2 records).
    #[inline]
    pub fn shared_value(&self) -> Option<&'a Bytes> {
        match self.view {
            View::Entry(e) => e.shared_value(),
            View::Record { snap, .. } => Some(&snap.value),
        }
    }

    #[inline]
    pub fn flags(&self) -> u32 {
        match self.view {
            View::Entry(e) => e.flags,
            View::Record { snap, .. } => snap.flags,
        }
    }

    #[inline]
    pub fn cas(&self) -> u64 {
        match self.view {
            View::Entry(e) => e.cas,
            View::Record { snap, .. } => snap.cas,
        }
    }

    /// The library gave the key as `str`.
    pub fn text_key(&self) -> bool {
        match self.view {
            View::Entry(e) => e.text_key(),
            View::Record { snap, .. } => EntryMeta::persisted_text_key(snap.meta),
        }
    }

    /// The state before this request.
    pub fn state(&self) -> ItemState {
        match self.view {
            View::Entry(e) => e.meta.state(self.now_ms),
            View::Record { snap, .. } => EntryMeta::persisted_state(snap.meta),
        }
    }

    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// The deadline in unix ms (0 = never), as changed by `set_ttl` so far.
    pub fn expires_at(&self) -> u64 {
        self.expires_at
    }

    /// A `set_ttl` in this request expired the entry; it goes when the callback returns.
    pub fn expired(&self) -> bool {
        self.new_deadline == Some(None)
    }

    /// Gives the entry a new lifetime (`default_ttl` and `max_ttl` apply).
    pub fn set_ttl(&mut self, ttl: Ttl) {
        let d = deadline_for(self.cfg, ttl, self.now_ms);
        self.new_deadline = Some(d);
        self.expires_at = d.unwrap_or(0);
    }

    /// Hands this client the right to recache the entry: later readers see it was handed out.
    pub fn take_win(&mut self) {
        self.win = true;
    }

    /// A copy of the entry's public fields (with the deadline as changed so far).
    pub fn item(&self) -> Item {
        Item {
            value: self.value_bytes(),
            flags: self.flags(),
            cas: self.cas(),
            expires_at: self.expires_at,
        }
    }

    /// This request changes the entry beyond reading it (created it, set a TTL, took the win
    /// token): what a persistent tier must write back.
    pub fn changed(&self) -> bool {
        self.created || self.new_deadline.is_some() || self.win
    }
}

/// A copy of an entry's public fields, as a read returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub value: Bytes,
    pub flags: u32,
    pub cas: u64,
    /// Unix milliseconds; 0 means never.
    pub expires_at: u64,
}

// ---------------------------------------------------------------------------------------------
// Stores

/// How a store treats an existing entry: memcached's storage commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreMode {
    Set,
    Add,
    Replace,
    Append,
    Prepend,
}

/// One write of a value.
#[derive(Debug, Clone, Copy)]
pub struct StoreRequest<'a> {
    pub key: &'a [u8],
    pub value: &'a [u8],
    pub flags: u32,
    pub ttl: Ttl,
    pub mode: StoreMode,
    /// A CAS unique the entry must have. With it, a set, add or replace is memcached's `cas`
    /// (`NotFound` on a miss, `Exists` on a mismatch, and 0 never matches); an append or
    /// prepend compares it too, unless it is 0.
    pub cas: Option<u64>,
    /// A CAS store whose unique is older (smaller) than the entry's stores the value anyway,
    /// marked stale, keeping the entry's deadline and win state (`ms ... I C<cas>`).
    pub invalidate: bool,
    /// The Python library gave the key as `str`.
    pub text_key: bool,
    /// The key came base64-encoded (`ms ... b`): meta replies show it encoded.
    pub binary_key: bool,
    /// An append or prepend whose result exceeds this [`memcached_item_size`] is not stored,
    /// as memcached refuses to allocate it; 0 means no limit.
    pub max_item_size: usize,
}

impl<'a> StoreRequest<'a> {
    /// A plain write of `value` in `mode`, with flags 0 and the default lifetime.
    pub fn new(mode: StoreMode, key: &'a [u8], value: &'a [u8]) -> Self {
        StoreRequest {
            key,
            value,
            flags: 0,
            ttl: Ttl::Default,
            mode,
            cas: None,
            invalidate: false,
            text_key: false,
            binary_key: false,
            max_item_size: 0,
        }
    }

    /// A `set` of `value`.
    pub fn set(key: &'a [u8], value: &'a [u8]) -> Self {
        StoreRequest::new(StoreMode::Set, key, value)
    }

    pub fn flags(self, flags: u32) -> Self {
        StoreRequest { flags, ..self }
    }

    pub fn ttl(self, ttl: Ttl) -> Self {
        StoreRequest { ttl, ..self }
    }

    pub fn cas(self, cas: u64) -> Self {
        StoreRequest {
            cas: Some(cas),
            ..self
        }
    }

    /// Whether the outcome depends on the entry already there (all but a plain set).
    pub fn needs_prior(&self) -> bool {
        self.mode != StoreMode::Set || self.cas.is_some()
    }

    /// An append or prepend: the new value grows the old one.
    pub fn concatenates(&self) -> bool {
        matches!(self.mode, StoreMode::Append | StoreMode::Prepend)
    }
}

/// memcached's replies to a store, plus the one failure the core can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOutcome {
    /// Stored; carries the new CAS unique.
    Stored(u64),
    NotStored,
    Exists,
    NotFound,
    /// No room: the item alone is larger than a shard's memory budget (memcached's
    /// `SERVER_ERROR out of memory storing object`).
    NoRoom,
}

// ---------------------------------------------------------------------------------------------
// Deletes

/// One delete.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeleteRequest {
    /// The CAS unique the entry must have (`md ... C`, the binary delete's CAS).
    pub cas: Option<u64>,
    /// Keep the entry, marked stale with a new CAS unique and its win token cleared, instead of
    /// removing it (`md ... I`).
    pub invalidate: bool,
    /// With `invalidate`, the entry's new lifetime (`md ... I T<ttl>`).
    pub ttl: Option<Ttl>,
    /// Count a CAS mismatch as a delete miss, as memcached's meta delete does (its binary
    /// delete counts nothing).
    pub mismatch_is_miss: bool,
}

/// What a delete did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    Deleted,
    /// Marked stale instead of removed (`md ... I`).
    Invalidated,
    NotFound,
    /// The CAS unique did not match.
    Exists,
}

// ---------------------------------------------------------------------------------------------
// incr and decr

/// A change to a decimal value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delta {
    Incr(u64),
    Decr(u64),
}

/// One incr or decr.
#[derive(Debug, Clone, Copy)]
pub struct DeltaRequest {
    pub delta: Delta,
    /// The CAS unique the entry must have; 0 compares nothing, as in memcached.
    pub cas: Option<u64>,
    /// On a miss, create the entry holding this number (the delta is not applied), with flags
    /// 0 and no deadline until the callback sets one: the binary protocol's initial value,
    /// `ma ... N J<initial>`.
    pub vivify: Option<u64>,
    /// A vivified entry's key came base64-encoded.
    pub binary_key: bool,
}

impl DeltaRequest {
    /// A plain incr or decr.
    pub fn of(delta: Delta) -> Self {
        DeltaRequest {
            delta,
            cas: None,
            vivify: None,
            binary_key: false,
        }
    }
}

/// What an incr or decr did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeltaOutcome<R> {
    /// Applied (or the entry was vivified); the callback's result.
    Done(R),
    NotFound,
    NonNumeric,
    /// The CAS unique did not match.
    Exists,
}

impl<R> DeltaOutcome<R> {
    pub fn map<S>(self, f: impl FnOnce(R) -> S) -> DeltaOutcome<S> {
        match self {
            DeltaOutcome::Done(r) => DeltaOutcome::Done(f(r)),
            DeltaOutcome::NotFound => DeltaOutcome::NotFound,
            DeltaOutcome::NonNumeric => DeltaOutcome::NonNumeric,
            DeltaOutcome::Exists => DeltaOutcome::Exists,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Between tiers

/// An entry's whole state, as it moves between the L1 and the L2.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub value: Bytes,
    pub flags: u32,
    pub cas: u64,
    /// Unix ms; 0 = never.
    pub expires_at: u64,
    /// The entry's meta bits as the L2 record keeps them (see `EntryMeta::to_persisted`).
    pub meta: u8,
}

impl Snapshot {
    pub(crate) fn of_entry(e: &Entry) -> Snapshot {
        Snapshot {
            value: e.value_bytes(),
            flags: e.flags,
            cas: e.cas,
            expires_at: e.expires_at,
            meta: e.meta.to_persisted(),
        }
    }
}
