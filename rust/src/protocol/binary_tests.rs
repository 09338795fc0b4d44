//! The tests of `protocol::binary`.
use std::sync::Arc;

use super::*;
use crate::engine::EngineConfig;
use crate::protocol::Session;
use crate::testkit::{self, one_shard};

fn engine_with(cfg: EngineConfig) -> (Arc<Engine>, Arc<crate::cache::ManualClock>) {
    testkit::engine_with(one_shard(), cfg)
}

fn engine() -> Arc<Engine> {
    engine_with(EngineConfig::default()).0
}

/// A request packet; the lengths in the header come from the parts.
fn req(opcode: u8, key: &[u8], extras: &[u8], value: &[u8]) -> Vec<u8> {
    req_full(opcode, key, extras, value, 0, 0)
}

fn req_full(opcode: u8, key: &[u8], extras: &[u8], value: &[u8], cas: u64, opaque: u32) -> Vec<u8> {
    let body = extras.len() + key.len() + value.len();
    raw(
        opcode,
        key.len() as u16,
        extras.len() as u8,
        body as u32,
        cas,
        opaque,
    )
    .into_iter()
    .chain(extras.iter().copied())
    .chain(key.iter().copied())
    .chain(value.iter().copied())
    .collect()
}

/// A bare header with arbitrary lengths.
fn raw(opcode: u8, keylen: u16, extlen: u8, bodylen: u32, cas: u64, opaque: u32) -> Vec<u8> {
    let mut b = vec![MAGIC_REQUEST, opcode];
    b.extend_from_slice(&keylen.to_be_bytes());
    b.push(extlen);
    b.extend_from_slice(&[0, 0, 0]);
    b.extend_from_slice(&bodylen.to_be_bytes());
    b.extend_from_slice(&opaque.to_be_bytes());
    b.extend_from_slice(&cas.to_be_bytes());
    b
}

fn set_extras(flags: u32, exptime: u32) -> Vec<u8> {
    [flags.to_be_bytes(), exptime.to_be_bytes()].concat()
}

fn arith_extras(delta: u64, initial: u64, exptime: u32) -> Vec<u8> {
    [
        &delta.to_be_bytes()[..],
        &initial.to_be_bytes(),
        &exptime.to_be_bytes(),
    ]
    .concat()
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Resp {
    opcode: u8,
    status: u16,
    extras: Vec<u8>,
    key: Vec<u8>,
    value: Vec<u8>,
    opaque: u32,
    cas: u64,
}

impl Resp {
    fn ok(&self) -> bool {
        self.status == 0
    }
}

fn parse_all(mut b: &[u8]) -> Vec<Resp> {
    let mut v = Vec::new();
    while !b.is_empty() {
        assert!(b.len() >= HEADER_LEN, "truncated response header: {b:?}");
        assert_eq!(b[0], MAGIC_RESPONSE);
        assert_eq!(b[5], 0, "data type");
        let kl = u16::from_be_bytes([b[2], b[3]]) as usize;
        let el = b[4] as usize;
        let bl = u32::from_be_bytes(b[8..12].try_into().unwrap()) as usize;
        let body = &b[HEADER_LEN..HEADER_LEN + bl];
        v.push(Resp {
            opcode: b[1],
            status: u16::from_be_bytes([b[6], b[7]]),
            extras: body[..el].to_vec(),
            key: body[el..el + kl].to_vec(),
            value: body[el + kl..].to_vec(),
            opaque: u32::from_be_bytes(b[12..16].try_into().unwrap()),
            cas: u64::from_be_bytes(b[16..24].try_into().unwrap()),
        });
        b = &b[HEADER_LEN + bl..];
    }
    v
}

/// Feeds `data` to a session and parses what comes back.
fn feed(s: &mut Session, data: &[u8]) -> (Vec<Resp>, bool) {
    let mut out = Vec::new();
    let close = s.feed(data, &mut out);
    s.engine().shared_cache().validate().unwrap();
    (parse_all(&out), close)
}

fn one(s: &mut Session, data: &[u8]) -> Resp {
    let (mut r, close) = feed(s, data);
    assert!(!close);
    assert_eq!(r.len(), 1, "{r:?}");
    r.pop().unwrap()
}

fn err(s: &mut Session, data: &[u8], status: u16) {
    let r = one(s, data);
    assert_eq!(r.status, status, "{r:?}");
    assert_eq!(r.value, message(status));
    assert_eq!((r.cas, r.extras.len(), r.key.len()), (0, 0, 0));
}

/// A malformed request: status 0x04 with its message, then the connection closes.
fn invalid(data: &[u8]) {
    let mut s = Session::new(engine());
    let (r, close) = feed(&mut s, &[data, &req(op::NOOP, b"", b"", b"")].concat());
    assert!(close, "not closed: {r:?}");
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].status, status::EINVAL);
    assert_eq!(r[0].value, b"Invalid arguments");
}

fn set(s: &mut Session, key: &[u8], value: &[u8], flags: u32) -> u64 {
    let r = one(s, &req(op::SET, key, &set_extras(flags, 0), value));
    assert!(r.ok(), "{r:?}");
    r.cas
}

fn get_value(s: &mut Session, key: &[u8]) -> Option<Vec<u8>> {
    let r = one(s, &req(op::GET, key, b"", b""));
    r.ok().then_some(r.value)
}

#[test]
fn header_parser() {
    let b = req_full(
        op::SET,
        b"key",
        &set_extras(7, 9),
        b"value",
        0x0102030405060708,
        0xdeadbeef,
    );
    let h = Header::parse(&b).unwrap();
    assert_eq!(
        h,
        Header {
            magic: MAGIC_REQUEST,
            opcode: op::SET,
            keylen: 3,
            extlen: 8,
            bodylen: 16,
            opaque: 0xdeadbeefu32.to_be_bytes(),
            cas: 0x0102030405060708,
        }
    );
    assert_eq!(h.prefix_len(), 24 + 8 + 3);
    assert_eq!(h.value_len(), 5);
    for n in 0..HEADER_LEN {
        assert_eq!(Header::parse(&b[..n]), None);
    }
    // The data type and vbucket are ignored.
    let mut odd = raw(op::NOOP, 0, 0, 0, 0, 0);
    odd[5] = 1;
    odd[6] = 0xff;
    let mut s = Session::new(engine());
    assert!(one(&mut s, &odd).ok());
}

#[test]
fn opcode_table() {
    assert_eq!(
        kind(op::GETKQ),
        Kind::Get {
            quiet: true,
            with_key: true
        }
    );
    assert_eq!(
        kind(op::GATQ),
        Kind::Gat {
            quiet: true,
            with_key: false
        }
    );
    assert_eq!(kind(op::VERBOSITY), Kind::Unknown);
    assert_eq!(kind(0xff), Kind::Unknown);
    assert_eq!(kind(op::SASL_STEP), Kind::SaslAuth);
    assert_eq!(message(status::ENOMEM), b"Out of memory");
}

#[test]
fn set_get_getk_and_misses() {
    let mut s = Session::new(engine());
    let r = one(
        &mut s,
        &req_full(op::SET, b"k", &set_extras(5, 0), b"v1", 0, 7),
    );
    assert_eq!((r.opcode, r.status, r.opaque, r.cas), (op::SET, 0, 7, 1));
    assert!(r.extras.is_empty() && r.key.is_empty() && r.value.is_empty());
    let r = one(&mut s, &req_full(op::GET, b"k", b"", b"", 0, 8));
    assert_eq!(
        (r.extras, r.key, r.value, r.cas, r.opaque),
        (5u32.to_be_bytes().to_vec(), vec![], b"v1".to_vec(), 1, 8)
    );
    let r = one(&mut s, &req(op::GETK, b"k", b"", b""));
    assert_eq!(
        (r.opcode, r.key, r.value),
        (op::GETK, b"k".to_vec(), b"v1".to_vec())
    );
    err(&mut s, &req(op::GET, b"zz", b"", b""), status::KEY_ENOENT);
    // getk's miss has the key and no message.
    let r = one(&mut s, &req(op::GETK, b"zz", b"", b""));
    assert_eq!(
        (r.status, r.key, r.value, r.cas),
        (1, b"zz".to_vec(), vec![], 0)
    );
}

#[test]
fn pipelined_quiet_gets_then_noop() {
    let mut s = Session::new(engine());
    set(&mut s, b"a", b"A", 1);
    set(&mut s, b"b", b"B", 2);
    let mut data = Vec::new();
    for (i, k) in [&b"a"[..], b"x", b"b", b"y"].iter().enumerate() {
        data.extend(req_full(op::GETQ, k, b"", b"", 0, i as u32));
        data.extend(req_full(op::GETKQ, k, b"", b"", 0, 10 + i as u32));
    }
    data.extend(req_full(op::NOOP, b"", b"", b"", 0, 99));
    let (r, close) = feed(&mut s, &data);
    assert!(!close);
    let got: Vec<(u8, u32, &[u8], &[u8])> = r
        .iter()
        .map(|r| (r.opcode, r.opaque, &r.key[..], &r.value[..]))
        .collect();
    assert_eq!(
        got,
        vec![
            (op::GETQ, 0, &b""[..], &b"A"[..]),
            (op::GETKQ, 10, b"a", b"A"),
            (op::GETQ, 2, b"", b"B"),
            (op::GETKQ, 12, b"b", b"B"),
            (op::NOOP, 99, b"", b""),
        ]
    );
}

#[test]
fn packets_split_across_feeds() {
    let e = engine();
    let mut data = req(op::SET, b"key", &set_extras(3, 0), b"hello world");
    data.extend(req(op::GETK, b"key", b"", b""));
    data.extend(req(op::INCREMENT, b"n", &arith_extras(1, 5, 0), b""));
    data.extend(req(op::NOOP, b"", b"", b""));
    // Byte at a time, and at every two-way split: the same replies as in one feed.
    let mut whole = Session::new(e.clone());
    let mut expect = Vec::new();
    assert!(!whole.feed(&data, &mut expect));
    for cut in 0..=data.len() {
        let e = engine();
        let mut s = Session::new(e);
        let mut out = Vec::new();
        assert!(!s.feed(&data[..cut], &mut out));
        assert!(!s.feed(&data[cut..], &mut out));
        let norm = |v: &[u8]| {
            parse_all(v)
                .into_iter()
                .map(|r| (r.opcode, r.status, r.value))
                .collect::<Vec<_>>()
        };
        assert_eq!(norm(&out), norm(&expect), "cut at {cut}");
    }
    let mut s = Session::new(engine());
    let mut out = Vec::new();
    for b in &data {
        assert!(!s.feed(std::slice::from_ref(b), &mut out));
    }
    assert_eq!(parse_all(&out).len(), 4);
    assert_eq!(s.buffered(), 0);
}

#[test]
fn step_progress() {
    let e = engine();
    let mut st = BinaryState::default();
    let mut out = Vec::new();
    let data = [req(op::NOOP, b"", b"", b""), req(op::GET, b"k", b"", b"")].concat();
    let mut buf = BytesMut::from(&data[..10]);
    assert_eq!(step(&mut st, &e, &mut buf, &mut out), Progress::NeedMore);
    assert!(out.is_empty());
    buf.extend_from_slice(&data[10..30]);
    assert_eq!(step(&mut st, &e, &mut buf, &mut out), Progress::Again);
    assert_eq!(buf.len(), 6, "exactly one packet consumed");
    assert_eq!(step(&mut st, &e, &mut buf, &mut out), Progress::NeedMore);
    buf.extend_from_slice(&data[30..]);
    assert_eq!(step(&mut st, &e, &mut buf, &mut out), Progress::Again);
    assert!(buf.is_empty());
    assert_eq!(parse_all(&out).len(), 2);
    let mut buf = BytesMut::from(&req(op::QUIT, b"", b"", b"")[..]);
    assert_eq!(step(&mut st, &e, &mut buf, &mut out), Progress::Close);
}

#[test]
fn add_replace_and_cas() {
    let mut s = Session::new(engine());
    let c = set(&mut s, b"k", b"v", 0);
    err(
        &mut s,
        &req(op::ADD, b"k", &set_extras(0, 0), b"x"),
        status::KEY_EEXISTS,
    );
    err(
        &mut s,
        &req(op::REPLACE, b"nope", &set_extras(0, 0), b"x"),
        status::KEY_ENOENT,
    );
    assert!(one(&mut s, &req(op::ADD, b"new", &set_extras(0, 0), b"x")).ok());
    // A CAS unique makes set, add and replace compare-and-swaps.
    let cas = |op, key: &[u8], cas| req_full(op, key, &set_extras(0, 0), b"y", cas, 0);
    err(&mut s, &cas(op::SET, b"k", c + 100), status::KEY_EEXISTS);
    err(&mut s, &cas(op::SET, b"missing", 5), status::KEY_ENOENT);
    err(&mut s, &cas(op::ADD, b"missing", 5), status::KEY_ENOENT);
    err(
        &mut s,
        &cas(op::REPLACE, b"k", c + 100),
        status::KEY_EEXISTS,
    );
    let r = one(&mut s, &cas(op::REPLACE, b"k", c));
    assert!(r.ok() && r.cas > c);
    assert_eq!(get_value(&mut s, b"k").unwrap(), b"y");
}

#[test]
fn quiet_stores_hide_success_but_not_errors() {
    let mut s = Session::new(engine());
    set(&mut s, b"k", b"v", 0);
    let e = set_extras(0, 0);
    let data = [
        req(op::SETQ, b"q", &e, b"x"),
        req(op::ADDQ, b"k", &e, b"x"),
        req(op::REPLACEQ, b"nope", &e, b"x"),
        req(op::APPENDQ, b"q", b"", b"y"),
        req(op::PREPENDQ, b"nope", b"", b"y"),
        req(op::DELETEQ, b"nope", b"", b""),
        req(op::DELETEQ, b"k", b"", b""),
        req(op::INCREMENTQ, b"n", &arith_extras(1, 0, 0), b""),
        req(op::DECREMENTQ, b"q", &arith_extras(1, 0, 0), b""),
        req(op::FLUSHQ, b"", b"", b""),
        req(op::NOOP, b"", b"", b""),
    ]
    .concat();
    let (r, _) = feed(&mut s, &data);
    let got: Vec<(u8, u16)> = r.iter().map(|r| (r.opcode, r.status)).collect();
    assert_eq!(
        got,
        vec![
            (op::ADDQ, status::KEY_EEXISTS),
            (op::REPLACEQ, status::KEY_ENOENT),
            (op::PREPENDQ, status::NOT_STORED),
            (op::DELETEQ, status::KEY_ENOENT),
            (op::DECREMENTQ, status::DELTA_BADVAL),
            (op::NOOP, 0),
        ]
    );
    assert_eq!(get_value(&mut s, b"q"), None, "flushed");
}

#[test]
fn append_prepend() {
    let mut s = Session::new(engine());
    set(&mut s, b"s", b"abc", 3);
    let c1 = one(&mut s, &req(op::APPEND, b"s", b"", b"X")).cas;
    let r = one(&mut s, &req(op::PREPEND, b"s", b"", b"Y"));
    assert!(r.ok() && r.cas > c1);
    let r = one(&mut s, &req(op::GET, b"s", b"", b""));
    assert_eq!(
        (r.value, r.extras),
        (b"YabcX".to_vec(), 3u32.to_be_bytes().to_vec())
    );
    err(
        &mut s,
        &req(op::APPEND, b"zz", b"", b"X"),
        status::NOT_STORED,
    );
    err(
        &mut s,
        &req_full(op::APPEND, b"s", b"", b"Q", r.cas + 1, 0),
        status::KEY_EEXISTS,
    );
    assert!(one(&mut s, &req_full(op::APPEND, b"s", b"", b"Q", r.cas, 0)).ok());
    assert_eq!(get_value(&mut s, b"s").unwrap(), b"YabcXQ");
    // An empty value is allowed.
    assert!(one(&mut s, &req(op::APPEND, b"s", b"", b"")).ok());
}

#[test]
fn append_past_the_item_limit_is_not_stored() {
    let mut s = Session::new(engine());
    let half = vec![b'y'; 600 * 1024];
    set(&mut s, b"k", &half, 0);
    err(
        &mut s,
        &req(op::APPEND, b"k", b"", &half),
        status::NOT_STORED,
    );
    assert_eq!(get_value(&mut s, b"k").unwrap().len(), half.len());
}

#[test]
fn delete_with_and_without_cas() {
    let mut s = Session::new(engine());
    let c = set(&mut s, b"k", b"v", 0);
    err(
        &mut s,
        &req_full(op::DELETE, b"k", b"", b"", c + 1, 0),
        status::KEY_EEXISTS,
    );
    let r = one(&mut s, &req_full(op::DELETE, b"k", b"", b"", c, 0));
    assert!(r.ok());
    assert_eq!(r.cas, 0);
    err(&mut s, &req(op::DELETE, b"k", b"", b""), status::KEY_ENOENT);
    err(
        &mut s,
        &req_full(op::DELETE, b"k", b"", b"", c, 0),
        status::KEY_ENOENT,
    );
    set(&mut s, b"k", b"v", 0);
    assert!(one(&mut s, &req(op::DELETE, b"k", b"", b"")).ok());
}

fn counter(r: &Resp) -> u64 {
    assert!(r.ok(), "{r:?}");
    u64::from_be_bytes(r.value[..].try_into().unwrap())
}

#[test]
fn incr_decr() {
    let mut s = Session::new(engine());
    let inc = |k: &[u8], d, i, e| req(op::INCREMENT, k, &arith_extras(d, i, e), b"");
    let dec = |k: &[u8], d, i, e| req(op::DECREMENT, k, &arith_extras(d, i, e), b"");
    // A miss creates the initial value; the delta is not applied.
    let r = one(&mut s, &inc(b"c", 1, 10, 0));
    assert_eq!((counter(&r), r.extras.len(), r.key.len()), (10, 0, 0));
    assert_eq!(get_value(&mut s, b"c").unwrap(), b"10");
    assert_eq!(counter(&one(&mut s, &inc(b"c", 5, 0, 0))), 15);
    assert_eq!(
        counter(&one(&mut s, &dec(b"c", 100, 0, 0))),
        0,
        "decr stops at 0"
    );
    assert_eq!(get_value(&mut s, b"c").unwrap(), b"0 ", "keeps its length");
    err(&mut s, &inc(b"n", 1, 5, NO_AUTOVIVIFY), status::KEY_ENOENT);
    err(&mut s, &dec(b"n", 1, 5, NO_AUTOVIVIFY), status::KEY_ENOENT);
    set(&mut s, b"w", b"18446744073709551615", 0);
    assert_eq!(counter(&one(&mut s, &inc(b"w", 2, 0, 0))), 1, "incr wraps");
    set(&mut s, b"s", b"abc", 0);
    err(&mut s, &inc(b"s", 1, 0, 0), status::DELTA_BADVAL);
    // A CAS unique must match an existing item; a miss still creates.
    let c = set(&mut s, b"p", b"100", 0);
    let with_cas = |k: &[u8], cas| req_full(op::INCREMENT, k, &arith_extras(1, 42, 0), b"", cas, 0);
    err(&mut s, &with_cas(b"p", c + 7), status::KEY_EEXISTS);
    let r = one(&mut s, &with_cas(b"p", c));
    assert_eq!(counter(&r), 101);
    assert!(r.cas > c);
    assert_eq!(counter(&one(&mut s, &with_cas(b"fresh", 777))), 42);
}

#[test]
fn touch_gat_gatk() {
    let (e, clock) = engine_with(EngineConfig::default());
    let mut s = Session::new(e);
    let c = set(&mut s, b"s", b"abc", 3);
    let exp = |t: u32| t.to_be_bytes();
    let r = one(&mut s, &req(op::TOUCH, b"s", &exp(100), b""));
    assert_eq!(
        (r.status, r.extras, r.key, r.value, r.cas),
        (0, 3u32.to_be_bytes().to_vec(), vec![], vec![], c)
    );
    let r = one(&mut s, &req(op::GAT, b"s", &exp(100), b""));
    assert_eq!((r.value, r.key, r.cas), (b"abc".to_vec(), vec![], c));
    let r = one(&mut s, &req(op::GATK, b"s", &exp(100), b""));
    assert_eq!((r.value, r.key), (b"abc".to_vec(), b"s".to_vec()));
    err(
        &mut s,
        &req(op::TOUCH, b"zz", &exp(1), b""),
        status::KEY_ENOENT,
    );
    err(
        &mut s,
        &req(op::GAT, b"zz", &exp(1), b""),
        status::KEY_ENOENT,
    );
    let r = one(&mut s, &req(op::GATK, b"zz", &exp(1), b""));
    assert_eq!((r.status, r.key, r.value), (1, b"zz".to_vec(), vec![]));
    let (r, _) = feed(
        &mut s,
        &[
            req(op::GATQ, b"zz", &exp(1), b""),
            req(op::GATKQ, b"zz", &exp(1), b""),
            req(op::GATKQ, b"s", &exp(1), b""),
            req(op::NOOP, b"", b"", b""),
        ]
        .concat(),
    );
    assert_eq!(r.len(), 2);
    assert_eq!((r[0].opcode, &r[0].key[..]), (op::GATKQ, &b"s"[..]));
    // The last touch set one second.
    clock.advance(1_000);
    assert_eq!(get_value(&mut s, b"s"), None);
}

#[test]
fn exptime_is_unsigned() {
    let (e, clock) = engine_with(EngineConfig::default());
    let mut s = Session::new(e);
    let put = |k: &[u8], exptime| req(op::SET, k, &set_extras(0, exptime), b"v");
    let (r, _) = feed(
        &mut s,
        &[
            put(b"2106", 0xffff_ffff),
            put(b"past", 2_592_001),
            put(b"2038", 0x8000_0000),
            put(b"rel", 2_592_000),
            put(b"one", 1),
        ]
        .concat(),
    );
    assert!(r.iter().all(Resp::ok));
    assert!(get_value(&mut s, b"2106").is_some());
    assert!(get_value(&mut s, b"past").is_none());
    assert!(get_value(&mut s, b"2038").is_some());
    assert!(get_value(&mut s, b"rel").is_some());
    clock.advance(1_000);
    assert!(get_value(&mut s, b"one").is_none());
    // incr's creation takes the same exptime rules.
    let r = one(
        &mut s,
        &req(op::INCREMENT, b"e", &arith_extras(1, 7, 2_592_001), b""),
    );
    assert_eq!(counter(&r), 7);
    assert!(get_value(&mut s, b"e").is_none());
}

#[test]
fn too_large() {
    let mut s = Session::new(engine());
    let max = 1024 * 1024 - 59 - 1;
    set(&mut s, b"k", &vec![b'z'; max], 0);
    let big = vec![b'x'; max + 1];
    // add, replace and append keep the old value; set drops it (with or without a CAS).
    for opcode in [op::ADD, op::REPLACE, op::SETQ, op::SET] {
        err(
            &mut s,
            &req(opcode, b"k", &set_extras(0, 0), &big),
            status::E2BIG,
        );
        let present = get_value(&mut s, b"k").is_some();
        assert_eq!(
            present,
            !matches!(opcode, op::SET | op::SETQ),
            "opcode {opcode:#x}"
        );
        set(&mut s, b"k", b"v", 0);
    }
    err(&mut s, &req(op::APPEND, b"k", b"", &big), status::E2BIG);
    err(
        &mut s,
        &req_full(op::SET, b"k", &set_extras(0, 0), &big, 99, 0),
        status::E2BIG,
    );
    assert_eq!(get_value(&mut s, b"k"), None);
    // The reply comes before the value has arrived, and the value is skipped as it streams.
    let data = req(op::SET, b"k", &set_extras(0, 0), &big);
    let (r, _) = feed(&mut s, &data[..40]);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].status, status::E2BIG);
    let (r, _) = feed(&mut s, &data[40..]);
    assert!(r.is_empty());
    assert!(one(&mut s, &req(op::NOOP, b"", b"", b"")).ok());
}

#[test]
fn huge_declared_value_is_skipped_not_buffered() {
    let mut s = Session::new(engine());
    let mut data = raw(op::SET, 1, 8, 0xffff_ffff, 0, 0);
    data.extend(set_extras(0, 0));
    data.push(b'k');
    err(&mut s, &data, status::E2BIG);
    let (r, _) = feed(&mut s, &vec![0u8; 64 * 1024]);
    assert!(r.is_empty());
    assert_eq!(s.buffered(), 0);
}

#[test]
fn out_of_memory() {
    let cache = crate::cache::CacheConfig {
        max_memory: 4096,
        ..one_shard()
    };
    let (mut s, _, _) = testkit::session_with(cache, EngineConfig::default());
    err(
        &mut s,
        &req(op::SET, b"k", &set_extras(0, 0), &[b'x'; 8192]),
        status::ENOMEM,
    );
    err(
        &mut s,
        &req(op::SETQ, b"k", &set_extras(0, 0), &[b'x'; 8192]),
        status::ENOMEM,
    );
}

#[test]
fn flush_now_later_and_disabled() {
    let (e, clock) = engine_with(EngineConfig::default());
    let mut s = Session::new(e);
    set(&mut s, b"k", b"v", 0);
    assert!(one(&mut s, &req(op::FLUSH, b"", &10u32.to_be_bytes(), b"")).ok());
    assert!(get_value(&mut s, b"k").is_some());
    clock.advance(10_000);
    assert!(get_value(&mut s, b"k").is_none());
    set(&mut s, b"k", b"v", 0);
    assert!(one(&mut s, &req(op::FLUSH, b"", &0u32.to_be_bytes(), b"")).ok());
    assert!(get_value(&mut s, b"k").is_none());
    let (e, _) = engine_with(EngineConfig {
        allow_flush: false,
        ..Default::default()
    });
    let mut s = Session::new(e);
    set(&mut s, b"k", b"v", 0);
    err(&mut s, &req(op::FLUSH, b"", b"", b""), status::AUTH_ERROR);
    err(&mut s, &req(op::FLUSHQ, b"", b"", b""), status::AUTH_ERROR);
    assert!(get_value(&mut s, b"k").is_some());
}

#[test]
fn noop_version_quit() {
    let mut s = Session::new(engine());
    let r = one(&mut s, &req_full(op::NOOP, b"", b"", b"", 0, 42));
    assert_eq!(
        (r.opcode, r.status, r.opaque, r.value.len()),
        (op::NOOP, 0, 42, 0)
    );
    let r = one(&mut s, &req(op::VERSION, b"", b"", b""));
    assert_eq!(r.value, MEMCACHED_VERSION.as_bytes());
    let (r, close) = feed(
        &mut s,
        &[
            req_full(op::QUIT, b"", b"", b"", 0, 3),
            req(op::NOOP, b"", b"", b""),
        ]
        .concat(),
    );
    assert!(close);
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].opcode, r[0].opaque), (op::QUIT, 3));
    let mut s = Session::new(engine());
    let (r, close) = feed(
        &mut s,
        &[req(op::QUITQ, b"", b"", b""), req(op::NOOP, b"", b"", b"")].concat(),
    );
    assert!(close && r.is_empty());
}

#[test]
fn stats() {
    let mut s = Session::new(engine());
    let (r, _) = feed(&mut s, &req_full(op::STAT, b"", b"", b"", 0, 5));
    let last = r.last().unwrap();
    assert!(last.key.is_empty() && last.value.is_empty() && last.ok());
    assert!(r
        .iter()
        .all(|p| p.opcode == op::STAT && p.opaque == 5 && p.cas == 0));
    assert_eq!(r[0].key, b"pid");
    let version = r.iter().find(|p| p.key == b"version").unwrap();
    assert_eq!(version.value, MEMCACHED_VERSION.as_bytes());
    let (r, _) = feed(&mut s, &req(op::STAT, b"settings", b"", b""));
    assert_eq!(r[0].key, b"maxbytes");
    assert!(r.last().unwrap().key.is_empty());
    set(&mut s, b"k", b"v", 0);
    for key in [&b"items"[..], b"slabs", b"sizes"] {
        let (r, _) = feed(&mut s, &req(op::STAT, key, b"", b""));
        assert!(r.len() >= 2, "{key:?}");
        assert!(r.last().unwrap().key.is_empty());
    }
    for key in [&b"reset"[..], b"resetXX"] {
        let (r, _) = feed(&mut s, &req(op::STAT, key, b"", b""));
        assert_eq!(r.len(), 1);
        assert!(r[0].ok() && r[0].key.is_empty());
    }
    for key in [
        &b"res"[..],
        b"bogus",
        b"conns",
        b"itemsX",
        b"detail",
        b"detail x",
    ] {
        err(&mut s, &req(op::STAT, key, b"", b""), status::KEY_ENOENT);
    }
}

#[test]
fn unknown_opcodes_and_sasl() {
    let mut s = Session::new(engine());
    for opcode in [op::VERBOSITY, 0x50, 0xff, op::SASL_LIST_MECHS] {
        err(&mut s, &req(opcode, b"", b"", b""), status::UNKNOWN_COMMAND);
    }
    // Exactly the unknown request's body is skipped (memcached skips into the next one).
    let data = [
        req_full(0x50, b"abc", b"1234", b"value", 0, 9),
        req(op::VERBOSITY, b"", &1u32.to_be_bytes(), b""),
        req(op::SASL_AUTH, b"PLAIN", b"", b"\0u\0p"),
        req(op::SASL_STEP, b"PLAIN", b"", b"abc"),
        req(op::NOOP, b"", b"", b""),
    ]
    .concat();
    let (r, close) = feed(&mut s, &data);
    assert!(!close);
    let got: Vec<(u8, u16)> = r.iter().map(|r| (r.opcode, r.status)).collect();
    assert_eq!(
        got,
        vec![
            (0x50, 0x81),
            (op::VERBOSITY, 0x81),
            (op::SASL_AUTH, 0x81),
            (op::SASL_STEP, 0x81),
            (op::NOOP, 0)
        ]
    );
    assert_eq!(r[0].opaque, 9);
    // An unknown body is skipped as it streams in, split anywhere.
    let data = [
        req(0x50, b"", b"", &[0x80; 100]),
        req(op::NOOP, b"", b"", b""),
    ]
    .concat();
    let mut s = Session::new(engine());
    let mut out = Vec::new();
    for part in data.chunks(7) {
        assert!(!s.feed(part, &mut out));
    }
    assert_eq!(parse_all(&out).len(), 2);
}

#[test]
fn malformed_packets_close() {
    let e8 = set_extras(0, 0);
    invalid(&req(op::GET, &[b'k'; 251], b"", b""));
    invalid(&req(0x50, &[b'k'; 251], b"", b""));
    invalid(&req(op::GET, b"", b"", b""));
    invalid(&req(op::GET, b"abc", b"1234", b""));
    invalid(&req(op::GET, b"abc", b"", b"zz"));
    invalid(&req(op::GETKQ, b"", b"", b""));
    invalid(&req(op::SET, b"abc", b"1234", b"v"));
    invalid(&req(op::SET, b"", &e8, b"v"));
    invalid(&req(op::ADDQ, b"k", b"", b"v"));
    invalid(&req(op::INCREMENT, b"abc", &e8, b""));
    invalid(&req(op::DECREMENT, b"abc", &[0; 20], b"1"));
    invalid(&req(op::INCREMENT, b"", &[0; 20], b""));
    invalid(&req(op::DELETE, b"abc", b"1234", b""));
    invalid(&req(op::DELETEQ, b"abc", b"", b"1234"));
    invalid(&req(op::APPEND, b"abc", &e8, b"x"));
    invalid(&req(op::PREPEND, b"", b"", b"x"));
    invalid(&req(op::TOUCH, b"abc", b"", b""));
    invalid(&req(op::TOUCH, b"", b"1234", b""));
    invalid(&req(op::GAT, b"abc", b"1234", b"surplus"));
    invalid(&req(op::GATKQ, b"abc", b"12345678", b""));
    invalid(&req(op::FLUSH, b"k", b"", b""));
    invalid(&req(op::FLUSH, b"", &e8, b""));
    invalid(&req(op::FLUSHQ, b"", b"", b"x"));
    invalid(&req(op::NOOP, b"", b"", b"x"));
    invalid(&req(op::NOOP, b"k", b"", b""));
    invalid(&req(op::VERSION, b"", b"", b"x"));
    invalid(&req(op::QUIT, b"", b"", b"x"));
    invalid(&req(op::QUITQ, b"", b"1234", b""));
    invalid(&req(op::STAT, b"", b"1234", b""));
    invalid(&req(op::STAT, b"reset", b"", b"surplus"));
    invalid(&req(op::SASL_LIST_MECHS, b"", b"", b"x"));
    invalid(&req(op::SASL_AUTH, b"", b"", b"abc"));
    invalid(&req(op::SASL_AUTH, b"PLAIN", b"1234", b""));
}

#[test]
fn framing_errors_close() {
    // Extras and key longer than the body: "Unknown command", then close.
    let mut s = Session::new(engine());
    let mut data = raw(op::GET, 3, 0, 2, 0, 0);
    data.extend_from_slice(b"abc");
    let (r, close) = feed(&mut s, &data);
    assert!(close);
    assert_eq!(
        (r.len(), r[0].status, &r[0].value[..]),
        (1, 0x81, &b"Unknown command"[..])
    );
    // A bad magic after the first request: close with no reply.
    let mut s = Session::new(engine());
    let mut bad = req(op::NOOP, b"", b"", b"");
    bad[0] = 0x81;
    let (r, close) = feed(&mut s, &[req(op::NOOP, b"", b"", b""), bad].concat());
    assert!(close);
    assert_eq!(r.len(), 1);
    // Earlier pipelined replies are kept when a later request is malformed.
    let mut s = Session::new(engine());
    set(&mut s, b"a", b"A", 0);
    let data = [
        req(op::GETQ, b"a", b"", b""),
        req(op::GET, &[b'k'; 300], b"", b""),
    ]
    .concat();
    let (r, close) = feed(&mut s, &data);
    assert!(close);
    assert_eq!(
        (r.len(), &r[0].value[..], r[1].status),
        (2, &b"A"[..], status::EINVAL)
    );
    // A key is judged only once it has all arrived.
    let mut s = Session::new(engine());
    let data = req(op::GET, &[b'k'; 300], b"", b"");
    let (r, close) = feed(&mut s, &data[..100]);
    assert!(!close && r.is_empty());
}

#[test]
fn binary_keys_and_flags() {
    let mut s = Session::new(engine());
    let key = b"\x00 \r\n\xff key";
    set(&mut s, key, b"", 0xdead_beef);
    let r = one(&mut s, &req(op::GETK, key, b"", b""));
    assert_eq!(
        (r.key, r.extras, r.value),
        (key.to_vec(), 0xdead_beefu32.to_be_bytes().to_vec(), vec![])
    );
    let k250 = [b'k'; 250];
    set(&mut s, &k250, b"v", 0);
    assert_eq!(get_value(&mut s, &k250).unwrap(), b"v");
}

#[test]
fn incr_padding_shows_in_get() {
    let mut s = Session::new(engine());
    set(&mut s, b"p", b"100", 0);
    let r = one(
        &mut s,
        &req(op::DECREMENT, b"p", &arith_extras(1, 0, 0), b""),
    );
    assert_eq!(counter(&r), 99);
    assert_eq!(get_value(&mut s, b"p").unwrap(), b"99 ");
}

#[test]
fn commands_are_classified_by_their_opcode() {
    for (op, kind) in [
        (0x00u8, CmdKind::Get),
        (0x0d, CmdKind::Get),
        (0x01, CmdKind::Set),
        (0x19, CmdKind::Set),
        (0x04, CmdKind::Delete),
        (0x16, CmdKind::IncrDecr),
        (0x1c, CmdKind::Touch),
        (0x24, CmdKind::Touch),
        (0x0a, CmdKind::Other),
        (0x10, CmdKind::Other),
    ] {
        assert_eq!(kind_of(&[0x80, op]), kind, "{op:#x}");
    }
    assert_eq!(kind_of(&[0x80]), CmdKind::Other);
}
