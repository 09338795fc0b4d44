//! memcached's tokenizer (its numbers are `command::numbers`).

/// Splits a command line on spaces only (memcached's `tokenize_command`): runs of spaces count as
/// one, leading and trailing spaces are ignored, and tabs or other bytes stay inside tokens.
#[inline]
pub(crate) fn split(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    line.split(|&b| b == b' ').filter(|t| !t.is_empty())
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
}
