//! The core's one error type. `py/errors.rs` is the only place that turns it into Python
//! exceptions; the protocol layer turns it into memcached reply lines.

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// A setting is invalid; the message names it and says what is expected.
    #[error("{0}")]
    Config(String),
    /// A key is empty, too long, or (for the server) holds forbidden bytes.
    #[error("{0}")]
    BadKey(String),
    /// An argument is out of range (a negative TTL, an incr delta that isn't a u64...).
    #[error("{0}")]
    BadArgument(String),
    /// An item is larger than a shard's memory budget.
    #[error("{0}")]
    TooLarge(String),
    /// incr/decr on a value that is not a decimal number.
    #[error("cannot increment or decrement non-numeric value")]
    NonNumeric,
    /// The L2 cannot be opened or used: the message names the path and what to do.
    #[error("{0}")]
    Persistence(String),
    /// An L2 write failed because the disk is full; the server answers
    /// `SERVER_ERROR out of disk space` and keeps serving from L1.
    #[error("{0}")]
    DiskFull(String),
    /// Another L2 read or write failure.
    #[error("{0}")]
    Disk(String),
    /// The cache was shut down.
    #[error("the cache is shut down")]
    Closed,
    /// A request would have waited on the disk inside a refusing section (`disk_wait`): it was
    /// given up before it changed anything, to run again where waiting is fine.
    #[error("the request would wait on the disk")]
    WouldWait,
}
