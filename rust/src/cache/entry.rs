//! One cached item, and what it costs.
//!
//! # Memory accounting
//!
//! `max_memory` counts every entry as
//!
//! ```text
//! charge = key.len() + value.len() + ENTRY_OVERHEAD + policy bytes per slot
//! ENTRY_OVERHEAD = size_of::<Option<Entry>>()      (the slot: 80 bytes on 64-bit targets)
//!                + size_of::<u32>() + 1            (the hash-table index and its control byte)
//!                + ALLOC_OVERHEAD                  (the allocator's headers of the key and value buffers)
//! ```
//!
//! Policy bytes are 8 (list links) plus 0-40 depending on the policy (see each policy's
//! `bytes_per_slot`). The hash table's spare capacity and freed slots awaiting reuse are not
//! charged; they are bounded by the table's load factor and the peak entry count.

use bytes::Bytes;

/// What a live entry holds. Keys are copied once into a boxed slice; values are `Bytes`, so a
/// reply can share them without a copy.
#[derive(Debug)]
pub(crate) struct Entry {
    pub hash: u64,
    pub key: Box<[u8]>,
    pub value: Bytes,
    pub cas: u64,
    /// Unix milliseconds; 0 means never.
    pub expires_at: u64,
    pub flags: u32,
    /// The Python library set this key as `str`, so `keys()` gives it back as `str`.
    pub text_key: bool,
}

/// Allocator bookkeeping for the two heap buffers of an entry (glibc: 8-16 bytes each).
pub const ALLOC_OVERHEAD: usize = 32;

/// Bytes charged per entry on top of its key, its value and the policy's metadata.
pub const ENTRY_OVERHEAD: usize =
    std::mem::size_of::<Option<Entry>>() + std::mem::size_of::<u32>() + 1 + ALLOC_OVERHEAD;

impl Entry {
    #[inline]
    pub fn is_live(&self, now_ms: u64) -> bool {
        self.expires_at == 0 || now_ms < self.expires_at
    }

    #[inline]
    pub fn payload_len(&self) -> usize {
        self.key.len() + self.value.len()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overhead_is_documented_size() {
        // The module docs promise an 80-byte slot on 64-bit targets; keep them honest.
        #[cfg(target_pointer_width = "64")]
        assert_eq!(std::mem::size_of::<Option<Entry>>(), 80);
        assert!(ENTRY_OVERHEAD >= std::mem::size_of::<Entry>());
    }
}
