//! memcached's item accounting, which clients and tools see: the size it gives an item
//! (`ITEM_ntotal`), checked against the item size limit (`-I`) and shown by `me`, `stats items`
//! and `lru_crawler metadump`, and the slab class such an item occupies in a default memcached.
//! ratmemcache allocates per item and has no slabs; it reports the class an item would have, so
//! `memcached-tool` and dashboards keep working.

/// memcached's size of an item: its 48-byte header, an 8-byte CAS unique (unless `-C` turned
/// CAS off), the key and a NUL, the value and its `\r\n`, and 4 bytes for client flags when
/// they are not 0.
pub fn memcached_item_size(key_len: usize, value_len: usize, flags: u32, cas: bool) -> usize {
    48 + if cas { 8 } else { 0 } + key_len + 1 + value_len + 2 + if flags != 0 { 4 } else { 0 }
}

/// memcached's default slab chunk sizes (`-n 48 -f 1.25`, 512 KiB largest chunk), class 1
/// first. Larger items are chunked and report the largest class.
pub const SLAB_CLASSES: [u32; 39] = [
    96, 120, 152, 192, 240, 304, 384, 480, 600, 752, 944, 1184, 1480, 1856, 2320, 2904, 3632, 4544,
    5680, 7104, 8880, 11104, 13880, 17352, 21696, 27120, 33904, 42384, 52984, 66232, 82792, 103496,
    129376, 161720, 202152, 252696, 315872, 394840, 524288,
];

/// The number of slab classes; classes are numbered from 1.
pub const CLASS_COUNT: usize = SLAB_CLASSES.len();

/// memcached's slab page (`-I` 1m's default page size).
pub const SLAB_PAGE_SIZE: usize = 1 << 20;

/// The slab class (1-based) of an item of `size` bytes in a default memcached.
pub fn slab_class(size: usize) -> usize {
    SLAB_CLASSES
        .partition_point(|&c| (c as usize) < size)
        .min(CLASS_COUNT - 1)
        + 1
}

/// The chunk size of a class (1-based).
pub fn chunk_size(class: usize) -> usize {
    SLAB_CLASSES[class - 1] as usize
}

/// How many chunks of a class fit in a slab page.
pub fn chunks_per_page(class: usize) -> usize {
    SLAB_PAGE_SIZE / chunk_size(class)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_sizes_are_memcacheds() {
        // 48 + 8 + key 3 + 1 + value 3 + 2, as `me` shows for a 3-byte key and value.
        assert_eq!(memcached_item_size(3, 3, 0, true), 65);
        assert_eq!(memcached_item_size(2, 2, 5, true), 67);
        // memcached -C: no CAS field.
        assert_eq!(memcached_item_size(3, 3, 0, false), 57);
    }

    #[test]
    fn slab_classes_match_memcacheds_defaults() {
        assert_eq!(slab_class(62), 1);
        assert_eq!(slab_class(96), 1);
        assert_eq!(slab_class(97), 2);
        assert_eq!(slab_class(161), 4);
        assert_eq!(slab_class(1061), 12);
        assert_eq!(slab_class(5061), 19);
        assert_eq!(slab_class(100_061), 32);
        assert_eq!(slab_class(400_061), 39);
        assert_eq!(slab_class(10_000_000), 39);
        // `stats slabs` after one small and one 1000-byte item in memcached 1.6.18.
        assert_eq!((chunk_size(1), chunks_per_page(1)), (96, 10922));
        assert_eq!((chunk_size(12), chunks_per_page(12)), (1184, 885));
    }
}
