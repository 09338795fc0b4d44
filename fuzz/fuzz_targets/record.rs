//! The L2 record decoder. Asserts: `decode_header` and `decode` never panic; they agree on
//! the header; a decoded record re-encodes (raw and compressed) to bytes that decode to the
//! same header and value (a file reference to the same reference); a record that decodes has a
//! value of the stated length.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ratmemcache::store::record::{decode, decode_header, encode, encode_file, Body, Compression};

fuzz_target!(|data: &[u8]| {
    let header = decode_header(data);
    let Ok((h, body)) = decode(data) else {
        return;
    };
    assert_eq!(header.as_ref(), Ok(&h), "decode and decode_header disagree");
    let value = match body {
        Body::Inline(v) => v,
        Body::File(f) => {
            let again = decode(&encode_file(&h, f)).expect("a re-encoded file record decodes");
            assert_eq!(again, (h, Body::File(f)));
            return;
        }
    };
    assert_eq!(value.len(), h.value_len as usize);
    for compression in [
        Compression {
            enabled: false,
            threshold: 0,
        },
        Compression {
            enabled: true,
            threshold: 0,
        },
    ] {
        let again = encode(&h, &value, compression);
        assert_eq!(decode_header(&again).as_ref(), Ok(&h));
        let (h2, v2) = decode(&again).expect("a re-encoded record decodes");
        assert_eq!(h2, h);
        assert_eq!(v2, Body::Inline(value.clone()));
    }
});
