//! The server-wide state every connection shares: the cache, the limits and switches from the
//! config, `flush_all` with a delay, and the connection counters that `stats` reports.
//!
//! The engine never sees wire bytes; `protocol::Session` parses and formats, and calls the cache
//! and the engine with plain values.
//!
//! It also owns the latency histograms ([`crate::latency`]) that every session records into.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use crate::latency::{CmdKind, HistogramSnapshot, LatencyHistograms};
use crate::tiered::Tiered;

/// memcached's `-I` default.
pub const DEFAULT_MAX_ITEM_SIZE: usize = 1024 * 1024;
/// The largest `-I` accepted: 1 GB, memcached's own ceiling.
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
    /// Time every request into the latency histograms (on by default; off only to measure what
    /// the timing costs).
    pub latency_histograms: bool,
    /// memcached's `-D`: the delimiter of key prefixes for `stats detail`.
    pub prefix_delimiter: u8,
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
            latency_histograms: true,
            prefix_delimiter: b':',
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
    /// `lru_crawler crawl` runs.
    pub lru_crawler_starts: AtomicU64,
    /// A connection's replies reached the per-read budget and it waited for them to be sent
    /// before its next request (memcached's `conn_yields` counts its `-R` limit the same way).
    pub conn_yields: AtomicU64,
    /// Times an I/O engine paused accepting connections: accept() failed with a transient error
    /// (out of file descriptors, memcached's case, or of memory...) and it waited before
    /// trying again. memcached's `listen_disabled_num`.
    pub listen_disabled_num: AtomicU64,
    /// Microseconds spent in those pauses: memcached's `time_in_listen_disabled_us`.
    pub time_in_listen_disabled_us: AtomicU64,
}

pub struct Engine {
    cache: Arc<Tiered>,
    config: EngineConfig,
    started_ms: u64,
    /// Unix ms at which a delayed `flush_all` takes effect; 0 when none is pending.
    flush_at: AtomicU64,
    shutdown_requested: AtomicBool,
    verbosity: AtomicU32,
    /// What commands change at run time (`stats detail`, the crawler, `slabs automove`).
    pub(crate) runtime: crate::command::Runtime,
    pub counters: ServerCounters,
    latency: LatencyHistograms,
}

impl Engine {
    pub fn new(cache: Arc<Tiered>, config: EngineConfig) -> Engine {
        let started_ms = cache.now_ms();
        let runtime = crate::command::Runtime::new(config.prefix_delimiter);
        Engine {
            cache,
            config,
            started_ms,
            flush_at: AtomicU64::new(0),
            shutdown_requested: AtomicBool::new(false),
            verbosity: AtomicU32::new(0),
            runtime,
            counters: ServerCounters::default(),
            latency: LatencyHistograms::default(),
        }
    }

    /// The histograms each session's [`CommandTimer`](crate::latency::CommandTimer) records
    /// into.
    #[inline]
    pub(crate) fn latency_histograms(&self) -> &LatencyHistograms {
        &self.latency
    }

    /// The latency histogram of one kind of command (all threads').
    pub fn latency(&self, kind: CmdKind) -> HistogramSnapshot {
        self.latency.snapshot(kind)
    }

    /// Every kind's histogram, in [`CmdKind::ALL`] order.
    pub fn latency_snapshot(&self) -> Vec<(CmdKind, HistogramSnapshot)> {
        CmdKind::ALL.iter().map(|&k| (k, self.latency(k))).collect()
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

    /// `cache_memlimit`: the L1's memory limit becomes `mb` megabytes (evicting down to it).
    pub fn set_memory_limit_mb(&self, mb: u32) {
        self.cache.l1().set_max_memory(u64::from(mb) * 1024 * 1024);
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

    /// An I/O engine stopped accepting for `paused` (after `accept()` failed): memcached's
    /// `listen_disabled_num` and `time_in_listen_disabled_us`.
    pub fn accept_paused(&self, paused: std::time::Duration) {
        let c = &self.counters;
        c.listen_disabled_num.fetch_add(1, Ordering::Relaxed);
        let us = u64::try_from(paused.as_micros()).unwrap_or(u64::MAX);
        c.time_in_listen_disabled_us
            .fetch_add(us, Ordering::Relaxed);
    }

    /// Commands may wait on the disk (the L2 is on): I/O engines run them off their event loop.
    #[inline]
    pub fn may_block(&self) -> bool {
        self.cache.has_l2()
    }

    /// An extra `stats settings` value the front end gave (`EngineConfig::settings`).
    pub(crate) fn setting(&self, name: &str) -> Option<String> {
        self.config
            .settings
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}
