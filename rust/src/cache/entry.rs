//! One cached item, and what it costs.
//!
//! # Layout
//!
//! An entry is one heap block, as memcached's item is one slab chunk: a 32-byte [`Header`]
//! (CAS, deadline, client flags, meta bits, the key and value lengths), then the key, then the
//! value. The table slot that owns it is a single pointer. A value of [`SHARED_VALUE_MIN`]
//! bytes or more is kept in its own `Bytes` instead, stored where the value would be, so that a
//! reply can share it without a copy (`get`, `streaming_get`, the L2's write-back); smaller
//! values are copied into replies, which costs less than the extra allocation would.
//!
//! The key's hash is not stored: the shard recomputes it from the key when the table grows or an
//! entry leaves (see `Shard::hash_of`).
//!
//! # Memory accounting
//!
//! `max_memory` counts every entry as
//!
//! ```text
//! charge = key.len() + value.len() + ENTRY_OVERHEAD + policy bytes per slot
//!          (+ SHARED_VALUE_OVERHEAD for a value of SHARED_VALUE_MIN bytes or more)
//! ENTRY_OVERHEAD = size_of::<Option<Entry>>()      (the slot: one pointer)
//!                + size_of::<u32>() + 1            (the hash-table index and its control byte)
//!                + size_of::<Header>()             (32 bytes)
//!                + ALLOC_OVERHEAD                  (the allocator's header and rounding)
//! ```
//!
//! Policy bytes are 8 (list links) plus 0-40 depending on the policy (see each policy's
//! `bytes_per_slot`). The hash table's spare capacity and freed slots awaiting reuse are not
//! charged; they are bounded by the table's load factor and the peak entry count.
#![allow(unsafe_code)] // see the SAFETY comments

use std::alloc::{self, Layout};
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::ptr::{self, NonNull};

use bytes::Bytes;

/// Values this long and longer live in their own shared buffer (see the module docs).
pub const SHARED_VALUE_MIN: usize = 64 * 1024;

/// Allocator bookkeeping for the entry's block (glibc: an 8-byte header plus rounding to 16).
pub const ALLOC_OVERHEAD: usize = 16;

/// Bytes charged per entry on top of its key, its value and the policy's metadata.
pub const ENTRY_OVERHEAD: usize = std::mem::size_of::<Option<Entry>>()
    + std::mem::size_of::<u32>()
    + 1
    + std::mem::size_of::<Header>()
    + ALLOC_OVERHEAD;

/// Extra bytes charged for a value kept in its own buffer: the `Bytes` handle, the shared
/// buffer's bookkeeping and its allocation.
pub const SHARED_VALUE_OVERHEAD: usize = std::mem::size_of::<Bytes>() + 32 + ALLOC_OVERHEAD;

/// The fixed part of an entry's block. The fields a shard reads and writes are public; the
/// lengths, which say where the key and value are, are not.
#[repr(C)]
pub(crate) struct Header {
    pub cas: u64,
    /// Unix milliseconds; 0 means never.
    pub expires_at: u64,
    pub flags: u32,
    /// Bit flags and the last-access clock.
    pub meta: EntryMeta,
    key_len: u32,
    /// The inline value's length, or `SHARED` when the value is a `Bytes` after the header.
    value_len: u32,
}

const HEADER: usize = std::mem::size_of::<Header>();
const SHARED: u32 = u32::MAX;
const SHARED_HANDLE: usize = std::mem::size_of::<Bytes>();

// The layout the module docs promise, checked when the crate compiles: a 32-byte header that
// keeps a shared value's handle aligned, and (on 64-bit targets) a one-pointer slot.
const _: () = assert!(HEADER == 32);
const _: () = assert!(HEADER.is_multiple_of(std::mem::align_of::<Bytes>()));
#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<Option<Entry>>() == 8);
const _: () = assert!(ENTRY_OVERHEAD >= std::mem::size_of::<Entry>() + HEADER);

impl Header {
    #[inline]
    fn is_shared(&self) -> bool {
        self.value_len == SHARED
    }

    /// Where the key starts in the block.
    #[inline]
    fn key_at(&self) -> usize {
        HEADER + if self.is_shared() { SHARED_HANDLE } else { 0 }
    }

    #[inline]
    fn layout(&self) -> Layout {
        let tail = if self.is_shared() {
            SHARED_HANDLE
        } else {
            self.value_len as usize
        };
        block_layout(self.key_len as usize + tail)
    }
}

#[inline]
fn block_layout(after_header: usize) -> Layout {
    Layout::from_size_align(HEADER + after_header, std::mem::align_of::<Header>())
        .expect("entry size fits a Layout")
}

/// A live entry: the owner of one block (see the module docs). It dereferences to its
/// [`Header`], so `e.cas`, `e.flags`, `e.expires_at` and `e.meta` read and write in place.
///
/// # Invariant
///
/// `block` points to a live allocation made with `Header::layout()` of the header it holds, and:
///
/// - `value_len == SHARED` if and only if an initialised `Bytes` (the value) sits at offset
///   `HEADER`, followed by the key's `key_len` bytes;
/// - otherwise the key's `key_len` bytes sit at `HEADER`, followed by the value's `value_len`
///   bytes.
///
/// Every unsafe block below relies on this and nothing else; `new`, `set_value` and `drop`
/// are the only places that change which case holds.
pub(crate) struct Entry {
    block: NonNull<Header>,
}

// SAFETY: an `Entry` owns its block exclusively (it is neither `Clone` nor `Copy`); the shared
// value, if any, is a `Bytes`, which is `Send + Sync`.
unsafe impl Send for Entry {}
// SAFETY: as for `Send`; `&Entry` only reads the block.
unsafe impl Sync for Entry {}

impl Entry {
    pub fn new(
        key: &[u8],
        value: &[u8],
        cas: u64,
        expires_at: u64,
        flags: u32,
        meta: EntryMeta,
    ) -> Entry {
        // The shared buffer is made first, so nothing can fail between the block's allocation
        // and its last byte being written.
        let handle = (value.len() >= SHARED_VALUE_MIN).then(|| Bytes::copy_from_slice(value));
        let entry = Entry::with_header(Header {
            cas,
            expires_at,
            flags,
            meta,
            key_len: u32::try_from(key.len()).expect("keys are bounded by max_key_len"),
            value_len: if handle.is_some() {
                SHARED
            } else {
                value.len() as u32
            },
        });
        // SAFETY: `with_header` allocated room for the key and the value (or its handle).
        unsafe {
            let base = entry.base();
            ptr::copy_nonoverlapping(key.as_ptr(), base.add(entry.key_at()), key.len());
            if let Some(handle) = handle {
                ptr::write(entry.handle_ptr(), handle);
            } else {
                let at = HEADER + key.len();
                ptr::copy_nonoverlapping(value.as_ptr(), base.add(at), value.len());
            }
        }
        entry
    }

    /// Allocates a block sized by `header` and writes the header; the rest is uninitialised
    /// and the caller fills it before anything reads it.
    fn with_header(header: Header) -> Entry {
        let layout = header.layout();
        // SAFETY: the layout is never zero-sized (it includes the header).
        let p = unsafe { alloc::alloc(layout) } as *mut Header;
        let Some(block) = NonNull::new(p) else {
            alloc::handle_alloc_error(layout)
        };
        // SAFETY: freshly allocated, aligned for `Header`.
        unsafe { ptr::write(block.as_ptr(), header) };
        Entry { block }
    }

    #[inline]
    fn base(&self) -> *mut u8 {
        self.block.as_ptr() as *mut u8
    }

    /// The shared value's handle. Only meaningful when the header says the value is shared.
    #[inline]
    fn handle_ptr(&self) -> *mut Bytes {
        // SAFETY: `HEADER` bytes past the base are inside the block (every block holds the
        // header and at least the handle's room when shared); the header is 32 bytes, so the
        // handle is aligned.
        unsafe { self.base().add(HEADER) as *mut Bytes }
    }

    #[inline]
    fn shared(&self) -> Option<&Bytes> {
        // SAFETY: a shared entry's handle was written in `new`/`set_value` and lives as long
        // as the block.
        self.is_shared().then(|| unsafe { &*self.handle_ptr() })
    }

    /// Asks the CPU to start loading the lines after the first one, where an inline value of
    /// more than a few bytes lies. Called as a lookup first touches the block: the value's
    /// lines then arrive while the key is compared, instead of one miss after another. A hint
    /// only: nothing is read.
    #[inline]
    pub fn prefetch_value(&self) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            let base = self.base() as *const i8;
            // SAFETY: prefetching never faults, whatever the address.
            unsafe {
                _mm_prefetch::<_MM_HINT_T0>(base.wrapping_add(64));
                _mm_prefetch::<_MM_HINT_T0>(base.wrapping_add(128));
            }
        }
    }

    #[inline]
    pub fn key(&self) -> &[u8] {
        // SAFETY: `key_len` bytes at `key_at` were written when the block was made.
        unsafe { std::slice::from_raw_parts(self.base().add(self.key_at()), self.key_len as usize) }
    }

    #[inline]
    pub fn value(&self) -> &[u8] {
        match self.shared() {
            Some(b) => b,
            // SAFETY: an inline value's `value_len` bytes follow the key.
            None => unsafe {
                std::slice::from_raw_parts(
                    self.base().add(HEADER + self.key_len as usize),
                    self.value_len as usize,
                )
            },
        }
    }

    /// The value's buffer, when it is kept apart and a reply can share it (values of
    /// [`SHARED_VALUE_MIN`] bytes and up).
    #[inline]
    pub fn shared_value(&self) -> Option<&Bytes> {
        self.shared()
    }

    /// The value as `Bytes`: shared when it is kept apart, otherwise a copy.
    pub fn value_bytes(&self) -> Bytes {
        match self.shared() {
            Some(b) => b.clone(),
            None => Bytes::copy_from_slice(self.value()),
        }
    }

    /// Replaces the value, keeping the key and the header. An inline value is rewritten in
    /// place when the length is the same, and the block is resized otherwise; a reply that
    /// shares a large value keeps the old buffer.
    pub fn set_value(&mut self, value: &[u8]) {
        let shared = value.len() >= SHARED_VALUE_MIN;
        match (self.is_shared(), shared) {
            (true, true) => {
                // SAFETY: the handle is initialised; assignment drops the old one.
                unsafe { *self.handle_ptr() = Bytes::copy_from_slice(value) };
            }
            (false, false) => {
                let key_len = self.key_len as usize;
                if value.len() != self.value_len as usize {
                    let old = self.layout();
                    let new_size = HEADER + key_len + value.len();
                    // SAFETY: `old` is the layout the block was allocated with; the header and
                    // key are kept by realloc.
                    let p = unsafe { alloc::realloc(self.base(), old, new_size) } as *mut Header;
                    let Some(block) = NonNull::new(p) else {
                        alloc::handle_alloc_error(block_layout(key_len + value.len()))
                    };
                    self.block = block;
                    self.value_len = value.len() as u32;
                }
                // SAFETY: the block now has room for `value` after the key.
                unsafe {
                    let at = self.base().add(HEADER + key_len);
                    ptr::copy_nonoverlapping(value.as_ptr(), at, value.len());
                }
            }
            _ => {
                // Moving between inline and shared changes the layout: build a new block.
                let h: &Header = self;
                let fresh = Entry::new(self.key(), value, h.cas, h.expires_at, h.flags, h.meta);
                *self = fresh;
            }
        }
    }

    #[inline]
    pub fn value_len(&self) -> usize {
        match self.shared() {
            Some(b) => b.len(),
            None => self.value_len as usize,
        }
    }

    #[inline]
    pub fn is_live(&self, now_ms: u64) -> bool {
        self.expires_at == 0 || now_ms < self.expires_at
    }

    /// Key plus value bytes.
    #[inline]
    pub fn payload_len(&self) -> usize {
        self.key_len as usize + self.value_len()
    }

    /// The library set this key as `str`, so `keys()` gives it back as `str`.
    #[inline]
    pub fn text_key(&self) -> bool {
        self.meta.has(EntryMeta::TEXT_KEY)
    }
}

/// Bytes an entry with a value this long is charged beyond `ENTRY_OVERHEAD` and its payload.
#[inline]
pub(crate) fn value_overhead(value_len: usize) -> usize {
    if value_len >= SHARED_VALUE_MIN {
        SHARED_VALUE_OVERHEAD
    } else {
        0
    }
}

impl Deref for Entry {
    type Target = Header;

    #[inline]
    fn deref(&self) -> &Header {
        // SAFETY: the block holds an initialised header for as long as the entry lives.
        unsafe { self.block.as_ref() }
    }
}

impl DerefMut for Entry {
    #[inline]
    fn deref_mut(&mut self) -> &mut Header {
        // SAFETY: as for `deref`; `&mut self` makes the access exclusive.
        unsafe { self.block.as_mut() }
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        let layout = self.layout();
        // SAFETY: the handle is initialised when the header says so; the block was allocated
        // with `layout` and is not used again.
        unsafe {
            if self.is_shared() {
                ptr::drop_in_place(self.handle_ptr());
            }
            alloc::dealloc(self.base(), layout);
        }
    }
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("key", &String::from_utf8_lossy(self.key()))
            .field("value_len", &self.value_len())
            .field("cas", &self.cas)
            .field("expires_at", &self.expires_at)
            .field("flags", &self.flags)
            .field("meta", &self.meta)
            .finish()
    }
}

/// An entry's flags and a coarse last-access clock in one `u32`, so the header stays 32 bytes.
///
/// Bits 0..27 hold the time of the last access as unix seconds modulo 2^27 (about 4.25 years):
/// memcached's meta commands report idle times (`mg l`, `me`'s `la`), and an entry idle for longer
/// than that period reports its idle time modulo the period. The top five bits are flags.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct EntryMeta(u32);

impl EntryMeta {
    const CLOCK_BITS: u32 = 27;
    const CLOCK_MASK: u32 = (1 << Self::CLOCK_BITS) - 1;
    /// The library stored the key as `str`.
    pub const TEXT_KEY: u32 = 1 << 27;
    /// Read at least once since it was stored (memcached's `ITEM_FETCHED`).
    pub const FETCHED: u32 = 1 << 28;
    /// Invalidated by a meta delete or set with `I` (memcached's `ITEM_STALE`).
    pub const STALE: u32 = 1 << 29;
    /// A client was handed the right to recache it (memcached's `ITEM_TOKEN_SENT`).
    pub const WIN_SENT: u32 = 1 << 30;
    /// The key came base64-encoded (meta `b`) and is shown that way.
    pub const BINARY_KEY: u32 = 1 << 31;
    const FLAG_BITS: u32 = !Self::CLOCK_MASK;

    #[inline]
    fn clock_of(now_ms: u64) -> u32 {
        // 2^27 divides 2^32, so truncating first keeps the value modulo 2^27.
        ((now_ms / 1000) as u32) & Self::CLOCK_MASK
    }

    /// A fresh entry's metadata: these `flags`, last accessed now.
    #[inline]
    pub fn new(flags: u32, now_ms: u64) -> Self {
        EntryMeta((flags & Self::FLAG_BITS) | Self::clock_of(now_ms))
    }

    #[inline]
    pub fn has(self, flag: u32) -> bool {
        self.0 & flag != 0
    }

    #[inline]
    pub fn flags(self) -> u32 {
        self.0 & Self::FLAG_BITS
    }

    #[inline]
    pub fn set(&mut self, flag: u32, on: bool) {
        let flag = flag & Self::FLAG_BITS;
        if on {
            self.0 |= flag;
        } else {
            self.0 &= !flag;
        }
    }

    /// Records a read: fetched, and last accessed now.
    #[inline]
    pub fn fetched_at(&mut self, now_ms: u64) {
        self.0 = (self.0 & Self::FLAG_BITS) | Self::FETCHED | Self::clock_of(now_ms);
    }

    /// Seconds since the last access (modulo 2^27).
    #[inline]
    pub fn idle_secs(self, now_ms: u64) -> u32 {
        Self::clock_of(now_ms).wrapping_sub(self.0 & Self::CLOCK_MASK) & Self::CLOCK_MASK
    }

    pub fn state(self, now_ms: u64) -> ItemState {
        ItemState {
            fetched: self.has(Self::FETCHED),
            stale: self.has(Self::STALE),
            win_sent: self.has(Self::WIN_SENT),
            binary_key: self.has(Self::BINARY_KEY),
            idle_secs: self.idle_secs(now_ms),
        }
    }

    /// The byte an L2 record keeps (`store::record`, the `meta` field): the five flags, in this
    /// order from bit 0: text key, fetched, stale, win sent, binary key. The access clock is
    /// not kept. Changing this changes the file format: bump `record::FORMAT_VERSION` (a test
    /// ties the two).
    #[inline]
    pub fn to_persisted(self) -> u8 {
        (self.flags() >> Self::CLOCK_BITS) as u8
    }

    /// The inverse of [`to_persisted`](Self::to_persisted), last accessed now.
    #[inline]
    pub fn from_persisted(bits: u8, now_ms: u64) -> Self {
        EntryMeta::new(u32::from(bits) << Self::CLOCK_BITS, now_ms)
    }

    /// The state a record's persisted bits describe (it has no access clock: idle 0).
    pub fn persisted_state(bits: u8) -> ItemState {
        EntryMeta::from_persisted(bits, 0).state(0)
    }

    /// Whether a record's persisted bits say the library gave the key as `str`.
    pub fn persisted_text_key(bits: u8) -> bool {
        EntryMeta::from_persisted(bits, 0).has(Self::TEXT_KEY)
    }
}

/// What memcached's meta commands can tell about an item besides its value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ItemState {
    /// Read since it was stored (`mg h`, `me`'s `fetch`).
    pub fetched: bool,
    /// Invalidated and awaiting a recache (`mg`'s `X`).
    pub stale: bool,
    /// Some client already won the right to recache it (`mg`'s `Z`).
    pub win_sent: bool,
    /// The key was given base64-encoded and is shown that way (`mg k` with `b`).
    pub binary_key: bool,
    /// Seconds since the last access (`mg l`, `me`'s `la`), modulo about 4.25 years.
    pub idle_secs: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &[u8], value: &[u8]) -> Entry {
        Entry::new(key, value, 7, 9, 3, EntryMeta::new(EntryMeta::TEXT_KEY, 0))
    }

    #[test]
    fn key_and_value_share_one_block() {
        let mut e = entry(b"key", b"value");
        assert_eq!(
            (e.key(), e.value(), e.value_len(), e.payload_len()),
            (&b"key"[..], &b"value"[..], 5, 8)
        );
        assert!(e.shared_value().is_none());
        e.set_value(b"VALUE");
        assert_eq!(e.value(), b"VALUE");
        let copied = e.value_bytes();
        e.set_value(b"other");
        assert_eq!((&copied[..], e.value()), (&b"VALUE"[..], &b"other"[..]));
        e.set_value(b"a longer value");
        assert_eq!((e.key(), e.value()), (&b"key"[..], &b"a longer value"[..]));
        e.set_value(b"");
        assert_eq!((e.key(), e.value_len()), (&b"key"[..], 0));
        // The header survives every resize.
        assert_eq!((e.cas, e.expires_at, e.flags), (7, 9, 3));
        assert!(e.text_key());
        e.cas = 11;
        e.flags = 12;
        assert_eq!((e.cas, e.flags), (11, 12));
    }

    #[test]
    fn large_values_are_shared_and_move_between_layouts() {
        let big = vec![b'x'; SHARED_VALUE_MIN];
        let big2 = vec![b'y'; SHARED_VALUE_MIN + 1];
        let mut e = entry(b"k", &big);
        assert_eq!(
            (e.key(), e.value(), e.value_len()),
            (&b"k"[..], &big[..], big.len())
        );
        let shared = e.value_bytes();
        assert_eq!(
            shared.as_ptr(),
            e.value().as_ptr(),
            "a large value is shared, not copied"
        );
        e.set_value(&big2);
        assert_eq!(
            (&shared[..], e.value()),
            (&big[..], &big2[..]),
            "a reply keeps the old value"
        );
        e.set_value(b"small");
        assert_eq!(
            (e.key(), e.value(), e.payload_len()),
            (&b"k"[..], &b"small"[..], 6)
        );
        assert!(e.shared_value().is_none());
        e.set_value(&big);
        assert_eq!((e.key(), e.value()), (&b"k"[..], &big[..]));
        assert_eq!((e.cas, e.expires_at, e.flags), (7, 9, 3));
        assert_eq!(value_overhead(big.len()), SHARED_VALUE_OVERHEAD);
        assert_eq!(value_overhead(SHARED_VALUE_MIN - 1), 0);
    }

    #[test]
    fn long_keys_fit() {
        let key = vec![b'k'; 64 * 1024];
        let e = entry(&key, b"v");
        assert_eq!((e.key(), e.value()), (&key[..], &b"v"[..]));
    }

    /// The persisted meta byte is part of the L2's file format: if this test has to change,
    /// so does `record::FORMAT_VERSION`.
    #[test]
    fn the_persisted_meta_byte_is_that_of_format_version_2() {
        // Version 2 added value files and kept version 1's meta byte.
        assert_eq!(
            crate::store::FORMAT_VERSION,
            2,
            "update the table below with the format"
        );
        for (flag, bit) in [
            (EntryMeta::TEXT_KEY, 1u8),
            (EntryMeta::FETCHED, 1 << 1),
            (EntryMeta::STALE, 1 << 2),
            (EntryMeta::WIN_SENT, 1 << 3),
            (EntryMeta::BINARY_KEY, 1 << 4),
        ] {
            let m = EntryMeta::new(flag, 5_000);
            assert_eq!(m.to_persisted(), bit);
            assert_eq!(EntryMeta::from_persisted(bit, 5_000), m);
        }
        let all = EntryMeta::new(!0, 0);
        assert_eq!(all.to_persisted(), 0b1_1111);
        let s = EntryMeta::persisted_state(0b1_1110);
        assert!(s.fetched && s.stale && s.win_sent && s.binary_key);
        assert!(EntryMeta::persisted_text_key(1) && !EntryMeta::persisted_text_key(0b1_1110));
    }

    #[test]
    fn meta_bits_and_clock() {
        let t = 1_700_000_000_000;
        let mut m = EntryMeta::new(EntryMeta::TEXT_KEY | EntryMeta::BINARY_KEY, t);
        assert!(m.has(EntryMeta::TEXT_KEY) && m.has(EntryMeta::BINARY_KEY));
        assert!(!m.has(EntryMeta::FETCHED) && !m.has(EntryMeta::STALE));
        assert_eq!(m.idle_secs(t + 999), 0);
        assert_eq!(m.idle_secs(t + 42_000), 42);
        m.set(EntryMeta::STALE, true);
        m.set(EntryMeta::WIN_SENT, true);
        m.fetched_at(t + 5_000);
        let s = m.state(t + 7_500);
        assert!(s.fetched && s.stale && s.win_sent && s.binary_key);
        assert_eq!(s.idle_secs, 2);
        m.set(EntryMeta::STALE, false);
        assert!(!m.has(EntryMeta::STALE) && m.has(EntryMeta::WIN_SENT));
        assert_eq!(m.flags() & EntryMeta::CLOCK_MASK, 0);
        // The clock wraps every 2^27 seconds; idle times stay right across the wrap.
        let wrap = (1u64 << 27) * 1000;
        let m = EntryMeta::new(0, wrap - 1_000);
        assert_eq!(m.idle_secs(wrap + 3_000), 4);
    }
}
