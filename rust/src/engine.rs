//! The server-wide state every connection shares: the cache, the limits and switches from the
//! config, `flush_all` with a delay, and the connection counters that `stats` reports.
//!
//! The engine never sees wire bytes; `protocol::Session` parses and formats, and calls the cache
//! and the engine with plain values.
//!
//! It also keeps a latency histogram per kind of command ([`CmdKind`]): each session times its
//! commands with a [`CommandTimer`] and records them here, with two relaxed atomic adds.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

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

/// What a request was, for the latency histograms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CmdKind {
    /// `get`, `gets`, `bget`, `streaming_get`; binary GET, GETQ, GETK, GETKQ.
    Get,
    /// `set`, `add`, `replace`, `append`, `prepend`, `cas` and the streaming upload; their
    /// binary opcodes.
    Set,
    Delete,
    /// `incr` and `decr`.
    IncrDecr,
    /// `touch`, `gat`, `gats`; binary TOUCH and the GAT family.
    Touch,
    /// The meta commands (`mg`, `ms`, `md`, `ma`, `mn`, `me`).
    Meta,
    /// Everything else (`stats`, `flush_all`, `version`, `noop`, unknown commands...).
    #[default]
    Other,
}

impl CmdKind {
    pub const ALL: [CmdKind; 7] = [
        CmdKind::Get,
        CmdKind::Set,
        CmdKind::Delete,
        CmdKind::IncrDecr,
        CmdKind::Touch,
        CmdKind::Meta,
        CmdKind::Other,
    ];

    pub fn name(self) -> &'static str {
        match self {
            CmdKind::Get => "get",
            CmdKind::Set => "set",
            CmdKind::Delete => "delete",
            CmdKind::IncrDecr => "incr_decr",
            CmdKind::Touch => "touch",
            CmdKind::Meta => "meta",
            CmdKind::Other => "other",
        }
    }
}

/// Buckets of a latency histogram: bucket `i` counts commands that took at most
/// `2^(LATENCY_FIRST_SHIFT + i)` ns (256 ns, 512 ns, ... about 17 s); the last one counts the
/// slower ones.
pub const LATENCY_BUCKETS: usize = 28;
const LATENCY_FIRST_SHIFT: u32 = 8;

/// The upper bound of bucket `i` in nanoseconds; `None` for the last (unbounded) one.
pub fn latency_bucket_bound_ns(i: usize) -> Option<u64> {
    (i + 1 < LATENCY_BUCKETS).then(|| 1u64 << (LATENCY_FIRST_SHIFT + i as u32))
}

/// The bucket of a command that took `ns` nanoseconds: the first whose bound is >= `ns`.
#[inline]
fn latency_bucket(ns: u64) -> usize {
    // `ns <= 2^bits` for the smallest such `bits`.
    let bits = 64 - ns.saturating_sub(1).leading_zeros();
    (bits.saturating_sub(LATENCY_FIRST_SHIFT) as usize).min(LATENCY_BUCKETS - 1)
}

/// A log2-bucket histogram that any thread records into without a lock.
#[derive(Debug)]
pub struct Histogram {
    counts: [AtomicU64; LATENCY_BUCKETS],
    sum_ns: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_ns: AtomicU64::new(0),
        }
    }
}

/// A copy of one histogram: per-bucket (not cumulative) counts and the total time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistogramSnapshot {
    pub counts: [u64; LATENCY_BUCKETS],
    pub sum_ns: u64,
}

impl HistogramSnapshot {
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

impl Histogram {
    #[inline]
    pub fn record(&self, ns: u64) {
        self.counts[latency_bucket(ns)].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// The counts as they are now (each bucket read once; concurrent records may land in some
    /// buckets and not yet in others or in the sum).
    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            counts: std::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed)),
            sum_ns: self.sum_ns.load(Ordering::Relaxed),
        }
    }
}

/// Times one connection's commands. The session calls [`begin`](Self::begin) before each
/// protocol step and [`end`](Self::end) after it, and [`pause`](Self::pause) when a feed is
/// done. A command whose data block comes in a later step (a `set`) is one command: the time of
/// its steps is added up, and the wait for its bytes in between is not counted.
#[derive(Debug, Default)]
pub struct CommandTimer {
    enabled: bool,
    /// The engine's histogram stripe this connection records into.
    stripe: usize,
    kind: CmdKind,
    carried_ns: u64,
    step_start: Option<Instant>,
    /// The end of the last step of this feed, which is the start of the next one.
    last: Option<Instant>,
    /// Requests timed but not yet added to the engine's histograms: a run of the same kind in
    /// the same bucket (pipelined requests mostly are), added with one pair of atomic adds.
    run: Run,
}

#[derive(Debug, Default, Clone, Copy)]
struct Run {
    kind: CmdKind,
    bucket: usize,
    count: u64,
    sum_ns: u64,
}

impl CommandTimer {
    /// A connection's timer; it records nothing when the engine's histograms are off.
    pub fn new(engine: &Engine) -> CommandTimer {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        CommandTimer {
            enabled: engine.config.latency_histograms,
            stripe: NEXT.fetch_add(1, Ordering::Relaxed) as usize % LATENCY_STRIPES,
            ..CommandTimer::default()
        }
    }

    /// Before a step: `starts` is the kind of the command that begins at the head of the buffer,
    /// or `None` when the step continues one (its data block, bytes to discard).
    #[inline]
    pub fn begin(&mut self, starts: Option<CmdKind>) {
        if !self.enabled {
            return;
        }
        if let Some(k) = starts {
            self.kind = k;
            self.carried_ns = 0;
        }
        self.step_start = Some(self.last.take().unwrap_or_else(Instant::now));
    }

    /// After a step: `progressed` is false when it waits for more bytes (its time is not
    /// counted); `complete` when the connection is ready for a new command again.
    #[inline]
    pub fn end(&mut self, engine: &Engine, progressed: bool, complete: bool) {
        let Some(start) = self.step_start.take() else {
            return;
        };
        if !progressed {
            return;
        }
        let now = Instant::now();
        let ns = now.saturating_duration_since(start).as_nanos() as u64 + self.carried_ns;
        self.last = Some(now);
        if complete {
            self.carried_ns = 0;
            let bucket = latency_bucket(ns);
            let run = &mut self.run;
            if run.count > 0 && (run.kind != self.kind || run.bucket != bucket) {
                engine.record_run(self.stripe, run);
                run.count = 0;
                run.sum_ns = 0;
            }
            run.kind = self.kind;
            run.bucket = bucket;
            run.count += 1;
            run.sum_ns += ns;
        } else {
            self.carried_ns = ns;
        }
    }

    /// The feed is over: what it timed goes to the engine, and the next step's time starts from
    /// the next feed.
    #[inline]
    pub fn pause(&mut self, engine: &Engine) {
        self.last = None;
        if self.run.count > 0 {
            engine.record_run(self.stripe, &self.run);
            self.run.count = 0;
            self.run.sum_ns = 0;
        }
    }
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
    /// One set of histograms per stripe: connections are spread over the stripes, so I/O threads
    /// rarely contend for the same cache lines. A snapshot adds the stripes up.
    latency: Box<[LatencyStripe]>,
}

/// Stripes of the latency histograms (connections take them in turn).
const LATENCY_STRIPES: usize = 16;

#[derive(Default)]
#[repr(align(128))]
struct LatencyStripe([Histogram; CmdKind::ALL.len()]);

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
            latency: (0..LATENCY_STRIPES)
                .map(|_| LatencyStripe::default())
                .collect(),
        }
    }

    #[inline]
    fn record_run(&self, stripe: usize, run: &Run) {
        let h = &self.latency[stripe].0[run.kind as usize];
        h.counts[run.bucket].fetch_add(run.count, Ordering::Relaxed);
        h.sum_ns.fetch_add(run.sum_ns, Ordering::Relaxed);
    }

    /// The latency histogram of one kind of command (all threads').
    pub fn latency(&self, kind: CmdKind) -> HistogramSnapshot {
        let mut total = HistogramSnapshot {
            counts: [0; LATENCY_BUCKETS],
            sum_ns: 0,
        };
        for stripe in self.latency.iter() {
            let h = stripe.0[kind as usize].snapshot();
            for (t, c) in total.counts.iter_mut().zip(h.counts) {
                *t += c;
            }
            total.sum_ns += h.sum_ns;
        }
        total
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{Cache, CacheConfig};
    use crate::testkit::engine;

    #[test]
    fn buckets_are_log2_upper_bounds() {
        assert_eq!(latency_bucket(0), 0);
        assert_eq!(latency_bucket(1), 0);
        assert_eq!(latency_bucket(256), 0);
        assert_eq!(latency_bucket(257), 1);
        assert_eq!(latency_bucket(512), 1);
        assert_eq!(latency_bucket(513), 2);
        assert_eq!(latency_bucket(1 << 34), LATENCY_BUCKETS - 2);
        assert_eq!(latency_bucket((1 << 34) + 1), LATENCY_BUCKETS - 1);
        assert_eq!(latency_bucket(u64::MAX), LATENCY_BUCKETS - 1);
        for ns in [
            0u64,
            1,
            255,
            256,
            257,
            1000,
            123_456,
            1 << 30,
            (1 << 34) - 1,
        ] {
            let b = latency_bucket(ns);
            let hi = latency_bucket_bound_ns(b).expect("bounded");
            assert!(ns <= hi, "{ns} <= {hi}");
            if b > 0 {
                assert!(ns > latency_bucket_bound_ns(b - 1).unwrap(), "{ns}");
            }
        }
        assert_eq!(latency_bucket_bound_ns(0), Some(256));
        assert_eq!(latency_bucket_bound_ns(LATENCY_BUCKETS - 1), None);
    }

    #[test]
    fn a_histogram_counts_and_sums() {
        let h = Histogram::default();
        h.record(100);
        h.record(300);
        h.record(300);
        let s = h.snapshot();
        assert_eq!(s.count(), 3);
        assert_eq!(s.sum_ns, 700);
        assert_eq!(s.counts[0], 1);
        assert_eq!(s.counts[1], 2);
    }

    #[test]
    fn a_command_split_over_steps_is_recorded_once_under_its_first_kind() {
        let e = engine();
        let mut t = CommandTimer::new(&e);
        // a set line, then (in a later feed) its data block
        t.begin(Some(CmdKind::Set));
        t.end(&e, true, false);
        t.pause(&e);
        t.begin(None);
        t.end(&e, false, false); // the block is not all there yet: not counted
        t.pause(&e);
        t.begin(None);
        t.end(&e, true, true);
        // then a get, complete in one step
        t.begin(Some(CmdKind::Get));
        t.end(&e, true, true);
        t.pause(&e);
        let snap: Vec<_> = e.latency_snapshot();
        let count = |k: CmdKind| snap.iter().find(|(c, _)| *c == k).unwrap().1.count();
        assert_eq!(count(CmdKind::Set), 1);
        assert_eq!(count(CmdKind::Get), 1);
        assert_eq!(CmdKind::ALL.iter().map(|&k| count(k)).sum::<u64>(), 2);
    }

    #[test]
    fn sessions_time_text_and_binary_requests() {
        let e = Arc::new(engine());
        let mut s = crate::protocol::Session::new(Arc::clone(&e));
        let mut out = Vec::new();
        // the data block of the set arrives in a second feed
        s.feed(b"set a 0 0 1\r\n", &mut out);
        s.feed(b"x\r\nget a\r\nget a b\r\nmn\r\nstats\r\n", &mut out);
        let count = |k: CmdKind| e.latency(k).count();
        assert_eq!(count(CmdKind::Set), 1);
        assert_eq!(count(CmdKind::Get), 2);
        assert_eq!(count(CmdKind::Meta), 1);
        assert_eq!(count(CmdKind::Other), 1);
        let mut b = crate::protocol::Session::new(Arc::clone(&e));
        // binary GET (opcode 0), no key: a miss with "Not found"
        let mut req = vec![0x80, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        req.extend_from_slice(&[0; 12]);
        b.feed(&req, &mut out);
        assert_eq!(count(CmdKind::Get), 3);
    }

    /// What the latency histograms cost, in process (no sockets, so the worst case: over the
    /// network each request also pays its reads and writes). Timing on and off alternate.
    /// `cargo test --no-default-features --lib latency_overhead -- --ignored --nocapture`
    #[test]
    #[ignore = "a timing measurement, not a check"]
    fn latency_overhead() {
        fn session(on: bool) -> crate::protocol::Session {
            let cache = Cache::new(CacheConfig::default()).expect("cache");
            let config = EngineConfig {
                latency_histograms: on,
                ..EngineConfig::default()
            };
            let e = Arc::new(Engine::new(Tiered::memory(cache), config));
            let mut s = crate::protocol::Session::new(e);
            let mut out = Vec::new();
            s.feed(b"set k 0 0 100\r\n", &mut out);
            s.feed(&[b'v'; 100], &mut out);
            s.feed(b"\r\n", &mut out);
            s
        }
        let t = Instant::now();
        let mut last = t;
        for _ in 0..1_000_000 {
            last = std::hint::black_box(Instant::now());
        }
        let clock_ns = last.duration_since(t).as_nanos() as f64 / 1e6;
        println!("Instant::now(): {clock_ns:.1} ns");
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        for (label, per_feed, n) in [("pipelined x100", 100, 2_000), ("one per feed", 1, 100_000)] {
            let batch: Vec<u8> = b"get k\r\n".repeat(per_feed);
            let (mut off, mut on) = (Vec::new(), Vec::new());
            let mut out = Vec::with_capacity(1 << 20);
            for round in 0..11 {
                for timed in [round % 2 == 0, round % 2 != 0] {
                    let mut s = session(timed);
                    let t = Instant::now();
                    for _ in 0..n {
                        out.clear();
                        s.feed(&batch, &mut out);
                    }
                    let ns = t.elapsed().as_nanos() as f64 / (n * per_feed) as f64;
                    if timed {
                        on.push(ns)
                    } else {
                        off.push(ns)
                    }
                }
            }
            let (a, b) = (median(off), median(on));
            println!(
                "{label}: {a:.0} ns/request without timing, {b:.0} ns with: {:+.1}%",
                (b - a) / a * 100.0
            );
        }
    }
}
