//! SASL PLAIN for the binary protocol (memcached's `-S`), checked against the users of a
//! password file rather than through Cyrus SASL.
//!
//! The replies are memcached 1.6.18's with `mech_list: plain` (checked against it in
//! tests/test_sasl.py): `SASL_LIST_MECHS` answers "PLAIN", a good `SASL_AUTH` answers
//! "Authenticated", a bad one "Auth failure." (status 0x20). A `SASL_AUTH` with no message
//! answers "continue" (0x21) and the message then comes in `SASL_STEP`s, which may be retried
//! after a failure, as Cyrus allows; a `SASL_STEP` at any other time fails. A failed attempt
//! leaves the connection unauthenticated, even one that had authenticated before. Until it
//! authenticates, a connection may send only the SASL opcodes and `version`; anything else is
//! answered "Auth failure." and closed.

use super::auth::Credentials;

/// The mechanisms offered, as `SASL_LIST_MECHS` reports them.
pub(crate) const MECHANISMS: &[u8] = b"PLAIN";
/// memcached's `MAX_SASL_MECH_LEN`: a longer mechanism name is "Invalid arguments".
pub(crate) const MAX_MECH_LEN: usize = 32;
/// The longest PLAIN message read; a longer one is refused unread (memcached buffers any size).
pub(crate) const MAX_MESSAGE_LEN: usize = 4096;
/// The body of a successful `SASL_AUTH` reply.
pub(crate) const AUTHENTICATED: &[u8] = b"Authenticated";

/// One connection's progress through SASL.
#[derive(Debug, Default)]
pub(crate) struct SaslState {
    pub(crate) authenticated: bool,
    /// A `SASL_AUTH` without a message started PLAIN: the message comes in a `SASL_STEP`.
    awaiting_step: bool,
}

/// What an authentication request achieved: the reply's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Authenticated,
    /// memcached's `AUTH_CONTINUE`: send the message in a `SASL_STEP`.
    Continue,
    Failed,
}

impl SaslState {
    /// A `SASL_AUTH` (`step` false) or `SASL_STEP`. `message` is `None` when it was too long to
    /// read ([`MAX_MESSAGE_LEN`]): it fails as a wrong password would.
    pub(crate) fn attempt(
        &mut self,
        creds: &Credentials,
        step: bool,
        mechanism: &[u8],
        message: Option<&[u8]>,
    ) -> Outcome {
        self.authenticated = false;
        let outcome = if step {
            // The mechanism named in a step is not looked at: the exchange already chose it.
            match message {
                Some(m) if self.awaiting_step && plain(creds, MECHANISMS, m) => {
                    Outcome::Authenticated
                }
                _ => Outcome::Failed,
            }
        } else {
            self.awaiting_step = false;
            match message {
                _ if !mechanism.eq_ignore_ascii_case(MECHANISMS) => Outcome::Failed,
                Some([]) => {
                    self.awaiting_step = true;
                    Outcome::Continue
                }
                Some(m) if plain(creds, mechanism, m) => Outcome::Authenticated,
                _ => Outcome::Failed,
            }
        };
        if outcome == Outcome::Authenticated {
            self.authenticated = true;
            self.awaiting_step = false;
        }
        outcome
    }
}

/// Whether a PLAIN `SASL_AUTH` (RFC 4616: `[authzid] NUL authcid NUL passwd`) names a user of
/// `creds` with the right password. An authorization identity other than the user itself is
/// refused, as Cyrus refuses it without a proxy policy. The mechanism name is case-insensitive.
pub(crate) fn plain(creds: &Credentials, mechanism: &[u8], message: &[u8]) -> bool {
    if !mechanism.eq_ignore_ascii_case(MECHANISMS) {
        return false;
    }
    let mut parts = message.split(|&b| b == 0);
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    if user.is_empty() || (!authzid.is_empty() && authzid != user) {
        return false;
    }
    creds.check(user, password)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        Credentials::new([(b"alice".to_vec(), b"secret".to_vec())])
    }

    fn attempt(st: &mut SaslState, step: bool, mech: &[u8], msg: &[u8]) -> Outcome {
        st.attempt(&creds(), step, mech, Some(msg))
    }

    #[test]
    fn the_exchange_follows_cyrus() {
        use Outcome::*;
        let mut st = SaslState::default();
        assert_eq!(attempt(&mut st, true, b"PLAIN", b"\0alice\0secret"), Failed);
        assert_eq!(attempt(&mut st, false, b"PLAIN", b""), Continue);
        assert_eq!(attempt(&mut st, true, b"X", b"\0alice\0bad"), Failed);
        assert!(!st.authenticated);
        // A failed step may be retried; the step's mechanism is not looked at.
        assert_eq!(
            attempt(&mut st, true, b"X", b"\0alice\0secret"),
            Authenticated
        );
        assert!(st.authenticated);
        // The exchange is over: another step fails, and the login is gone.
        assert_eq!(attempt(&mut st, true, b"PLAIN", b"\0alice\0secret"), Failed);
        assert!(!st.authenticated);
        assert_eq!(attempt(&mut st, false, b"CRAM-MD5", b""), Failed);
        assert_eq!(st.attempt(&creds(), false, b"PLAIN", None), Failed);
        assert_eq!(
            attempt(&mut st, false, b"PLAIN", b"\0alice\0secret"),
            Authenticated
        );
    }

    #[test]
    fn plain_accepts_the_user_with_its_password_only() {
        let c = creds();
        assert!(plain(&c, b"PLAIN", b"\0alice\0secret"));
        assert!(plain(&c, b"plain", b"\0alice\0secret"));
        assert!(plain(&c, b"PLAIN", b"alice\0alice\0secret"));
        for (mech, msg) in [
            (&b"PLAIN"[..], &b"\0alice\0wrong"[..]),
            (b"PLAIN", b"bob\0alice\0secret"),
            (b"PLAIN", b"\0alice\0secret\0"),
            (b"PLAIN", b"\0\0secret"),
            (b"PLAIN", b"alice secret"),
            (b"PLAIN", b""),
            (b"CRAM-MD5", b"\0alice\0secret"),
        ] {
            assert!(!plain(&c, mech, msg), "{mech:?} {msg:?}");
        }
    }
}
