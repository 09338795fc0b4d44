//! ratmemcache: a memcached-compatible cache with a Rust core.
//!
//! # Goals
//! - An L1 in memory that is fast from Rust, from Python (the `python` feature) and from the
//!   network (the `native` feature's I/O engine, `net`): sharded, with bounded memory, modern
//!   eviction (SIEVE, S3-FIFO) and TTLs.
//! - memcached's semantics where they are observable (exptime rules, CAS, incr/decr padding).
//!
//! # Non-goals
//! - Being a database: the cache may drop anything at any time to stay within its limits.
//!
//! # Concurrency model
//! A shard is single-threaded code behind one `parking_lot::Mutex`; the facade in `cache` hashes
//! once, locks one shard, and frees evicted values after unlocking. Nothing else is shared but a
//! read-only config and the clock.

pub mod cache;
pub mod command;
pub mod disk_wait;
pub mod engine;
pub mod error;
pub mod latency;
#[cfg(feature = "native")]
pub mod net;
pub mod protocol;
pub mod store;
#[doc(hidden)]
pub mod testkit;
pub mod tiered;

#[cfg(feature = "python")]
mod py;

pub use cache::{Cache, CacheConfig, PolicyKind, Ttl};
pub use error::CoreError;
pub use tiered::Tiered;
