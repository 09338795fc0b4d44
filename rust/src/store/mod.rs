//! The L2: a persistent tier on disk (redb), with LZ4-compressed records.
//!
//! `record` is the byte format of one item; `disk` is the redb file and its group-committing
//! writer thread. How the tiers cooperate (promotion, demotion, large values, warm-up) lives in
//! `crate::tiered`, which is the only user of this module.

pub mod disk;
pub mod record;

pub use disk::{DiskConfig, DiskStats, DiskStore, OnCorruption, SyncMode, FILE_NAME};
pub use record::{Compression, Header, FORMAT_VERSION};
