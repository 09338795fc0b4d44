//! The `stats` groups, as name and value pairs that each protocol encodes its own way (text:
//! `STAT <name> <value>` lines; binary: one packet per statistic).
#![allow(unsafe_code)] // see the SAFETY comments

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};

use super::admin::yes_no;
use crate::cache::{chunk_size, chunks_per_page};

use crate::engine::{Engine, MEMCACHED_VERSION};

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
            StatsGroup::Settings => self.settings_stats(),
            StatsGroup::Items => self.items_stats(),
            StatsGroup::Slabs => self.slabs_stats(),
            // memcached 1.6 tracks no item sizes unless started with it.
            StatsGroup::Sizes => vec![("sizes_status".into(), "disabled".into())],
            StatsGroup::Conns => Vec::new(),
        }
    }

    /// `stats reset`: the counters start again from 0, and `stats detail` forgets its
    /// prefixes.
    pub fn reset_stats(&self) {
        self.shared_cache().reset_counters();
        self.runtime.detail.clear();
    }

    /// The general `stats`: memcached 1.6.18's 92 fields in its order, then ratmemcache's own
    /// (`eviction_policy`, `shards`, and the L2's with one). Fields that measure machinery
    /// ratmemcache does not have carry the value memcached shows when that machinery is idle;
    /// docs/compatibility.md lists them.
    pub fn general_stats(&self) -> Vec<(&'static str, String)> {
        let tiers = self.cache();
        let l1 = tiers.l1();
        let s = tiers.stats();
        let c = s.counters;
        let classes = l1.class_counters().total();
        let sc = &self.counters;
        let ld = |a: &AtomicU64| a.load(Ordering::Relaxed).to_string();
        let n = |v: u64| v.to_string();
        let zero = || "0".to_string();
        let (user, sys) = rusage();
        let buckets = l1.index_buckets().max(1);
        let mut v = vec![
            ("pid", std::process::id().to_string()),
            ("uptime", n(self.uptime_secs())),
            ("time", n(tiers.now_ms() / 1000)),
            ("version", MEMCACHED_VERSION.to_string()),
            // No libevent: the I/O engine in its place.
            (
                "libevent",
                self.setting("io_engine").unwrap_or_else(|| "none".into()),
            ),
            ("pointer_size", n(8 * std::mem::size_of::<usize>() as u64)),
            ("rusage_user", user),
            ("rusage_system", sys),
            (
                "max_connections",
                self.setting("maxconns").unwrap_or_else(|| "1024".into()),
            ),
            ("curr_connections", ld(&sc.curr_connections)),
            ("total_connections", ld(&sc.total_connections)),
            ("rejected_connections", ld(&sc.rejected_connections)),
            ("connection_structures", ld(&sc.curr_connections)),
            // memcached's response-object and read-buffer pools.
            ("response_obj_oom", zero()),
            ("response_obj_count", zero()),
            ("response_obj_bytes", zero()),
            ("read_buf_count", zero()),
            ("read_buf_bytes", zero()),
            ("read_buf_bytes_free", zero()),
            ("read_buf_oom", zero()),
            ("reserved_fds", zero()),
            ("cmd_get", n(s.gets())),
            ("cmd_set", n(c.cmd_set)),
            ("cmd_flush", ld(&sc.cmd_flush)),
            ("cmd_touch", n(c.touch_hits + c.touch_misses)),
            ("cmd_meta", ld(&sc.cmd_meta)),
            ("get_hits", n(c.get_hits)),
            ("get_misses", n(c.get_misses)),
            ("get_expired", n(c.get_expired)),
            // flush_all frees items at once: no read meets a flushed item.
            ("get_flushed", zero()),
            ("delete_misses", n(c.delete_misses)),
            ("delete_hits", n(c.delete_hits)),
            ("incr_misses", n(c.incr_misses)),
            ("incr_hits", n(c.incr_hits)),
            ("decr_misses", n(c.decr_misses)),
            ("decr_hits", n(c.decr_hits)),
            ("cas_misses", n(c.cas_misses)),
            ("cas_hits", n(c.cas_hits)),
            ("cas_badval", n(c.cas_badval)),
            ("touch_hits", n(c.touch_hits)),
            ("touch_misses", n(c.touch_misses)),
            ("store_too_large", ld(&sc.store_too_large)),
            ("store_no_memory", ld(&sc.store_no_memory)),
            ("auth_cmds", ld(&sc.auth_cmds)),
            ("auth_errors", ld(&sc.auth_errors)),
            ("bytes_read", ld(&sc.bytes_read)),
            ("bytes_written", ld(&sc.bytes_written)),
            ("limit_maxbytes", n(s.limit_maxbytes)),
            ("accepting_conns", "1".into()),
            ("listen_disabled_num", ld(&sc.listen_disabled_num)),
            (
                "time_in_listen_disabled_us",
                ld(&sc.time_in_listen_disabled_us),
            ),
            (
                "threads",
                self.setting("num_threads").unwrap_or_else(|| "1".into()),
            ),
            ("conn_yields", ld(&sc.conn_yields)),
            // The key index: its buckets over all shards, 4-byte slots and a control byte.
            ("hash_power_level", n(u64::from(buckets.ilog2()))),
            ("hash_bytes", n(buckets as u64 * 5)),
            ("hash_is_expanding", zero()),
            // No slab allocator: nothing to rebalance.
            ("slab_reassign_rescues", zero()),
            ("slab_reassign_chunk_rescues", zero()),
            ("slab_reassign_evictions_nomem", zero()),
            ("slab_reassign_inline_reclaim", zero()),
            ("slab_reassign_busy_items", zero()),
            ("slab_reassign_busy_deletes", zero()),
            ("slab_reassign_running", zero()),
            ("slabs_moved", zero()),
            // A crawl runs to its end inside the command.
            ("lru_crawler_running", zero()),
            ("lru_crawler_starts", ld(&sc.lru_crawler_starts)),
            ("lru_maintainer_juggles", zero()),
            ("malloc_fails", zero()),
            // No log watchers (`watch`), no NAPI ids, no worker round robin.
            ("log_worker_dropped", zero()),
            ("log_worker_written", zero()),
            ("log_watcher_skipped", zero()),
            ("log_watcher_sent", zero()),
            ("log_watchers", zero()),
            ("unexpected_napi_ids", zero()),
            ("round_robin_fallback", zero()),
            ("bytes", n(s.bytes)),
            ("curr_items", n(s.curr_items)),
            ("total_items", n(c.total_items)),
            ("slab_global_page_pool", zero()),
            ("expired_unfetched", n(c.expired_unfetched)),
            ("evicted_unfetched", n(c.evicted_unfetched)),
            // No segmented LRU: nothing is bumped instead of evicted, or moved between
            // segments.
            ("evicted_active", zero()),
            ("evictions", n(c.evictions)),
            ("reclaimed", n(c.expirations)),
            ("crawler_reclaimed", n(classes.crawler_reclaimed)),
            ("crawler_items_checked", n(classes.crawler_items_checked)),
            ("lrutail_reflocked", zero()),
            ("moves_to_cold", zero()),
            ("moves_to_warm", zero()),
            ("moves_within_lru", zero()),
            ("direct_reclaims", zero()),
            ("lru_bumps_dropped", zero()),
            ("eviction_policy", l1.config().eviction.name().to_string()),
            ("shards", n(s.shards)),
        ];
        if let Some(t) = tiers.tier_stats() {
            v.extend(t.fields().into_iter().map(|(k, n)| (k, n.to_string())));
        }
        v
    }

    /// `stats settings`: the core's own settings, then the front end's
    /// (`EngineConfig::settings`) that the core does not own.
    pub fn settings_stats(&self) -> Vec<Stat> {
        let c = self.cache().config();
        let cfg = self.config();
        let mut v: Vec<(&'static str, String)> = vec![
            ("maxbytes", self.cache().l1().max_memory().to_string()),
            ("item_size_max", cfg.max_item_size.to_string()),
            ("evictions", if c.evictions { "on" } else { "off" }.into()),
            ("eviction_policy", c.eviction.name().into()),
            ("max_entries", c.max_entries.to_string()),
            ("default_ttl", (c.default_ttl_ms / 1000).to_string()),
            ("max_ttl", (c.max_ttl_ms / 1000).to_string()),
            (
                "cleanup_interval",
                (c.cleanup_interval_ms / 1000).to_string(),
            ),
            ("cas_enabled", yes_no(c.cas_uniques)),
            ("flush_enabled", yes_no(cfg.allow_flush)),
            ("shutdown_command", yes_no(cfg.allow_shutdown)),
            ("verbosity", self.verbosity().to_string()),
        ];
        v.extend(self.runtime.settings());
        let mut out: Vec<Stat> = v.into_iter().map(|(k, v)| (k.into(), v)).collect();
        for (k, val) in &cfg.settings {
            if !out.iter().any(|(n, _)| n == k) {
                out.push((k.clone().into(), val.clone()));
            }
        }
        out
    }

    /// `stats items`: for each class that holds items or counted something, memcached's
    /// fields. The LRU is not segmented: every item counts as cold.
    fn items_stats(&self) -> Vec<Stat> {
        let mut v: Vec<Stat> = Vec::new();
        for r in self.class_reports() {
            if r.census.number == 0 {
                continue;
            }
            let k = &r.counts;
            let fields = [
                ("number", r.census.number),
                ("number_hot", 0),
                ("number_warm", 0),
                ("number_cold", r.census.number),
                ("age_hot", 0),
                ("age_warm", 0),
                ("age", r.census.age),
                ("mem_requested", r.census.mem_requested),
                ("evicted", k.evicted),
                ("evicted_nonzero", k.evicted_nonzero),
                ("evicted_time", k.evicted_time),
                ("outofmemory", k.outofmemory),
                ("tailrepairs", 0),
                ("reclaimed", k.reclaimed),
                ("expired_unfetched", k.expired_unfetched),
                ("evicted_unfetched", k.evicted_unfetched),
                ("evicted_active", 0),
                ("crawler_reclaimed", k.crawler_reclaimed),
                ("crawler_items_checked", k.crawler_items_checked),
                ("lrutail_reflocked", 0),
                ("moves_to_cold", 0),
                ("moves_to_warm", 0),
                ("moves_within_lru", 0),
                ("direct_reclaims", 0),
                ("hits_to_hot", 0),
                ("hits_to_warm", 0),
                ("hits_to_cold", 0),
                ("hits_to_temp", 0),
            ];
            for (name, val) in fields {
                v.push((format!("items:{}:{name}", r.class).into(), val.to_string()));
            }
        }
        v
    }

    /// `stats slabs`: each class that holds items, as the pages memcached would give it, then
    /// `active_slabs` and `total_malloced` (the bytes the L1 really holds).
    fn slabs_stats(&self) -> Vec<Stat> {
        let mut v: Vec<Stat> = Vec::new();
        let mut active = 0u64;
        for r in self.class_reports() {
            if r.census.number == 0 {
                continue;
            }
            active += 1;
            let total = r.total_chunks();
            let fields = [
                ("chunk_size", chunk_size(r.class) as u64),
                ("chunks_per_page", chunks_per_page(r.class) as u64),
                ("total_pages", r.total_pages()),
                ("total_chunks", total),
                ("used_chunks", r.census.number),
                ("free_chunks", total - r.census.number),
                ("free_chunks_end", 0),
            ];
            for (name, val) in fields {
                v.push((format!("{}:{name}", r.class).into(), val.to_string()));
            }
        }
        v.push(("active_slabs".into(), active.to_string()));
        let bytes = self.cache().stats().bytes;
        v.push(("total_malloced".into(), bytes.to_string()));
        v
    }
}

/// Process CPU time as memcached prints it ("seconds.microseconds").
fn rusage() -> (String, String) {
    #[cfg(unix)]
    {
        // SAFETY: `rusage` is plain integers, for which all zeroes is a valid value.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: getrusage writes into the struct we own and pass by pointer.
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } == 0 {
            let f = |t: libc::timeval| format!("{}.{:06}", t.tv_sec, t.tv_usec);
            return (f(ru.ru_utime), f(ru.ru_stime));
        }
    }
    ("0.000000".into(), "0.000000".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::StoreRequest;
    use crate::testkit;

    #[test]
    fn general_stats_have_memcacheds_92_fields_first() {
        let e = testkit::engine();
        let names: Vec<_> = e.general_stats().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            names.iter().position(|&k| k == "lru_bumps_dropped"),
            Some(91)
        );
        assert_eq!(&names[92..], ["eviction_policy", "shards"]);
        let unique: std::collections::HashSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len());
    }

    #[test]
    fn items_and_slabs_report_each_class() {
        let e = testkit::engine();
        assert!(e.stats(StatsGroup::Items).is_empty());
        e.store(StoreRequest::set(b"foo", b"bar")).unwrap();
        e.store(StoreRequest::set(b"big", &[b'x'; 1000])).unwrap();
        let items = e.stats(StatsGroup::Items);
        let get = |v: &[Stat], k: &str| v.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(items.len(), 2 * 28);
        assert_eq!(get(&items, "items:1:mem_requested").as_deref(), Some("65"));
        assert_eq!(
            get(&items, "items:12:mem_requested").as_deref(),
            Some("1062")
        );
        let slabs = e.stats(StatsGroup::Slabs);
        assert_eq!(get(&slabs, "12:chunk_size").as_deref(), Some("1184"));
        assert_eq!(get(&slabs, "1:free_chunks").as_deref(), Some("10921"));
        assert_eq!(get(&slabs, "active_slabs").as_deref(), Some("2"));
    }
}
