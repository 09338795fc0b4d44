//! Sessions that hand off only what may wait on the disk (`disk_wait`): with the L2 on, an L1
//! hit or a small queued write is answered in the feed; an L1 miss, a value file, a durable
//! commit or a whole-cache command stops the feed (`must_wait`), rolled back, and the next feed
//! answers it. Held against a session that waits in place, on an identical cache: the replies,
//! byte for byte, and the counters must be the same.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ratmemcache::cache::{Cache, CacheConfig};
use ratmemcache::engine::{Engine, EngineConfig};
use ratmemcache::protocol::Session;
use ratmemcache::store::{DiskConfig, SyncMode};
use ratmemcache::testkit::clock;
use ratmemcache::tiered::{TierConfig, WriteStrategy};
use ratmemcache::Tiered;

/// Values from here on live only in the L2...
const LARGE: usize = 8 * 1024;
/// ...and from here on in files of their own.
const FILE: usize = 32 * 1024;

fn engine(dir: &Path, sync: SyncMode, strategy: WriteStrategy) -> Arc<Engine> {
    let l1 = CacheConfig {
        shards: 1,
        cleanup_interval_ms: 0,
        ..Default::default()
    };
    let disk = DiskConfig {
        dir: dir.to_path_buf(),
        sync,
        cleanup_interval: Duration::ZERO,
        file_threshold: FILE,
        ..Default::default()
    };
    let tiers = TierConfig {
        strategy,
        large_value_threshold: LARGE,
        warm_up: false,
    };
    let l1 = Cache::with_clock(l1, clock()).unwrap();
    let tiered = Tiered::open(l1, disk, tiers).unwrap();
    let config = EngineConfig {
        max_item_size: 1 << 20,
        ..Default::default()
    };
    Arc::new(Engine::new(tiered, config))
}

/// Two identical caches: one served by a session that hands off waits, one by a plain session.
struct Pair {
    _dirs: [tempfile::TempDir; 2],
    handing: Session,
    plain: Session,
    /// Feeds that stopped at a request that must wait.
    stops: usize,
}

impl Pair {
    fn new(sync: SyncMode, strategy: WriteStrategy) -> Pair {
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let mut handing = Session::new(engine(dirs[0].path(), sync, strategy));
        handing.set_hands_off_waits(true);
        let plain = Session::new(engine(dirs[1].path(), sync, strategy));
        Pair {
            _dirs: dirs,
            handing,
            plain,
            stops: 0,
        }
    }

    /// Feeds `input` to both; returns the handing session's reply to the first feed, and checks
    /// that its replies, all told, are the plain session's.
    fn feed(&mut self, input: &[u8]) -> Vec<u8> {
        let mut plain = Vec::new();
        self.plain.feed(input, &mut plain);
        assert!(!self.plain.has_more());
        let mut first = Vec::new();
        self.handing.feed(input, &mut first);
        let mut all = first.clone();
        while self.handing.has_more() {
            if self.handing.must_wait() {
                self.stops += 1;
            }
            self.handing.feed(&[], &mut all);
        }
        assert_eq!(
            String::from_utf8_lossy(&all),
            String::from_utf8_lossy(&plain),
            "for {:?}",
            String::from_utf8_lossy(&input[..input.len().min(200)])
        );
        first
    }

    /// `feed`, checking that it answered everything at once.
    fn feed_at_once(&mut self, input: &[u8]) -> Vec<u8> {
        let before = self.stops;
        let first = self.feed(input);
        assert_eq!(self.stops, before, "no request had to wait");
        first
    }

    /// `feed`, checking that it stopped once at a request that must wait.
    fn feed_waiting(&mut self, input: &[u8]) -> Vec<u8> {
        let before = self.stops;
        let first = self.feed(input);
        assert_eq!(self.stops, before + 1, "one request had to wait");
        first
    }

    /// memcached's counters (and the tiers'), on both sides: they must be the same.
    fn same_counters(&self) {
        let pick = |s: &Session| -> Vec<(&'static str, String)> {
            // The writer thread commits in its own time: count what is committed (the number
            // of commits, and the size of the database file, depend on its timing).
            s.engine().cache().flush(false).unwrap();
            s.engine()
                .general_stats()
                .into_iter()
                .filter(|(k, _)| {
                    !matches!(
                        *k,
                        "pid"
                            | "uptime"
                            | "time"
                            | "rusage_user"
                            | "rusage_system"
                            | "bytes_read"
                            | "bytes_written"
                            | "conn_yields"
                            | "l2_commits"
                            | "l2_file_bytes"
                    )
                })
                .collect()
        };
        assert_eq!(pick(&self.handing), pick(&self.plain));
    }
}

fn set_cmd(key: &str, value: &[u8]) -> Vec<u8> {
    let mut v = format!("set {key} 5 0 {}\r\n", value.len()).into_bytes();
    v.extend_from_slice(value);
    v.extend_from_slice(b"\r\n");
    v
}

fn value(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| b'a' + ((i as u32 * 7 + seed as u32) % 26) as u8)
        .collect()
}

#[test]
fn an_l1_hit_and_a_small_write_are_answered_without_a_wait() {
    let mut p = Pair::new(SyncMode::Never, WriteStrategy::WriteThrough);
    assert_eq!(p.feed_at_once(&set_cmd("k", b"hi")), b"STORED\r\n");
    p.feed_at_once(&set_cmd("n", b"41"));
    let reply = p.feed_at_once(b"get k\r\ngets k\r\nmg k v f\r\ntouch k 100\r\nincr n 1\r\n");
    assert!(reply.starts_with(b"VALUE k 5 2\r\nhi\r\nEND\r\n"));
    assert!(reply.ends_with(b"VA 2 f5\r\nhi\r\nTOUCHED\r\n42\r\n"));
    p.same_counters();
}

#[test]
fn a_miss_stops_the_feed_there_and_the_next_feed_answers_the_rest() {
    let mut p = Pair::new(SyncMode::Never, WriteStrategy::WriteThrough);
    p.feed_at_once(&set_cmd("a", b"1"));
    // Large: in the L2 only, so a get must read the disk.
    p.feed_waiting(&set_cmd("big", &value(LARGE + 100, 1)));
    let first = p.feed_waiting(b"get a\r\nget big\r\nget a\r\n");
    assert_eq!(
        first, b"VALUE a 5 1\r\n1\r\nEND\r\n",
        "what came before the wait"
    );
    // A key that is nowhere is a wait too: only the disk can say so.
    p.feed_waiting(b"get nothing\r\nmg nothing v\r\n");
    p.same_counters();
}

#[test]
fn a_multi_key_get_answers_the_keys_before_the_wait_and_resumes_at_it() {
    let mut p = Pair::new(SyncMode::Never, WriteStrategy::WriteThrough);
    p.feed_at_once(&set_cmd("a", b"1"));
    p.feed_at_once(&set_cmd("b", b"22"));
    p.feed_waiting(&set_cmd("big", &value(LARGE + 1, 2)));
    let first = p.feed_waiting(b"get a big b\r\n");
    assert_eq!(first, b"VALUE a 5 1\r\n1\r\n", "a's block, and no END yet");
    let first = p.feed_waiting(b"gats 300 a b big a\r\n");
    assert!(first.starts_with(b"VALUE a 5 1 ") && first.ends_with(b"22\r\n"));
    // The wait at the first key rolls the whole line back.
    p.feed_waiting(b"get big a\r\n");
    // A key too long after the wait makes the whole reply an error, as memcached's: nothing
    // may have been answered before it.
    let long = "x".repeat(251);
    let first = p.feed_waiting(format!("get a big {long} b\r\n").as_bytes());
    assert_eq!(first, b"", "no VALUE block went out before the error");
    p.same_counters();
}

#[test]
fn writes_that_go_down_at_once_wait() {
    let mut p = Pair::new(SyncMode::Always, WriteStrategy::WriteThrough);
    // sync = "always": every write waits for its commit.
    assert_eq!(p.feed_waiting(&set_cmd("k", b"v")), b"");
    assert_eq!(p.feed_at_once(b"get k\r\n"), b"VALUE k 5 1\r\nv\r\nEND\r\n");
    p.feed_waiting(b"delete k\r\n");
    p.same_counters();

    let mut p = Pair::new(SyncMode::Never, WriteStrategy::WriteThrough);
    // A value file, an append (it may grow into one), a whole-cache command.
    p.feed_waiting(&set_cmd("f", &value(FILE + 10, 3)));
    p.feed_at_once(&set_cmd("s", b"x"));
    p.feed_waiting(b"append s 0 0 1\r\ny\r\n");
    p.feed_waiting(b"flush_all\r\n");
    p.feed_waiting(b"stats detail on\r\n");
    p.same_counters();
}

#[test]
fn a_rolled_back_request_changes_nothing_and_counts_nothing() {
    let mut p = Pair::new(SyncMode::Never, WriteStrategy::WriteThrough);
    p.feed_waiting(b"stats detail on\r\n");
    // mg with N vivifies on a miss: the miss waits, so nothing is vivified twice.
    p.feed_waiting(b"mg viv N30 s t v c\r\n");
    p.feed_at_once(b"mg viv s v\r\n");
    // A set over the item size limit deletes the old value first: that delete may wait.
    let too_big = set_cmd("gone", &value((1 << 20) + 1, 4));
    p.feed_at_once(&set_cmd("gone", b"old"));
    p.feed(&too_big);
    p.feed_waiting(b"get gone\r\n");
    p.feed_waiting(b"get absent\r\ndelete absent\r\nincr absent 1\r\n");
    p.feed_waiting(b"stats detail dump\r\n");
    p.same_counters();
}

/// A binary request: `extras`, `key` and `value` after the 24-byte header.
fn binary(opcode: u8, extras: &[u8], key: &[u8], value: &[u8]) -> Vec<u8> {
    let body = extras.len() + key.len() + value.len();
    let mut r = vec![0x80, opcode];
    r.extend_from_slice(&(key.len() as u16).to_be_bytes());
    r.extend_from_slice(&[extras.len() as u8, 0, 0, 0]);
    r.extend_from_slice(&(body as u32).to_be_bytes());
    r.extend_from_slice(&[0; 12]);
    r.extend_from_slice(extras);
    r.extend_from_slice(key);
    r.extend_from_slice(value);
    r
}

#[test]
fn binary_requests_wait_and_resume_the_same_way() {
    const GET: u8 = 0x00;
    const SET: u8 = 0x01;
    const GETK: u8 = 0x0c;
    let extras = [0, 0, 0, 5, 0, 0, 0, 0]; // flags 5, no expiry
    let mut p = Pair::new(SyncMode::Never, WriteStrategy::WriteThrough);
    p.feed_waiting(&binary(SET, &extras, b"big", &value(LARGE + 5, 5)));
    p.feed_at_once(&binary(SET, &extras, b"k", b"v"));
    let mut pipeline = binary(GETK, &[], b"k", &[]);
    pipeline.extend(binary(GETK, &[], b"big", &[]));
    pipeline.extend(binary(GET, &[], b"k", &[]));
    let first = p.feed_waiting(&pipeline);
    assert_eq!(
        &first[..2],
        [0x81, GETK],
        "k's GETK answered before the wait"
    );
    assert_eq!(first.len(), 24 + 4 + 1 + 1, "and nothing after it");
    p.feed_waiting(&binary(GET, &[], b"nothing", &[]));
    p.feed_waiting(&binary(0x08, &[], b"", &[])); // FLUSH
    p.same_counters();
}

#[test]
fn write_back_hits_and_writes_never_wait() {
    let mut p = Pair::new(SyncMode::Never, WriteStrategy::WriteBack);
    p.feed_at_once(&set_cmd("k", b"v"));
    p.feed_at_once(b"get k\r\ndelete k\r\n");
    p.same_counters();
}

/// A random pipeline of every kind of request, cut at random points: the handing session
/// answers it byte for byte as the plain one does.
#[test]
fn random_pipelines_are_answered_the_same() {
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    for strategy in [WriteStrategy::WriteThrough, WriteStrategy::WriteBack] {
        let mut p = Pair::new(SyncMode::Never, strategy);
        for _round in 0..60 {
            let mut input = Vec::new();
            for _ in 0..1 + next(12) {
                let key = format!("k{}", next(8));
                let len = [1, 100, LARGE + 3, FILE + 7][next(4) as usize];
                let req: Vec<u8> = match next(12) {
                    0 | 1 => set_cmd(&key, &value(len, next(200) as u8)),
                    2 => format!("get {key} k{} {key}\r\n", next(8)).into_bytes(),
                    3 => format!("gets {key}\r\n").into_bytes(),
                    4 => format!("delete {key}\r\n").into_bytes(),
                    5 => format!("incr {key} 3\r\n").into_bytes(),
                    6 => format!("mg {key} s v t N10\r\n").into_bytes(),
                    7 => format!("touch {key} 50\r\n").into_bytes(),
                    8 => {
                        let mut v = format!("append {key} 0 0 3\r\n").into_bytes();
                        v.extend_from_slice(b"abc\r\n");
                        v
                    }
                    9 => format!("gat 20 {key} k{}\r\n", next(8)).into_bytes(),
                    10 => format!("md {key} q\r\nmn\r\n").into_bytes(),
                    _ => set_cmd(&key, b"7"),
                };
                input.extend(req);
            }
            // In pieces, as a socket delivers them.
            let mut at = 0;
            while at < input.len() {
                let n = (1 + next(input.len() as u64) as usize).min(input.len() - at);
                p.feed(&input[at..at + n]);
                at += n;
            }
        }
        assert!(p.stops > 10, "the pipelines had waits to hand off");
        p.same_counters();
    }
}
