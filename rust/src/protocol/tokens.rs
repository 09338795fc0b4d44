//! memcached's tokenizer and number parsers.

/// Splits a command line on spaces only (memcached's `tokenize_command`): runs of spaces count as
/// one, leading and trailing spaces are ignored, and tabs or other bytes stay inside tokens.
#[inline]
pub(crate) fn split(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    line.split(|&b| b == b' ').filter(|t| !t.is_empty())
}

/// `safe_strtoull`: decimal digits, an optional leading `+`, no overflow.
pub(crate) fn parse_u64(t: &[u8]) -> Option<u64> {
    let t = t.strip_prefix(b"+").unwrap_or(t);
    if t.is_empty() || t.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in t {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((b - b'0') as u64)?;
    }
    Some(v)
}

/// `safe_strtol`: an optional sign, then decimal digits that fit an i64.
pub(crate) fn parse_i64(t: &[u8]) -> Option<i64> {
    let (neg, digits) = match t.first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let v = parse_u64(digits).filter(|_| !digits.starts_with(b"+"))?;
    if neg {
        if v > i64::MAX as u64 + 1 {
            None
        } else {
            Some((v as i64).wrapping_neg())
        }
    } else {
        i64::try_from(v).ok()
    }
}

/// memcached's flags parser: an unsigned number; values above 2^32-1 wrap (observed on 1.6.18).
pub(crate) fn parse_flags(t: &[u8]) -> Option<u32> {
    parse_u64(t).map(|v| v as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_splits_on_spaces_only() {
        let v: Vec<&[u8]> = split(b"  get   a\tb  c ").collect();
        assert_eq!(v, vec![&b"get"[..], b"a\tb", b"c"]);
        assert_eq!(split(b"").count(), 0);
        assert_eq!(split(b"   ").count(), 0);
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_u64(b"0"), Some(0));
        assert_eq!(parse_u64(b"+5"), Some(5));
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64(b"18446744073709551616"), None);
        assert_eq!(parse_u64(b"-1"), None);
        assert_eq!(parse_u64(b"1x"), None);
        assert_eq!(parse_u64(b""), None);
        assert_eq!(parse_u64(b"+"), None);
        assert_eq!(parse_i64(b"-1"), Some(-1));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64(b"9223372036854775808"), None);
        assert_eq!(parse_i64(b"--1"), None);
        assert_eq!(parse_i64(b"+-1"), None);
        assert_eq!(parse_flags(b"4294967296"), Some(0));
        assert_eq!(parse_flags(b"4294967295"), Some(u32::MAX));
    }
}
