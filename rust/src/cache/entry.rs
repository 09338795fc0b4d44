//! One cached item, and what it costs.
//!
//! # Memory accounting
//!
//! `max_memory` counts every entry as
//!
//! ```text
//! charge = key.len() + value.len() + ENTRY_OVERHEAD + policy bytes per slot
//! ENTRY_OVERHEAD = size_of::<Option<Entry>>()      (the slot: 72 bytes on 64-bit targets)
//!                + size_of::<u32>() + 1            (the hash-table index and its control byte)
//!                + ALLOC_OVERHEAD                  (the allocator's header of the key+value buffer)
//! ```
//!
//! Policy bytes are 8 (list links) plus 0-40 depending on the policy (see each policy's
//! `bytes_per_slot`). The hash table's spare capacity and freed slots awaiting reuse are not
//! charged; they are bounded by the table's load factor and the peak entry count.

use bytes::Bytes;

/// What a live entry holds. The key and the value share one allocation (`data` is the key
/// followed by the value), so a read touches the slot and one buffer, as memcached's items do;
/// `Bytes` lets a reply share the value without a copy.
#[derive(Debug)]
pub(crate) struct Entry {
    pub hash: u64,
    data: Bytes,
    pub cas: u64,
    /// Unix milliseconds; 0 means never.
    pub expires_at: u64,
    pub flags: u32,
    key_len: u32,
    /// Bit flags and the last-access clock, packed into what would otherwise be padding.
    pub meta: EntryMeta,
}

/// Allocator bookkeeping for the entry's one heap buffer (glibc: 8-16 bytes).
pub const ALLOC_OVERHEAD: usize = 16;

/// Bytes charged per entry on top of its key, its value and the policy's metadata.
pub const ENTRY_OVERHEAD: usize =
    std::mem::size_of::<Option<Entry>>() + std::mem::size_of::<u32>() + 1 + ALLOC_OVERHEAD;

fn joined(key: &[u8], value: &[u8]) -> Bytes {
    let mut v = Vec::with_capacity(key.len() + value.len());
    v.extend_from_slice(key);
    v.extend_from_slice(value);
    Bytes::from(v)
}

impl Entry {
    pub fn new(
        hash: u64,
        key: &[u8],
        value: &[u8],
        cas: u64,
        expires_at: u64,
        flags: u32,
        meta: EntryMeta,
    ) -> Entry {
        Entry {
            hash,
            data: joined(key, value),
            cas,
            expires_at,
            flags,
            key_len: key.len() as u32,
            meta,
        }
    }

    #[inline]
    pub fn key(&self) -> &[u8] {
        &self.data[..self.key_len as usize]
    }

    #[inline]
    pub fn value(&self) -> &[u8] {
        &self.data[self.key_len as usize..]
    }

    /// The buffer the value lives in, and where in it the value starts: a reply can share it
    /// (see `ItemRef::value_bytes`).
    #[inline]
    pub fn shared_value(&self) -> (&Bytes, usize) {
        (&self.data, self.key_len as usize)
    }

    /// The value as shared `Bytes` (no copy of the data).
    pub fn value_bytes(&self) -> Bytes {
        self.data.slice(self.key_len as usize..)
    }

    /// Replaces the value, keeping the key. A value of the same length is written in place when
    /// no reply still shares the buffer, so steady overwrites allocate nothing.
    pub fn set_value(&mut self, value: &[u8]) {
        let k = self.key_len as usize;
        if self.data.len() == k + value.len() {
            match std::mem::take(&mut self.data).try_into_mut() {
                Ok(mut unique) => {
                    unique[k..].copy_from_slice(value);
                    self.data = unique.freeze();
                    return;
                }
                Err(shared) => self.data = shared,
            }
        }
        self.data = joined(self.key(), value);
    }

    #[inline]
    pub fn value_len(&self) -> usize {
        self.data.len() - self.key_len as usize
    }

    #[inline]
    pub fn is_live(&self, now_ms: u64) -> bool {
        self.expires_at == 0 || now_ms < self.expires_at
    }

    #[inline]
    pub fn payload_len(&self) -> usize {
        self.data.len()
    }

    /// The Python library set this key as `str`, so `keys()` gives it back as `str`.
    #[inline]
    pub fn text_key(&self) -> bool {
        self.meta.has(EntryMeta::TEXT_KEY)
    }
}

/// An entry's flags and a coarse last-access clock in one `u32`, so the slot stays 72 bytes.
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

/// A copy of an entry's public fields, as a read returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub value: Bytes,
    pub flags: u32,
    pub cas: u64,
    /// Unix milliseconds; 0 means never.
    pub expires_at: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overhead_is_documented_size() {
        // The module docs promise a 72-byte slot on 64-bit targets; keep them honest.
        #[cfg(target_pointer_width = "64")]
        assert_eq!(std::mem::size_of::<Option<Entry>>(), 72);
        assert!(ENTRY_OVERHEAD >= std::mem::size_of::<Entry>());
    }

    #[test]
    fn key_and_value_share_one_buffer() {
        let mut e = Entry::new(1, b"key", b"value", 1, 0, 0, EntryMeta::default());
        assert_eq!(
            (e.key(), e.value(), e.value_len()),
            (&b"key"[..], &b"value"[..], 5)
        );
        e.set_value(b"VALUE");
        assert_eq!(e.value(), b"VALUE");
        let shared = e.value_bytes();
        e.set_value(b"other");
        assert_eq!((&shared[..], e.value()), (&b"VALUE"[..], &b"other"[..]));
        e.set_value(b"a longer value");
        assert_eq!((e.key(), e.value()), (&b"key"[..], &b"a longer value"[..]));
        e.set_value(b"");
        assert_eq!((e.key(), e.value_len()), (&b"key"[..], 0));
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
