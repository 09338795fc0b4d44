//! What the store holds, by memcached's slab classes: `stats items`, `stats slabs`,
//! `stats cachedump`, `lru_crawler metadump` and `lru_crawler crawl`. ratmemcache has no slabs;
//! each item is reported in the class a default memcached would keep it in (see
//! `cache::sizing`), so `memcached-tool` and dashboards read the same shape.
//!
//! The state (how many items, their bytes, the oldest access) comes from one walk over the L1
//! under each shard's lock in turn; what happened to items (evictions, reclaims) from counters
//! kept by class as it happens.

use std::sync::atomic::Ordering;

use crate::cache::{chunks_per_page, slab_class, ClassCount, ItemInfo, CLASS_COUNT};
use crate::engine::Engine;

/// memcached's `MAX_NUMBER_OF_SLAB_CLASSES`: class ids a command may name are below it.
pub const MAX_CLASS_ID: u32 = 63;

/// The items of one class, as one walk found them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClassCensus {
    pub number: u64,
    /// memcached's item sizes, summed.
    pub mem_requested: u64,
    /// Seconds since the least recently accessed item's last access (memcached's LRU tail age).
    pub age: u64,
}

/// One class's report: the census and the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassReport {
    /// 1-based.
    pub class: usize,
    pub census: ClassCensus,
    pub counts: ClassCount,
}

impl ClassReport {
    /// memcached's slab pages for this many items.
    pub fn total_pages(&self) -> u64 {
        self.census
            .number
            .div_ceil(chunks_per_page(self.class) as u64)
    }

    pub fn total_chunks(&self) -> u64 {
        self.total_pages() * chunks_per_page(self.class) as u64
    }
}

/// Which classes a crawler command names: `all`, or a comma-separated list of ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClassSet {
    All,
    /// By hash order (`metadump hash`): every class.
    Hash,
    Some(Vec<usize>),
}

impl ClassSet {
    /// memcached's parse of a crawler's class list; `None` is its `BADCLASS`. Empty items in
    /// the list are skipped, as `strtok` does; an id must be 1 to 63.
    pub fn parse(text: &[u8], allow_hash: bool) -> Option<ClassSet> {
        match text {
            b"all" => return Some(ClassSet::All),
            b"hash" if allow_hash => return Some(ClassSet::Hash),
            _ => {}
        }
        let mut ids = Vec::new();
        for part in text.split(|&b| b == b',').filter(|p| !p.is_empty()) {
            let id = super::numbers::safe_strtoul(part)?;
            if !(1..=MAX_CLASS_ID).contains(&id) {
                return None;
            }
            ids.push(id as usize);
        }
        Some(ClassSet::Some(ids))
    }

    fn contains(&self, class: usize) -> bool {
        match self {
            ClassSet::All | ClassSet::Hash => true,
            ClassSet::Some(ids) => ids.contains(&class),
        }
    }
}

/// What a crawler command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrawlerOutcome<T> {
    Done(T),
    /// The class list is not valid (`BADCLASS invalid class id`).
    BadClass,
    /// `lru_crawler disable` turned the crawler off.
    Disabled,
}

/// One line of `stats cachedump`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpedItem {
    pub key: Box<[u8]>,
    pub value_len: usize,
    /// Unix seconds; 0 means never.
    pub expires_s: u64,
}

/// memcached stops a cachedump at 2 MB of reply.
const CACHEDUMP_LIMIT: usize = 2 << 20;

impl Engine {
    /// The class an item belongs to.
    fn class_of(&self, i: &ItemInfo<'_>) -> usize {
        slab_class(self.item_size(i.key.len(), i.value_len, i.flags))
    }

    /// The classes that hold items, or counted something, in order.
    pub fn class_reports(&self) -> Vec<ClassReport> {
        let l1 = self.cache().l1();
        let now_s = l1.now_ms() / 1000;
        let mut census = [ClassCensus::default(); CLASS_COUNT];
        l1.walk(|i| {
            let c = &mut census[self.class_of(i) - 1];
            c.number += 1;
            c.mem_requested += self.item_size(i.key.len(), i.value_len, i.flags) as u64;
            c.age = c.age.max(now_s.saturating_sub(i.last_access_s));
        });
        let counts = l1.class_counters();
        (1..=CLASS_COUNT)
            .map(|class| ClassReport {
                class,
                census: census[class - 1],
                counts: *counts.class(class),
            })
            .filter(|r| r.census.number > 0 || r.counts != ClassCount::default())
            .collect()
    }

    /// `stats cachedump <class> <limit>`: up to `limit` items of the class (0: no limit), in
    /// memory only, within memcached's 2 MB.
    pub fn cachedump(&self, class: u32, limit: u32) -> Vec<DumpedItem> {
        let mut out = Vec::new();
        let mut bytes = 0;
        self.cache().l1().walk(|i| {
            let full = (limit != 0 && out.len() >= limit as usize) || bytes >= CACHEDUMP_LIMIT;
            if full || self.class_of(i) != class as usize {
                return;
            }
            bytes += i.key.len() + 32;
            out.push(DumpedItem {
                key: i.key.into(),
                value_len: i.value_len,
                expires_s: i.expires_at.div_ceil(1000),
            });
        });
        out
    }

    /// `lru_crawler metadump <classes>`: `f` sees every live item of the classes, in both
    /// tiers. A disk error ends the walk early; what was seen is kept.
    pub fn metadump(
        &self,
        classes: &ClassSet,
        mut f: impl FnMut(&ItemInfo<'_>, usize, usize),
    ) -> CrawlerOutcome<()> {
        if !self.lru_crawler_enabled() {
            return CrawlerOutcome::Disabled;
        }
        let walked = self.cache().walk(|i| {
            let size = self.item_size(i.key.len(), i.value_len, i.flags);
            let class = slab_class(size);
            if classes.contains(class) {
                f(i, class, size);
            }
        });
        if let Err(e) = walked {
            log::warn!("lru_crawler metadump: the L2 walk stopped: {e}");
        }
        CrawlerOutcome::Done(())
    }

    /// `lru_crawler crawl <classes>`: reclaims expired items now (in every class: the sweep
    /// has no classes to choose from).
    pub fn crawl(&self, classes: &ClassSet) -> CrawlerOutcome<()> {
        if !self.lru_crawler_enabled() {
            return CrawlerOutcome::Disabled;
        }
        let _ = classes;
        self.counters
            .lru_crawler_starts
            .fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.cache().sweep_expired() {
            log::warn!("lru_crawler crawl: the L2 sweep failed: {e}");
        }
        CrawlerOutcome::Done(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::StoreRequest;
    use crate::testkit::engine_on_clock;

    #[test]
    fn class_lists_parse_like_memcacheds_crawler() {
        assert_eq!(ClassSet::parse(b"all", false), Some(ClassSet::All));
        assert_eq!(ClassSet::parse(b"hash", true), Some(ClassSet::Hash));
        assert_eq!(ClassSet::parse(b"hash", false), None);
        assert_eq!(
            ClassSet::parse(b"1,2", false),
            Some(ClassSet::Some(vec![1, 2]))
        );
        assert_eq!(ClassSet::parse(b"1,", false), Some(ClassSet::Some(vec![1])));
        assert_eq!(
            ClassSet::parse(b"63", false),
            Some(ClassSet::Some(vec![63]))
        );
        for bad in [&b"0"[..], b"64", b"1,x", b"-1", b""] {
            let want = if bad.is_empty() {
                Some(ClassSet::Some(vec![]))
            } else {
                None
            };
            assert_eq!(ClassSet::parse(bad, false), want, "{bad:?}");
        }
    }

    #[test]
    fn reports_count_items_by_class() {
        let (e, _clock) = engine_on_clock();
        e.store(StoreRequest::set(b"foo", b"bar")).unwrap();
        e.store(StoreRequest::set(b"k2", b"hi").flags(5)).unwrap();
        e.store(StoreRequest::set(b"big", &[b'x'; 1000])).unwrap();
        let r = e.class_reports();
        assert_eq!(r.len(), 2);
        assert_eq!(
            (r[0].class, r[0].census.number, r[0].census.mem_requested),
            (1, 2, 65 + 67)
        );
        assert_eq!((r[1].class, r[1].census.number), (12, 1));
        assert_eq!((r[0].total_pages(), r[0].total_chunks()), (1, 10922));
        let dumped = e.cachedump(1, 0);
        assert_eq!(dumped.len(), 2);
        assert_eq!(e.cachedump(1, 1).len(), 1);
        assert!(e.cachedump(2, 0).is_empty());
        let mut seen = Vec::new();
        let all = e.metadump(&ClassSet::All, |i, class, size| {
            seen.push((i.key.to_vec(), class, size))
        });
        assert_eq!(all, CrawlerOutcome::Done(()));
        seen.sort();
        assert_eq!(seen[0], (b"big".to_vec(), 12, 1062));
        assert_eq!(seen[1], (b"foo".to_vec(), 1, 65));
    }
}
