//! Eviction policies.
//!
//! A policy only orders slots; it never owns entries. The shard tells it about inserts, hits,
//! updates and removals, and asks it for a victim when a limit is exceeded. Every call happens
//! under the shard's lock, so policies are plain single-threaded code taking `&mut self`.
//!
//! | name | keeps | trade-off |
//! |---|---|---|
//! | `lru` | recency order | simple and good for recency-heavy loads; one scan of cold keys flushes it |
//! | `fifo` | insertion order | no work on hits at all; ignores popularity, so the lowest hit ratio |
//! | `lfu` | frequency buckets, LRU within a bucket | keeps long-term favourites; slow to forget them |
//! | `hybrid` | segmented LRU (probation + protected) | scan-resistant LRU: one-hit keys never displace re-used ones |
//! | `ttl` | soonest expiry first, then LRU | drops what would die soon anyway; ignores popularity |
//! | `sieve` | FIFO with a visited bit and a moving hand | near-LFU hit ratios at FIFO cost; hits only set a bit |
//! | `s3fifo` | small FIFO + main FIFO + ghost of recent evictions | best measured hit ratio on skewed loads; one-hit keys leave fast |

mod lfu;
pub(crate) mod list;
mod recency;
mod s3fifo;
mod sieve;
mod slru;
mod ttl;

use std::fmt;
use std::str::FromStr;

/// What a policy may know about an entry: its key hash and its deadline (0 = never).
#[derive(Debug, Clone, Copy)]
pub(crate) struct EntryInfo {
    pub hash: u64,
    pub expires_at: u64,
}

/// Why an entry left the cache; S3-FIFO remembers evictions (not deletes) in its ghost queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RemoveReason {
    Evicted,
    Deleted,
}

pub(crate) trait Policy: Send {
    /// Grow the per-slot metadata to cover `slots` slots.
    fn ensure(&mut self, slots: usize);
    /// A new entry arrived in `slot`.
    fn insert(&mut self, slot: u32, info: EntryInfo);
    /// A read hit `slot`.
    fn touch(&mut self, slot: u32);
    /// The entry in `slot` was overwritten or its deadline changed; `old` is its previous info.
    fn update(&mut self, slot: u32, old: EntryInfo, new: EntryInfo) {
        let _ = (old, new);
        self.touch(slot);
    }
    /// The entry in `slot` is gone.
    fn remove(&mut self, slot: u32, info: EntryInfo, why: RemoveReason);
    /// The slot to evict next. May reorder internally (second chances), never removes.
    fn victim(&mut self) -> Option<u32>;
    /// Checks internal invariants against the shard's live slots.
    fn validate(&self, live: &[u32]) -> Result<(), String>;
    /// Bytes of metadata this policy keeps per slot, for the memory accounting.
    fn bytes_per_slot(&self) -> usize;
}

/// The eviction policy names that the config, CLI and `Cache(eviction=...)` accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyKind {
    Lru,
    Lfu,
    Fifo,
    Hybrid,
    Ttl,
    Sieve,
    S3Fifo,
}

impl PolicyKind {
    pub const ALL: [PolicyKind; 7] = [
        PolicyKind::Lru,
        PolicyKind::Lfu,
        PolicyKind::Fifo,
        PolicyKind::Hybrid,
        PolicyKind::Ttl,
        PolicyKind::Sieve,
        PolicyKind::S3Fifo,
    ];

    /// Every spelling `from_str` accepts, normalized (lower case, without `-`, `_` or spaces),
    /// with its policy: the canonical names, then the original RatMemCache's (`LruLfu`,
    /// `TtlBased`) and `slru`. The Python config reads its choices from this table.
    pub const SPELLINGS: [(&'static str, PolicyKind); 10] = [
        ("lru", PolicyKind::Lru),
        ("lfu", PolicyKind::Lfu),
        ("fifo", PolicyKind::Fifo),
        ("hybrid", PolicyKind::Hybrid),
        ("ttl", PolicyKind::Ttl),
        ("sieve", PolicyKind::Sieve),
        ("s3fifo", PolicyKind::S3Fifo),
        ("lrulfu", PolicyKind::Hybrid),
        ("slru", PolicyKind::Hybrid),
        ("ttlbased", PolicyKind::Ttl),
    ];

    /// The canonical (lower-case) name.
    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::Lru => "lru",
            PolicyKind::Lfu => "lfu",
            PolicyKind::Fifo => "fifo",
            PolicyKind::Hybrid => "hybrid",
            PolicyKind::Ttl => "ttl",
            PolicyKind::Sieve => "sieve",
            PolicyKind::S3Fifo => "s3fifo",
        }
    }

    pub(crate) fn build(self) -> Box<dyn Policy> {
        match self {
            PolicyKind::Lru => Box::new(recency::Recency::lru()),
            PolicyKind::Fifo => Box::new(recency::Recency::fifo()),
            PolicyKind::Lfu => Box::new(lfu::Lfu::default()),
            PolicyKind::Hybrid => Box::new(slru::Slru::default()),
            PolicyKind::Ttl => Box::new(ttl::TtlFirst::default()),
            PolicyKind::Sieve => Box::new(sieve::Sieve::default()),
            PolicyKind::S3Fifo => Box::new(s3fifo::S3Fifo::default()),
        }
    }
}

impl Default for PolicyKind {
    /// S3-FIFO had the lowest miss ratio of all policies in `bench/miss_ratio` (see README).
    fn default() -> Self {
        PolicyKind::S3Fifo
    }
}

impl fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error for an eviction name that no policy has.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown eviction policy {0:?}; expected one of lru, lfu, fifo, hybrid, ttl, sieve, s3fifo (or the original names Lru, Lfu, Fifo, LruLfu, TtlBased)")]
pub struct UnknownPolicy(pub String);

impl FromStr for PolicyKind {
    type Err = UnknownPolicy;

    /// Case-insensitive; also takes the original RatMemCache names (`LruLfu`, `TtlBased`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm: String = s
            .chars()
            .filter(|c| !matches!(c, '-' | '_' | ' '))
            .collect::<String>()
            .to_ascii_lowercase();
        Self::SPELLINGS
            .iter()
            .find(|(spelling, _)| *spelling == norm)
            .map(|&(_, kind)| kind)
            .ok_or_else(|| UnknownPolicy(s.to_owned()))
    }
}

/// Shared check: the slots that a policy tracks are exactly the live slots.
pub(crate) fn same_members(mut tracked: Vec<u32>, live: &[u32], name: &str) -> Result<(), String> {
    let mut live = live.to_vec();
    tracked.sort_unstable();
    live.sort_unstable();
    if tracked != live {
        return Err(format!(
            "{name}: tracks {} slots but the shard has {} live ones (or different ones)",
            tracked.len(),
            live.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_in_any_case_and_original_spelling() {
        for k in PolicyKind::ALL {
            assert_eq!(k.name().parse::<PolicyKind>().unwrap(), k);
            assert_eq!(k.name().to_uppercase().parse::<PolicyKind>().unwrap(), k);
        }
        assert_eq!("Lru".parse::<PolicyKind>().unwrap(), PolicyKind::Lru);
        assert_eq!("LruLfu".parse::<PolicyKind>().unwrap(), PolicyKind::Hybrid);
        assert_eq!("TtlBased".parse::<PolicyKind>().unwrap(), PolicyKind::Ttl);
        assert_eq!("S3-FIFO".parse::<PolicyKind>().unwrap(), PolicyKind::S3Fifo);
        let err = "random".parse::<PolicyKind>().unwrap_err().to_string();
        assert!(
            err.contains("\"random\"") && err.contains("s3fifo"),
            "{err}"
        );
    }
}
