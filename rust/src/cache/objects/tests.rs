//! The object table against a model, for every policy, with deadlines, weights, colliding hashes
//! and a failing `eq`.

use std::collections::HashMap;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::*;

type Table = ObjectTable<u64, u64>;

/// Keys hash to themselves modulo 64, so many keys share a hash and `eq` decides.
fn h(k: u64) -> u64 {
    (k % 64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

fn eq(k: u64) -> impl FnMut(&u64) -> Result<bool, ()> {
    move |x| Ok(*x == k)
}

fn at(t: u64) -> Now<impl Fn() -> u64> {
    Now::new(move || t)
}

fn entry(k: u64, v: u64, weight: u64, exp: u64) -> NewEntry<impl FnOnce() -> u64, u64> {
    NewEntry {
        hash: h(k),
        key: move || k,
        value: v,
        weight,
        expires_at: exp,
    }
}

fn put(
    t: &mut Table,
    k: u64,
    v: u64,
    mode: PutMode,
    now: u64,
    g: &mut Garbage<u64, u64>,
) -> String {
    let out = t
        .put(entry(k, v, 0, 0), mode, eq(k), &mut at(now), g)
        .unwrap();
    format!("{out:?}")
}

fn set(t: &mut Table, k: u64, v: u64, weight: u64, exp: u64, now: u64) -> Put<'static, u64> {
    let mut g = Vec::new();
    match t
        .put(
            entry(k, v, weight, exp),
            PutMode::Overwrite,
            eq(k),
            &mut at(now),
            &mut g,
        )
        .unwrap()
    {
        Put::Inserted => Put::Inserted,
        Put::Replaced { old } => Put::Replaced { old },
        Put::TooHeavy { value } => Put::TooHeavy { value },
        Put::Present { .. } => unreachable!("Overwrite never reports Present"),
    }
}

fn get(t: &mut Table, k: u64, now: u64) -> Option<u64> {
    let mut g = Vec::new();
    t.get(h(k), eq(k), &mut at(now), &mut g).unwrap().copied()
}

fn limits(entries: Option<u64>, weight: Option<u64>) -> ObjectLimits {
    ObjectLimits {
        max_entries: entries,
        max_weight: weight,
    }
}

#[test]
fn set_get_replace_remove() {
    for kind in PolicyKind::ALL {
        let mut t = Table::new(kind, limits(Some(100), None));
        assert!(matches!(set(&mut t, 1, 10, 0, 0, 0), Put::Inserted));
        assert!(matches!(set(&mut t, 65, 20, 0, 0, 0), Put::Inserted)); // same hash as 1
        assert_eq!(get(&mut t, 1, 0), Some(10));
        assert_eq!(get(&mut t, 65, 0), Some(20));
        assert_eq!(get(&mut t, 129, 0), None);
        match set(&mut t, 1, 11, 0, 0, 0) {
            Put::Replaced { old } => assert_eq!(old, 10),
            other => panic!("{other:?}"),
        }
        assert_eq!(get(&mut t, 1, 0), Some(11));
        let r = t.remove(h(65), eq(65), &mut at(0)).unwrap().unwrap();
        assert_eq!((r.key, r.value, r.live), (65, 20, true));
        assert!(t.remove(h(65), eq(65), &mut at(0)).unwrap().is_none());
        assert_eq!(t.len(), 1);
        let c = t.counters();
        assert_eq!((c.hits, c.misses, c.sets), (3, 1, 3), "{kind}");
        t.validate().unwrap();
    }
}

#[test]
fn an_eq_error_stops_the_lookup_and_changes_nothing() {
    let mut t = Table::new(PolicyKind::Lru, limits(Some(10), None));
    set(&mut t, 1, 10, 0, 0, 0);
    let mut g = Vec::new();
    let failing = |_: &u64| -> Result<bool, &str> { Err("boom") };
    assert_eq!(
        t.get(h(1), failing, &mut at(0), &mut g).unwrap_err(),
        "boom"
    );
    assert_eq!(
        t.put(
            entry(1, 5, 0, 0),
            PutMode::Overwrite,
            failing,
            &mut at(0),
            &mut g
        )
        .unwrap_err(),
        "boom"
    );
    assert_eq!(get(&mut t, 1, 0), Some(10));
    assert_eq!(t.len(), 1);
    t.validate().unwrap();
}

#[test]
fn eq_runs_only_on_equal_hashes() {
    let mut t = Table::new(PolicyKind::S3Fifo, limits(Some(10), None));
    let mut g = Vec::new();
    let new = NewEntry {
        hash: 1,
        key: || 1,
        value: 1,
        weight: 0,
        expires_at: 0,
    };
    t.put(new, PutMode::Overwrite, eq(1), &mut at(0), &mut g)
        .unwrap();
    let mut calls = 0;
    let counting = |k: &u64| {
        calls += 1;
        Ok::<_, ()>(*k == 2)
    };
    assert!(t.get(2, counting, &mut at(0), &mut g).unwrap().is_none());
    assert_eq!(calls, 0);
}

#[test]
fn lru_evicts_the_least_recently_used() {
    let mut t = Table::new(PolicyKind::Lru, limits(Some(3), None));
    let mut g = Vec::new();
    for k in 1..=3 {
        put(&mut t, k, k, PutMode::Overwrite, 0, &mut g);
    }
    assert_eq!(get(&mut t, 1, 0), Some(1));
    put(&mut t, 4, 4, PutMode::Overwrite, 0, &mut g);
    assert_eq!(g, vec![(2, 2)]);
    assert_eq!(get(&mut t, 2, 0), None);
    assert_eq!(t.counters().evictions, 1);
    let r = t.pop_victim(&mut at(0)).unwrap();
    assert_eq!((r.key, r.value, r.live), (3, 3, true));
    t.validate().unwrap();
}

#[test]
fn weights_bound_the_table_and_a_too_heavy_entry_changes_nothing() {
    let mut t = Table::new(PolicyKind::Fifo, limits(None, Some(100)));
    set(&mut t, 1, 1, 40, 0, 0);
    set(&mut t, 2, 2, 40, 0, 0);
    assert!(matches!(
        set(&mut t, 3, 3, 101, 0, 0),
        Put::TooHeavy { value: 3 }
    ));
    assert_eq!(t.weight(), 80);
    set(&mut t, 3, 3, 40, 0, 0); // evicts 1, the oldest
    assert_eq!(get(&mut t, 1, 0), None);
    assert_eq!(t.weight(), 80);
    // Growing 3 in place evicts the others, never 3 itself.
    set(&mut t, 3, 33, 100, 0, 0);
    assert_eq!(get(&mut t, 3, 0), Some(33));
    assert_eq!((t.len(), t.weight()), (1, 100));
    t.validate().unwrap();
}

#[test]
fn deadlines_expire_on_read_on_sweep_and_can_change() {
    for kind in PolicyKind::ALL {
        let mut t = Table::new(kind, limits(Some(100), None));
        set(&mut t, 1, 1, 0, 1_000, 0);
        set(&mut t, 2, 2, 0, 2_000, 0);
        set(&mut t, 3, 3, 0, 0, 0);
        assert_eq!(get(&mut t, 1, 999), Some(1));
        assert_eq!(get(&mut t, 1, 1_000), None, "a deadline is exclusive");
        let mut g = Vec::new();
        assert!(t
            .set_deadline(h(2), eq(2), 0, &mut at(1_500), &mut g)
            .unwrap());
        assert_eq!(get(&mut t, 2, 10_000), Some(2));
        assert!(t
            .set_deadline(h(3), eq(3), 5_000, &mut at(1_500), &mut g)
            .unwrap());
        let mut g = Vec::new();
        assert_eq!(t.sweep_all(&mut at(5_000), &mut g), 1);
        assert_eq!(g, vec![(3, 3)]);
        assert_eq!(t.counters().expirations, 2);
        assert_eq!(t.len(), 1);
        t.validate().unwrap();
    }
}

#[test]
fn if_absent_keeps_a_live_entry_and_replaces_an_expired_one() {
    let mut t = Table::new(PolicyKind::S3Fifo, limits(Some(10), None));
    let mut g = Vec::new();
    set(&mut t, 1, 1, 0, 100, 0);
    assert_eq!(
        put(&mut t, 1, 9, PutMode::IfAbsent, 50, &mut g),
        "Present { existing: 1, value: 9 }"
    );
    assert_eq!(
        put(&mut t, 1, 9, PutMode::IfAbsent, 100, &mut g),
        "Inserted"
    );
    assert_eq!(get(&mut t, 1, 1_000_000), Some(9));
    t.validate().unwrap();
}

#[test]
fn the_clock_is_read_only_when_a_deadline_needs_it() {
    let mut t = Table::new(PolicyKind::S3Fifo, limits(Some(10), None));
    let mut g = Vec::new();
    let reads = std::cell::Cell::new(0);
    let mut now = Now::new(|| {
        reads.set(reads.get() + 1);
        0
    });
    t.put(
        entry(1, 1, 0, 0),
        PutMode::Overwrite,
        eq(1),
        &mut now,
        &mut g,
    )
    .unwrap();
    t.get(h(1), eq(1), &mut now, &mut g).unwrap();
    assert_eq!(reads.get(), 0);
}

/// Random operations against a model: every read returns the latest value written for the key
/// or nothing (evicted or expired, never resurrected), and the invariants hold after each step.
#[test]
fn random_operations_agree_with_a_model() {
    for kind in PolicyKind::ALL {
        for (entries, weight) in [(Some(16), None), (None, Some(400)), (Some(8), Some(300))] {
            let mut rng = SmallRng::seed_from_u64(7);
            let mut t = Table::new(kind, limits(entries, weight));
            // key -> (value, weight, deadline) of what may still be in the table
            let mut model: HashMap<u64, (u64, u64, u64)> = HashMap::new();
            let mut now = 1_000u64;
            for step in 0..4_000u64 {
                let k = rng.random_range(0..48u64);
                let mut g = Vec::new();
                match rng.random_range(0..10) {
                    0..=3 => {
                        let w = rng.random_range(1..60);
                        let exp = if rng.random_bool(0.3) {
                            now + rng.random_range(1..50)
                        } else {
                            0
                        };
                        let new = entry(k, step, w, exp);
                        match t
                            .put(new, PutMode::Overwrite, eq(k), &mut at(now), &mut g)
                            .unwrap()
                        {
                            Put::TooHeavy { .. } => {
                                assert!(weight.is_some_and(|m| w > m));
                            }
                            _ => {
                                model.insert(k, (step, w, exp));
                            }
                        }
                    }
                    4..=7 => {
                        let got = t.get(h(k), eq(k), &mut at(now), &mut g).unwrap().copied();
                        match (got, model.get(&k)) {
                            (Some(v), Some(&(mv, _, exp))) => {
                                assert_eq!(v, mv, "{kind} step {step}");
                                assert!(exp == 0 || now < exp, "{kind}: served expired");
                            }
                            (Some(v), None) => panic!("{kind}: {k} resurrected as {v}"),
                            (None, _) => {
                                model.remove(&k);
                            }
                        }
                    }
                    8 => {
                        let r = t.remove(h(k), eq(k), &mut at(now)).unwrap();
                        if let Some(r) = r.filter(|r| r.live) {
                            assert_eq!(Some(r.value), model.get(&k).map(|m| m.0));
                        }
                        model.remove(&k);
                    }
                    _ => now += rng.random_range(0..20),
                }
                // Evicted keys disappear from the model lazily: anything the table no longer
                // holds is dropped from it.
                for (gk, _) in &g {
                    if model.get(gk).is_some_and(|_| {
                        t.peek(h(*gk), eq(*gk), &mut at(now), &mut Vec::new())
                            .unwrap()
                            .is_none()
                    }) {
                        model.remove(gk);
                    }
                }
                t.validate()
                    .unwrap_or_else(|e| panic!("{kind} step {step}: {e}"));
            }
            let c = t.counters();
            assert!(c.evictions > 0, "{kind}: the bounds were never reached");
        }
    }
}

#[test]
fn deadlines_are_exact_to_the_millisecond_inside_their_last_second() {
    for deadline in [1_000, 1_001, 1_999, 2_000, 5_432] {
        let mut t = Table::new(PolicyKind::Lru, limits(Some(10), None));
        set(&mut t, 1, 1, 0, deadline, 0);
        assert_eq!(get(&mut t, 1, 0), Some(1));
        assert_eq!(get(&mut t, 1, deadline - 1), Some(1), "{deadline}");
        assert_eq!(
            t.peek(h(1), eq(1), &mut at(deadline - 1), &mut Vec::new())
                .unwrap()
                .map(|(v, exp)| (*v, exp)),
            Some((1, deadline))
        );
        assert_eq!(get(&mut t, 1, deadline), None, "{deadline}");
        t.validate().unwrap();
    }
    assert_eq!(super::hint_of(0), 0);
    assert_eq!(super::hint_of(1), 1);
    assert_eq!(super::hint_of(1_000), 1);
    assert_eq!(super::hint_of(1_001), 2);
    assert_eq!(super::hint_of(u64::MAX), u32::MAX);
}
