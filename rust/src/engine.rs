//! The server-wide state every connection shares: the cache, the limits and switches from the
//! config, `flush_all` with a delay, and the connection counters that `stats` reports.
//!
//! The engine never sees wire bytes; `protocol::Session` parses and formats, and calls the cache
//! and the engine with plain values.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use crate::tiered::Tiered;

/// memcached's `-I` default.
pub const DEFAULT_MAX_ITEM_SIZE: usize = 1024 * 1024;
/// The largest `-I` accepted (memcached allows up to 1 GB; 128 MB is the documented ceiling here).
pub const MAX_ITEM_SIZE_LIMIT: usize = 1024 * 1024 * 1024;
/// The version string in `version` and `stats`: the memcached release whose behaviour is
/// reproduced, so clients that parse it keep working.
pub const MEMCACHED_VERSION: &str = "1.6.18";

/// Switches and limits from the config, handed to Rust once.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// memcached's `-I`: an item (key + value + memcached's 59-byte header) larger than this is
    /// refused with `SERVER_ERROR object too large for cache`.
    pub max_item_size: usize,
    /// `flush_all` allowed (memcached's `-F` turns it off).
    pub allow_flush: bool,
    /// `shutdown` allowed (memcached's `-A` turns it on).
    pub allow_shutdown: bool,
    /// `verbosity` allowed.
    pub allow_verbosity: bool,
    /// Extra `stats settings` lines, in order.
    pub settings: Vec<(String, String)>,
    /// Enables `debug panic`, a command that panics, so tests can check that a bug in one
    /// command closes only that connection. Off unless a test asks for it.
    pub test_hooks: bool,
    /// memcached's `-Y authfile`: connections must authenticate first (ASCII auth).
    pub auth: Option<Arc<crate::protocol::Credentials>>,
    /// memcached's `-S`: binary connections must pass SASL PLAIN against these users, and text
    /// connections are refused unless `auth` is set too.
    pub sasl: Option<Arc<crate::protocol::Credentials>>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_item_size: DEFAULT_MAX_ITEM_SIZE,
            allow_flush: true,
            allow_shutdown: false,
            allow_verbosity: true,
            settings: Vec::new(),
            test_hooks: false,
            auth: None,
            sasl: None,
        }
    }
}

/// Counters that live outside the cache's shards.
#[derive(Debug, Default)]
pub struct ServerCounters {
    pub curr_connections: AtomicU64,
    pub total_connections: AtomicU64,
    pub rejected_connections: AtomicU64,
    pub cmd_flush: AtomicU64,
    pub cmd_touch: AtomicU64,
    pub cmd_meta: AtomicU64,
    pub bytes_read: AtomicU64,
    pub bytes_written: AtomicU64,
    pub store_too_large: AtomicU64,
    pub auth_cmds: AtomicU64,
    pub auth_errors: AtomicU64,
    pub store_no_memory: AtomicU64,
}

pub struct Engine {
    cache: Arc<Tiered>,
    config: EngineConfig,
    started_ms: u64,
    /// Unix ms at which a delayed `flush_all` takes effect; 0 when none is pending.
    flush_at: AtomicU64,
    shutdown_requested: AtomicBool,
    verbosity: AtomicU32,
    pub counters: ServerCounters,
}

impl Engine {
    pub fn new(cache: Arc<Tiered>, config: EngineConfig) -> Engine {
        let started_ms = cache.now_ms();
        Engine {
            cache,
            config,
            started_ms,
            flush_at: AtomicU64::new(0),
            shutdown_requested: AtomicBool::new(false),
            verbosity: AtomicU32::new(0),
            counters: ServerCounters::default(),
        }
    }

    /// The cache, after applying a delayed `flush_all` whose time has come.
    #[inline]
    pub fn cache(&self) -> &Tiered {
        let at = self.flush_at.load(Ordering::Relaxed);
        if at != 0 && self.cache.now_ms() >= at {
            // Only the caller that wins the swap clears, so a flush happens once.
            if self
                .flush_at
                .compare_exchange(at, 0, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                self.cache.clear();
            }
        }
        &self.cache
    }

    pub fn shared_cache(&self) -> &Arc<Tiered> {
        &self.cache
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// `flush_all [delay]`: everything stored before `delay_ms` from now is dropped then.
    pub fn flush_all(&self, delay_ms: u64) {
        self.counters.cmd_flush.fetch_add(1, Ordering::Relaxed);
        if delay_ms == 0 {
            self.flush_at.store(0, Ordering::Relaxed);
            self.cache.clear();
        } else {
            self.flush_at
                .store(self.cache.now_ms() + delay_ms, Ordering::Relaxed);
        }
    }

    pub fn uptime_secs(&self) -> u64 {
        self.cache.now_ms().saturating_sub(self.started_ms) / 1000
    }

    pub fn request_shutdown(&self) {
        self.shutdown_requested.store(true, Ordering::SeqCst);
    }

    pub fn shutdown_requested(&self) -> bool {
        self.shutdown_requested.load(Ordering::SeqCst)
    }

    pub fn set_verbosity(&self, level: u32) {
        self.verbosity.store(level.min(2), Ordering::Relaxed);
    }

    pub fn verbosity(&self) -> u32 {
        self.verbosity.load(Ordering::Relaxed)
    }

    pub fn connection_opened(&self) {
        self.counters
            .curr_connections
            .fetch_add(1, Ordering::Relaxed);
        self.counters
            .total_connections
            .fetch_add(1, Ordering::Relaxed);
    }

    pub fn connection_closed(&self) {
        self.counters
            .curr_connections
            .fetch_sub(1, Ordering::Relaxed);
    }

    pub fn connection_rejected(&self) {
        self.counters
            .rejected_connections
            .fetch_add(1, Ordering::Relaxed);
    }

    /// memcached's `item_size_ok`: the value plus the key plus its 59-byte item header.
    pub fn item_fits(&self, key_len: usize, value_len: usize) -> bool {
        59 + key_len + value_len <= self.config.max_item_size
    }

    /// The general `stats` lines, with memcached's names.
    pub fn general_stats(&self) -> Vec<(&'static str, String)> {
        let s = self.cache.stats();
        let c = s.counters;
        let sc = &self.counters;
        let ld = |a: &AtomicU64| a.load(Ordering::Relaxed).to_string();
        let now_s = self.cache.now_ms() / 1000;
        let (user, sys) = rusage();
        let mut v = vec![
            ("pid", std::process::id().to_string()),
            ("uptime", self.uptime_secs().to_string()),
            ("time", now_s.to_string()),
            ("version", MEMCACHED_VERSION.to_string()),
            ("libevent", "ratmemcache".to_string()),
            (
                "pointer_size",
                (8 * std::mem::size_of::<usize>()).to_string(),
            ),
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
            ("cmd_get", s.gets().to_string()),
            ("cmd_set", c.cmd_set.to_string()),
            ("cmd_flush", ld(&sc.cmd_flush)),
            ("cmd_touch", (c.touch_hits + c.touch_misses).to_string()),
            ("cmd_meta", ld(&sc.cmd_meta)),
            ("get_hits", c.get_hits.to_string()),
            ("get_misses", c.get_misses.to_string()),
            ("get_expired", c.get_expired.to_string()),
            ("get_flushed", "0".to_string()),
            ("delete_misses", c.delete_misses.to_string()),
            ("delete_hits", c.delete_hits.to_string()),
            ("incr_misses", c.incr_misses.to_string()),
            ("incr_hits", c.incr_hits.to_string()),
            ("decr_misses", c.decr_misses.to_string()),
            ("decr_hits", c.decr_hits.to_string()),
            ("cas_misses", c.cas_misses.to_string()),
            ("cas_hits", c.cas_hits.to_string()),
            ("cas_badval", c.cas_badval.to_string()),
            ("touch_hits", c.touch_hits.to_string()),
            ("touch_misses", c.touch_misses.to_string()),
            ("store_too_large", ld(&sc.store_too_large)),
            ("store_no_memory", ld(&sc.store_no_memory)),
            ("auth_cmds", ld(&sc.auth_cmds)),
            ("auth_errors", ld(&sc.auth_errors)),
            ("bytes_read", ld(&sc.bytes_read)),
            ("bytes_written", ld(&sc.bytes_written)),
            ("limit_maxbytes", s.limit_maxbytes.to_string()),
            ("accepting_conns", "1".to_string()),
            (
                "threads",
                self.setting("num_threads").unwrap_or_else(|| "1".into()),
            ),
            ("bytes", s.bytes.to_string()),
            ("curr_items", s.curr_items.to_string()),
            ("total_items", c.total_items.to_string()),
            ("expired_unfetched", "0".to_string()),
            ("evicted_unfetched", "0".to_string()),
            ("evictions", c.evictions.to_string()),
            ("reclaimed", c.expirations.to_string()),
            (
                "eviction_policy",
                self.cache.config().eviction.name().to_string(),
            ),
            ("shards", s.shards.to_string()),
        ];
        if let Some(t) = self.cache.tier_stats() {
            v.extend(t.fields().into_iter().map(|(k, n)| (k, n.to_string())));
        }
        v
    }

    /// Commands may wait on the disk (the L2 is on): I/O engines run them off their event loop.
    #[inline]
    pub fn may_block(&self) -> bool {
        self.cache.has_l2()
    }

    fn setting(&self, name: &str) -> Option<String> {
        self.config
            .settings
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    /// `stats settings`: the core's own settings, then the front end's.
    pub fn settings_stats(&self) -> Vec<(String, String)> {
        let c = self.cache.config();
        let mut v: Vec<(String, String)> = vec![
            ("maxbytes".into(), c.max_memory.to_string()),
            (
                "item_size_max".into(),
                self.config.max_item_size.to_string(),
            ),
            ("evictions".into(), "on".into()),
            ("eviction_policy".into(), c.eviction.name().into()),
            ("max_entries".into(), c.max_entries.to_string()),
            ("default_ttl".into(), (c.default_ttl_ms / 1000).to_string()),
            ("max_ttl".into(), (c.max_ttl_ms / 1000).to_string()),
            (
                "cleanup_interval".into(),
                (c.cleanup_interval_ms / 1000).to_string(),
            ),
            ("cas_enabled".into(), "yes".into()),
            ("flush_enabled".into(), yes_no(self.config.allow_flush)),
            (
                "shutdown_command".into(),
                yes_no(self.config.allow_shutdown),
            ),
            ("verbosity".into(), self.verbosity().to_string()),
        ];
        for (k, val) in &self.config.settings {
            if !v.iter().any(|(n, _)| n == k) {
                v.push((k.clone(), val.clone()));
            }
        }
        v
    }
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.into()
}

/// Process CPU time as memcached prints it ("seconds.microseconds").
fn rusage() -> (String, String) {
    #[cfg(unix)]
    {
        // SAFETY: getrusage writes into the zeroed struct we own.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } == 0 {
            let f = |t: libc::timeval| format!("{}.{:06}", t.tv_sec, t.tv_usec);
            return (f(ru.ru_utime), f(ru.ru_stime));
        }
    }
    ("0.000000".into(), "0.000000".into())
}
