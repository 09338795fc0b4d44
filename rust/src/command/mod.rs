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
//! - `flush_all`'s delay, `cache_memlimit`'s bounds, `verbosity`;
//! - the `stats` groups (general, settings, items, slabs, sizes...), as name and value pairs;
//! - the meta commands' rules for lifetimes, recache and win tokens (`meta`).
//!
//! Nothing here knows a wire format, and nothing in a protocol module decides what a command
//! does. A new protocol (RESP) adds an encoder over these methods.

mod admin;
pub mod exptime;
mod failure;
mod items;
pub mod meta;
pub mod numbers;
mod stats;

pub use admin::{FlushOutcome, MemlimitOutcome};
pub use exptime::ttl_from_exptime;
pub use failure::Failure;
pub use stats::StatsGroup;
