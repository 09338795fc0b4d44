//! L2 values in files of their own (`[l2] file_threshold`): written before their records,
//! removed after the commits that drop them, checked on every read, and orphans removed at
//! startup. On a real directory and a manual clock.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ratmemcache::cache::{Cache, CacheConfig, Keyspace, ManualClock, StoreMode, StoreOutcome, Ttl};
use ratmemcache::store::{DiskConfig, DiskStats, SyncMode, VALUES_DIR};
use ratmemcache::testkit::{clock, Ops};
use ratmemcache::tiered::{TierConfig, WriteStrategy};
use ratmemcache::Tiered;

/// Values from here on live only in the L2 (the tier's large-value threshold)...
const LARGE: usize = 10 * 1024;
/// ...and from here on in files of their own.
const FILE: usize = 32 * 1024;

fn config(dir: &Path) -> DiskConfig {
    DiskConfig {
        dir: dir.to_path_buf(),
        sync: SyncMode::Never,
        cleanup_interval: Duration::ZERO,
        file_threshold: FILE,
        ..Default::default()
    }
}

fn open_with(cfg: DiskConfig, clock: &Arc<ManualClock>) -> Arc<Tiered> {
    open_warming(cfg, clock, false)
}

fn open_warming(cfg: DiskConfig, clock: &Arc<ManualClock>, warm_up: bool) -> Arc<Tiered> {
    let l1 = CacheConfig {
        shards: 1,
        cleanup_interval_ms: 0,
        ..Default::default()
    };
    let tiers = TierConfig {
        strategy: WriteStrategy::WriteThrough,
        large_value_threshold: LARGE,
        warm_up,
    };
    Tiered::open(Cache::with_clock(l1, clock.clone()).unwrap(), cfg, tiers).unwrap()
}

fn open(dir: &Path, clock: &Arc<ManualClock>) -> Arc<Tiered> {
    open_with(config(dir), clock)
}

/// A value that LZ4 can't shrink, different for each `seed`.
fn value(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn set(t: &Tiered, key: &str, v: &[u8], ttl: Ttl) {
    let r = t.put(key.as_bytes(), v, 3, ttl, StoreMode::Set).unwrap();
    assert!(matches!(r, StoreOutcome::Stored(_)), "set {key}: {r:?}");
}

fn get(t: &Tiered, key: &str) -> Option<Vec<u8>> {
    t.get(key.as_bytes()).map(|i| i.value.to_vec())
}

fn value_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join(VALUES_DIR))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

fn disk_stats(t: &Tiered) -> DiskStats {
    t.tier_stats().unwrap().disk
}

#[test]
fn large_values_live_in_their_own_files_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let t = open(dir.path(), &c);
    set(&t, "small", b"in the L1", Ttl::Never);
    set(&t, "mid", &value(LARGE + 1, 1), Ttl::Never); // in redb
    let (a, b) = (value(FILE, 2), value(1 << 20, 3));
    set(&t, "a", &a, Ttl::Never);
    set(&t, "b", &b, Ttl::Never);
    t.flush(false).unwrap();
    assert_eq!(
        value_files(dir.path()).len(),
        2,
        "one file per value over the threshold"
    );
    assert_eq!(get(&t, "a").unwrap(), a);
    assert_eq!(get(&t, "b").unwrap(), b);
    let s = disk_stats(&t);
    assert!(
        s.bytes > (FILE + (1 << 20)) as u64,
        "the files count: {s:?}"
    );
    assert!(
        s.file_bytes < (1 << 20),
        "the redb file holds no large value: {s:?}"
    );
    t.close().unwrap();

    let t = open(dir.path(), &c);
    assert_eq!(get(&t, "a").unwrap(), a);
    assert_eq!(get(&t, "b").unwrap(), b);
    assert_eq!(get(&t, "mid").unwrap(), value(LARGE + 1, 1));
    let item = t.get(b"b").unwrap();
    assert_eq!(item.flags, 3);
    assert_eq!(disk_stats(&t).orphans_removed, 0);
    assert_eq!(disk_stats(&t).file_errors, 0);
}

#[test]
fn every_way_a_record_goes_removes_its_file_after_the_commit() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let t = open(dir.path(), &c);
    let files = || {
        t.flush(false).unwrap();
        value_files(dir.path()).len()
    };
    // overwrite: the new value gets a new file, the old one goes
    set(&t, "k", &value(FILE, 1), Ttl::Never);
    set(&t, "k", &value(FILE, 2), Ttl::Never);
    assert_eq!(files(), 1);
    assert_eq!(get(&t, "k").unwrap(), value(FILE, 2));
    // append rewrites the value into a new file
    t.put(b"k", b"tail", 0, Ttl::Never, StoreMode::Append)
        .unwrap();
    assert_eq!(files(), 1);
    assert!(get(&t, "k").unwrap().ends_with(b"tail"));
    // a value that shrinks below the threshold leaves its file
    set(&t, "k", &value(LARGE + 1, 3), Ttl::Never);
    assert_eq!(files(), 0);
    // delete
    set(&t, "k", &value(FILE, 4), Ttl::Never);
    assert_eq!(files(), 1);
    assert!(t.del(b"k"));
    assert_eq!(files(), 0);
    // expiry, by the sweep
    set(&t, "e", &value(FILE, 5), Ttl::After(1_000));
    assert_eq!(files(), 1);
    c.advance(2_000);
    assert_eq!(t.sweep_expired().unwrap(), 1);
    assert_eq!(files(), 0);
    // expiry, found by a read
    set(&t, "e", &value(FILE, 6), Ttl::After(1_000));
    c.advance(2_000);
    assert_eq!(get(&t, "e"), None);
    assert_eq!(files(), 0);
    // flush_all
    for i in 0..5 {
        set(&t, &format!("f{i}"), &value(FILE, i), Ttl::Never);
    }
    assert_eq!(files(), 5);
    t.clear();
    assert_eq!(files(), 0);
    // many overwrites of one key between commits leave one file
    for i in 0..20 {
        set(&t, "hot", &value(FILE, 100 + i), Ttl::Never);
    }
    assert_eq!(files(), 1);
    assert_eq!(get(&t, "hot").unwrap(), value(FILE, 119));
    assert_eq!(disk_stats(&t).file_errors, 0);
}

#[test]
fn max_disk_size_counts_the_files_and_eviction_removes_them() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let mut cfg = config(dir.path());
    cfg.max_disk_size = 1 << 20;
    let t = open_with(cfg, &c);
    for i in 0..20 {
        c.advance(1);
        set(&t, &format!("v{i}"), &value(100 * 1024, i), Ttl::Never);
        t.flush(false).unwrap();
    }
    let s = disk_stats(&t);
    assert!(s.bytes <= 1 << 20, "{s:?}");
    assert!(s.evictions >= 10, "{s:?}");
    let on_disk: u64 = value_files(dir.path())
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(on_disk <= 1 << 20, "{on_disk} bytes of value files");
    assert_eq!(get(&t, "v0"), None, "the oldest went first");
    assert_eq!(get(&t, "v19").unwrap(), value(100 * 1024, 19));
}

#[test]
fn orphans_and_temporary_files_are_removed_at_startup_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let t = open(dir.path(), &c);
    set(&t, "kept", &value(FILE, 1), Ttl::Never);
    t.close().unwrap();
    drop(t);
    let values = dir.path().join(VALUES_DIR);
    // what a crash between a file's write and its record's commit leaves, and a torn write
    std::fs::write(values.join("00000000000000f0.val"), value(FILE, 2)).unwrap();
    std::fs::write(values.join("00000000000000f1.tmp"), b"torn").unwrap();
    std::fs::write(values.join("README"), b"not ours").unwrap();
    let t = open(dir.path(), &c);
    assert_eq!(disk_stats(&t).orphans_removed, 1);
    assert_eq!(get(&t, "kept").unwrap(), value(FILE, 1));
    let names: Vec<String> = value_files(dir.path())
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.contains(&"README".to_string()), "{names:?}");
    // new files never reuse an old name
    set(&t, "new", &value(FILE, 3), Ttl::Never);
    t.flush(false).unwrap();
    assert_eq!(value_files(dir.path()).len(), 3);
    assert_eq!(get(&t, "new").unwrap(), value(FILE, 3));
}

#[test]
fn a_missing_or_corrupt_file_is_a_miss_logged_counted_and_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let t = open(dir.path(), &c);
    for (k, seed) in [("gone", 1), ("flipped", 2), ("short", 3), ("fine", 4)] {
        set(&t, k, &value(FILE, seed), Ttl::Never);
    }
    t.flush(false).unwrap();
    let files = value_files(dir.path());
    assert_eq!(files.len(), 4);
    // ids follow the order of the writes
    std::fs::remove_file(&files[0]).unwrap();
    let mut bytes = std::fs::read(&files[1]).unwrap();
    bytes[FILE / 2] ^= 0x40;
    std::fs::write(&files[1], &bytes).unwrap();
    std::fs::write(&files[2], value(FILE - 1, 3)).unwrap();
    for k in ["gone", "flipped", "short"] {
        assert_eq!(get(&t, k), None, "{k}");
    }
    assert_eq!(get(&t, "fine").unwrap(), value(FILE, 4));
    assert_eq!(disk_stats(&t).file_errors, 3);
    t.flush(false).unwrap();
    assert_eq!(disk_stats(&t).items, 1, "the broken records are deleted");
    for k in ["gone", "flipped", "short"] {
        assert_eq!(get(&t, k), None, "{k}");
    }
    assert_eq!(disk_stats(&t).file_errors, 3, "each counted once");
}

#[test]
fn sync_always_acknowledges_a_file_value_only_once_it_is_committed() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let mut cfg = config(dir.path());
    cfg.sync = SyncMode::Always;
    let t = open_with(cfg, &c);
    set(&t, "k", &value(FILE, 9), Ttl::Never);
    let s = disk_stats(&t);
    assert_eq!((s.items, s.commits >= 1), (1, true), "{s:?}");
    assert_eq!(value_files(dir.path()).len(), 1);
    assert_eq!(get(&t, "k").unwrap(), value(FILE, 9));
}

#[test]
fn file_threshold_zero_keeps_every_value_in_redb() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let mut cfg = config(dir.path());
    cfg.file_threshold = 0;
    let t = open_with(cfg, &c);
    set(&t, "k", &value(1 << 20, 1), Ttl::Never);
    t.flush(false).unwrap();
    assert!(value_files(dir.path()).is_empty());
    assert_eq!(get(&t, "k").unwrap(), value(1 << 20, 1));
}

#[test]
fn the_warm_up_skips_file_values_without_reading_them() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let t = open(dir.path(), &c);
    set(&t, "small", b"warm me", Ttl::Never);
    set(&t, "big", &value(FILE, 1), Ttl::Never);
    t.close().unwrap();
    drop(t);
    // A read of the big value's file would count a file error now.
    for f in value_files(dir.path()) {
        std::fs::remove_file(f).unwrap();
    }
    let t = open_warming(config(dir.path()), &c, true);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while t.tier_stats().unwrap().warm_running {
        assert!(std::time::Instant::now() < deadline, "warm-up never ended");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(t.tier_stats().unwrap().warm_loaded, 1);
    assert!(t.l1().contains(b"small"));
    assert_eq!(
        disk_stats(&t).file_errors,
        0,
        "the big value's file was not read"
    );
}
