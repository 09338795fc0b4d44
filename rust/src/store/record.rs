//! The on-disk record of one L2 item, and its LZ4 compression.
//!
//! ```text
//! offset size
//!  0     1   FORMAT_VERSION
//!  1     1   codec: 0 = raw, 1 = LZ4 block (lz4_flex), 2 = in its own file (version 2)
//!  2     1   entry meta bits (text key, binary key, fetched, stale, win sent)
//!  3     1   reserved, 0
//!  4     4   client flags, little endian
//!  8     8   CAS unique
//! 16     8   deadline, unix ms (0 = never)
//! 24     8   written at, unix ms (the warm-up order: most recent first)
//! 32     4   length of the raw value
//! 36     ..  the value, raw or compressed; or, with codec 2, a file reference:
//! 36     8   the file's id (`values/<id as 16 hex digits>.val` under the data dir)
//! 44     4   CRC-32 of the value
//! ```
//!
//! Version 2 added codec 2 (values over `[l2] file_threshold` live in their own files, see
//! `disk::files`); version 1 records are version 2 records without it, so both are read.
//!
//! The version byte lets a later format read the files this one wrote; a record whose version
//! or codec is unknown is reported as corrupt rather than misread. Compression is per record and
//! only kept when it shrinks the value, so incompressible data costs nothing on reads.

use thiserror::Error;

/// Bumped whenever the layout above changes; decoders accept every version up to it.
pub const FORMAT_VERSION: u8 = 2;
/// Bytes before the value.
pub const HEADER_LEN: usize = 36;

const CODEC_RAW: u8 = 0;
const CODEC_LZ4: u8 = 1;
const CODEC_FILE: u8 = 2;
/// The payload of a file record: the file's id and the value's CRC-32.
const FILE_REF_LEN: usize = 12;

/// When a value is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compression {
    pub enabled: bool,
    /// Values shorter than this are stored raw: LZ4's framing costs more than it saves there.
    pub threshold: usize,
}

impl Default for Compression {
    fn default() -> Self {
        Compression {
            enabled: true,
            threshold: 1024,
        }
    }
}

/// Everything about an item except its key (the key is the table key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub meta: u8,
    pub flags: u32,
    pub cas: u64,
    pub expires_at: u64,
    pub stored_at: u64,
    pub value_len: u32,
}

impl Header {
    pub fn is_live(&self, now_ms: u64) -> bool {
        self.expires_at == 0 || self.expires_at > now_ms
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("the record is {0} bytes, shorter than its {HEADER_LEN}-byte header")]
    Truncated(usize),
    #[error("the record has format version {0}, newer than this build's {FORMAT_VERSION}")]
    UnknownVersion(u8),
    #[error("the record uses unknown codec {0}")]
    UnknownCodec(u8),
    #[error("the record's value does not decode to its stated {0} bytes")]
    BadValue(u32),
}

/// Where a value kept in its own file is, and its checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileRef {
    pub id: u64,
    pub crc: u32,
}

/// A record's value: in the record, or in a file of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Inline(Vec<u8>),
    File(FileRef),
}

fn put_header(out: &mut Vec<u8>, codec: u8, h: &Header) {
    out.extend_from_slice(&[FORMAT_VERSION, codec, h.meta, 0]);
    out.extend_from_slice(&h.flags.to_le_bytes());
    out.extend_from_slice(&h.cas.to_le_bytes());
    out.extend_from_slice(&h.expires_at.to_le_bytes());
    out.extend_from_slice(&h.stored_at.to_le_bytes());
    out.extend_from_slice(&h.value_len.to_le_bytes());
}

/// Encodes the record of a value kept in its own file: the header and the file reference.
pub fn encode_file(h: &Header, file: FileRef) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + FILE_REF_LEN);
    put_header(&mut out, CODEC_FILE, h);
    out.extend_from_slice(&file.id.to_le_bytes());
    out.extend_from_slice(&file.crc.to_le_bytes());
    out
}

/// The file a record points to, if its value is kept in one (no other decoding).
pub fn file_ref(b: &[u8]) -> Option<FileRef> {
    (b.len() == HEADER_LEN + FILE_REF_LEN && b[1] == CODEC_FILE && b[0] >= 2).then(|| FileRef {
        id: le_u64(b, HEADER_LEN),
        crc: le_u32(b, HEADER_LEN + 8),
    })
}

/// The bytes a record costs on disk: the record, plus the value's file when it has one.
pub fn stored_len(b: &[u8]) -> u64 {
    let file = file_ref(b).map_or(0, |_| u64::from(le_u32(b, 32)));
    b.len() as u64 + file
}

/// Encodes a record. The value is compressed when `compression` says so and it shrinks.
pub fn encode(h: &Header, value: &[u8], compression: Compression) -> Vec<u8> {
    debug_assert_eq!(h.value_len as usize, value.len());
    let compressed = compress(value, compression, value.len());
    encode_payload(h, value, compressed)
}

/// The record of a value that compresses to under `limit` bytes, if it does (a large value
/// that shrinks that much stays in redb instead of a file of its own).
pub fn encode_compressed(
    h: &Header,
    value: &[u8],
    compression: Compression,
    limit: usize,
) -> Option<Vec<u8>> {
    // A sample first: most large values (media, already-compressed data) don't shrink enough,
    // and compressing a megabyte to find that out costs more than writing it.
    let sample = &value[..value.len().min(16 * 1024)];
    let shrunk = compress(sample, compression, sample.len())?;
    let estimate = shrunk.len() as u64 * value.len() as u64 / sample.len() as u64;
    if estimate >= limit as u64 {
        return None;
    }
    let compressed = compress(value, compression, limit)?;
    Some(encode_payload(h, value, Some(compressed)))
}

/// `value` compressed, if compression applies and the result is shorter than `limit`.
fn compress(value: &[u8], compression: Compression, limit: usize) -> Option<Vec<u8>> {
    (compression.enabled && value.len() >= compression.threshold)
        .then(|| lz4_flex::block::compress(value))
        .filter(|c| c.len() < limit)
}

fn encode_payload(h: &Header, value: &[u8], compressed: Option<Vec<u8>>) -> Vec<u8> {
    let (codec, payload) = match &compressed {
        Some(c) => (CODEC_LZ4, c.as_slice()),
        None => (CODEC_RAW, value),
    };
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    put_header(&mut out, codec, h);
    out.extend_from_slice(payload);
    out
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Reads the header only (no decompression).
pub fn decode_header(b: &[u8]) -> Result<Header, RecordError> {
    if b.len() < HEADER_LEN {
        return Err(RecordError::Truncated(b.len()));
    }
    if b[0] == 0 || b[0] > FORMAT_VERSION {
        return Err(RecordError::UnknownVersion(b[0]));
    }
    let known = if b[0] >= 2 { CODEC_FILE } else { CODEC_LZ4 };
    if b[1] > known {
        return Err(RecordError::UnknownCodec(b[1]));
    }
    Ok(Header {
        meta: b[2],
        flags: le_u32(b, 4),
        cas: le_u64(b, 8),
        expires_at: le_u64(b, 16),
        stored_at: le_u64(b, 24),
        value_len: le_u32(b, 32),
    })
}

/// Reads a whole record: its header and its raw value, or where its value's file is.
pub fn decode(b: &[u8]) -> Result<(Header, Body), RecordError> {
    let h = decode_header(b)?;
    if b[1] == CODEC_FILE {
        return file_ref(b)
            .map(|f| (h.clone(), Body::File(f)))
            .ok_or(RecordError::BadValue(h.value_len));
    }
    let payload = &b[HEADER_LEN..];
    let value = match b[1] {
        CODEC_RAW if payload.len() == h.value_len as usize => payload.to_vec(),
        // LZ4 expands a block at most 255-fold (each input byte adds at most 255 output bytes),
        // so a longer stated length is corruption. Checked first: the decompressor allocates the
        // stated length up front, and a damaged header could otherwise ask for 4 GiB.
        CODEC_LZ4 if h.value_len as usize > payload.len().saturating_mul(255) => {
            return Err(RecordError::BadValue(h.value_len))
        }
        CODEC_LZ4 => lz4_flex::block::decompress(payload, h.value_len as usize)
            .ok()
            .filter(|v| v.len() == h.value_len as usize)
            .ok_or(RecordError::BadValue(h.value_len))?,
        _ => return Err(RecordError::BadValue(h.value_len)),
    };
    Ok((h, Body::Inline(value)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(value: &[u8]) -> Header {
        Header {
            meta: 0b101,
            flags: 0xdead_beef,
            cas: 42,
            expires_at: 1_700_000_000_000,
            stored_at: 1_600_000_000_000,
            value_len: value.len() as u32,
        }
    }

    #[test]
    fn raw_round_trip() {
        let v = b"hello";
        let r = encode(&header(v), v, Compression::default());
        assert_eq!(r.len(), HEADER_LEN + 5);
        assert_eq!(r[1], CODEC_RAW);
        assert_eq!(decode(&r).unwrap(), (header(v), Body::Inline(v.to_vec())));
    }

    #[test]
    fn compressible_values_are_compressed_above_the_threshold() {
        let v = vec![b'a'; 4096];
        let r = encode(&header(&v), &v, Compression::default());
        assert_eq!(r[1], CODEC_LZ4);
        assert!(r.len() < 200, "{} bytes", r.len());
        assert_eq!(decode(&r).unwrap().1, Body::Inline(v.clone()));
        let off = Compression {
            enabled: false,
            threshold: 0,
        };
        assert_eq!(encode(&header(&v), &v, off)[1], CODEC_RAW);
        let high = Compression {
            enabled: true,
            threshold: 8192,
        };
        assert_eq!(encode(&header(&v), &v, high)[1], CODEC_RAW);
    }

    #[test]
    fn incompressible_values_stay_raw() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let v: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let r = encode(&header(&v), &v, Compression::default());
        assert_eq!(r[1], CODEC_RAW);
        assert_eq!(r.len(), HEADER_LEN + v.len());
    }

    #[test]
    fn damaged_records_are_errors_not_panics() {
        let v = vec![b'z'; 2000];
        let good = encode(&header(&v), &v, Compression::default());
        assert_eq!(decode(&good[..10]), Err(RecordError::Truncated(10)));
        let mut newer = good.clone();
        newer[0] = FORMAT_VERSION + 1;
        assert_eq!(
            decode(&newer),
            Err(RecordError::UnknownVersion(FORMAT_VERSION + 1))
        );
        let mut codec = good.clone();
        codec[1] = 9;
        assert_eq!(decode(&codec), Err(RecordError::UnknownCodec(9)));
        let mut short = good.clone();
        short.truncate(good.len() - 3);
        assert!(decode(&short).is_err());
        let mut raw = encode(&header(b"abc"), b"abc", Compression::default());
        raw.push(0);
        assert_eq!(decode(&raw), Err(RecordError::BadValue(3)));
        for cut in 0..good.len() {
            let _ = decode(&good[..cut]);
        }
    }

    #[test]
    fn file_records_hold_the_reference_and_count_the_file() {
        let mut h = header(b"");
        h.value_len = 1 << 20;
        let f = FileRef {
            id: 0x0102_0304_0506_0708,
            crc: 0xcafe_f00d,
        };
        let r = encode_file(&h, f);
        assert_eq!(r.len(), HEADER_LEN + FILE_REF_LEN);
        assert_eq!(decode(&r).unwrap(), (h.clone(), Body::File(f)));
        assert_eq!(decode_header(&r).unwrap(), h);
        assert_eq!(file_ref(&r), Some(f));
        assert_eq!(stored_len(&r), r.len() as u64 + (1 << 20));
        let inline = encode(&header(b"abc"), b"abc", Compression::default());
        assert_eq!((file_ref(&inline), stored_len(&inline)), (None, 39));
        // a version 1 record never names a file
        let mut old = r.clone();
        old[0] = 1;
        assert_eq!(decode(&old), Err(RecordError::UnknownCodec(CODEC_FILE)));
        assert_eq!(file_ref(&old), None);
        let mut cut = r.clone();
        cut.pop();
        assert!(decode(&cut).is_err());
    }

    #[test]
    fn version_1_records_still_decode() {
        let v = vec![b'q'; 3000];
        let mut r = encode(&header(&v), &v, Compression::default());
        r[0] = 1;
        assert_eq!(decode(&r).unwrap().1, Body::Inline(v));
    }
}
