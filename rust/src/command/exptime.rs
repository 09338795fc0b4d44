//! memcached's exptime rules, in one place.

use crate::cache::Ttl;

/// memcached's `REALTIME_MAXDELTA`: an exptime above this many seconds is an absolute unix time.
pub const REALTIME_MAXDELTA: i64 = 60 * 60 * 24 * 30;

/// Converts a memcached exptime to a [`Ttl`]:
/// 0 means no expiry (the cache's `default_ttl`, which is "never" unless configured); a negative
/// value means already expired; up to 30 days it is relative seconds; above 30 days it is an
/// absolute unix time in seconds (so a small absolute time is already in the past).
pub fn ttl_from_exptime(exptime: i64) -> Ttl {
    match exptime {
        0 => Ttl::Default,
        e if e < 0 => Ttl::Expired,
        e if e > REALTIME_MAXDELTA => Ttl::At((e as u64).saturating_mul(1000)),
        e => Ttl::After(e as u64 * 1000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        assert_eq!(ttl_from_exptime(0), Ttl::Default);
        assert_eq!(ttl_from_exptime(-1), Ttl::Expired);
        assert_eq!(ttl_from_exptime(i64::MIN), Ttl::Expired);
        assert_eq!(ttl_from_exptime(10), Ttl::After(10_000));
        assert_eq!(
            ttl_from_exptime(REALTIME_MAXDELTA),
            Ttl::After(2_592_000_000)
        );
        assert_eq!(
            ttl_from_exptime(REALTIME_MAXDELTA + 1),
            Ttl::At(2_592_001_000)
        );
        assert_eq!(ttl_from_exptime(1_900_000_000), Ttl::At(1_900_000_000_000));
    }
}
