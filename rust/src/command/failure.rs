//! The one mapping from a core error to what failed, for a protocol to say.

use crate::error::CoreError;

/// Why a command that changes the cache failed. Each protocol has its own words for these
/// (text: `SERVER_ERROR ...`; binary: a status); none has a word for which core error it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The item is over the item size limit (memcached's `-I`).
    TooLarge,
    /// There is no memory to store it: the item alone is over a shard's memory budget (memcached
    /// says it is out of memory storing the object).
    NoMemory,
    /// The L2 is out of disk space: the write was not persisted.
    NoDisk,
    /// The L2 failed to read or write.
    DiskError,
}

impl Failure {
    /// What a core error means for the client. Errors a protocol never lets through (a bad
    /// key, a bad argument: the protocols check those first) read as "no memory", as memcached
    /// answers any store it can't make.
    pub fn of(e: &CoreError) -> Failure {
        match e {
            CoreError::TooLarge(_) => Failure::TooLarge,
            CoreError::DiskFull(_) => Failure::NoDisk,
            // A refused wait's reply is rolled back before anyone sees it (`disk_wait`).
            CoreError::Disk(_)
            | CoreError::Persistence(_)
            | CoreError::Closed
            | CoreError::WouldWait => Failure::DiskError,
            CoreError::Config(_)
            | CoreError::BadKey(_)
            | CoreError::BadArgument(_)
            | CoreError::NonNumeric => Failure::NoMemory,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_core_error_has_a_failure() {
        let s = || "x".to_string();
        for (e, f) in [
            (CoreError::TooLarge(s()), Failure::TooLarge),
            (CoreError::DiskFull(s()), Failure::NoDisk),
            (CoreError::Disk(s()), Failure::DiskError),
            (CoreError::Persistence(s()), Failure::DiskError),
            (CoreError::Closed, Failure::DiskError),
            (CoreError::BadKey(s()), Failure::NoMemory),
        ] {
            assert_eq!(Failure::of(&e), f, "{e}");
        }
    }
}
