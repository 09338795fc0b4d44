//! Base64 as memcached's `base64.c` (Jouni Malinen's, modified) decodes and encodes the keys of
//! meta commands (`b`): its decoder skips bytes outside the alphabet and stops after the first
//! padded group, which no general-purpose base64 crate does.

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn b64_value(b: u8) -> Option<u8> {
    match b {
        b'A'..=b'Z' => Some(b - b'A'),
        b'a'..=b'z' => Some(b - b'a' + 26),
        b'0'..=b'9' => Some(b - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        b'=' => Some(0),
        _ => None,
    }
}

/// memcached's `base64_decode`: bytes outside the alphabet are skipped, the rest must come in
/// groups of four, and decoding stops after the first group with padding. `None` on failure
/// (memcached's 0), which includes an empty result.
pub(crate) fn base64_decode(src: &[u8]) -> Option<Vec<u8>> {
    let count = src.iter().filter(|&&b| b64_value(b).is_some()).count();
    if count == 0 || count % 4 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(count / 4 * 3);
    let mut block = [0u8; 4];
    let (mut n, mut pad) = (0, 0);
    for &b in src {
        let Some(v) = b64_value(b) else { continue };
        if b == b'=' {
            pad += 1;
        }
        block[n] = v;
        n += 1;
        if n == 4 {
            out.push((block[0] << 2) | (block[1] >> 4));
            out.push((block[1] << 4) | (block[2] >> 2));
            out.push((block[2] << 6) | block[3]);
            n = 0;
            if pad > 0 {
                match pad {
                    1 => out.truncate(out.len() - 1),
                    2 => out.truncate(out.len() - 2),
                    _ => return None,
                }
                break;
            }
        }
    }
    if out.is_empty() {
        None
    } else {
        Some(out)
    }
}

/// Standard base64 with `=` padding.
pub(crate) fn base64_encode(src: &[u8], out: &mut Vec<u8>) {
    for c in src.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        out.push(B64[(b[0] >> 2) as usize]);
        out.push(B64[(((b[0] & 0x03) << 4) | (b[1] >> 4)) as usize]);
        out.push(if c.len() > 1 {
            B64[(((b[1] & 0x0f) << 2) | (b[2] >> 6)) as usize]
        } else {
            b'='
        });
        out.push(if c.len() > 2 {
            B64[(b[2] & 0x3f) as usize]
        } else {
            b'='
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_like_memcached() {
        assert_eq!(base64_decode(b"Zm9v").as_deref(), Some(&b"foo"[..]));
        assert_eq!(base64_decode(b"Zm9vYg==").as_deref(), Some(&b"foob"[..]));
        assert_eq!(base64_decode(b"AAA=").as_deref(), Some(&[0u8, 0][..]));
        // Bytes outside the alphabet are skipped; decoding stops after the first padded group.
        assert_eq!(base64_decode(b"A-A_EC").as_deref(), Some(&[0u8, 1, 2][..]));
        assert_eq!(base64_decode(b"AA==AAAA").as_deref(), Some(&[0u8][..]));
        for bad in [&b""[..], b"Zm9", b"Zm9v=", b"A===", b"====", b"k_", b"-_"] {
            assert_eq!(base64_decode(bad), None, "{bad:?}");
        }
        let mut out = Vec::new();
        for (raw, enc) in [
            (&b"f"[..], &b"Zg=="[..]),
            (b"fo", b"Zm8="),
            (b"foo", b"Zm9v"),
            (b"\x00\x01\x02\xff", b"AAEC/w=="),
            (b"", b""),
        ] {
            out.clear();
            base64_encode(raw, &mut out);
            assert_eq!(out, enc);
            if !raw.is_empty() {
                assert_eq!(base64_decode(enc).as_deref(), Some(raw));
            }
        }
    }
}
