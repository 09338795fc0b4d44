//! The commands on the server: `flush_all`, `cache_memlimit`, `verbosity`.

use super::exptime::ttl_from_exptime;
use crate::cache::Ttl;
use crate::engine::Engine;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit;

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
