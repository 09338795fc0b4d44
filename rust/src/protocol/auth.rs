//! memcached's ASCII authentication (`-Y authfile`): until a connection authenticates, the only
//! request it may send is a `set` whose data is `<user> <password>`; everything else is answered
//! `CLIENT_ERROR unauthenticated`. The key, flags and exptime of that `set` are ignored, as in
//! memcached's `try_read_command_asciiauth`.
//!
//! Deliberate differences (docs/compatibility.md): requests pipelined behind a failed one are
//! answered (memcached 1.6 leaves them unread until the client sends more), and a declared
//! token longer than [`MAX_TOKEN`] closes the connection instead of being buffered.

use bytes::BytesMut;

use super::session::Progress;
use super::tokens::split;
use crate::command::numbers::safe_strtoull;

pub(crate) const UNAUTHENTICATED: &[u8] = b"CLIENT_ERROR unauthenticated\r\n";
const BAD_TERMINATION: &[u8] = b"CLIENT_ERROR bad command line termination\r\n";
const BAD_TOKEN: &[u8] = b"CLIENT_ERROR bad authentication token format\r\n";
const FAILURE: &[u8] = b"CLIENT_ERROR authentication failure\r\n";

/// memcached closes an unauthenticated connection whose line reaches this without a newline.
const MAX_LINE: usize = 1024;
/// Longest `<user> <password>` accepted; memcached has no bound (it would buffer 4 GB).
const MAX_TOKEN: usize = 4096;

#[derive(Debug, Clone)]
struct User {
    name: Box<[u8]>,
    password: Box<[u8]>,
}

/// The users of an authfile.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    users: Vec<User>,
}

impl Credentials {
    pub fn new(users: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>) -> Credentials {
        Credentials {
            users: users
                .into_iter()
                .map(|(u, p)| User {
                    name: u.into_boxed_slice(),
                    password: p.into_boxed_slice(),
                })
                .collect(),
        }
    }

    /// Whether `user` and `password` match an entry. Every entry is compared, and each
    /// comparison looks at every byte, so the time taken doesn't tell which part was wrong.
    pub fn check(&self, user: &[u8], password: &[u8]) -> bool {
        let mut ok = false;
        for u in &self.users {
            ok |= same(&u.name, user) & same(&u.password, password);
        }
        ok
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

fn same(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() != b.len()) as u8;
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

/// An unauthenticated connection: waiting for the `set` line, or for its data.
#[derive(Debug, Default)]
pub(crate) struct AuthState {
    data_len: Option<usize>,
}

/// What one step did: its progress, and whether the connection is now authenticated. The flag
/// is counted by the caller (memcached's `auth_cmds` / `auth_errors`): `Some(ok)` after a token
/// was checked.
pub(crate) fn step(
    st: &mut AuthState,
    creds: &Credentials,
    buf: &mut BytesMut,
    out: &mut Vec<u8>,
) -> (Progress, Option<bool>) {
    let Some(len) = st.data_len else {
        let Some(nl) = memchr::memchr(b'\n', buf) else {
            let p = if buf.len() > MAX_LINE {
                Progress::Close
            } else {
                Progress::NeedMore
            };
            return (p, None);
        };
        let line = buf.split_to(nl + 1);
        let line = line.strip_suffix(b"\n").unwrap_or(&line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let toks: Vec<&[u8]> = split(line).take(6).collect();
        let size = (toks.len() >= 5 && toks[0] == b"set")
            .then(|| safe_strtoull(toks[4]))
            .flatten()
            .filter(|&n| n <= u64::from(u32::MAX));
        match size {
            None => out.extend_from_slice(UNAUTHENTICATED),
            Some(n) if n as usize > MAX_TOKEN => return (Progress::Close, None),
            Some(n) => st.data_len = Some(n as usize + 2),
        }
        return (Progress::Again, None);
    };
    if buf.len() < len {
        return (Progress::NeedMore, None);
    }
    st.data_len = None;
    let data = buf.split_to(len);
    let Some(token) = data.strip_suffix(b"\r\n") else {
        out.extend_from_slice(BAD_TERMINATION);
        return (Progress::Again, None);
    };
    let toks: Vec<&[u8]> = split(token).take(2).collect();
    if toks.len() < 2 {
        out.extend_from_slice(BAD_TOKEN);
        return (Progress::Again, None);
    }
    let ok = creds.check(toks[0], toks[1]);
    out.extend_from_slice(if ok { b"STORED\r\n" } else { FAILURE });
    (Progress::Again, Some(ok))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        Credentials::new([
            (b"alice".to_vec(), b"secret".to_vec()),
            (b"bob".to_vec(), b"hunter2".to_vec()),
        ])
    }

    /// Runs `input` through `step` until it needs more; returns the replies and the outcome.
    fn run(input: &[u8]) -> (Vec<u8>, Option<bool>, Progress) {
        let (mut st, c) = (AuthState::default(), creds());
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        loop {
            let (p, auth) = step(&mut st, &c, &mut buf, &mut out);
            if auth == Some(true) || p != Progress::Again || buf.is_empty() {
                return (out, auth, p);
            }
        }
    }

    #[test]
    fn only_a_set_carrying_a_valid_token_authenticates() {
        let (out, auth, _) = run(b"set auth 0 0 12\r\nalice secret\r\n");
        assert_eq!((out.as_slice(), auth), (&b"STORED\r\n"[..], Some(true)));
        let (out, auth, _) = run(b"set x 1 2 14\r\nbob hunter2 zz\r\n");
        assert_eq!((out.as_slice(), auth), (&b"STORED\r\n"[..], Some(true)));
        assert_eq!(run(b"set auth 0 0 10\r\nalice oops\r\n").0, FAILURE);
        assert_eq!(run(b"set auth 0 0 5\r\nalice\r\n").0, BAD_TOKEN);
        // The data block is the declared length plus two bytes, which must be "\r\n".
        assert_eq!(run(b"set auth 0 0 2\r\nabcd").0, BAD_TERMINATION);
        for other in [
            &b"get k\r\n"[..],
            b"version\r\n",
            b"set a b c\r\n",
            b"set a 0 0 x\r\n",
        ] {
            assert_eq!(run(other).0, UNAUTHENTICATED, "{:?}", other);
        }
    }

    #[test]
    fn hostile_input_closes_instead_of_buffering() {
        assert_eq!(run(&[b'x'; 1100]).2, Progress::Close);
        assert_eq!(run(&[b'x'; 1000]).2, Progress::NeedMore);
        assert_eq!(run(b"set a 0 0 4000000000\r\n").2, Progress::Close);
    }

    #[test]
    fn credentials_compare_whole_strings() {
        let c = creds();
        assert!(c.check(b"alice", b"secret"));
        assert!(!c.check(b"alice", b"secre"));
        assert!(!c.check(b"alice", b"secrets"));
        assert!(!c.check(b"bob", b"secret"));
        assert!(!Credentials::default().check(b"", b""));
    }
}
