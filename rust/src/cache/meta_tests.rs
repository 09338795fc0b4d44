//! Tests of the per-entry state and the operations memcached's meta commands use: the fetched
//! bit, the last-access clock, stale items and win tokens, and the meta variants of get, store,
//! delete and incr/decr. Every test checks the shard invariants at the end.

use std::sync::Arc;

use super::*;
use crate::testkit::{self, Ops, T0};

fn cache() -> (Cache, Arc<ManualClock>) {
    let clock = testkit::clock();
    let cfg = CacheConfig {
        shards: 1,
        cleanup_interval_ms: 0,
        ..Default::default()
    };
    (Cache::with_clock(cfg, clock.clone()).unwrap(), clock)
}

fn set(c: &Cache, k: &[u8], v: &[u8]) -> u64 {
    match c.put(k, v, 0, Ttl::Default, StoreMode::Set).unwrap() {
        StoreOutcome::Stored(cas) => cas,
        o => panic!("{o:?}"),
    }
}

fn state(c: &Cache, k: &[u8]) -> ItemState {
    c.peek_meta(k).expect("live").1
}

/// A meta get that counts as an access.
const BUMP: ReadOpts = ReadOpts {
    counted: Counted::Get,
    bump: Bump::Read,
    vivify: None,
    writes: true,
};

fn delete_meta(
    c: &Cache,
    k: &[u8],
    cas: Option<u64>,
    invalidate: bool,
    ttl: Option<Ttl>,
) -> DeleteOutcome {
    let req = DeleteRequest {
        cas,
        invalidate,
        ttl,
        mismatch_is_miss: true,
    };
    c.delete(k, &req)
}

fn delta_meta<R>(
    c: &Cache,
    k: &[u8],
    delta: Delta,
    cas: Option<u64>,
    vivify: Option<u64>,
    f: impl FnOnce(&mut MetaEntry<'_>, u64) -> R,
) -> DeltaOutcome<R> {
    let req = DeltaRequest {
        delta,
        cas,
        vivify,
        binary_key: false,
    };
    c.delta(k, &req, f)
}

#[test]
fn reads_mark_fetched_and_refresh_the_access_clock() {
    let (c, clock) = cache();
    set(&c, b"a", b"1");
    let s = state(&c, b"a");
    assert!(!s.fetched && !s.stale && !s.win_sent && !s.binary_key);
    assert_eq!(s.idle_secs, 0);
    clock.advance(5_000);
    assert_eq!(state(&c, b"a").idle_secs, 5);
    // peek_meta and contains don't count as accesses.
    assert!(c.contains(b"a"));
    assert!(!state(&c, b"a").fetched);
    assert!(c.get(b"a").is_some());
    let s = state(&c, b"a");
    assert!(s.fetched);
    assert_eq!(s.idle_secs, 0);
    // touch fetches with a bump too, as memcached's does.
    set(&c, b"b", b"1");
    clock.advance(3_000);
    c.touch(b"b", Ttl::Never).unwrap();
    assert!(state(&c, b"b").fetched);
    assert_eq!(state(&c, b"b").idle_secs, 0);
    // A new value is a new item: not fetched.
    set(&c, b"a", b"2");
    assert!(!state(&c, b"a").fetched);
    c.validate().unwrap();
}

#[test]
fn get_meta_shows_the_state_before_the_request_then_bumps() {
    let (c, clock) = cache();
    set(&c, b"a", b"v");
    clock.advance(7_000);
    let no_bump = ReadOpts {
        bump: Bump::No,
        ..BUMP
    };
    let seen = c.read(b"a", no_bump, |e| {
        (e.state(), e.value().to_vec(), e.created)
    });
    let (s, v, created) = seen.unwrap();
    assert!(!s.fetched && !created);
    assert_eq!((s.idle_secs, &v[..]), (7, &b"v"[..]));
    assert!(!state(&c, b"a").fetched, "u: no bump");
    let s = c.read(b"a", BUMP, |e| e.state()).unwrap();
    assert!(!s.fetched);
    assert_eq!(s.idle_secs, 7);
    let s = state(&c, b"a");
    assert!(s.fetched);
    assert_eq!(s.idle_secs, 0);
    // A callback can cancel the bump (memcached skips it on an error).
    set(&c, b"b", b"v");
    c.read(b"b", BUMP, |e| e.bump = false).unwrap();
    assert!(!state(&c, b"b").fetched);
    assert!(c.read(b"missing", BUMP, |_| ()).is_none());
    let st = c.stats().counters;
    assert_eq!((st.get_hits, st.get_misses), (3, 1));
    c.validate().unwrap();
}

#[test]
fn get_meta_sets_ttls_in_request_order_and_expires() {
    let (c, clock) = cache();
    set(&c, b"a", b"v");
    let touch = ReadOpts {
        counted: Counted::MetaTouch,
        ..BUMP
    };
    let (before, after) = c
        .read(b"a", touch, |e| {
            let before = e.expires_at();
            e.set_ttl(Ttl::After(30_000));
            (before, e.expires_at())
        })
        .unwrap();
    assert_eq!((before, after), (0, T0 + 30_000));
    assert_eq!(c.peek(b"a").unwrap().expires_at, T0 + 30_000);
    assert_eq!(c.stats().counters.touch_hits, 1);
    clock.advance(1_000);
    let expired = c
        .read(b"a", touch, |e| {
            e.set_ttl(Ttl::Expired);
            e.expired()
        })
        .unwrap();
    assert!(expired);
    assert!(c.peek(b"a").is_none(), "gone after the request");
    c.validate().unwrap();
}

#[test]
fn vivify_creates_an_empty_entry_and_win_tokens_stick() {
    let (c, _) = cache();
    let viv = ReadOpts {
        vivify: Some(true),
        ..BUMP
    };
    let created = c
        .read(b"k", viv, |e| {
            assert!(e.value().is_empty() && e.flags() == 0 && e.expires_at() == 0);
            e.set_ttl(Ttl::After(10_000));
            e.take_win();
            e.created
        })
        .unwrap();
    assert!(created);
    let s = state(&c, b"k");
    assert!(s.win_sent && s.binary_key && s.fetched);
    assert_eq!(c.peek(b"k").unwrap().expires_at, T0 + 10_000);
    // A second vivify finds it.
    assert!(!c.read(b"k", viv, |e| e.created).unwrap());
    assert_eq!(c.stats().counters.get_misses, 1);
    c.validate().unwrap();
}

#[test]
fn invalidation_marks_stale_and_a_new_value_clears_it() {
    let (c, _) = cache();
    let cas = set(&c, b"a", b"v");
    assert_eq!(
        delete_meta(&c, b"a", Some(cas + 1), true, None),
        DeleteOutcome::Exists
    );
    assert_eq!(
        delete_meta(&c, b"a", Some(cas), true, Some(Ttl::After(60_000))),
        DeleteOutcome::Invalidated
    );
    let (item, s) = c.peek_meta(b"a").unwrap();
    assert!(s.stale && !s.win_sent);
    assert!(item.cas > cas, "invalidation bumps the CAS unique");
    assert_eq!(item.expires_at, T0 + 60_000);
    c.read(b"a", BUMP, |e| e.take_win()).unwrap();
    assert!(state(&c, b"a").win_sent);
    // Invalidating again hands the token out anew.
    delete_meta(&c, b"a", None, true, None);
    assert!(!state(&c, b"a").win_sent);
    set(&c, b"a", b"w");
    let s = state(&c, b"a");
    assert!(!s.stale && !s.win_sent);
    // Invalidate with an expired TTL removes it; a plain delete removes it.
    delete_meta(&c, b"a", None, true, Some(Ttl::Expired));
    assert!(c.peek(b"a").is_none());
    set(&c, b"a", b"v");
    assert_eq!(
        delete_meta(&c, b"a", None, false, Some(Ttl::After(1))),
        DeleteOutcome::Deleted
    );
    assert_eq!(
        delete_meta(&c, b"a", None, false, None),
        DeleteOutcome::NotFound
    );
    c.validate().unwrap();
}

#[test]
fn an_older_cas_with_invalidate_stores_a_stale_value() {
    let (c, _) = cache();
    set(&c, b"a", b"v0");
    c.put(b"a", b"v1", 0, Ttl::After(100_000), StoreMode::Set)
        .unwrap();
    let cas = c.peek(b"a").unwrap().cas;
    c.read(b"a", BUMP, |e| e.take_win()).unwrap();
    let cas_store = |v: &[u8], flags: u32, cas: u64, invalidate: bool| {
        let req = StoreRequest {
            invalidate,
            ..StoreRequest::set(b"a", v)
                .flags(flags)
                .ttl(Ttl::Never)
                .cas(cas)
        };
        c.store(&req).unwrap()
    };
    // Newer than the item: refused.
    let out = cas_store(b"v2", 0, cas + 1, true);
    assert_eq!(out, StoreOutcome::Exists);
    // Older: stored, stale, keeping the deadline and the win token.
    let out = cas_store(b"v2", 3, cas - 1, true);
    assert!(matches!(out, StoreOutcome::Stored(_)));
    let (item, s) = c.peek_meta(b"a").unwrap();
    assert_eq!((&item.value[..], item.flags), (&b"v2"[..], 3));
    assert_eq!(item.expires_at, T0 + 100_000);
    assert!(s.stale && s.win_sent);
    // CAS 0 is "no CAS" in memcached: never stale, always a mismatch.
    let out = cas_store(b"v3", 0, 0, true);
    assert_eq!(out, StoreOutcome::Exists);
    // Without invalidate an older CAS is a plain mismatch.
    let out = cas_store(b"v3", 0, 1, false);
    assert_eq!(out, StoreOutcome::Exists);
    c.validate().unwrap();
}

#[test]
fn append_checks_cas_and_the_item_size_limit() {
    let (c, _) = cache();
    let cas = set(&c, b"a", b"12345");
    let app = |v: &'static [u8], cas: Option<u64>, max_item_size| {
        let req = StoreRequest {
            cas,
            max_item_size,
            binary_key: true,
            ..StoreRequest::new(StoreMode::Append, b"a", v)
                .flags(9)
                .ttl(Ttl::Never)
        };
        c.store(&req).unwrap()
    };
    assert_eq!(app(b"x", Some(cas + 1), 0), StoreOutcome::Exists);
    // memcached's size: 48 + 8 + key 1 + 1 + value 6 + 2 = 66 bytes (flags are 0).
    assert_eq!(memcached_item_size(1, 6, 0, true), 66);
    assert_eq!(memcached_item_size(1, 6, 1, true), 70);
    assert_eq!(app(b"x", Some(cas), 65), StoreOutcome::NotStored);
    assert!(matches!(app(b"x", Some(cas), 66), StoreOutcome::Stored(_)));
    let (item, s) = c.peek_meta(b"a").unwrap();
    assert_eq!((&item.value[..], item.flags), (&b"12345x"[..], 0));
    assert!(s.binary_key);
    assert!(matches!(app(b"y", None, 0), StoreOutcome::Stored(_)));
    c.validate().unwrap();
}

#[test]
fn meta_delta_vivifies_compares_and_resets_a_grown_item() {
    let (c, _) = cache();
    let r = delta_meta(&c, b"n", Delta::Incr(5), None, None, |_, n| n);
    assert_eq!(r, DeltaOutcome::NotFound);
    let r = delta_meta(&c, b"n", Delta::Incr(5), None, Some(9), |e, n| {
        e.set_ttl(Ttl::After(1_000));
        (e.created, n)
    });
    assert_eq!(r, DeltaOutcome::Done((true, 9)));
    assert_eq!(&c.peek(b"n").unwrap().value[..], b"9");
    c.get(b"n");
    assert!(state(&c, b"n").fetched);
    // Growing from 1 to 2 digits makes a new item: no longer fetched.
    let r = delta_meta(&c, b"n", Delta::Incr(1), None, None, |e, n| (e.created, n));
    assert_eq!(r, DeltaOutcome::Done((false, 10)));
    assert!(!state(&c, b"n").fetched);
    c.get(b"n");
    // In place keeps the marks (and the padding of the text protocol).
    let cas = c.peek(b"n").unwrap().cas;
    assert_eq!(
        delta_meta(&c, b"n", Delta::Decr(1), Some(cas + 1), None, |_, n| n),
        DeltaOutcome::Exists
    );
    let r = delta_meta(&c, b"n", Delta::Decr(1), Some(cas), None, |e, n| {
        (e.cas(), n)
    });
    let DeltaOutcome::Done((new_cas, 9)) = r else {
        panic!("{r:?}")
    };
    assert!(new_cas > cas);
    assert!(state(&c, b"n").fetched);
    assert_eq!(&c.peek(b"n").unwrap().value[..], b"9 ");
    // An empty value is non-numeric before the CAS is compared.
    set(&c, b"e", b"");
    assert_eq!(
        delta_meta(&c, b"e", Delta::Incr(1), Some(12345), None, |_, n| n),
        DeltaOutcome::NonNumeric
    );
    set(&c, b"x", b"abc");
    assert_eq!(
        delta_meta(&c, b"x", Delta::Incr(1), None, None, |_, n| n),
        DeltaOutcome::NonNumeric
    );
    c.validate().unwrap();
}

#[test]
fn the_text_protocol_incr_also_resets_a_grown_item() {
    let (c, _) = cache();
    set(&c, b"n", b"99");
    c.get(b"n");
    assert_eq!(
        c.incr_decr(b"n", Delta::Incr(1)),
        DeltaOutcome::Done((100, c.peek(b"n").unwrap().cas))
    );
    assert!(!state(&c, b"n").fetched);
    c.validate().unwrap();
}
