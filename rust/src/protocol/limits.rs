//! Wire limits, named for the memcached behaviour they reproduce.

/// memcached's `KEY_MAX_LENGTH`.
pub const KEY_MAX_LENGTH: usize = 250;
/// memcached closes a connection whose buffered line reaches this many bytes without a newline,
/// unless the line is a `get`/`gets` (multigets may be arbitrarily long).
pub const MAX_LINE_WITHOUT_NEWLINE: usize = 2048;
/// Our ceiling for a multiget line without a newline (memcached has none; we bound memory).
pub const MAX_MULTIGET_LINE: usize = 8 * 1024 * 1024;
/// memcached rejects a declared value length above `INT_MAX - 2`.
pub const MAX_DECLARED_VALUE_LEN: i64 = i32::MAX as i64 - 2;
/// The default chunk size of `streaming_get`.
pub const DEFAULT_STREAM_CHUNK: usize = 4096;
/// Inputs at least this large are parsed with the GIL released by the Python binding.
pub const LARGE_FEED: usize = 256 * 1024;
/// A feed stops answering pipelined requests once its reply reaches this many bytes; the rest
/// waits in the read buffer until the I/O engine has sent the reply and feeds again
/// (`Session::has_more`). Like memcached, which yields a connection whose output is full: a
/// client that pipelines thousands of gets without reading its replies gets backpressure, and
/// the server never holds more than about this much of its replies.
pub const REPLY_BUDGET: usize = 1024 * 1024;
