//! Latency histograms per kind of command ([`CmdKind`]): each session times its commands with a
//! [`CommandTimer`] and records them into the engine's [`LatencyHistograms`], a run of
//! same-bucket requests at a time, with two relaxed atomic adds. `stats`-style readers take a
//! [`HistogramSnapshot`].

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use crate::engine::Engine;

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
            enabled: engine.config().latency_histograms,
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
                engine.latency_histograms().record_run(self.stripe, run);
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
            engine
                .latency_histograms()
                .record_run(self.stripe, &self.run);
            self.run.count = 0;
            self.run.sum_ns = 0;
        }
    }
}

/// Stripes of the latency histograms (connections take them in turn).
const LATENCY_STRIPES: usize = 16;

#[derive(Default)]
#[repr(align(128))]
struct LatencyStripe([Histogram; CmdKind::ALL.len()]);

/// Every command kind's histogram, once per stripe: connections are spread over the stripes, so
/// I/O threads rarely contend for the same cache lines. A snapshot adds the stripes up.
pub(crate) struct LatencyHistograms(Box<[LatencyStripe]>);

impl Default for LatencyHistograms {
    fn default() -> Self {
        LatencyHistograms(
            (0..LATENCY_STRIPES)
                .map(|_| LatencyStripe::default())
                .collect(),
        )
    }
}

impl LatencyHistograms {
    #[inline]
    fn record_run(&self, stripe: usize, run: &Run) {
        let h = &self.0[stripe].0[run.kind as usize];
        h.counts[run.bucket].fetch_add(run.count, Ordering::Relaxed);
        h.sum_ns.fetch_add(run.sum_ns, Ordering::Relaxed);
    }

    /// One kind's histogram, summed over the stripes.
    pub(crate) fn snapshot(&self, kind: CmdKind) -> HistogramSnapshot {
        let mut total = HistogramSnapshot {
            counts: [0; LATENCY_BUCKETS],
            sum_ns: 0,
        };
        for stripe in self.0.iter() {
            let h = stripe.0[kind as usize].snapshot();
            for (t, c) in total.counts.iter_mut().zip(h.counts) {
                *t += c;
            }
            total.sum_ns += h.sum_ns;
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use crate::cache::CacheConfig;
    use crate::engine::EngineConfig;
    use crate::testkit::{self, engine};

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
            let config = EngineConfig {
                latency_histograms: on,
                ..EngineConfig::default()
            };
            let e = testkit::engine_on_system_clock(CacheConfig::default(), config);
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
