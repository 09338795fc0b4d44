//! The `stats` groups, as name and value pairs that each protocol encodes its own way (text:
//! `STAT <name> <value>` lines; binary: one packet per statistic).

use std::borrow::Cow;

use crate::engine::Engine;

/// The groups `stats <group>` (and the binary `stat` with a key) can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatsGroup {
    /// `stats` alone.
    General,
    Settings,
    Items,
    Slabs,
    Sizes,
    Conns,
}

impl StatsGroup {
    /// A group by the name a client gives it; `None` for a name memcached doesn't know.
    pub fn named(name: &[u8]) -> Option<StatsGroup> {
        Some(match name {
            b"" => StatsGroup::General,
            b"settings" => StatsGroup::Settings,
            b"items" => StatsGroup::Items,
            b"slabs" => StatsGroup::Slabs,
            b"sizes" => StatsGroup::Sizes,
            b"conns" => StatsGroup::Conns,
            _ => return None,
        })
    }
}

/// One statistic: its name and its value as memcached prints it.
pub type Stat = (Cow<'static, str>, String);

impl Engine {
    /// The statistics of one group, in memcached's order.
    pub fn stats(&self, group: StatsGroup) -> Vec<Stat> {
        match group {
            StatsGroup::General => self
                .general_stats()
                .into_iter()
                .map(|(k, v)| (Cow::Borrowed(k), v))
                .collect(),
            StatsGroup::Settings => self
                .settings_stats()
                .into_iter()
                .map(|(k, v)| (Cow::Owned(k), v))
                .collect(),
            StatsGroup::Items => self.items_stats(),
            StatsGroup::Slabs => self.slabs_stats(),
            // memcached 1.6 tracks no item sizes unless started with it.
            StatsGroup::Sizes => vec![("sizes_status".into(), "disabled".into())],
            StatsGroup::Conns => Vec::new(),
        }
    }

    /// `stats reset`: the counters start again from 0.
    pub fn reset_stats(&self) {
        self.shared_cache().reset_counters();
    }

    /// `stats items`: one logical slab class (1), since ratmemcache allocates per item; empty
    /// when the cache is, as memcached's is.
    fn items_stats(&self) -> Vec<Stat> {
        let s = self.shared_cache().stats();
        if s.curr_items == 0 {
            return Vec::new();
        }
        [
            ("number", s.curr_items),
            ("evicted", s.counters.evictions),
            ("reclaimed", s.counters.expirations),
            ("mem_requested", s.payload_bytes),
            ("expired_unfetched", s.counters.expired_unfetched),
            ("evicted_unfetched", s.counters.evicted_unfetched),
        ]
        .into_iter()
        .map(|(k, v)| (format!("items:1:{k}").into(), v.to_string()))
        .collect()
    }

    /// `stats slabs`: the same one class.
    fn slabs_stats(&self) -> Vec<Stat> {
        let s = self.shared_cache().stats();
        let mut v: Vec<Stat> = Vec::new();
        if s.curr_items > 0 {
            v.push(("1:used_chunks".into(), s.curr_items.to_string()));
            v.push(("1:mem_requested".into(), s.payload_bytes.to_string()));
        }
        v.push((
            "active_slabs".into(),
            u64::from(s.curr_items > 0).to_string(),
        ));
        v.push(("total_malloced".into(), s.bytes.to_string()));
        v
    }
}
