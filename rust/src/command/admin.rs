//! The commands on the server: `flush_all`, `cache_memlimit`, `verbosity`, `shutdown`,
//! `slabs reassign|automove`, the `lru_crawler` switches and `stats detail on|off`, and the
//! settings those commands change at run time.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use super::detail::PrefixStats;
use super::exptime::ttl_from_exptime;
use super::inventory::ClassSet;
use crate::cache::Ttl;
use crate::engine::Engine;

/// Settings that commands change while the server runs (memcached keeps them in `settings`).
pub struct Runtime {
    /// `stats detail`.
    pub detail: PrefixStats,
    lru_crawler: AtomicBool,
    lru_crawler_sleep: AtomicU32,
    lru_crawler_tocrawl: AtomicU32,
    slab_automove: AtomicU32,
    /// `slabs automove ratio`, as f32 bits.
    slab_automove_ratio: AtomicU32,
}

impl Runtime {
    /// memcached's defaults, with `delimiter` for `stats detail` (`-D`).
    pub fn new(delimiter: u8) -> Self {
        Runtime {
            detail: PrefixStats::new(delimiter),
            lru_crawler: AtomicBool::new(true),
            lru_crawler_sleep: AtomicU32::new(100),
            lru_crawler_tocrawl: AtomicU32::new(0),
            slab_automove: AtomicU32::new(1),
            slab_automove_ratio: AtomicU32::new(0.8f32.to_bits()),
        }
    }

    /// The `stats settings` lines these settings own, with memcached's names.
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        let ld = |a: &AtomicU32| a.load(Ordering::Relaxed).to_string();
        let ratio = f32::from_bits(self.slab_automove_ratio.load(Ordering::Relaxed));
        vec![
            (
                "stat_key_prefix",
                char::from(self.detail.delimiter()).to_string(),
            ),
            ("detail_enabled", yes_no(self.detail.enabled())),
            ("slab_automove", ld(&self.slab_automove)),
            ("slab_automove_ratio", format!("{ratio:.2}")),
            (
                "lru_crawler",
                yes_no(self.lru_crawler.load(Ordering::Relaxed)),
            ),
            ("lru_crawler_sleep", ld(&self.lru_crawler_sleep)),
            ("lru_crawler_tocrawl", ld(&self.lru_crawler_tocrawl)),
        ]
    }
}

pub(crate) fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.into()
}

/// What `shutdown [graceful]` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownOutcome {
    /// The server stops (the connection closes without a reply).
    Stopping,
    /// Refused: `-A` was not given.
    NotEnabled,
    /// A mode other than `graceful`.
    InvalidMode,
}

/// What `slabs reassign <src> <dst>` would do, in memcached's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReassignOutcome {
    Ok,
    BadClass,
    NoSpare,
    Same,
}

/// What `slabs automove ...` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutomoveOutcome {
    Ok,
    /// A level memcached doesn't have, or `ratio` without a number (`ERROR`).
    Error,
    /// The level is not a number (`CLIENT_ERROR bad command line format`).
    BadFormat,
}

/// What an `lru_crawler` setting command did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrawlerSetting {
    Ok,
    /// `enable` while it runs: memcached fails to start a second crawler thread.
    AlreadyRunning,
    /// `sleep` over one second.
    SleepTooLong,
    BadFormat,
}

/// memcached's largest default slab class id: class ids a reassign may name are 0 to this.
const LARGEST_CLASS: i32 = crate::cache::CLASS_COUNT as i32;

/// What `flush_all` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushOutcome {
    Flushed,
    /// Refused: flushing is off (memcached's `-F`).
    Disabled,
}

/// What `cache_memlimit` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemlimitOutcome {
    Set,
    /// Under memcached's 8 MB floor.
    TooSmall,
    /// Over 10^9 MB: memcached takes it for bytes given where megabytes are asked.
    TooLarge,
}

impl Engine {
    /// `flush_all [exptime]`: everything stored before the moment the exptime names is dropped
    /// then (at once for none or 0). The exptime follows memcached's rules: up to 30 days it is
    /// relative seconds, above that an absolute unix time, negative means now.
    pub fn flush_all_at(&self, exptime: Option<i64>) -> FlushOutcome {
        if !self.config().allow_flush {
            return FlushOutcome::Disabled;
        }
        let now = self.shared_cache().now_ms();
        let delay_ms = match exptime.map(ttl_from_exptime) {
            Some(Ttl::After(ms)) => ms,
            Some(Ttl::At(t)) => t.saturating_sub(now),
            _ => 0,
        };
        self.flush_all(delay_ms);
        FlushOutcome::Flushed
    }

    /// `cache_memlimit <megabytes>`: the L1's memory limit, evicting down to it at once.
    pub fn cache_memlimit(&self, mb: u32) -> MemlimitOutcome {
        match mb {
            0..8 => MemlimitOutcome::TooSmall,
            1_000_000_001.. => MemlimitOutcome::TooLarge,
            _ => {
                self.set_memory_limit_mb(mb);
                MemlimitOutcome::Set
            }
        }
    }

    /// `verbosity <level>`: accepted (and clamped) even when logging can't change, as
    /// memcached does; ignored when the config turns it off.
    pub fn verbosity_command(&self, level: u32) {
        if self.config().allow_verbosity {
            self.set_verbosity(level);
        }
    }
}

impl Engine {
    /// `shutdown [graceful]` (memcached 1.6): both modes stop the server gracefully; the
    /// connection closes without a reply.
    pub fn shutdown_command(&self, mode: Option<&[u8]>) -> ShutdownOutcome {
        if !self.config().allow_shutdown {
            return ShutdownOutcome::NotEnabled;
        }
        match mode {
            None | Some(b"graceful") => {
                self.request_shutdown();
                ShutdownOutcome::Stopping
            }
            Some(_) => ShutdownOutcome::InvalidMode,
        }
    }

    /// `slabs reassign <src> <dst>`: nothing moves (there are no slab pages), but the answer is
    /// the one memcached gives for the classes as `stats slabs` reports them: a class with two
    /// pages or more has one to spare. `src` -1 picks any such class.
    pub fn slabs_reassign(&self, src: i32, dst: i32) -> ReassignOutcome {
        if src == dst {
            return ReassignOutcome::Same;
        }
        let pages = |class: i32| {
            self.class_reports()
                .into_iter()
                .find(|r| r.class as i32 == class)
                .map_or(0, |r| r.total_pages())
        };
        let src = if src == -1 {
            (1..=LARGEST_CLASS)
                .find(|&c| c != dst && pages(c) >= 2)
                .unwrap_or(-1)
        } else {
            src
        };
        let valid = |c: i32| (0..=LARGEST_CLASS).contains(&c);
        if !valid(src) || !valid(dst) {
            return ReassignOutcome::BadClass;
        }
        if pages(src) < 2 {
            return ReassignOutcome::NoSpare;
        }
        ReassignOutcome::Ok
    }

    /// `slabs automove <0|1|2>` or `slabs automove ratio <r>`: recorded and shown in
    /// `stats settings`; there are no pages to move.
    pub fn slabs_automove(&self, arg: &[u8], ratio: Option<&[u8]>) -> AutomoveOutcome {
        let rt = &self.runtime;
        if arg == b"ratio" {
            let Some(r) = ratio.and_then(|r| std::str::from_utf8(r).ok()?.parse::<f32>().ok())
            else {
                return AutomoveOutcome::Error;
            };
            rt.slab_automove_ratio.store(r.to_bits(), Ordering::Relaxed);
            return AutomoveOutcome::Ok;
        }
        match super::numbers::safe_strtoul(arg) {
            None => AutomoveOutcome::BadFormat,
            Some(level @ 0..=2) => {
                rt.slab_automove.store(level, Ordering::Relaxed);
                AutomoveOutcome::Ok
            }
            Some(_) => AutomoveOutcome::Error,
        }
    }

    /// Whether the crawler may run (`lru_crawler enable|disable`).
    pub fn lru_crawler_enabled(&self) -> bool {
        self.runtime.lru_crawler.load(Ordering::Relaxed)
    }

    /// `lru_crawler enable` / `disable`.
    pub fn lru_crawler_switch(&self, on: bool) -> CrawlerSetting {
        let was = self.runtime.lru_crawler.swap(on, Ordering::Relaxed);
        if on && was {
            CrawlerSetting::AlreadyRunning
        } else {
            CrawlerSetting::Ok
        }
    }

    /// `lru_crawler sleep <microseconds>` (at most one second).
    pub fn lru_crawler_sleep(&self, arg: &[u8]) -> CrawlerSetting {
        match super::numbers::safe_strtoul(arg) {
            None => CrawlerSetting::BadFormat,
            Some(1_000_001..) => CrawlerSetting::SleepTooLong,
            Some(us) => {
                self.runtime.lru_crawler_sleep.store(us, Ordering::Relaxed);
                CrawlerSetting::Ok
            }
        }
    }

    /// `lru_crawler tocrawl <items>`.
    pub fn lru_crawler_tocrawl(&self, arg: &[u8]) -> CrawlerSetting {
        match super::numbers::safe_strtoul(arg) {
            None => CrawlerSetting::BadFormat,
            Some(n) => {
                self.runtime.lru_crawler_tocrawl.store(n, Ordering::Relaxed);
                CrawlerSetting::Ok
            }
        }
    }

    /// `stats detail on|off`.
    pub fn stats_detail(&self, on: bool) {
        self.runtime.detail.set_enabled(on);
    }

    /// `stats detail dump`: the counts by key prefix, in memcached's order and words.
    pub fn prefix_dump(&self) -> Vec<u8> {
        self.runtime.detail.dump_text()
    }

    /// The crawler's class list for `crawl` and `metadump`; `None` is `BADCLASS`.
    pub fn crawler_classes(&self, text: &[u8], metadump: bool) -> Option<ClassSet> {
        ClassSet::parse(text, metadump)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit;

    #[test]
    fn shutdown_takes_no_mode_or_graceful() {
        let e = testkit::engine();
        assert_eq!(e.shutdown_command(None), ShutdownOutcome::NotEnabled);
        let (e, _) = testkit::engine_with(
            crate::cache::CacheConfig::default(),
            crate::engine::EngineConfig {
                allow_shutdown: true,
                ..Default::default()
            },
        );
        assert_eq!(
            e.shutdown_command(Some(b"now")),
            ShutdownOutcome::InvalidMode
        );
        assert!(!e.shutdown_requested());
        assert_eq!(
            e.shutdown_command(Some(b"graceful")),
            ShutdownOutcome::Stopping
        );
        assert!(e.shutdown_requested());
    }

    #[test]
    fn slabs_commands_answer_as_memcached() {
        let e = testkit::engine();
        assert_eq!(e.slabs_reassign(1, 1), ReassignOutcome::Same);
        assert_eq!(e.slabs_reassign(1, 2), ReassignOutcome::NoSpare);
        assert_eq!(e.slabs_reassign(0, 1), ReassignOutcome::NoSpare);
        assert_eq!(e.slabs_reassign(-1, 2), ReassignOutcome::BadClass);
        assert_eq!(e.slabs_reassign(1, 100), ReassignOutcome::BadClass);
        // 25,000 items of class 1 fill three of its pages: one can go.
        for i in 0..25_000u32 {
            e.store(crate::cache::StoreRequest::set(&i.to_be_bytes(), b"v"))
                .unwrap();
        }
        assert_eq!(e.slabs_reassign(1, 2), ReassignOutcome::Ok);
        assert_eq!(e.slabs_reassign(-1, 2), ReassignOutcome::Ok);
        assert_eq!(e.slabs_automove(b"2", None), AutomoveOutcome::Ok);
        assert_eq!(e.slabs_automove(b"3", None), AutomoveOutcome::Error);
        assert_eq!(e.slabs_automove(b"x", None), AutomoveOutcome::BadFormat);
        assert_eq!(e.slabs_automove(b"-1", None), AutomoveOutcome::BadFormat);
        assert_eq!(
            e.slabs_automove(b"ratio", Some(b"0.5")),
            AutomoveOutcome::Ok
        );
        assert_eq!(e.slabs_automove(b"ratio", None), AutomoveOutcome::Error);
        let settings = e.runtime.settings();
        assert!(settings.contains(&("slab_automove", "2".into())));
        assert!(settings.contains(&("slab_automove_ratio", "0.50".into())));
    }

    #[test]
    fn the_crawler_switches() {
        let e = testkit::engine();
        assert_eq!(e.lru_crawler_switch(true), CrawlerSetting::AlreadyRunning);
        assert_eq!(e.lru_crawler_switch(false), CrawlerSetting::Ok);
        assert_eq!(e.lru_crawler_switch(false), CrawlerSetting::Ok);
        assert!(!e.lru_crawler_enabled());
        assert_eq!(e.lru_crawler_switch(true), CrawlerSetting::Ok);
        assert_eq!(
            e.lru_crawler_sleep(b"1000001"),
            CrawlerSetting::SleepTooLong
        );
        assert_eq!(e.lru_crawler_sleep(b"x"), CrawlerSetting::BadFormat);
        assert_eq!(e.lru_crawler_tocrawl(b"-1"), CrawlerSetting::BadFormat);
        assert_eq!(e.lru_crawler_tocrawl(b"10"), CrawlerSetting::Ok);
    }

    #[test]
    fn memlimit_bounds_are_memcacheds() {
        let e = testkit::engine();
        assert_eq!(e.cache_memlimit(7), MemlimitOutcome::TooSmall);
        assert_eq!(e.cache_memlimit(8), MemlimitOutcome::Set);
        assert_eq!(e.shared_cache().l1().max_memory(), 8 << 20);
        assert_eq!(e.cache_memlimit(1_000_000_000), MemlimitOutcome::Set);
        assert_eq!(e.cache_memlimit(1_000_000_001), MemlimitOutcome::TooLarge);
    }

    #[test]
    fn a_flush_delay_follows_the_exptime_rules() {
        let (e, clock) = testkit::engine_on_clock();
        let set = |k: &[u8]| {
            e.store(crate::cache::StoreRequest::set(k, b"v")).unwrap();
        };
        set(b"a");
        assert_eq!(e.flush_all_at(Some(10)), FlushOutcome::Flushed);
        clock.advance(9_999);
        assert!(e.get(b"a", None, |_| ()).is_some());
        clock.advance(1);
        assert!(e.get(b"a", None, |_| ()).is_none());
        set(b"b");
        // An absolute time in the past flushes now; so does a negative one.
        let now_s = (crate::cache::Clock::now_ms(&*clock) / 1000) as i64;
        assert_eq!(e.flush_all_at(Some(now_s - 100)), FlushOutcome::Flushed);
        assert!(e.get(b"b", None, |_| ()).is_none());
        set(b"c");
        e.flush_all_at(Some(-1));
        assert!(e.get(b"c", None, |_| ()).is_none());
    }
}
