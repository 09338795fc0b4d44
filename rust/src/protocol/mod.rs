//! The memcached protocols, sans-IO: a [`Session`] is fed bytes and returns reply bytes.
//!
//! `session` frames the byte stream and picks the protocol from the first byte (0x80 is binary,
//! as in memcached); `text` handles the classic text commands, `meta` the meta commands, `binary`
//! the binary protocol and `streaming` ratmemcache's chunked large-value extension. Parsers call
//! the cache and the [`crate::engine::Engine`] with plain values; neither ever sees the wire.

mod auth;
pub mod binary;
pub mod exptime;
pub mod limits;
pub mod meta;
mod sasl;
mod session;
pub mod streaming;
pub mod text;
mod tokens;

pub use auth::Credentials;
pub use session::{spliced_len, Session, Splice};
