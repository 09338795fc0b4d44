//! `Session::feed` with arbitrary splits. The input is a count byte, that many u16 cut offsets,
//! then the payload (`fuzz_support::decode_splits`). The payload is fed whole to one session and
//! in pieces to another, each on a fresh engine with the same manual clock time. Asserts: the
//! replies (volatile `stats` values blanked), the close flag and the bytes left buffered are
//! identical.
#![no_main]

use fuzz_support::{decode_splits, feed_whole_and_split, normalize, show, split_comparable};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((cuts, payload)) = decode_splits(data) else {
        return;
    };
    if !split_comparable(payload) {
        return;
    }
    let (mut whole, mut split) = feed_whole_and_split(payload, &cuts);
    let binary = payload.first() == Some(&0x80);
    whole.replies = normalize(&whole.replies, binary);
    split.replies = normalize(&split.replies, binary);
    assert!(
        whole == split,
        "cuts {cuts:?} of {}\n whole (closed={}, buffered={}): {}\n split (closed={}, buffered={}): {}",
        show(payload),
        whole.closed,
        whole.buffered,
        show(&whole.replies),
        split.closed,
        split.buffered,
        show(&split.replies)
    );
});
