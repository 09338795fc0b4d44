//! The L2: a persistent tier on disk (redb), with LZ4-compressed records, and values over a
//! threshold in files of their own.
//!
//! `record` is the byte format of one item; `disk` is the redb file, its group-committing
//! writer thread and the value files. How the tiers cooperate (promotion, demotion, large values, warm-up) lives in
//! `crate::tiered`, which is the only user of this module.

pub mod disk;
pub mod record;

pub use disk::{
    DiskConfig, DiskStats, DiskStore, OnCorruption, SyncMode, DEFAULT_FILE_THRESHOLD, FILE_NAME,
    VALUES_DIR,
};
pub use record::{Compression, Header, FORMAT_VERSION};
