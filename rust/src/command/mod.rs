//! The command layer: what each command does, whatever protocol carried it.
//!
//! The protocols (`protocol::text`, `meta`, `binary`, `streaming`) parse a request into plain
//! values, call one of the [`Engine`](crate::engine::Engine) methods defined here, and encode the
//! outcome in their own words. The rules live here once:
//!
//! - the item size limit, with memcached's formula ([`Engine::admit`]);
//! - memcached's number parsing (`numbers`);
//! - what a store, read, touch, delete or incr does, and how a core error becomes a
//!   [`Failure`] that every protocol can say;
//! - `flush_all`'s delay, `cache_memlimit`'s bounds, `verbosity`, `shutdown`, `slabs`, the
//!   crawler's switches, and the settings they change (`admin`);
//! - what the store holds by memcached's slab classes: `stats items|slabs|cachedump`,
//!   `lru_crawler metadump|crawl` (`inventory`);
//! - per-prefix statistics, `stats detail` (`detail`);
//! - the `stats` groups (general, settings, items, slabs, sizes...), as name and value pairs;
//! - the meta commands' rules for lifetimes, recache and win tokens (`meta`).
//!
//! Nothing here knows a wire format, and nothing in a protocol module decides what a command
//! does. A new protocol (RESP) adds an encoder over these methods.

mod admin;
mod detail;
pub mod exptime;
mod failure;
mod inventory;
mod items;
pub mod meta;
pub mod numbers;
mod stats;

pub use admin::{
    AutomoveOutcome, CrawlerSetting, FlushOutcome, MemlimitOutcome, ReassignOutcome, Runtime,
    ShutdownOutcome,
};
pub use detail::{PrefixCounts, PrefixStats};
pub use exptime::ttl_from_exptime;
pub use failure::Failure;
pub use inventory::{ClassReport, ClassSet, CrawlerOutcome, DumpedItem, MAX_CLASS_ID};
pub use stats::StatsGroup;
