//! The memcached protocols, sans-IO: a [`Session`] is fed bytes and returns reply bytes.
//!
//! `session` frames the byte stream and picks the protocol from the first byte (0x80 is binary,
//! as in memcached); `text` handles the classic text commands, `meta` the meta commands, `binary`
//! the binary protocol and `streaming` ratmemcache's chunked large-value extension; `udp` frames
//! them in memcached's UDP datagrams. They only
//! parse and encode: each request becomes a call to the command layer (`crate::command`, methods
//! of [`crate::engine::Engine`]) with plain values, and its outcome becomes reply bytes.

mod auth;
mod base64;
pub mod binary;
pub mod limits;
pub mod meta;
mod sasl;
mod session;
pub mod streaming;
pub mod text;
mod text_admin;
mod tokens;
pub mod udp;

pub use auth::Credentials;
pub use session::{spliced_len, Binding, Session, SessionConfig, Splice};
