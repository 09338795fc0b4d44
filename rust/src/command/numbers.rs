//! Numbers as memcached parses them (`util.c`'s `safe_strtoull`, `safe_strtol`,
//! `safe_strtoul`), for every protocol and command: one set of rules.
//!
//! C's `strto*` skip leading whitespace and take a sign; memcached then accepts the number only
//! if the digits end the token or are followed by whitespace. A token has no spaces (the
//! tokenizer splits on them), but it may hold tabs and other C whitespace.

/// C's `isspace` in the "C" locale.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// The shared core: leading whitespace, an optional sign, decimal digits, then the end or
/// whitespace (after which anything goes). Returns the sign and the magnitude; `None` without
/// digits, on trailing garbage, or when the magnitude overflows a u64 (`ERANGE`).
fn c_number(t: &[u8]) -> Option<(bool, u64)> {
    let mut i = t.iter().take_while(|&&b| is_c_space(b)).count();
    let neg = match t.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let digits = t[i..].iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in &t[i..i + digits] {
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    match t.get(i + digits) {
        None => Some((neg, v)),
        Some(&b) if is_c_space(b) => Some((neg, v)),
        Some(_) => None,
    }
}

/// `safe_strtoull`: C's `strtoull` (a leading `-` negates modulo 2^64), refused when a `-` was
/// given and the result looks negative as a signed number.
pub fn safe_strtoull(t: &[u8]) -> Option<u64> {
    let (neg, v) = c_number(t)?;
    let r = if neg { v.wrapping_neg() } else { v };
    if neg && (r as i64) < 0 {
        return None;
    }
    Some(r)
}

/// `safe_strtol` into an `int32_t`: a `long` that is then truncated to 32 bits, as memcached
/// 1.6.18 does (`4294967296` becomes 0). Exptimes and lengths are parsed so.
pub fn safe_strtol(t: &[u8]) -> Option<i32> {
    let (neg, v) = c_number(t)?;
    let l: i64 = if neg {
        if v > i64::MAX as u64 + 1 {
            return None;
        }
        (v as i64).wrapping_neg()
    } else {
        i64::try_from(v).ok()?
    };
    Some(l as i32)
}

/// `safe_strtoul` into a `uint32_t`: `safe_strtoull`'s rules, then truncated to 32 bits (client
/// flags above 2^32-1 wrap, as on memcached 1.6.18).
pub fn safe_strtoul(t: &[u8]) -> Option<u32> {
    safe_strtoull(t).map(|v| v as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strtoull() {
        assert_eq!(safe_strtoull(b"0"), Some(0));
        assert_eq!(safe_strtoull(b"+5"), Some(5));
        assert_eq!(safe_strtoull(b"\t5"), Some(5), "leading C whitespace");
        assert_eq!(safe_strtoull(b"5\t"), Some(5), "trailing C whitespace");
        assert_eq!(safe_strtoull(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(safe_strtoull(b"18446744073709551616"), None, "ERANGE");
        assert_eq!(safe_strtoull(b"-1"), None);
        assert_eq!(safe_strtoull(b"-0"), Some(0));
        assert_eq!(safe_strtoull(b"1x"), None);
        assert_eq!(safe_strtoull(b""), None);
        assert_eq!(safe_strtoull(b"+"), None);
        assert_eq!(safe_strtoull(b"--1"), None);
    }

    #[test]
    fn strtol_truncates_to_32_bits() {
        assert_eq!(safe_strtol(b"-1"), Some(-1));
        assert_eq!(safe_strtol(b"2147483647"), Some(i32::MAX));
        assert_eq!(safe_strtol(b"2147483648"), Some(i32::MIN));
        assert_eq!(safe_strtol(b"4294967296"), Some(0));
        assert_eq!(safe_strtol(b"-9223372036854775808"), Some(0));
        assert_eq!(safe_strtol(b"9223372036854775808"), None, "ERANGE");
        assert_eq!(safe_strtol(b"+-1"), None);
        assert_eq!(safe_strtol(b"1.5"), None);
    }

    #[test]
    fn strtoul_wraps_flags() {
        assert_eq!(safe_strtoul(b"4294967295"), Some(u32::MAX));
        assert_eq!(safe_strtoul(b"4294967296"), Some(0));
        assert_eq!(safe_strtoul(b"-1"), None);
    }

    #[test]
    fn numbers_parse_like_c_edge_cases() {
        assert_eq!(safe_strtol(b"30"), Some(30));
        assert_eq!(safe_strtol(b"-1"), Some(-1));
        assert_eq!(safe_strtol(b"+5"), Some(5));
        assert_eq!(safe_strtol(b"\t5"), Some(5));
        assert_eq!(safe_strtol(b"5\tjunk"), Some(5));
        assert_eq!(safe_strtol(b"\x0b-0"), Some(0));
        assert_eq!(safe_strtol(b"4294967296"), Some(0));
        assert_eq!(safe_strtol(b"2147483648"), Some(i32::MIN));
        assert_eq!(safe_strtol(b"4294967306"), Some(10));
        assert_eq!(safe_strtol(b"-9223372036854775808"), Some(0));
        assert_eq!(safe_strtol(b"9223372036854775808"), None);
        assert_eq!(safe_strtol(b"-9223372036854775809"), None);
        for bad in [
            &b""[..],
            b"x",
            b"5x",
            b"0x10",
            b"-",
            b"+",
            b" ",
            b"--1",
            b"1 2",
        ] {
            if bad == b"1 2" {
                // Whitespace ends the number; what follows is ignored (tokens never hold
                // spaces, but tabs can appear).
                assert_eq!(safe_strtol(bad), Some(1));
            } else {
                assert_eq!(safe_strtol(bad), None, "{bad:?}");
            }
        }
        assert_eq!(safe_strtoull(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(safe_strtoull(b"18446744073709551616"), None);
        assert_eq!(safe_strtoull(b"-0"), Some(0));
        assert_eq!(safe_strtoull(b"-1"), None);
        // strtoull negates modulo 2^64; memcached only refuses results that look negative.
        assert_eq!(
            safe_strtoull(b"-9223372036854775809"),
            Some(9_223_372_036_854_775_807)
        );
        assert_eq!(safe_strtoull(b"-9223372036854775808"), None);
        assert_eq!(safe_strtoul(b"4294967297"), Some(1));
        assert_eq!(safe_strtoul(b"18446744073709551615"), Some(u32::MAX));
        assert_eq!(safe_strtoul(b"-1"), None);
        assert_eq!(safe_strtoul(b"+7"), Some(7));
    }
}
