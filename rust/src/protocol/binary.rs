//! memcached's binary protocol.

use bytes::BytesMut;

use super::session::Progress;
use crate::engine::Engine;

pub(crate) const MAGIC_REQUEST: u8 = 0x80;

#[derive(Default)]
pub(crate) struct BinaryState {}

pub(crate) fn step(
    _st: &mut BinaryState,
    _engine: &Engine,
    _buf: &mut BytesMut,
    _out: &mut Vec<u8>,
) -> Progress {
    Progress::Close
}
