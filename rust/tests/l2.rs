//! The L2 tier end to end: the L1 over a real redb file in a temporary directory, on a manual
//! clock. Every test reopens the directory where persistence is the point.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ratmemcache::cache::{
    Cache, CacheConfig, Delta, DeltaOutcome, Keyspace, ManualClock, StoreMode, StoreOutcome, Ttl,
};
use ratmemcache::engine::{Engine, EngineConfig};
use ratmemcache::protocol::Session;
use ratmemcache::store::{Compression, DiskConfig, OnCorruption, SyncMode, FILE_NAME};
use ratmemcache::testkit::{clock, Ops};
use ratmemcache::tiered::{TierConfig, WriteStrategy};
use ratmemcache::{CoreError, Tiered};

const LARGE: usize = 10 * 1024;

fn l1(clock: &Arc<ManualClock>, max_memory: u64) -> Cache {
    let cfg = CacheConfig {
        max_memory,
        shards: 1,
        cleanup_interval_ms: 0,
        ..Default::default()
    };
    Cache::with_clock(cfg, clock.clone()).unwrap()
}

fn disk(dir: &Path) -> DiskConfig {
    DiskConfig {
        dir: dir.to_path_buf(),
        sync: SyncMode::Never,
        cleanup_interval: Duration::ZERO,
        ..Default::default()
    }
}

fn tiers(strategy: WriteStrategy) -> TierConfig {
    TierConfig {
        strategy,
        large_value_threshold: LARGE,
        warm_up: false,
    }
}

fn open(dir: &Path, clock: &Arc<ManualClock>, strategy: WriteStrategy) -> Arc<Tiered> {
    Tiered::open(l1(clock, 64 << 20), disk(dir), tiers(strategy)).unwrap()
}

fn set(t: &Tiered, key: &str, value: &[u8]) -> u64 {
    match t
        .put(key.as_bytes(), value, 7, Ttl::Never, StoreMode::Set)
        .unwrap()
    {
        StoreOutcome::Stored(cas) => cas,
        other => panic!("set {key}: {other:?}"),
    }
}

fn get(t: &Tiered, key: &str) -> Option<Vec<u8>> {
    t.get(key.as_bytes()).map(|i| i.value.to_vec())
}

#[test]
fn write_through_survives_a_restart_with_cas_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let cas = {
        let t = open(dir.path(), &c, WriteStrategy::WriteThrough);
        let cas = set(&t, "a", b"alpha");
        assert_eq!(t.tier_stats().unwrap().disk.writes, 1);
        t.close().unwrap();
        cas
    };
    let t = open(dir.path(), &c, WriteStrategy::WriteThrough);
    assert!(
        !t.l1().contains(b"a"),
        "a fresh L1 without warm-up is empty"
    );
    let item = t.get(b"a").unwrap();
    assert_eq!(
        (&item.value[..], item.flags, item.cas),
        (&b"alpha"[..], 7, cas)
    );
    assert!(t.l1().contains(b"a"), "the hit was promoted");
    assert_eq!(t.stats().counters.get_hits, 1);
    assert_eq!(
        t.stats().counters.get_misses,
        0,
        "an L2 hit is not an L1 miss"
    );
    // CAS uniques stay unique across the restart.
    assert!(set(&t, "b", b"beta") > cas);
    t.validate().unwrap();
}

#[test]
fn large_values_live_only_on_disk_and_every_command_works_on_them() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let t = open(dir.path(), &c, WriteStrategy::WriteThrough);
    let big = vec![b'x'; LARGE + 1];
    let cas = set(&t, "big", &big);
    assert!(!t.l1().contains(b"big"), "a large value takes no L1 memory");
    assert_eq!(t.stats().bytes, 0);
    assert_eq!(get(&t, "big").unwrap(), big);
    assert!(!t.l1().contains(b"big"), "nor after a read");
    assert_eq!(t.get(b"big").unwrap().cas, cas);

    // append, cas, add, replace, incr, touch and delete see the L2 item.
    let r = t
        .put(b"big", b"yz", 0, Ttl::Never, StoreMode::Append)
        .unwrap();
    assert!(matches!(r, StoreOutcome::Stored(_)));
    let item = t.get(b"big").unwrap();
    assert_eq!(item.value.len(), LARGE + 3);
    assert!(item.value.ends_with(b"xyz"));
    assert_eq!(item.flags, 7, "append keeps the flags");
    assert_eq!(
        t.put_cas(b"big", b"v", 0, Ttl::Never, cas).unwrap(),
        StoreOutcome::Exists
    );
    assert_eq!(
        t.put(b"big", b"v", 0, Ttl::Never, StoreMode::Add).unwrap(),
        StoreOutcome::NotStored
    );
    assert_eq!(
        t.incr_decr(b"big", Delta::Incr(1)),
        DeltaOutcome::NonNumeric,
        "incr on a large non-number"
    );
    assert!(matches!(
        t.put_cas(b"big", b"small now", 3, Ttl::Never, item.cas)
            .unwrap(),
        StoreOutcome::Stored(_)
    ));
    assert!(
        t.l1().contains(b"big"),
        "a value that shrank moves up to the L1"
    );
    assert_eq!(get(&t, "big").unwrap(), b"small now");
    set(&t, "big", &big);
    assert!(!t.l1().contains(b"big"), "and back down when it grows");
    assert!(t.touch(b"big", Ttl::After(5_000)).is_some());
    c.advance(6_000);
    assert_eq!(
        get(&t, "big"),
        None,
        "the touch's deadline was written to the L2"
    );
    set(&t, "big", &big);
    assert!(t.del(b"big"));
    assert_eq!(get(&t, "big"), None);
    assert!(!t.del(b"big"));
    t.flush(false).unwrap();
    assert_eq!(t.tier_stats().unwrap().disk.items, 0);
    t.validate().unwrap();
}

#[test]
fn expired_records_are_never_returned_and_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let t = open(dir.path(), &c, WriteStrategy::WriteThrough);
    t.put(b"k", b"v", 0, Ttl::After(10_000), StoreMode::Set)
        .unwrap();
    t.put(
        b"big",
        &[1; LARGE + 1],
        0,
        Ttl::After(10_000),
        StoreMode::Set,
    )
    .unwrap();
    t.put(b"keep", b"v", 0, Ttl::Never, StoreMode::Set).unwrap();
    t.l1().clear();
    c.advance(11_000);
    assert_eq!(get(&t, "k"), None);
    assert_eq!(get(&t, "big"), None);
    t.flush(false).unwrap();
    assert_eq!(
        t.tier_stats().unwrap().disk.items,
        1,
        "both deleted on read"
    );

    // The background sweep deletes the ones nobody reads.
    t.put(b"late", b"v", 0, Ttl::After(1_000), StoreMode::Set)
        .unwrap();
    c.advance(2_000);
    t.flush(false).unwrap();
    assert_eq!(t.sweep_expired().unwrap(), 2, "one in L1, one in L2");
    assert_eq!(t.tier_stats().unwrap().disk.items, 1);
}

#[test]
fn write_back_demotes_evictions_and_writes_the_l1_down_on_close() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let value = vec![b'v'; 1000];
    {
        // Room for a handful of entries only.
        let t = Tiered::open(
            l1(&c, 8 * 1024),
            disk(dir.path()),
            tiers(WriteStrategy::WriteBack),
        )
        .unwrap();
        for i in 0..50 {
            set(&t, &format!("k{i}"), &value);
        }
        assert!(t.l1().len() < 10);
        let ts = t.tier_stats().unwrap();
        assert!(ts.demotions >= 40, "{ts:?}");
        for i in 0..50 {
            assert_eq!(
                get(&t, &format!("k{i}")).as_deref(),
                Some(&value[..]),
                "k{i}"
            );
        }
        t.validate().unwrap();
        t.close().unwrap();
    }
    let t = Tiered::open(
        l1(&c, 1 << 20),
        disk(dir.path()),
        tiers(WriteStrategy::WriteBack),
    )
    .unwrap();
    for i in 0..50 {
        assert_eq!(
            get(&t, &format!("k{i}")).as_deref(),
            Some(&value[..]),
            "k{i}"
        );
    }
    // A promotion moves the item: the tiers stay exclusive, so an update is never shadowed by
    // an older L2 copy.
    set(&t, "k1", b"new");
    t.l1().clear();
    assert_eq!(
        get(&t, "k1"),
        None,
        "write_back: the L1-only update is lost with the L1"
    );
    assert_eq!(
        get(&t, "k2").as_deref(),
        None,
        "promoted earlier, so it was moved up"
    );
}

#[test]
fn max_disk_size_evicts_the_oldest_records() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let mut cfg = disk(dir.path());
    cfg.max_disk_size = 200 * 1024;
    cfg.compression = Compression {
        enabled: false,
        threshold: 0,
    };
    let t = Tiered::open(l1(&c, 64 << 20), cfg, tiers(WriteStrategy::WriteThrough)).unwrap();
    let big = vec![b'q'; 20 * 1024];
    for i in 0..30 {
        c.advance(1);
        set(&t, &format!("big{i}"), &big);
        t.flush(false).unwrap();
    }
    let s = t.tier_stats().unwrap().disk;
    assert!(s.bytes <= 200 * 1024, "{s:?}");
    assert!(s.evictions >= 20, "{s:?}");
    assert_eq!(get(&t, "big0"), None, "the oldest went first");
    assert_eq!(get(&t, "big29").as_deref(), Some(&big[..]));
}

#[test]
fn compression_shrinks_the_file_and_reads_back_raw() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let t = open(dir.path(), &c, WriteStrategy::WriteThrough);
    let text: Vec<u8> = b"the quick brown fox jumps over the lazy dog. "
        .iter()
        .copied()
        .cycle()
        .take(1 << 20)
        .collect();
    set(&t, "text", &text);
    t.flush(true).unwrap();
    let s = t.tier_stats().unwrap().disk;
    assert!(
        s.bytes < 100 * 1024,
        "1 MiB of text stored in {} bytes",
        s.bytes
    );
    assert_eq!(get(&t, "text").unwrap(), text);
}

#[test]
fn warm_up_fills_the_l1_most_recent_first() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let value = vec![b'w'; 500];
    {
        let t = open(dir.path(), &c, WriteStrategy::WriteThrough);
        for i in 0..200 {
            c.advance(1);
            set(&t, &format!("w{i:03}"), &value);
        }
        t.close().unwrap();
    }
    let mut warm = tiers(WriteStrategy::WriteThrough);
    warm.warm_up = true;
    // Room for about 50 of the 200.
    let t = Tiered::open(l1(&c, 50 * 650), disk(dir.path()), warm).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while t.tier_stats().unwrap().warm_running {
        assert!(std::time::Instant::now() < deadline, "warm-up never ended");
        std::thread::sleep(Duration::from_millis(10));
    }
    let loaded = t.tier_stats().unwrap().warm_loaded;
    assert!((30..=60).contains(&loaded), "loaded {loaded}");
    assert!(t.l1().contains(b"w199"), "the most recent are warm");
    assert!(!t.l1().contains(b"w000"), "the oldest are not");
    assert_eq!(t.stats().counters.evictions, 0, "warm-up never evicts");
    assert_eq!(
        get(&t, "w000").as_deref(),
        Some(&value[..]),
        "but are served"
    );
}

#[test]
fn flush_all_empties_both_tiers() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let t = open(dir.path(), &c, WriteStrategy::WriteThrough);
    set(&t, "a", b"1");
    set(&t, "big", &[0; LARGE + 1]);
    t.clear();
    assert_eq!(get(&t, "a"), None);
    assert_eq!(get(&t, "big"), None);
    set(&t, "after", b"2");
    t.close().unwrap();
    let t = open(dir.path(), &c, WriteStrategy::WriteThrough);
    assert_eq!(get(&t, "a"), None);
    assert_eq!(get(&t, "after").as_deref(), Some(&b"2"[..]));
}

#[test]
fn sync_always_commits_before_acknowledging_and_groups_concurrent_writers() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let mut cfg = disk(dir.path());
    cfg.sync = SyncMode::Always;
    let t = Tiered::open(l1(&c, 64 << 20), cfg, tiers(WriteStrategy::WriteThrough)).unwrap();
    let threads: Vec<_> = (0..8)
        .map(|n| {
            let t = t.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    set(&t, &format!("t{n}-{i}"), b"v");
                }
            })
        })
        .collect();
    for h in threads {
        h.join().unwrap();
    }
    let s = t.tier_stats().unwrap().disk;
    assert_eq!(s.items, 400, "every acknowledged write is committed: {s:?}");
    assert!(s.commits < 400, "writers share commits: {s:?}");
}

#[test]
fn meta_commands_work_on_an_item_in_the_l2() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let t = open(dir.path(), &c, WriteStrategy::WriteThrough);
    let engine = Arc::new(Engine::new(t.clone(), EngineConfig::default()));
    let mut s = Session::new(engine);
    let mut out = Vec::new();
    let mut run = |req: &[u8]| {
        out.clear();
        s.feed(req, &mut out);
        String::from_utf8_lossy(&out).into_owned()
    };
    let big = "b".repeat(LARGE + 10);
    assert_eq!(
        run(format!("set k 5 0 {}\r\n{big}\r\n", big.len()).as_bytes()),
        "STORED\r\n"
    );
    assert_eq!(
        run(b"mg k s f t v\r\n"),
        format!("VA {0} s{0} f5 t-1\r\n{big}\r\n", big.len())
    );
    assert_eq!(run(b"mg k T30 t\r\n"), "HD t30\r\n");
    assert_eq!(
        run(b"ma k\r\n"),
        "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"
    );
    assert_eq!(run(b"md k I\r\n"), "HD\r\n");
    let stale = run(b"mg k v c\r\n");
    assert!(stale.lines().next().unwrap().contains(" X"), "{stale}");
    assert_eq!(run(b"md k\r\n"), "HD\r\n");
    assert_eq!(run(b"mg k v\r\n"), "EN\r\n");
    assert_eq!(run(b"mn\r\n"), "MN\r\n");
    t.validate().unwrap();
}

fn open_err(dir: &Path) -> String {
    let c = clock();
    match Tiered::open(
        l1(&c, 1 << 20),
        disk(dir),
        tiers(WriteStrategy::WriteThrough),
    ) {
        Ok(_) => panic!("opened"),
        Err(CoreError::Persistence(m)) => m,
        Err(e) => panic!("wrong error {e:?}"),
    }
}

#[test]
fn a_garbage_or_truncated_file_is_refused_with_its_path_or_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    std::fs::write(&path, vec![0xAB; 64 * 1024]).unwrap();
    let msg = open_err(dir.path());
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(
        msg.contains("corrupt") && msg.contains("on_corruption"),
        "{msg}"
    );

    // A real file cut in half.
    std::fs::remove_file(&path).unwrap();
    {
        let c = clock();
        let t = open(dir.path(), &c, WriteStrategy::WriteThrough);
        for i in 0..2000 {
            set(&t, &format!("key{i}"), &[b'z'; 300]);
        }
        t.close().unwrap();
    }
    let len = std::fs::metadata(&path).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len / 2).unwrap();
    drop(f);
    let msg = open_err(dir.path());
    assert!(msg.contains(&path.display().to_string()), "{msg}");

    // on_corruption = "reset": moved aside, never deleted, and the cache starts empty.
    let c = clock();
    let mut cfg = disk(dir.path());
    cfg.on_corruption = OnCorruption::Reset;
    let t = Tiered::open(l1(&c, 1 << 20), cfg, tiers(WriteStrategy::WriteThrough)).unwrap();
    assert_eq!(get(&t, "key1"), None);
    let aside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1);
    assert_eq!(aside[0].metadata().unwrap().len(), len / 2);
}

#[test]
fn a_file_in_use_by_another_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let _first = open(dir.path(), &c, WriteStrategy::WriteThrough);
    let msg = open_err(dir.path());
    assert!(msg.contains("locked by another process"), "{msg}");
}

#[test]
fn a_data_dir_that_cannot_be_created_is_refused_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"").unwrap();
    let msg = open_err(&file.join("l2"));
    assert!(
        msg.contains("not-a-dir") && msg.contains("data_dir"),
        "{msg}"
    );
}

#[test]
fn flushing_with_nothing_queued_returns_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let t = open(dir.path(), &c, WriteStrategy::WriteThrough);
    t.flush(false).unwrap();
    set(&t, "a", b"1");
    t.flush(false).unwrap();
    t.flush(false).unwrap();
    t.flush(true).unwrap();
    assert_eq!(t.len(), 1);
}

#[test]
fn reads_racing_the_warm_up_never_miss() {
    for strategy in [WriteStrategy::WriteThrough, WriteStrategy::WriteBack] {
        let dir = tempfile::tempdir().unwrap();
        let c = clock();
        {
            let t = open(dir.path(), &c, strategy);
            for i in 0..2000 {
                set(&t, &format!("r{i}"), b"value");
            }
            t.close().unwrap();
        }
        let mut warm = tiers(strategy);
        warm.warm_up = true;
        let t = Tiered::open(l1(&c, 64 << 20), disk(dir.path()), warm).unwrap();
        for i in (0..2000).rev() {
            assert_eq!(
                get(&t, &format!("r{i}")).as_deref(),
                Some(&b"value"[..]),
                "r{i}"
            );
        }
        assert_eq!(t.stats().counters.get_misses, 0);
    }
}

#[test]
fn periodic_sync_makes_writes_durable_once_and_an_idle_store_never_commits() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let mut cfg = disk(dir.path());
    cfg.sync = SyncMode::Periodic;
    cfg.sync_interval = Duration::from_millis(50);
    let t = Tiered::open(l1(&c, 1 << 20), cfg, tiers(WriteStrategy::WriteThrough)).unwrap();
    set(&t, "a", b"1");
    let settled = |t: &Tiered| {
        let mut last = u64::MAX;
        loop {
            std::thread::sleep(Duration::from_millis(300));
            let now = t.tier_stats().unwrap().disk.commits;
            if now == last {
                return now;
            }
            last = now;
        }
    };
    let commits = settled(&t);
    assert!(
        (1..=2).contains(&commits),
        "{commits} commits for one write"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        t.tier_stats().unwrap().disk.commits,
        commits,
        "idle: no more commits"
    );
}

/// write_back: promotions (reads that fault an item into the L1, and the warm-up) race
/// evictions of the same items by other threads' reads, in a small L1. An item promoted and at
/// once evicted again must never be deleted from both tiers: every key is still readable while
/// the threads run and after a restart.
#[test]
fn write_back_promotions_racing_evictions_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let keys: Vec<String> = (0..400).map(|i| format!("race{i}")).collect();
    let value = vec![b'v'; 500];
    {
        let t = open(dir.path(), &c, WriteStrategy::WriteBack);
        for k in &keys {
            set(&t, k, &value);
        }
        t.close().unwrap();
    }
    for round in 0..3 {
        let mut warm = tiers(WriteStrategy::WriteBack);
        warm.warm_up = round == 0;
        // Room for about 30 of the 400 items: nearly every promotion evicts another item.
        let t = Tiered::open(l1(&c, 32 * 1024), disk(dir.path()), warm).unwrap();
        std::thread::scope(|s| {
            for th in 0..4 {
                let (t, keys, value) = (&t, &keys, &value);
                s.spawn(move || {
                    for pass in 0..3 {
                        for (i, k) in keys.iter().enumerate() {
                            if (i + th + pass) % 4 == 0 {
                                assert_eq!(get(t, k).as_deref(), Some(&value[..]), "{k}");
                            }
                        }
                    }
                });
            }
        });
        t.close().unwrap();
        let t = open(dir.path(), &c, WriteStrategy::WriteBack);
        let lost: Vec<&String> = keys.iter().filter(|k| get(&t, k).is_none()).collect();
        assert!(lost.is_empty(), "round {round}: lost {lost:?}");
        t.close().unwrap();
    }
}
