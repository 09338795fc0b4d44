//! The L1's settings, and the size and TTL rules shared by every front end.

use super::policy::PolicyKind;
use crate::error::CoreError;

/// What the cache needs to know. Front ends (Python kwargs, the TOML loader) validate their own
/// input and build this once.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// Bytes charged to entries (see `entry` for the formula); 0 means unlimited.
    pub max_memory: u64,
    /// Entries; 0 means unlimited.
    pub max_entries: u64,
    pub eviction: PolicyKind,
    /// Lifetime for writes that don't give one, in ms; 0 means never expire.
    pub default_ttl_ms: u64,
    /// Upper bound on any lifetime, in ms, including "never"; 0 means no bound.
    pub max_ttl_ms: u64,
    /// How often the background sweep visits every shard, in ms; 0 disables the thread (the
    /// amortized sweep on writes and the lazy check on reads still run).
    pub cleanup_interval_ms: u64,
    /// Number of shards, a power of two; 0 picks one from the CPU count and the limits.
    pub shards: usize,
    /// Longest key accepted, in bytes.
    pub max_key_len: usize,
    /// Make room by evicting. Off (memcached's `-M`), a write that does not fit once expired
    /// entries are reclaimed fails (`StoreOutcome::NoRoom`) instead.
    pub evictions: bool,
    /// Give every write a CAS unique. Off (memcached's `-C`), every unique is 0, a `cas` never
    /// matches, and memcached's item size has no CAS field.
    pub cas_uniques: bool,
}

/// memcached's default `-m 64`.
pub const DEFAULT_MAX_MEMORY: u64 = 64 * 1024 * 1024;
/// memcached's key limit; the library default is more generous.
pub const MEMCACHED_MAX_KEY_LEN: usize = 250;
pub const LIBRARY_MAX_KEY_LEN: usize = 64 * 1024;

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_memory: DEFAULT_MAX_MEMORY,
            max_entries: 0,
            eviction: PolicyKind::default(),
            default_ttl_ms: 0,
            max_ttl_ms: 0,
            cleanup_interval_ms: 60_000,
            shards: 0,
            max_key_len: LIBRARY_MAX_KEY_LEN,
            evictions: true,
            cas_uniques: true,
        }
    }
}

impl CacheConfig {
    /// The shard count: enough for the CPUs to rarely contend, but few enough that each shard has
    /// room for a meaningful policy and large items (at least 4 MiB and ~256 entries), so that small caches
    /// evict exactly as their policy says.
    pub fn shard_count(&self) -> usize {
        if self.shards > 0 {
            return self.shards.next_power_of_two();
        }
        let cpus = std::thread::available_parallelism().map_or(4, |n| n.get());
        let mut n = (cpus * 4).next_power_of_two().min(64) as u64;
        if self.max_memory > 0 {
            n = n.min(prev_pow2((self.max_memory >> 22).max(1)));
        }
        if self.max_entries > 0 {
            n = n.min(prev_pow2((self.max_entries / 256).max(1)));
        }
        n as usize
    }

    pub fn validate(&self) -> Result<(), CoreError> {
        if self.shards > 1 << 16 {
            return Err(CoreError::Config(format!(
                "shards = {} is more than 65536",
                self.shards
            )));
        }
        if self.max_key_len == 0 {
            return Err(CoreError::Config("max_key_len must be at least 1".into()));
        }
        Ok(())
    }
}

fn prev_pow2(n: u64) -> u64 {
    1 << (63 - n.max(1).leading_zeros())
}

/// Parses a size: an integer number of bytes, or a number with a unit (`"64MB"`, `"1.5 GiB"`,
/// `"512k"`). Units are binary, as in memcached's `-m`: K/KB/KiB = 1024, M = 1024², G, T.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num = num.replace('_', "");
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => {
            return Err(format!(
                "{text:?} is not a size: unknown unit {:?} (use B, KB, MB, GB or TB)",
                unit.trim()
            ))
        }
    };
    if num.is_empty() {
        return Err(format!(
            "{text:?} is not a size: expected a number such as 64MB"
        ));
    }
    if num.contains('.') {
        let f: f64 = num.parse().map_err(|_| format!("{text:?} is not a size"))?;
        let v = f * mult as f64;
        if !v.is_finite() || v < 0.0 || v > u64::MAX as f64 {
            return Err(format!("{text:?} is out of range"));
        }
        return Ok(v as u64);
    }
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{text:?} is out of range"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("{text:?} is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert_eq!(parse_size("64MB").unwrap(), 64 << 20);
        assert_eq!(parse_size("64 mib").unwrap(), 64 << 20);
        assert_eq!(parse_size("1GB").unwrap(), 1 << 30);
        assert_eq!(parse_size("512k").unwrap(), 512 << 10);
        assert_eq!(parse_size("1.5G").unwrap(), 3 << 29);
        assert_eq!(parse_size("1_000").unwrap(), 1000);
        assert!(parse_size("12XB").unwrap_err().contains("unknown unit"));
        assert!(parse_size("MB").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("99999999999999999999").is_err());
        assert!(parse_size("20000000TB").is_err());
    }

    #[test]
    fn shard_count_respects_small_limits() {
        let mut c = CacheConfig {
            max_entries: 100,
            ..Default::default()
        };
        assert_eq!(c.shard_count(), 1);
        c.max_entries = 0;
        c.max_memory = 12 << 20;
        assert!(c.shard_count() <= 2);
        // Every shard keeps at least 4 MiB, so items up to that size always fit.
        c.max_memory = 64 << 20;
        assert!(c.shard_count() <= 16);
        c.shards = 5;
        assert_eq!(c.shard_count(), 8);
    }
}
