//! An open-loop memcached load generator that reports latency percentiles.
//!
//! Each of `--conns` connections runs on its own thread and sends requests on a fixed schedule
//! (`--rate` requests per second in total, spread evenly), one at a time: a request is sent at
//! its scheduled time, or at once if the previous reply came late. Latency is measured from the
//! *scheduled* time to the end of the reply, so a server that stalls is charged for the requests
//! it delayed (no coordinated omission). The first `--warmup` seconds are not recorded.
//!
//! Usage:
//!   ratmemcache-latency --server 127.0.0.1:11211 [--rate 20000] [--conns 50] [--seconds 10]
//!       [--warmup 2] [--keys 10000] [--value 100] [--get-ratio 0.9]
//!
//! Prints one JSON line: achieved rate, errors, and p50/p90/p99/p99.9/max in microseconds.
//! Not a test; the bench driver is bench/tail_latency.py.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

struct Args {
    server: String,
    rate: f64,
    conns: usize,
    seconds: f64,
    warmup: f64,
    keys: usize,
    value: usize,
    get_ratio: f64,
}

fn parse_args() -> Args {
    let mut a = Args {
        server: "127.0.0.1:11211".into(),
        rate: 20_000.0,
        conns: 50,
        seconds: 10.0,
        warmup: 2.0,
        keys: 10_000,
        value: 100,
        get_ratio: 0.9,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let v = argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--server" => a.server = v,
            "--rate" => a.rate = v.parse().expect("--rate"),
            "--conns" => a.conns = v.parse().expect("--conns"),
            "--seconds" => a.seconds = v.parse().expect("--seconds"),
            "--warmup" => a.warmup = v.parse().expect("--warmup"),
            "--keys" => a.keys = v.parse().expect("--keys"),
            "--value" => a.value = v.parse().expect("--value"),
            "--get-ratio" => a.get_ratio = v.parse().expect("--get-ratio"),
            "-h" | "--help" => {
                println!(
                    "{}",
                    include_str!("main.rs")
                        .lines()
                        .take(14)
                        .collect::<Vec<_>>()
                        .join("\n")
                );
                std::process::exit(0);
            }
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    a
}

/// Reads until the buffer ends with `end`; returns false if the server closed.
fn read_until(s: &mut TcpStream, buf: &mut Vec<u8>, end: &[u8]) -> io::Result<bool> {
    buf.clear();
    let mut chunk = [0u8; 16384];
    while !buf.ends_with(end) {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Ok(false);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(true)
}

/// A small deterministic generator (xorshift), so every server sees the same request sequence.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn populate(a: &Args) -> io::Result<()> {
    let mut s = TcpStream::connect(&a.server)?;
    let value = vec![b'v'; a.value];
    let mut req = Vec::new();
    for k in 0..a.keys {
        req.extend_from_slice(format!("set key:{k:012} 0 0 {} noreply\r\n", a.value).as_bytes());
        req.extend_from_slice(&value);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"version\r\n");
    s.write_all(&req)?;
    let mut buf = Vec::new();
    read_until(&mut s, &mut buf, b"\r\n")?;
    Ok(())
}

struct Outcome {
    hist: Histogram<u64>,
    sent: u64,
    errors: u64,
}

fn run_conn(a: &Args, idx: usize, start: Instant) -> io::Result<Outcome> {
    let mut s = TcpStream::connect(&a.server)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let interval = Duration::from_secs_f64(a.conns as f64 / a.rate);
    // Spread the connections' schedules across one interval.
    let offset = interval.mul_f64(idx as f64 / a.conns as f64);
    let end = start + Duration::from_secs_f64(a.warmup + a.seconds);
    let record_from = start + Duration::from_secs_f64(a.warmup);
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (idx as u64 + 1));
    let value = vec![b'v'; a.value];
    let (mut sent, mut errors) = (0u64, 0u64);
    let mut buf = Vec::with_capacity(a.value + 128);
    let mut req = Vec::with_capacity(a.value + 64);
    let mut k: u32 = 0;
    loop {
        let due = start + offset + interval * k;
        if due >= end {
            break;
        }
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let key = rng.next() as usize % a.keys;
        let is_get = (rng.next() % 10_000) as f64 / 10_000.0 < a.get_ratio;
        req.clear();
        if is_get {
            req.extend_from_slice(format!("get key:{key:012}\r\n").as_bytes());
        } else {
            req.extend_from_slice(format!("set key:{key:012} 0 0 {}\r\n", a.value).as_bytes());
            req.extend_from_slice(&value);
            req.extend_from_slice(b"\r\n");
        }
        s.write_all(&req)?;
        let ending: &[u8] = if is_get { b"END\r\n" } else { b"\r\n" };
        if !read_until(&mut s, &mut buf, ending)? {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "server closed",
            ));
        }
        let ok = if is_get {
            buf.starts_with(b"VALUE ")
        } else {
            buf == b"STORED\r\n"
        };
        let done = Instant::now();
        if due >= record_from {
            sent += 1;
            if !ok {
                errors += 1;
            }
            let us = done.duration_since(due).as_micros().max(1) as u64;
            hist.saturating_record(us);
        }
        k += 1;
    }
    Ok(Outcome { hist, sent, errors })
}

fn main() {
    let a = parse_args();
    populate(&a).expect("populating the keys failed");
    let start = Instant::now() + Duration::from_millis(200);
    let outcomes: Vec<io::Result<Outcome>> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..a.conns)
            .map(|i| {
                let a = &a;
                sc.spawn(move || run_conn(a, i, start))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
    let (mut sent, mut errors, mut failed) = (0u64, 0u64, 0usize);
    for o in outcomes {
        match o {
            Ok(o) => {
                hist.add(&o.hist).expect("merge");
                sent += o.sent;
                errors += o.errors;
            }
            Err(e) => {
                eprintln!("a connection failed: {e}");
                failed += 1;
            }
        }
    }
    let q = |p: f64| hist.value_at_quantile(p);
    println!(
        "{{\"target_rate\": {}, \"rate\": {:.0}, \"requests\": {}, \"errors\": {}, \
         \"failed_conns\": {}, \"p50_us\": {}, \"p90_us\": {}, \"p99_us\": {}, \
         \"p999_us\": {}, \"max_us\": {}}}",
        a.rate,
        sent as f64 / a.seconds,
        sent,
        errors,
        failed,
        q(0.5),
        q(0.9),
        q(0.99),
        q(0.999),
        hist.max()
    );
}
