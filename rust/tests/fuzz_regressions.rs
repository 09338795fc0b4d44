//! Every input the cargo-fuzz targets in fuzz/ found to fail, inline, checked with the same
//! oracle as the target that found it. See fuzz/README.md for the targets and how to run them.
#![allow(unsafe_code)] // the counting global allocator below

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use ratmemcache::store::record::{
    decode, decode_header, encode, encode_file, Body, Compression, Header, RecordError,
};

/// Records the largest single allocation each thread makes, so a test can show that an input
/// never asked for a huge buffer (with overcommit, such an allocation would succeed and go
/// unnoticed; on a host without it, or under a memory limit, it aborts the server).
struct PeakAlloc;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: defers to the system allocator; the bookkeeping touches only a const-initialised
// thread-local, which never allocates.
unsafe impl GlobalAlloc for PeakAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = LARGEST.try_with(|m| m.set(m.get().max(layout.size())));
        // SAFETY: the caller's contract for this method is the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let _ = LARGEST.try_with(|m| m.set(m.get().max(layout.size())));
        // SAFETY: the caller's contract for this method is the system allocator's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract for this method is the system allocator's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = LARGEST.try_with(|m| m.set(m.get().max(new_size)));
        // SAFETY: the caller's contract for this method is the system allocator's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: PeakAlloc = PeakAlloc;

/// The largest single allocation `f` made on this thread.
fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|m| m.set(0));
    let r = f();
    (r, LARGEST.with(Cell::get))
}

// ---- the `record` target's oracle ----

/// Decoding never panics; a record that decodes re-encodes (raw and compressed, or as the same
/// file reference) to bytes that decode to the same header and value.
fn check_record(b: &[u8]) -> Result<(Header, Vec<u8>), RecordError> {
    let header = decode_header(b);
    let (h, body) = decode(b)?;
    assert_eq!(header.as_ref(), Ok(&h));
    let value = match body {
        Body::Inline(v) => v,
        Body::File(f) => {
            assert_eq!(decode(&encode_file(&h, f)), Ok((h.clone(), Body::File(f))));
            return Ok((h, Vec::new()));
        }
    };
    assert_eq!(value.len(), h.value_len as usize);
    for enabled in [false, true] {
        let again = encode(
            &h,
            &value,
            Compression {
                enabled,
                threshold: 0,
            },
        );
        assert_eq!(decode(&again), Ok((h.clone(), Body::Inline(value.clone()))));
    }
    Ok((h, value))
}

/// fuzz/artifacts/record/oom-ad706553…: an LZ4 record whose header states a 2.7 GB value over
/// a 42-byte payload. `decode` handed the stated length to the decompressor, which allocates
/// it up front: one damaged L2 record could make the server allocate up to 4 GiB.
#[test]
fn record_lz4_stated_length_beyond_any_expansion_is_corrupt() {
    let b: &[u8] = &[
        0x01, 0x01, 0x05, 0x00, 0x07, 0x00, 0x00, 0xa0, 0xa0, 0xa0, 0xa0, 0xa0, 0xa0, 0xa0, 0xa0,
        0xa0, 0xa0, 0xa0, 0xa0, 0xa0, 0xa0, 0xa0, 0xa0, 0xa0, 0xa0, 0xa0, 0xa0, 0xa0, 0xa0, 0xa0,
        0xa0, 0xa0, 0xa0, 0xa0, 0xa0, 0xa0, 0xa0, 0xa0, 0x00, 0x2a, 0x00, 0x00, 0x00, 0x80, 0x40,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x68, 0xe5, 0xcf,
        0x8b, 0x01, 0x00, 0x00, 0x19, 0x00, 0x00, 0x00, 0x1f, 0x61, 0x01, 0x00, 0x00, 0x50, 0x61,
        0x61, 0x61, 0x61, 0x61,
    ];
    let (r, largest) = largest_allocation(|| check_record(b));
    assert_eq!(r, Err(RecordError::BadValue(2_694_881_440)));
    assert!(
        largest < 1 << 20,
        "decoding allocated {largest} bytes at once"
    );
}

/// The bound that fix checks must not refuse a real record: a run of zeros compresses about as
/// well as LZ4 can (close to 255-fold), and still decodes.
#[test]
fn record_most_compressible_value_still_decodes() {
    let v = vec![0u8; 4 << 20];
    let h = Header {
        meta: 0,
        flags: 0,
        cas: 1,
        expires_at: 0,
        stored_at: 0,
        value_len: v.len() as u32,
    };
    let r = encode(&h, &v, Compression::default());
    assert_eq!(r[1], 1, "compressed");
    assert_eq!(check_record(&r).unwrap().1, v);
}
