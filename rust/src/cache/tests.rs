//! Behavioural tests that every policy must pass, plus policy-specific orderings.

use std::collections::HashMap;
use std::sync::Arc;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::testkit::{self, Ops, T0};

fn cache_with(kind: PolicyKind, max_entries: u64, max_memory: u64) -> (Cache, Arc<ManualClock>) {
    let clock = testkit::clock();
    let cfg = CacheConfig {
        max_entries,
        max_memory,
        eviction: kind,
        shards: 1,
        cleanup_interval_ms: 0,
        ..Default::default()
    };
    (Cache::with_clock(cfg, clock.clone()).unwrap(), clock)
}

fn set(c: &Cache, k: &str, v: &str) -> StoreOutcome {
    c.put(k.as_bytes(), v.as_bytes(), 0, Ttl::Default, StoreMode::Set)
        .unwrap()
}

fn set_ttl(c: &Cache, k: &str, ttl: Ttl) {
    c.put(k.as_bytes(), b"v", 0, ttl, StoreMode::Set).unwrap();
}

fn get(c: &Cache, k: &str) -> Option<Vec<u8>> {
    c.get(k.as_bytes()).map(|i| i.value.to_vec())
}

fn ok(c: &Cache) {
    c.validate().unwrap();
}

#[test]
fn every_policy_basic_ops() {
    for kind in PolicyKind::ALL {
        let (c, _) = cache_with(kind, 0, 0);
        assert!(matches!(set(&c, "a", "1"), StoreOutcome::Stored(_)));
        ok(&c);
        assert_eq!(get(&c, "a"), Some(b"1".to_vec()), "{kind}");
        assert_eq!(get(&c, "b"), None);
        set(&c, "a", "22");
        assert_eq!(get(&c, "a"), Some(b"22".to_vec()));
        assert!(c.del(b"a"));
        assert!(!c.del(b"a"));
        ok(&c);
        assert_eq!(c.len(), 0);
        let s = c.stats();
        assert_eq!(s.counters.get_hits, 2, "{kind}");
        assert_eq!(s.counters.get_misses, 1);
        assert_eq!(s.counters.cmd_set, 2);
        assert_eq!(s.counters.delete_hits, 1);
        assert_eq!(s.counters.delete_misses, 1);
        assert_eq!(s.curr_items, 0);
        assert_eq!(s.bytes, 0);
    }
}

#[test]
fn every_policy_respects_the_entry_limit() {
    for kind in PolicyKind::ALL {
        let (c, _) = cache_with(kind, 10, 0);
        for i in 0..100 {
            set(&c, &format!("k{i}"), "v");
            ok(&c);
            if i % 3 == 0 {
                get(&c, &format!("k{}", i / 2));
                ok(&c);
            }
        }
        assert_eq!(c.len(), 10, "{kind}");
        assert_eq!(c.stats().counters.evictions, 90, "{kind}");
        // The newest key always survives its own insertion.
        assert!(c.contains(b"k99"), "{kind}");
    }
}

#[test]
fn every_policy_respects_the_memory_limit() {
    for kind in PolicyKind::ALL {
        let limit = 64 * 1024;
        let (c, _) = cache_with(kind, 0, limit);
        let mut rng = SmallRng::seed_from_u64(7);
        for i in 0..2_000 {
            let n = rng.random_range(1..2_000);
            c.put(
                format!("k{i}").as_bytes(),
                &vec![b'x'; n],
                0,
                Ttl::Default,
                StoreMode::Set,
            )
            .unwrap();
            assert!(c.stats().bytes <= limit, "{kind}");
        }
        ok(&c);
        assert!(c.stats().counters.evictions > 0);
        // Accounting matches the documented formula.
        let s = c.stats();
        assert!(
            s.bytes >= s.payload_bytes + s.curr_items * ENTRY_OVERHEAD as u64,
            "{kind}"
        );
    }
}

#[test]
fn an_item_larger_than_the_budget_is_refused_and_drops_the_old_value() {
    let (c, _) = cache_with(PolicyKind::Lru, 0, 4096);
    set(&c, "k", "small");
    let out = c
        .put(b"k", &vec![0u8; 8192], 0, Ttl::Default, StoreMode::Set)
        .unwrap();
    assert_eq!(out, StoreOutcome::NoRoom);
    assert_eq!(get(&c, "k"), None);
    set(&c, "k", "small");
    let out = c
        .put(b"k", &vec![0u8; 8192], 0, Ttl::Default, StoreMode::Add)
        .unwrap();
    assert_eq!(out, StoreOutcome::NotStored);
    assert_eq!(get(&c, "k"), Some(b"small".to_vec()));
    ok(&c);
}

#[test]
fn lru_evicts_least_recently_used() {
    let (c, _) = cache_with(PolicyKind::Lru, 3, 0);
    set(&c, "a", "1");
    set(&c, "b", "1");
    set(&c, "c", "1");
    get(&c, "a");
    set(&c, "d", "1");
    assert!(!c.contains(b"b"));
    assert!(c.contains(b"a") && c.contains(b"c") && c.contains(b"d"));
    ok(&c);
}

#[test]
fn fifo_ignores_reads() {
    let (c, _) = cache_with(PolicyKind::Fifo, 3, 0);
    set(&c, "a", "1");
    set(&c, "b", "1");
    set(&c, "c", "1");
    get(&c, "a");
    set(&c, "d", "1");
    assert!(!c.contains(b"a"));
    assert!(c.contains(b"b"));
    ok(&c);
}

#[test]
fn lfu_keeps_the_frequent_and_breaks_ties_by_recency() {
    let (c, _) = cache_with(PolicyKind::Lfu, 3, 0);
    set(&c, "a", "1");
    set(&c, "b", "1");
    set(&c, "c", "1");
    for _ in 0..3 {
        get(&c, "a");
        get(&c, "c");
    }
    get(&c, "b");
    set(&c, "d", "1"); // evicts b (count 1)
    assert!(!c.contains(b"b"));
    set(&c, "e", "1"); // evicts d (count 0)
    assert!(!c.contains(b"d"));
    assert!(c.contains(b"a") && c.contains(b"c") && c.contains(b"e"));
    ok(&c);
}

#[test]
fn hybrid_resists_a_scan() {
    let (c, _) = cache_with(PolicyKind::Hybrid, 10, 0);
    for i in 0..5 {
        set(&c, &format!("hot{i}"), "1");
        get(&c, &format!("hot{i}"));
    }
    for i in 0..100 {
        set(&c, &format!("scan{i}"), "1");
        ok(&c);
    }
    for i in 0..5 {
        assert!(
            c.contains(format!("hot{i}").as_bytes()),
            "hot{i} was flushed by a scan"
        );
    }
}

#[test]
fn ttl_policy_evicts_soonest_deadline_first() {
    let (c, _) = cache_with(PolicyKind::Ttl, 3, 0);
    set_ttl(&c, "late", Ttl::After(300_000));
    set_ttl(&c, "soon", Ttl::After(10_000));
    set_ttl(&c, "never", Ttl::Never);
    set_ttl(&c, "new", Ttl::After(200_000));
    assert!(!c.contains(b"soon"));
    set_ttl(&c, "new2", Ttl::Never);
    assert!(!c.contains(b"new"));
    assert!(c.contains(b"late") || c.contains(b"never"));
    // A touch moves an entry in the deadline order.
    c.touch(b"late", Ttl::After(1));
    set_ttl(&c, "x", Ttl::Never);
    assert!(!c.contains(b"late"));
    ok(&c);
}

#[test]
fn modern_policies_keep_hot_keys_through_a_scan() {
    for kind in [PolicyKind::Sieve, PolicyKind::S3Fifo] {
        let (c, _) = cache_with(kind, 20, 0);
        for i in 0..10 {
            set(&c, &format!("hot{i}"), "1");
        }
        for round in 0..20 {
            for i in 0..10 {
                get(&c, &format!("hot{i}"));
            }
            for j in 0..5 {
                set(&c, &format!("scan{round}-{j}"), "1");
                ok(&c);
            }
        }
        let kept = (0..10)
            .filter(|i| c.contains(format!("hot{i}").as_bytes()))
            .count();
        assert!(kept >= 9, "{kind} kept only {kept} of 10 hot keys");
    }
}

#[test]
fn ttl_rules_with_a_manual_clock() {
    for kind in PolicyKind::ALL {
        let (c, clock) = cache_with(kind, 0, 0);
        set_ttl(&c, "a", Ttl::After(1_000));
        set_ttl(&c, "b", Ttl::Never);
        set_ttl(&c, "gone", Ttl::Expired);
        set_ttl(&c, "past", Ttl::At(T0 - 1));
        set_ttl(&c, "abs", Ttl::At(T0 + 5_000));
        assert!(!c.contains(b"gone") && !c.contains(b"past"));
        clock.advance(999);
        assert!(c.contains(b"a"));
        clock.advance(1);
        assert_eq!(get(&c, "a"), None, "{kind}: an expired entry was returned");
        assert!(c.contains(b"b") && c.contains(b"abs"));
        clock.advance(4_000);
        assert!(!c.contains(b"abs"));
        assert!(c.contains(b"b"));
        let s = c.stats();
        assert!(s.counters.expirations >= 2);
        assert_eq!(s.counters.get_expired, 1);
        ok(&c);
    }
}

#[test]
fn default_and_max_ttl_apply() {
    let clock = testkit::clock();
    let cfg = CacheConfig {
        default_ttl_ms: 10_000,
        max_ttl_ms: 60_000,
        shards: 1,
        cleanup_interval_ms: 0,
        ..Default::default()
    };
    let c = Cache::with_clock(cfg, clock.clone()).unwrap();
    set_ttl(&c, "d", Ttl::Default);
    set_ttl(&c, "n", Ttl::Never);
    set_ttl(&c, "long", Ttl::After(3_600_000));
    assert_eq!(c.peek(b"d").unwrap().expires_at, T0 + 10_000);
    assert_eq!(c.peek(b"n").unwrap().expires_at, T0 + 60_000);
    assert_eq!(c.peek(b"long").unwrap().expires_at, T0 + 60_000);
    clock.advance(60_000);
    assert!(c.is_empty() || c.keys().is_empty());
}

#[test]
fn sweeping_reclaims_dead_entries_without_reads() {
    let (c, clock) = cache_with(PolicyKind::S3Fifo, 0, 0);
    for i in 0..1_000 {
        set_ttl(&c, &format!("k{i}"), Ttl::After(1_000));
    }
    clock.advance(2_000);
    assert_eq!(c.len(), 1_000);
    assert_eq!(c.sweep_expired(), 1_000);
    assert_eq!(c.len(), 0);
    assert_eq!(c.stats().bytes, 0);
    ok(&c);
}

#[test]
fn writes_reclaim_expired_entries_incrementally() {
    let (c, clock) = cache_with(PolicyKind::Lru, 0, 0);
    for i in 0..100 {
        set_ttl(&c, &format!("old{i}"), Ttl::After(1_000));
    }
    clock.advance(2_000);
    for i in 0..100 {
        set(&c, &format!("new{i}"), "v");
    }
    // Each insert examines two slots, so the 100 dead entries are all gone.
    assert_eq!(c.len(), 100);
    ok(&c);
}

#[test]
fn background_sweeper_runs_and_stops() {
    let clock = testkit::clock();
    let cfg = CacheConfig {
        cleanup_interval_ms: 10,
        shards: 2,
        ..Default::default()
    };
    let c = Cache::with_clock(cfg, clock.clone()).unwrap();
    for i in 0..100 {
        set_ttl(&c, &format!("k{i}"), Ttl::After(1));
    }
    clock.advance(10);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !c.is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(c.len(), 0);
    c.stop_background();
    c.stop_background();
}

#[test]
fn storage_modes() {
    let (c, _) = cache_with(PolicyKind::Lru, 0, 0);
    let st = |k: &str, v: &str, m| {
        c.put(k.as_bytes(), v.as_bytes(), 5, Ttl::Default, m)
            .unwrap()
    };
    let cas_st = |k: &str, v: &str, cas| {
        c.put_cas(k.as_bytes(), v.as_bytes(), 5, Ttl::Default, cas)
            .unwrap()
    };
    assert_eq!(st("k", "x", StoreMode::Replace), StoreOutcome::NotStored);
    assert_eq!(st("k", "x", StoreMode::Append), StoreOutcome::NotStored);
    assert!(matches!(
        st("k", "b", StoreMode::Add),
        StoreOutcome::Stored(_)
    ));
    assert_eq!(st("k", "x", StoreMode::Add), StoreOutcome::NotStored);
    st("k", "c", StoreMode::Append);
    st("k", "a", StoreMode::Prepend);
    assert_eq!(get(&c, "k"), Some(b"abc".to_vec()));
    let cas = c.get(b"k").unwrap().cas;
    assert_eq!(cas_st("k", "z", cas + 1), StoreOutcome::Exists);
    let StoreOutcome::Stored(new_cas) = cas_st("k", "z", cas) else {
        panic!()
    };
    assert_ne!(new_cas, cas);
    assert_eq!(cas_st("k", "z", cas), StoreOutcome::Exists);
    assert_eq!(cas_st("nokey", "z", cas), StoreOutcome::NotFound);
    let s = c.stats().counters;
    assert_eq!((s.cas_hits, s.cas_badval, s.cas_misses), (1, 2, 1));
    ok(&c);
}

#[test]
fn cas_uniques_are_unique_across_shards() {
    let cfg = CacheConfig {
        shards: 8,
        cleanup_interval_ms: 0,
        ..Default::default()
    };
    let c = Cache::new(cfg).unwrap();
    let mut seen = std::collections::HashSet::new();
    for i in 0..1_000 {
        let StoreOutcome::Stored(cas) = set(&c, &format!("k{i}"), "v") else {
            panic!()
        };
        assert!(seen.insert(cas));
    }
}

#[test]
fn incr_decr_follow_memcached() {
    let (c, _) = cache_with(PolicyKind::Lru, 0, 0);
    set(&c, "n", "100");
    assert!(matches!(
        c.incr_decr(b"n", Delta::Decr(1)),
        DeltaOutcome::Done((99, _))
    ));
    assert_eq!(get(&c, "n"), Some(b"99 ".to_vec()));
    assert!(matches!(
        c.incr_decr(b"n", Delta::Incr(1)),
        DeltaOutcome::Done((100, _))
    ));
    assert_eq!(get(&c, "n"), Some(b"100".to_vec()));
    assert!(matches!(
        c.incr_decr(b"n", Delta::Decr(1000)),
        DeltaOutcome::Done((0, _))
    ));
    set(&c, "m", "18446744073709551615");
    assert!(matches!(
        c.incr_decr(b"m", Delta::Incr(2)),
        DeltaOutcome::Done((1, _))
    ));
    set(&c, "s", "abc");
    assert_eq!(c.incr_decr(b"s", Delta::Incr(1)), DeltaOutcome::NonNumeric);
    assert_eq!(c.incr_decr(b"none", Delta::Incr(1)), DeltaOutcome::NotFound);
    let s = c.stats().counters;
    // A non-numeric value counts neither a hit nor a miss, as in memcached.
    assert_eq!((s.incr_hits, s.incr_misses, s.decr_hits), (2, 1, 2));
    ok(&c);
}

#[test]
fn touch_and_gat() {
    let (c, clock) = cache_with(PolicyKind::Sieve, 0, 0);
    set_ttl(&c, "k", Ttl::After(1_000));
    assert!(c.touch(b"k", Ttl::After(10_000)).is_some());
    clock.advance(5_000);
    assert!(c.gat(b"k", Ttl::After(1_000)).is_some());
    clock.advance(1_000);
    assert!(c.get(b"k").is_none());
    assert!(c.touch(b"k", Ttl::Never).is_none());
    set(&c, "k", "v");
    assert!(c.touch(b"k", Ttl::Expired).is_some());
    assert!(c.get(b"k").is_none());
    ok(&c);
}

#[test]
fn keys_and_clear() {
    let (c, _) = cache_with(PolicyKind::Hybrid, 0, 0);
    let text = StoreRequest {
        text_key: true,
        ..StoreRequest::set(b"text", b"1")
    };
    c.store(&text).unwrap();
    set(&c, "raw", "1");
    let mut keys = c.keys();
    keys.sort();
    assert_eq!(
        keys,
        vec![
            (b"raw".to_vec().into(), false),
            (b"text".to_vec().into(), true)
        ]
    );
    c.clear();
    assert!(c.is_empty());
    set(&c, "again", "1");
    assert!(c.contains(b"again"));
    ok(&c);
}

#[test]
fn bad_keys_are_refused() {
    let (c, _) = cache_with(PolicyKind::Lru, 0, 0);
    assert!(matches!(
        c.put(b"", b"", 0, Ttl::Default, StoreMode::Set),
        Err(CoreError::BadKey(_))
    ));
    let long = vec![b'k'; LIBRARY_MAX_KEY_LEN + 1];
    assert!(c.put(&long, b"", 0, Ttl::Default, StoreMode::Set).is_err());
}

/// Random operations against a model, with an invariant check after every step.
#[test]
fn random_ops_match_a_model_and_keep_invariants() {
    for kind in PolicyKind::ALL {
        let (c, clock) = cache_with(kind, 0, 0);
        let mut model: HashMap<String, (Vec<u8>, u64)> = HashMap::new();
        let mut rng = SmallRng::seed_from_u64(kind as u64);
        for step in 0..3_000 {
            let k = format!("k{}", rng.random_range(0..50));
            let now = clock.now_ms();
            model.retain(|_, (_, exp)| *exp == 0 || now < *exp);
            match rng.random_range(0..6) {
                0 | 1 => {
                    let v = format!("v{step}").into_bytes();
                    let ttl = rng.random_range(0..3u64) * 500;
                    let t = if ttl == 0 {
                        Ttl::Never
                    } else {
                        Ttl::After(ttl)
                    };
                    c.put(k.as_bytes(), &v.clone(), 0, t, StoreMode::Set)
                        .unwrap();
                    model.insert(k, (v, if ttl == 0 { 0 } else { now + ttl }));
                }
                2 => assert_eq!(
                    c.get(k.as_bytes()).map(|i| i.value.to_vec()),
                    model.get(&k).map(|m| m.0.clone()),
                    "{kind} step {step}"
                ),
                3 => assert_eq!(c.del(k.as_bytes()), model.remove(&k).is_some()),
                4 => clock.advance(rng.random_range(0..300)),
                _ => {
                    c.sweep_expired();
                }
            }
            c.validate()
                .unwrap_or_else(|e| panic!("{kind} step {step}: {e}"));
        }
    }
}

#[test]
fn concurrent_use_from_threads() {
    let cfg = CacheConfig {
        max_entries: 5_000,
        cleanup_interval_ms: 0,
        ..Default::default()
    };
    let c = Arc::new(Cache::new(cfg).unwrap());
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let c = c.clone();
            std::thread::spawn(move || {
                let mut rng = SmallRng::seed_from_u64(t);
                for i in 0..20_000 {
                    let k = format!("k{}", rng.random_range(0..10_000));
                    if i % 4 == 0 {
                        set(&c, &k, "value");
                    } else if let Some(v) = get(&c, &k) {
                        assert_eq!(v, b"value");
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert!(c.len() <= 5_000 + c.stats().shards);
    let s = c.stats();
    assert_eq!(s.gets(), 60_000);
    c.validate().unwrap();
}

#[test]
fn a_growing_overwrite_never_evicts_the_value_just_written() {
    for kind in PolicyKind::ALL {
        let (c, _) = cache_with(kind, 0, 2_000);
        for k in ["a", "b", "c"] {
            c.put(
                k.as_bytes(),
                &vec![b'x'; 300],
                0,
                Ttl::Default,
                StoreMode::Set,
            )
            .unwrap();
        }
        c.put(b"a", &vec![b'y'; 1_300], 0, Ttl::Default, StoreMode::Set)
            .unwrap();
        assert_eq!(c.get(b"a").map(|i| i.value.len()), Some(1_300), "{kind}");
        c.put(b"a", &[b'z'; 200], 0, Ttl::Default, StoreMode::Append)
            .unwrap();
        assert_eq!(c.get(b"a").map(|i| i.value.len()), Some(1_500), "{kind}");
        assert!(c.stats().bytes <= 2_000);
        ok(&c);
    }
}

#[test]
fn limits_split_exactly_across_shards() {
    let cfg = CacheConfig {
        max_entries: 1_001,
        max_memory: 100_003,
        shards: 4,
        cleanup_interval_ms: 0,
        ..Default::default()
    };
    let c = Cache::new(cfg).unwrap();
    for i in 0..5_000 {
        set(&c, &format!("k{i}"), "v");
        assert!(c.len() <= 1_001);
        assert!(c.stats().bytes <= 100_003);
    }
    ok(&c);
}

#[test]
fn counters_follow_memcached_for_unfetched_items_gat_and_incr() {
    let (c, clock) = cache_with(PolicyKind::Lru, 2, 0);
    set_ttl(&c, "short", Ttl::After(1_000));
    set(&c, "read", "1");
    assert!(get(&c, "read").is_some());
    clock.advance(2_000);
    assert_eq!(get(&c, "short"), None); // expired, never read, met by a lookup
    set(&c, "a", "1");
    set(&c, "b", "1"); // evicts "read" (fetched), then ...
    set(&c, "c", "1"); // ... "a" (never fetched)
    let s = c.stats().counters;
    assert_eq!((s.expirations, s.expired_unfetched), (1, 0));
    assert_eq!((s.evictions, s.evicted_unfetched), (2, 1));
    set_ttl(&c, "swept", Ttl::After(1_000));
    clock.advance(2_000);
    assert_eq!(c.sweep_expired(), 1); // reclaimed in the background, never read
    let s = c.stats().counters;
    assert_eq!((s.expirations, s.expired_unfetched), (2, 1));

    // an already-expired store: stored, then expired unread at once
    c.put(b"gone", b"x", 0, Ttl::Expired, StoreMode::Set)
        .unwrap();
    let s = c.stats().counters;
    assert_eq!((s.total_items, s.expired_unfetched), (7, 2));

    // get-and-touch counts as a touch, not a get
    let before = c.stats().counters;
    assert!(c.gat(b"c", Ttl::Never).is_some());
    assert!(c.gat(b"nope", Ttl::Never).is_none());
    let s = c.stats().counters;
    assert_eq!((s.touch_hits, s.touch_misses), (1, 1));
    assert_eq!(
        (s.get_hits, s.get_misses),
        (before.get_hits, before.get_misses)
    );

    // incr and decr are not stores; in place they make no new item
    let before = c.stats().counters;
    assert!(matches!(
        c.incr_decr(b"c", Delta::Incr(1)),
        DeltaOutcome::Done((2, _))
    ));
    let s = c.stats().counters;
    assert_eq!(
        (s.cmd_set, s.total_items),
        (before.cmd_set, before.total_items)
    );
    set(&c, "c", "9");
    let before = c.stats().counters;
    assert!(matches!(
        c.incr_decr(b"c", Delta::Incr(1)),
        DeltaOutcome::Done((10, _))
    ));
    assert_eq!(c.stats().counters.total_items, before.total_items + 1); // it grew
    ok(&c);
}

#[test]
fn values_cross_the_shared_size_in_both_directions() {
    // Entries keep values of SHARED_VALUE_MIN bytes and up in their own buffer and smaller ones
    // inline: every way a value moves between the two keeps the bytes, the accounting and the
    // limits right, and a reader's shared copy never changes under it.
    let big = SHARED_VALUE_MIN;
    for kind in PolicyKind::ALL {
        let (c, _) = cache_with(kind, 0, 8 * big as u64);
        let k = b"k".as_slice();
        let store = |v: &[u8], mode| c.put(k, v, 0, Ttl::Default, mode).unwrap();
        assert!(matches!(
            store(&vec![1; big - 10], StoreMode::Set),
            StoreOutcome::Stored(_)
        ));
        let before = c.get(k).unwrap().value;
        // Append grows an inline value past the threshold.
        store(&[2; 20], StoreMode::Append);
        let grown = c.get(k).unwrap().value;
        assert_eq!(grown.len(), big + 10);
        assert!(
            grown[..big - 10].iter().all(|&b| b == 1) && grown[big - 10..].iter().all(|&b| b == 2)
        );
        assert_eq!(before.len(), big - 10, "a copy read earlier is unchanged");
        ok(&c);
        // A shared value's buffer outlives an overwrite that makes it small again.
        let shared = c.get(k).unwrap().value;
        store(b"small", StoreMode::Set);
        assert_eq!(c.get(k).unwrap().value.as_ref(), b"small");
        assert_eq!(shared, grown);
        ok(&c);
        // Prepend makes it large again; a same-size large overwrite replaces it.
        store(&vec![3; big], StoreMode::Prepend);
        assert_eq!(c.get(k).unwrap().value.len(), big + 5);
        store(&vec![4; big + 5], StoreMode::Set);
        assert!(c.get(k).unwrap().value.iter().all(|&b| b == 4));
        ok(&c);
        // Large values fill the budget and are evicted like any other.
        for i in 0..20u8 {
            c.put(&[b'x', i], &vec![i; big], 0, Ttl::Default, StoreMode::Set)
                .unwrap();
            ok(&c);
        }
        let s = c.stats();
        assert!(
            s.bytes <= 8 * big as u64,
            "{kind:?}: {} bytes held",
            s.bytes
        );
        assert!(s.curr_items < 10, "{kind:?}: {} items", s.curr_items);
    }
}

#[test]
fn the_memory_limit_changes_at_run_time() {
    for kind in PolicyKind::ALL {
        let clock = testkit::clock();
        let cfg = CacheConfig {
            max_memory: 1 << 20,
            eviction: kind,
            shards: 4,
            cleanup_interval_ms: 0,
            ..Default::default()
        };
        let c = Cache::with_clock(cfg, clock).unwrap();
        let fill = |prefix: &str, n: usize| {
            for i in 0..n {
                let key = format!("{prefix}{i}");
                c.put(key.as_bytes(), &[7; 1000], 0, Ttl::Default, StoreMode::Set)
                    .unwrap();
            }
        };
        fill("k", 900);
        let full = c.stats();
        assert!(full.bytes > 600 << 10, "{kind:?}: {} bytes", full.bytes);
        c.set_max_memory(256 << 10);
        let s = c.stats();
        assert_eq!((c.max_memory(), s.limit_maxbytes), (256 << 10, 256 << 10));
        assert!(
            s.bytes <= 256 << 10,
            "{kind:?}: {} bytes after lowering",
            s.bytes
        );
        assert!(s.counters.evictions > 0 && s.curr_items < full.curr_items);
        ok(&c);
        // Raised again, it grows past the old limit without evicting.
        c.set_max_memory(4 << 20);
        let before = c.stats().counters.evictions;
        fill("j", 2000);
        let s = c.stats();
        assert_eq!(s.counters.evictions, before, "{kind:?}");
        assert!(s.bytes > 1 << 20);
        // 0 means unlimited.
        c.set_max_memory(0);
        assert_eq!(c.stats().limit_maxbytes, 0);
        ok(&c);
    }
}
