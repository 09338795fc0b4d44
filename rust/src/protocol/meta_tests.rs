//! The tests of `protocol::meta`.
use std::sync::Arc;

use super::*;
use crate::cache::ManualClock;
use crate::engine::EngineConfig;
use crate::protocol::Session;
use crate::testkit::{self, one_shard, T0};
use crate::tiered::Tiered;

struct Conn {
    session: Session,
    clock: Arc<ManualClock>,
}

impl Conn {
    fn new() -> Conn {
        Conn::with_item_size(crate::engine::DEFAULT_MAX_ITEM_SIZE)
    }

    fn with_item_size(max_item_size: usize) -> Conn {
        let engine = EngineConfig {
            max_item_size,
            ..Default::default()
        };
        let (session, _, clock) = testkit::session_with(one_shard(), engine);
        Conn { session, clock }
    }

    /// Sends `data` and returns the reply as a (lossy) string for readable assertions.
    fn send(&mut self, data: &str) -> String {
        let mut out = Vec::new();
        assert!(!self.session.feed(data.as_bytes(), &mut out), "closed");
        String::from_utf8_lossy(&out).into_owned()
    }

    fn cache(&self) -> &Tiered {
        self.session.engine().cache()
    }
}

/// Runs `command` directly, for the outcomes the session hides.
fn outcome(line: &[u8]) -> (Outcome, Vec<u8>) {
    let engine = testkit::engine();
    let toks: Vec<&[u8]> = super::super::tokens::split(line).collect();
    let mut out = Vec::new();
    let o = command(toks[0][1], &toks[1..], &engine, &mut out);
    engine.shared_cache().stop_background();
    (o, out)
}

// -- parsers --------------------------------------------------------------------------

#[test]
fn preparse_happy_path() {
    let mut key = Cow::Borrowed(&b"Zm9v"[..]);
    let toks: Vec<&[u8]> = vec![
        b"b", b"q", b"v", b"u", b"N30", b"T-1", b"R5", b"F7", b"C9", b"ME", b"J3", b"D4", b"I",
        b"Oxyz", b"k", b"s", b"t", b"c", b"f", b"h", b"l", b"P", b"L",
    ];
    let f = preparse(&mut key, &toks).unwrap();
    assert_eq!(&key[..], b"foo");
    assert_eq!(
        f,
        MetaFlags {
            base64: true,
            quiet: true,
            value: true,
            no_bump: true,
            locked: true,
            vivify: Some(30),
            ttl: Some(-1),
            recache: Some(5),
            client_flags: 7,
            cas: Some(9),
            mode: Some(b'E'),
            initial: 3,
            delta: Some(4),
            invalidate: true,
        }
    );
    let mut key = Cow::Borrowed(&b"k"[..]);
    let f = preparse(&mut key, &[]).unwrap();
    assert_eq!(f, MetaFlags::default());
    assert!(matches!(key, Cow::Borrowed(b"k")));
}

#[test]
fn preparse_errors() {
    let err = |toks: &[&[u8]]| {
        let mut key = Cow::Borrowed(&b"foo"[..]);
        preparse(&mut key, toks).unwrap_err()
    };
    assert_eq!(err(&[b"v", b"v"]), DUPLICATE_FLAG);
    assert_eq!(err(&[b"O1", b"Oxyz"]), DUPLICATE_FLAG);
    assert_eq!(err(&[b"\x7f"]), DUPLICATE_FLAG);
    assert_eq!(err(&[b"\xc3\xa9"]), DUPLICATE_FLAG);
    for t in [&b"!"[..], b"x", b"E1", b"S2", b"a", b"z", b"Z"] {
        assert_eq!(err(&[t]), INVALID_FLAG, "{t:?}");
    }
    // An invalid flag stops at once, even after a bad argument.
    assert_eq!(err(&[b"Tx", b"!"]), INVALID_FLAG);
    assert_eq!(err(&[b"b"]), BAD_KEY_ENCODING);
    assert_eq!(err(&[b"N"]), BAD_TOKEN);
    assert_eq!(err(&[b"T5x"]), BAD_TOKEN);
    assert_eq!(err(&[b"R"]), BAD_TOKEN);
    assert_eq!(err(&[b"C-1"]), BAD_TOKEN);
    assert_eq!(err(&[b"M"]), BAD_M_LENGTH);
    assert_eq!(err(&[b"MEE"]), BAD_M_LENGTH);
    assert_eq!(err(&[b"J"]), BAD_INITIAL);
    assert_eq!(err(&[b"Dx"]), BAD_DELTA);
    // A bad F has no message of its own; the last message set wins.
    assert_eq!(err(&[b"F"]), BAD_FORMAT);
    assert_eq!(err(&[b"F-1"]), BAD_FORMAT);
    assert_eq!(err(&[b"T", b"F"]), BAD_TOKEN);
    assert_eq!(err(&[b"F", b"T"]), BAD_TOKEN);
    assert_eq!(err(&[b"Jx", b"Dx"]), BAD_DELTA);
    assert_eq!(err(&[b"b", b"Jx"]), BAD_INITIAL);
}

#[test]
fn a_nul_byte_ends_the_line() {
    let args: Vec<&[u8]> = vec![b"k", b"v\x00x", b"s"];
    assert_eq!(&cut_at_nul(&args)[..], &[&b"k"[..], b"v"]);
    let args: Vec<&[u8]> = vec![b"k", b"\x00v", b"s"];
    assert_eq!(&cut_at_nul(&args)[..], &[&b"k"[..]]);
    let args: Vec<&[u8]> = vec![b"k", b"v"];
    assert!(matches!(cut_at_nul(&args), Cow::Borrowed(_)));
}

// -- commands ---------------------------------------------------------------------------

#[test]
fn mn_and_unknown() {
    let mut c = Conn::new();
    assert_eq!(c.send("mn\r\nmn x y\r\nmz k\r\n"), "MN\r\nMN\r\nERROR\r\n");
}

#[test]
fn mg_flags_in_request_order() {
    let mut c = Conn::new();
    assert_eq!(c.send("mg k v s\r\n"), "EN\r\n");
    assert_eq!(c.send("mg k s v k Oab q t\r\n"), "");
    assert_eq!(c.send("mg k s v k Oab t\r\n"), "EN kk Oab\r\n");
    c.send("ms k 2 F9 T100\r\nhi\r\n");
    c.clock.advance(10_500);
    assert_eq!(
        c.send("mg k s v f t k Oab c\r\n"),
        "VA 2 s2 f9 t90 kk Oab c1\r\nhi\r\n"
    );
    assert_eq!(c.send("mg k Oab k f q\r\n"), "HD Oab kk f9\r\n");
    assert_eq!(c.send("mg k O\r\n"), "HD O\r\n");
    assert_eq!(
        c.send("mg k O12345678901234567890123456789012\r\n"),
        "CLIENT_ERROR opaque token too long\r\n"
    );
    assert_eq!(
        c.send("mg nokey q O12345678901234567890123456789012\r\n"),
        "CLIENT_ERROR opaque token too long\r\n"
    );
}

#[test]
fn mg_hit_and_last_access() {
    let mut c = Conn::new();
    c.send("ms k 1\r\nx\r\n");
    c.clock.advance(4_000);
    assert_eq!(c.send("mg k h l u\r\n"), "HD h0 l4\r\n");
    assert_eq!(c.send("mg k h l\r\n"), "HD h0 l4\r\n");
    c.clock.advance(2_000);
    assert_eq!(c.send("mg k l h\r\n"), "HD l2 h1\r\n");
    assert_eq!(c.send("mg k l h\r\n"), "HD l0 h1\r\n");
    // A failed request skips the delayed bump, as memcached's does.
    c.send("ms j 1\r\nx\r\n");
    c.send("mg j h O12345678901234567890123456789012\r\n");
    assert_eq!(c.send("mg j h\r\n"), "HD h0\r\n");
}

#[test]
fn mg_ttl_updates_in_order() {
    let mut c = Conn::new();
    c.send("ms k 1\r\nx\r\n");
    assert_eq!(c.send("mg k t T300 \r\n"), "HD t-1\r\n");
    assert_eq!(c.send("mg k T30 t\r\n"), "HD t30\r\n");
    c.clock.advance(1);
    assert_eq!(c.send("mg k t\r\n"), "HD t30\r\n");
    c.clock.advance(999);
    assert_eq!(c.send("mg k t\r\n"), "HD t29\r\n");
    assert_eq!(c.send("mg k T0 t\r\n"), "HD t-1\r\n");
    // An absolute time.
    let at = T0 / 1000 + 1_000;
    assert_eq!(c.send(&format!("mg k T{at} t\r\n")), "HD t999\r\n");
    // An expired TTL prints memcached's wrapped number, then the item is gone.
    let reply = c.send("mg k T-1 t\r\n");
    let t: u64 = reply["HD t".len()..reply.len() - 2].parse().unwrap();
    assert!(t > u64::from(u32::MAX) - 1_000, "{reply}");
    assert_eq!(c.send("mg k\r\n"), "EN\r\n");
    let st = c.cache().stats().counters;
    assert_eq!((st.touch_hits, st.touch_misses), (5, 0));
}

#[test]
fn mg_vivify_and_win_tokens() {
    let mut c = Conn::new();
    assert_eq!(c.send("mg k N30 s t v\r\n"), "VA 0 s0 t30 W\r\n\r\n");
    assert_eq!(c.send("mg k N30 s t v\r\n"), "VA 0 s0 t30 Z\r\n\r\n");
    assert_eq!(c.send("mg k t N99 q\r\n"), "HD t30 Z\r\n");
    // The vivified reply shows even in quiet mode; t before N shows no deadline yet.
    assert_eq!(
        c.send("mg j t N10 t q\r\n"),
        "CLIENT_ERROR duplicate flag\r\n"
    );
    assert_eq!(c.send("mg j t N10 q\r\n"), "HD t-1 W\r\n");
    assert_eq!(c.send("mg j t\r\n"), "HD t10 Z\r\n");
    // A new value clears the token.
    c.send("ms k 1\r\nx\r\n");
    assert_eq!(c.send("mg k v\r\n"), "VA 1\r\nx\r\n");
    // b: a vivified binary key shows base64-encoded (memcached forgets; see module docs).
    assert_eq!(c.send("mg AAEC b N0 k\r\n"), "HD kAAEC b W\r\n");
    assert_eq!(c.send("mg AAEC b k\r\n"), "HD kAAEC b Z\r\n");
}

#[test]
fn mg_recache() {
    let mut c = Conn::new();
    c.send("ms k 1 T30\r\nx\r\n");
    assert_eq!(c.send("mg k R30\r\n"), "HD\r\n");
    c.clock.advance(500);
    assert_eq!(c.send("mg k R30\r\n"), "HD\r\n");
    assert_eq!(c.send("mg k R0\r\nmg k R-1\r\n"), "HD\r\nHD\r\n");
    c.clock.advance(500);
    assert_eq!(c.send("mg k R30\r\n"), "HD W\r\n");
    assert_eq!(c.send("mg k R30\r\n"), "HD Z\r\n");
    c.send("ms j 1\r\nx\r\n");
    assert_eq!(c.send("mg j R30\r\n"), "HD\r\n");
    // R sees a T that comes before it.
    assert_eq!(c.send("mg j R30 T10\r\n"), "HD\r\n");
    c.send("ms j 1\r\nx\r\n");
    assert_eq!(c.send("mg j T10 R30\r\n"), "HD W\r\n");
    // An absolute threshold.
    c.send("ms i 1 T30\r\nx\r\n");
    let at = T0 / 1000 + 60;
    assert_eq!(c.send(&format!("mg i R{at}\r\n")), "HD W\r\n");
}

#[test]
fn ms_modes_and_replies() {
    let mut c = Conn::new();
    assert_eq!(c.send("ms k 2 c k Ox\r\nhi\r\n"), "HD c1 kk Ox\r\n");
    assert_eq!(c.send("ms k 2 q\r\nho\r\nmn\r\n"), "MN\r\n");
    assert_eq!(c.send("ms k 1 ME q c\r\nx\r\n"), "NS c0\r\n");
    assert_eq!(c.send("ms j 1 MR q k\r\nx\r\n"), "NS kj\r\n");
    assert_eq!(
        c.send("ms j 1 MA\r\nx\r\nms j 1 MP\r\nx\r\n"),
        "NS\r\nNS\r\n"
    );
    assert_eq!(
        c.send("ms k 1 MA\r\na\r\nms k 1 MP\r\nb\r\n"),
        "HD\r\nHD\r\n"
    );
    assert_eq!(c.send("ms k 1 MR F3\r\nr\r\n"), "HD\r\n");
    assert_eq!(c.send("mg k v f\r\n"), "VA 1 f3\r\nr\r\n");
    assert_eq!(c.send("ms k 1 MS T-1\r\ns\r\nmg k\r\n"), "HD\r\nEN\r\n");
    assert_eq!(
        c.send("ms k 2 F4294967297\r\nhi\r\nmg k f\r\n"),
        "HD\r\nHD f1\r\n"
    );
    // Append keeps the stored flags.
    assert_eq!(
        c.send("ms k 1 MA F7\r\n!\r\nmg k f v\r\n"),
        "HD\r\nVA 3 f1\r\nhi!\r\n"
    );
    // N does not vivify an append in 1.6.18.
    assert_eq!(c.send("ms n 1 MA N0\r\nx\r\n"), "NS\r\n");
    assert_eq!(
        c.send("ms k 2\r\nhiX\r\n"),
        "CLIENT_ERROR bad data chunk\r\nERROR\r\n"
    );
    assert_eq!(
        c.send("ms k 2 q\r\nhiXY\r\n"),
        "CLIENT_ERROR bad data chunk\r\nERROR\r\n"
    );
}

#[test]
fn ms_cas() {
    let mut c = Conn::new();
    assert_eq!(c.send("ms k 1 C5 q\r\nx\r\n"), "NF\r\n");
    assert_eq!(c.send("ms k 1 MR C5\r\nx\r\n"), "NF\r\n");
    assert_eq!(c.send("ms k 1 ME C5 c\r\nx\r\n"), "HD c1\r\n");
    assert_eq!(c.send("ms k 1 C2 c\r\ny\r\n"), "EX c0\r\n");
    assert_eq!(c.send("ms k 1 C0\r\ny\r\n"), "EX\r\n");
    assert_eq!(c.send("ms k 1 C1 c\r\ny\r\n"), "HD c2\r\n");
    assert_eq!(c.send("ms k 1 MA C1\r\nz\r\n"), "EX\r\n");
    assert_eq!(c.send("ms k 1 MA C2 c\r\nz\r\n"), "HD c3\r\n");
    assert_eq!(c.send("ms k 1 MP C0 c\r\na\r\n"), "HD c4\r\n");
    assert_eq!(c.send("mg k v\r\n"), "VA 3\r\nayz\r\n");
    // I with an older CAS stores the value as stale; the next reader wins.
    assert_eq!(c.send("ms k 1 I C3 c\r\ns\r\n"), "HD c5\r\n");
    assert_eq!(c.send("mg k v\r\n"), "VA 1 X W\r\ns\r\n");
    assert_eq!(c.send("ms k 1 I C9\r\nn\r\n"), "EX\r\n");
    // A matching CAS stores a fresh value.
    assert_eq!(
        c.send("ms k 1 I C5\r\nf\r\nmg k v\r\n"),
        "HD\r\nVA 1\r\nf\r\n"
    );
}

#[test]
fn ms_keys() {
    let mut c = Conn::new();
    assert_eq!(c.send("ms AAEC 2 b k\r\nhi\r\n"), "HD kAAEC b\r\n");
    assert_eq!(c.send("mg AAEC b k v\r\n"), "VA 2 kAAEC b\r\nhi\r\n");
    assert_eq!(c.send("mg A-A_EC b s\r\n"), "HD s2\r\n");
    c.send("ms foo 1\r\nx\r\n");
    assert_eq!(c.send("mg Zm9v b k\r\n"), "HD kfoo\r\n");
    let k250 = "k".repeat(250);
    assert_eq!(c.send(&format!("ms {k250} 1\r\nx\r\n")), "HD\r\n");
    assert_eq!(
        c.send(&format!("ms {k250}k 1\r\nx\r\n")),
        "CLIENT_ERROR bad command line format\r\nERROR\r\n"
    );
}

#[test]
fn ms_outcomes() {
    let (o, out) = outcome(b"ms k 5 !");
    assert!(matches!(o, Outcome::Swallow(7)));
    assert_eq!(out, INVALID_FLAG);
    let (o, out) = outcome(b"ms k 5 MX");
    assert!(matches!(o, Outcome::Swallow(7)));
    assert_eq!(out, BAD_MS_MODE);
    let (o, out) = outcome(b"ms k 5 O12345678901234567890123456789012");
    assert!(matches!(o, Outcome::Swallow(7)));
    assert_eq!(out, OPAQUE_TOO_LONG);
    for line in [&b"ms k"[..], b"ms k x", b"ms k -1", b"ms k 2147483646"] {
        let (o, out) = outcome(line);
        assert!(matches!(o, Outcome::Done));
        assert_eq!(out, BAD_FORMAT);
    }
    let (o, out) = outcome(b"ms k 4294967298 T5");
    let Outcome::Read { len: 2, pending } = o else {
        panic!()
    };
    assert!(out.is_empty());
    assert_eq!(pending.ttl, Ttl::After(5_000));
    // 16 flags fit (with the command, the key, the length and the terminal token: 20).
    let (o, out) = outcome(b"ms k 1 s t f h l k u P L R1 J1 D1 I O1 v F1");
    assert!(matches!(o, Outcome::Read { len: 1, .. }));
    assert!(out.is_empty());
    let (o, out) = outcome(b"ms k 1 s t f h l k u P L R1 J1 D1 I O1 v F1 q");
    assert!(matches!(o, Outcome::Done));
    assert_eq!(out, TOO_MANY_FLAGS);
}

#[test]
fn ms_too_large() {
    let mut c = Conn::with_item_size(1024);
    let fits = "a".repeat(1024 - 60);
    assert_eq!(
        c.send(&format!("ms k {}\r\n{fits}\r\n", fits.len())),
        "HD\r\n"
    );
    let over = "a".repeat(1024 - 59);
    for mode in ["", " ME", " MR q", " MA"] {
        c.send("ms k 1\r\nx\r\n");
        assert_eq!(
            c.send(&format!("ms k {}{mode}\r\n{over}\r\nmg k\r\n", over.len())),
            "SERVER_ERROR object too large for cache\r\nEN\r\n",
            "{mode}"
        );
    }
    // Nonzero flags cost 4 bytes, as in memcached.
    let f = "a".repeat(1024 - 63);
    assert_eq!(
        c.send(&format!("ms k {} F1\r\n{f}\r\n", f.len())),
        "SERVER_ERROR object too large for cache\r\n"
    );
    // An append whose result would be too large is NS and keeps the old value.
    c.send("ms k 10\r\n0123456789\r\n");
    let tail = "a".repeat(1024 - 60 - 9);
    assert_eq!(
        c.send(&format!("ms k {} MA\r\n{tail}\r\nmg k s\r\n", tail.len())),
        "NS\r\nHD s10\r\n"
    );
    let st = c
        .session
        .engine()
        .counters
        .store_too_large
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(st, 5);
}

#[test]
fn md_replies() {
    let mut c = Conn::new();
    assert_eq!(c.send("md k\r\nmd k q k O1\r\n"), "NF\r\nNF kk O1\r\n");
    c.send("ms k 1\r\nx\r\n");
    assert_eq!(c.send("md k C99\r\nmd k C0 q\r\n"), "EX\r\nEX\r\n");
    assert_eq!(c.send("md k T30 k\r\nmg k\r\n"), "HD kk\r\nEN\r\n");
    c.send("ms k 1\r\nx\r\n");
    assert_eq!(c.send("md k q\r\nmn\r\n"), "MN\r\n");
    assert_eq!(
        c.send("md k !\r\nmd k k k\r\nmd k b\r\nmd k T\r\n"),
        "CLIENT_ERROR invalid or duplicate flag\r\n".repeat(4)
    );
    assert_eq!(
        c.send("md k O12345678901234567890123456789012\r\n"),
        "CLIENT_ERROR opaque token too long\r\n"
    );
    assert_eq!(c.send("md ZDk= b k\r\n"), "NF kZDk= b\r\n");
}

#[test]
fn md_invalidate() {
    let mut c = Conn::new();
    c.send("ms k 1 c\r\nx\r\n");
    assert_eq!(c.send("md k I T30 q\r\nmn\r\n"), "MN\r\n");
    assert_eq!(c.send("mg k t c v\r\n"), "VA 1 t30 c2 X W\r\nx\r\n");
    assert_eq!(c.send("mg k\r\n"), "HD Z X\r\n");
    assert_eq!(c.send("md k I\r\nmg k\r\n"), "HD\r\nHD X W\r\n");
    assert_eq!(c.send("md k I T-1\r\nmg k\r\n"), "HD\r\nEN\r\n");
}

#[test]
fn ma_replies() {
    let mut c = Conn::new();
    assert_eq!(c.send("ma n\r\nma n q k O1\r\n"), "NF\r\nNF kn O1\r\n");
    assert_eq!(c.send("ma n N0 J10 v\r\n"), "VA 2\r\n10\r\n");
    assert_eq!(c.send("ma n v\r\n"), "VA 2\r\n11\r\n");
    assert_eq!(c.send("ma n v q\r\nmn\r\n"), "MN\r\n");
    // The vivified reply shows even in quiet mode.
    assert_eq!(c.send("ma m N0 v q\r\n"), "VA 1\r\n0\r\n");
    assert_eq!(c.send("ma n MD D5 v\r\n"), "VA 1\r\n7\r\n");
    assert_eq!(c.send("mg n v\r\n"), "VA 2\r\n7 \r\n");
    assert_eq!(
        c.send("ma n M- D100 v\r\nma n M+ D3 v\r\n"),
        "VA 1\r\n0\r\nVA 1\r\n3\r\n"
    );
    assert_eq!(c.send("ma n MI v c k\r\n"), "VA 1 c8 kn\r\n4\r\n");
    assert_eq!(c.send("ma n C1\r\nma n C8 q\r\nmn\r\n"), "EX\r\nMN\r\n");
    assert_eq!(
        c.send("ma n MX\r\nma n M\r\nma n Dx\r\n"),
        "CLIENT_ERROR invalid mode for ma M token\r\n\
         CLIENT_ERROR invalid or duplicate flag\r\n\
         CLIENT_ERROR invalid or duplicate flag\r\n"
    );
    c.send("ms s 2\r\nab\r\nms e 0\r\n\r\n");
    assert_eq!(
        c.send("ma s q\r\nma e C1\r\n"),
        "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n".repeat(2)
    );
    assert_eq!(
        c.send("ma u N0 J18446744073709551615 v\r\nma u v\r\n"),
        "VA 20\r\n18446744073709551615\r\nVA 1\r\n0\r\n"
    );
    assert_eq!(c.send("ma AAEC b N0 k\r\n"), "HD kAAEC b\r\n");
    // The error comes after the change, as in memcached.
    assert_eq!(
        c.send("ma w N0 O12345678901234567890123456789012\r\nmg w v\r\n"),
        "CLIENT_ERROR opaque token too long\r\nVA 1\r\n0\r\n"
    );
}

#[test]
fn ma_ttls() {
    let mut c = Conn::new();
    assert_eq!(
        c.send("ma n t N30 t\r\n"),
        "CLIENT_ERROR invalid or duplicate flag\r\n"
    );
    assert_eq!(c.send("ma n t N30 v\r\n"), "VA 1 t-1\r\n0\r\n");
    assert_eq!(c.send("ma n t T60\r\n"), "HD t30\r\n");
    assert_eq!(c.send("mg n t\r\n"), "HD t60\r\n");
    // T applies even when the number grows (memcached loses it then; see module docs).
    c.send("ms g 1\r\n9\r\n");
    assert_eq!(c.send("ma g T-1\r\nmg g\r\n"), "HD\r\nEN\r\n");
}

#[test]
fn me_output() {
    let mut c = Conn::new();
    assert_eq!(c.send("me k\r\n"), "EN\r\n");
    assert_eq!(c.send("me\r\n"), "CLIENT_ERROR bad command line format\r\n");
    c.send("ms k 1 F1 T100\r\nx\r\n");
    c.clock.advance(3_000);
    assert_eq!(
        c.send("me k\r\n"),
        "ME k exp=-97 la=3 cas=1 fetch=no cls=1 size=65\r\n"
    );
    c.send("mg k\r\n");
    assert_eq!(
        c.send("me k x\r\n"),
        "ME k exp=-97 la=0 cas=1 fetch=yes cls=1 size=65\r\n"
    );
    c.send(&format!("ms e {}\r\n{}\r\n", 100, "a".repeat(100)));
    assert_eq!(
        c.send("me e\r\n"),
        "ME e exp=-1 la=0 cas=2 fetch=no cls=4 size=160\r\n"
    );
    c.send("ms AAEC 1 b\r\nx\r\n");
    assert_eq!(
        c.send("me AAEC b\r\n"),
        "ME AAEC exp=-1 la=0 cas=3 fetch=no cls=1 size=63\r\n"
    );
    assert_eq!(c.send("me AAEC\r\n"), "EN\r\n");
    assert_eq!(
        c.send("me AAE b\r\n"),
        "CLIENT_ERROR bad command line format\r\n"
    );
}

#[test]
fn errors_and_limits() {
    let mut c = Conn::new();
    assert_eq!(c.send("mg\r\nms\r\nmd\r\nma\r\n"), "ERROR\r\n".repeat(4));
    let k251 = "k".repeat(251);
    for cmd in ["mg", "md", "ma", "me"] {
        assert_eq!(
            c.send(&format!("{cmd} {k251}\r\n")),
            "CLIENT_ERROR bad command line format\r\n"
        );
    }
    let flags17 = "s t f h k O1 q u v P L R9 F1 C1 MS J1 D1";
    c.send("ms k 1\r\nx\r\n");
    assert_eq!(
        c.send(&format!("mg k {flags17}\r\n")),
        "VA 1 s1 t-1 f0 h0 kk O1\r\nx\r\n"
    );
    assert_eq!(
        c.send(&format!("mg k {flags17} I\r\n")),
        "CLIENT_ERROR options flags are too long\r\n"
    );
    assert_eq!(
        c.send(&format!("ma k {flags17} I\r\n")),
        "CLIENT_ERROR options flags too long\r\n"
    );
    assert_eq!(c.send("mg k v\x00 s\r\n"), "VA 1\r\nx\r\n");
    assert_eq!(c.send("mg \x00k\r\n"), "ERROR\r\n");
}
