//! memcached's meta protocol (mg, ms, md, ma, mn, me).

use bytes::Bytes;

use crate::engine::Engine;

pub(crate) struct PendingSet {}

pub(crate) enum Outcome {
    Done,
    NeedData { len: usize, pending: PendingSet },
    Swallow(usize),
}

pub(crate) fn command(sub: u8, _args: &[&[u8]], _engine: &Engine, out: &mut Vec<u8>) -> Outcome {
    match sub {
        b'n' => out.extend_from_slice(b"MN\r\n"),
        _ => out.extend_from_slice(super::text::ERROR),
    }
    Outcome::Done
}

pub(crate) fn complete_set(
    _p: PendingSet,
    _data: Option<Bytes>,
    _engine: &Engine,
    _out: &mut Vec<u8>,
) {
}
