//! Miss-ratio benchmark: replays synthetic traces through every eviction policy.
//!
//! Run with `cargo run --release --no-default-features --example miss_ratio`.
//!
//! Every trace is generated once from a fixed seed and replayed unchanged through each policy
//! (`PolicyKind::ALL`) at each cache size. A request is a `get`; on a miss the key is inserted
//! (classic demand fill), so the miss ratio counts every request of the trace, cold misses
//! included. The caches have one shard and are bounded by `max_entries` only, so each policy
//! evicts exactly as it is specified. No entry has a TTL, so the `ttl` policy orders like LRU.
//!
//! Traces (100k keys, 1M requests each):
//! - `zipf a=0.9`, `zipf a=1.0`: Zipf popularity, static ranking.
//! - `zipf a=1.0 + scan`: the Zipf trace, but every 50k requests end with a sequential scan of
//!   10k keys that are never requested again (20% of all requests).
//! - `zipf a=1.0 shift`: the Zipf trace whose rank-to-key mapping is re-permuted halfway
//!   through, so the popular set changes at once.

use std::time::Instant;

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use ratmemcache::cache::{Cache, CacheConfig, Keyspace, PolicyKind, StoreRequest, Ttl};

const KEYS: usize = 100_000;
const REQUESTS: usize = 1_000_000;
const SEED: u64 = 0x5EED_CAFE;
/// Cache sizes, as fractions of the key count.
const SIZES: [(f64, &str); 2] = [(0.01, "1%"), (0.10, "10%")];
/// The scan trace: each period of this many requests ends with a scan of `SCAN_LEN` new keys.
const SCAN_PERIOD: usize = 50_000;
const SCAN_LEN: usize = 10_000;
/// Scan keys start here, far above the Zipf key ids, and are never reused.
const SCAN_BASE: u64 = 1 << 40;

/// Samples ranks `0..n` with probability proportional to `1 / (rank + 1)^alpha`, by inverting a
/// precomputed CDF with a binary search.
struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, alpha: f64) -> Zipf {
        let mut cdf = Vec::with_capacity(n);
        let mut sum = 0.0;
        for r in 0..n {
            sum += 1.0 / ((r + 1) as f64).powf(alpha);
            cdf.push(sum);
        }
        for c in &mut cdf {
            *c /= sum;
        }
        Zipf { cdf }
    }

    fn sample(&self, rng: &mut SmallRng) -> usize {
        let u: f64 = rng.random();
        self.cdf
            .partition_point(|&c| c <= u)
            .min(self.cdf.len() - 1)
    }
}

/// A random rank-to-key mapping, so that popular keys are scattered over the key space.
fn permutation(n: usize, rng: &mut SmallRng) -> Vec<u64> {
    let mut p: Vec<u64> = (0..n as u64).collect();
    p.shuffle(rng);
    p
}

struct Trace {
    name: String,
    keys: Vec<u64>,
}

fn zipf_trace(alpha: f64, seed: u64) -> Trace {
    let mut rng = SmallRng::seed_from_u64(seed);
    let zipf = Zipf::new(KEYS, alpha);
    let perm = permutation(KEYS, &mut rng);
    let keys = (0..REQUESTS).map(|_| perm[zipf.sample(&mut rng)]).collect();
    Trace {
        name: format!("zipf a={alpha:.1}"),
        keys,
    }
}

fn scan_trace(alpha: f64, seed: u64) -> Trace {
    let mut rng = SmallRng::seed_from_u64(seed);
    let zipf = Zipf::new(KEYS, alpha);
    let perm = permutation(KEYS, &mut rng);
    let mut next_scan = SCAN_BASE;
    let keys = (0..REQUESTS)
        .map(|i| {
            if i % SCAN_PERIOD >= SCAN_PERIOD - SCAN_LEN {
                next_scan += 1;
                next_scan
            } else {
                perm[zipf.sample(&mut rng)]
            }
        })
        .collect();
    Trace {
        name: format!("zipf a={alpha:.1} + scan"),
        keys,
    }
}

fn shift_trace(alpha: f64, seed: u64) -> Trace {
    let mut rng = SmallRng::seed_from_u64(seed);
    let zipf = Zipf::new(KEYS, alpha);
    let first = permutation(KEYS, &mut rng);
    let second = permutation(KEYS, &mut rng);
    let keys = (0..REQUESTS)
        .map(|i| {
            let perm = if i < REQUESTS / 2 { &first } else { &second };
            perm[zipf.sample(&mut rng)]
        })
        .collect();
    Trace {
        name: format!("zipf a={alpha:.1} shift"),
        keys,
    }
}

/// Replays `trace` through a fresh cache; returns the miss ratio.
fn replay(trace: &[u64], policy: PolicyKind, max_entries: u64) -> f64 {
    let cache = Cache::new(CacheConfig {
        max_entries,
        max_memory: 0,
        eviction: policy,
        shards: 1,
        cleanup_interval_ms: 0,
        ..Default::default()
    })
    .expect("valid config");
    let value = Bytes::from_static(b"v");
    let mut misses = 0u64;
    for &id in trace {
        let key = id.to_le_bytes();
        if cache.get(&key).is_none() {
            misses += 1;
            let req = StoreRequest::set(&key, &value).ttl(Ttl::Never);
            cache.store(&req).expect("store");
        }
    }
    assert!(cache.len() <= max_entries, "{policy} exceeded max_entries");
    misses as f64 / trace.len() as f64
}

/// Ranks of `values` (1 = lowest), ties sharing the mean of their ranks.
fn ranks(values: &[f64]) -> Vec<f64> {
    values
        .iter()
        .map(|&v| {
            let below = values.iter().filter(|&&o| o < v).count();
            let equal = values.iter().filter(|&&o| o == v).count();
            below as f64 + (equal as f64 + 1.0) / 2.0
        })
        .collect()
}

fn main() {
    let started = Instant::now();
    let policies = PolicyKind::ALL;
    let traces = [
        zipf_trace(0.9, SEED),
        zipf_trace(1.0, SEED + 1),
        scan_trace(1.0, SEED + 2),
        shift_trace(1.0, SEED + 3),
    ];

    println!("# Miss ratio by eviction policy\n");
    println!(
        "{KEYS} keys, {REQUESTS} requests per trace, seed {SEED:#x}; get, and set on a miss; \
         1 shard, cache size = max_entries; scan = {SCAN_LEN} one-time keys every {SCAN_PERIOD} \
         requests; shift = Zipf ranking re-permuted halfway. Best per row in bold.\n"
    );

    let mut header = String::from("| trace | cache size |");
    let mut rule = String::from("|---|---|");
    for p in policies {
        header.push_str(&format!(" {p} |"));
        rule.push_str("---|");
    }
    println!("{header}\n{rule}");

    let mut rank_sums = vec![0.0; policies.len()];
    let mut ratio_sums = vec![0.0; policies.len()];
    let mut wins = vec![0usize; policies.len()];
    let mut rows = 0usize;
    for trace in &traces {
        for (frac, label) in SIZES {
            let max_entries = (KEYS as f64 * frac).round() as u64;
            let ratios: Vec<f64> = policies
                .iter()
                .map(|&p| replay(&trace.keys, p, max_entries))
                .collect();
            // Compare as printed (4 decimals), so a tie shown as a tie is ranked as one.
            let shown: Vec<f64> = ratios.iter().map(|r| (r * 1e4).round() / 1e4).collect();
            let best = shown.iter().copied().fold(f64::INFINITY, f64::min);
            let mut line = format!("| {} | {label} ({max_entries}) |", trace.name);
            for (i, r) in shown.iter().enumerate() {
                if *r == best {
                    line.push_str(&format!(" **{r:.4}** |"));
                    wins[i] += 1;
                } else {
                    line.push_str(&format!(" {r:.4} |"));
                }
                ratio_sums[i] += ratios[i];
            }
            println!("{line}");
            for (sum, r) in rank_sums.iter_mut().zip(ranks(&shown)) {
                *sum += r;
            }
            rows += 1;
        }
    }

    println!("\n## Mean rank (1 = lowest miss ratio) over {rows} rows\n");
    println!("| policy | mean rank | mean miss ratio | best in rows |");
    println!("|---|---|---|---|");
    let mut order: Vec<usize> = (0..policies.len()).collect();
    order.sort_by(|&a, &b| rank_sums[a].total_cmp(&rank_sums[b]));
    for i in order {
        println!(
            "| {} | {:.2} | {:.4} | {} |",
            policies[i],
            rank_sums[i] / rows as f64,
            ratio_sums[i] / rows as f64,
            wins[i]
        );
    }
    println!("\nelapsed: {:.1} s", started.elapsed().as_secs_f64());
}
