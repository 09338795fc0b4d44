//! An open-loop memcached load generator that reports latency percentiles.
//!
//! One thread drives `--conns` connections (mio, with a timerfd for microsecond timing); each
//! connection sends requests on a fixed schedule
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

/// One connection's schedule and its request in flight.
struct Conn {
    s: mio::net::TcpStream,
    /// Index of the next request in this connection's schedule.
    k: u32,
    offset: Duration,
    rng: Rng,
    /// The scheduled time of the request awaiting its reply, and whether it is a get.
    in_flight: Option<(Instant, bool)>,
    buf: Vec<u8>,
    finished: bool,
}

const TIMER: mio::Token = mio::Token(usize::MAX);

/// A timerfd registered with the poll: epoll's own timeout has millisecond resolution, too coarse
/// for a schedule whose sends are tens of microseconds apart.
struct Timer(i32);

impl Timer {
    fn new(poll: &mio::Poll) -> io::Result<Timer> {
        // SAFETY: plain syscalls on an fd this struct owns.
        let fd = unsafe {
            libc::prctl(libc::PR_SET_TIMERSLACK, 1);
            libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC)
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        poll.registry()
            .register(&mut mio::unix::SourceFd(&fd), TIMER, mio::Interest::READABLE)?;
        Ok(Timer(fd))
    }

    /// Fires once after `d` (at least 1 ns, as 0 would disarm it).
    fn arm(&self, d: Duration) {
        let d = d.max(Duration::from_nanos(1));
        let spec = libc::itimerspec {
            it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 },
            it_value: libc::timespec {
                tv_sec: d.as_secs() as libc::time_t,
                tv_nsec: d.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: a valid timerfd and a valid itimerspec.
        unsafe { libc::timerfd_settime(self.0, 0, &spec, std::ptr::null_mut()) };
    }

    fn drain(&self) {
        let mut n = 0u64;
        // SAFETY: reads 8 bytes into a u64 from our nonblocking timerfd.
        unsafe { libc::read(self.0, (&mut n as *mut u64).cast(), 8) };
    }
}

/// Drives every connection from one thread (mio + a timerfd), so the generator's own
/// scheduling noise is one thread's, not one per connection competing for the same cores.
fn run(a: &Args, start: Instant) -> io::Result<(Histogram<u64>, u64, u64)> {
    let mut poll = mio::Poll::new()?;
    let timer = Timer::new(&poll)?;
    let addr: std::net::SocketAddr = a.server.parse().expect("--server host:port");
    let interval = Duration::from_secs_f64(a.conns as f64 / a.rate);
    let mut conns = Vec::with_capacity(a.conns);
    for i in 0..a.conns {
        let std_s = TcpStream::connect(addr)?;
        std_s.set_nodelay(true)?;
        std_s.set_nonblocking(true)?;
        let mut s = mio::net::TcpStream::from_std(std_s);
        poll.registry()
            .register(&mut s, mio::Token(i), mio::Interest::READABLE)?;
        conns.push(Conn {
            s,
            k: 0,
            // Spread the connections' schedules across one interval.
            offset: interval.mul_f64(i as f64 / a.conns as f64),
            rng: Rng(0x9E37_79B9_7F4A_7C15 ^ (i as u64 + 1)),
            in_flight: None,
            buf: Vec::with_capacity(a.value + 128),
            finished: false,
        });
    }
    let end = start + Duration::from_secs_f64(a.warmup + a.seconds);
    let record_from = start + Duration::from_secs_f64(a.warmup);
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
    let value = vec![b'v'; a.value];
    let (mut sent, mut errors) = (0u64, 0u64);
    let mut req = Vec::with_capacity(a.value + 64);
    let mut events = mio::Events::with_capacity(1024);
    let mut chunk = vec![0u8; 16384];
    let deadline = end + Duration::from_secs(10);
    loop {
        // Send every request that is due on a connection with nothing in flight.
        let now = Instant::now();
        let mut next_due: Option<Instant> = None;
        let mut busy = false;
        for c in conns.iter_mut() {
            if c.in_flight.is_some() {
                busy = true;
                continue;
            }
            if c.finished {
                continue;
            }
            let due = start + c.offset + interval * c.k;
            if due >= end {
                c.finished = true;
                continue;
            }
            if due > now {
                next_due = Some(next_due.map_or(due, |n| n.min(due)));
                continue;
            }
            let key = c.rng.next() as usize % a.keys;
            let is_get = (c.rng.next() % 10_000) as f64 / 10_000.0 < a.get_ratio;
            req.clear();
            if is_get {
                req.extend_from_slice(format!("get key:{key:012}\r\n").as_bytes());
            } else {
                req.extend_from_slice(format!("set key:{key:012} 0 0 {}\r\n", a.value).as_bytes());
                req.extend_from_slice(&value);
                req.extend_from_slice(b"\r\n");
            }
            write_all_nonblocking(&mut c.s, &req)?;
            c.buf.clear();
            c.in_flight = Some((due, is_get));
            busy = true;
        }
        if !busy && next_due.is_none() {
            break;
        }
        if now > deadline {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "replies stopped coming"));
        }
        if let Some(due) = next_due {
            timer.arm(due.saturating_duration_since(Instant::now()));
        }
        poll.poll(&mut events, Some(Duration::from_secs(1)))?;
        for ev in events.iter() {
            if ev.token() == TIMER {
                timer.drain();
                continue;
            }
            let c = &mut conns[ev.token().0];
            loop {
                match c.s.read(&mut chunk) {
                    Ok(0) => {
                        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "server closed"))
                    }
                    Ok(n) => c.buf.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            }
            let Some((due, is_get)) = c.in_flight else {
                continue;
            };
            let ending: &[u8] = if is_get { b"END\r\n" } else { b"\r\n" };
            if !c.buf.ends_with(ending) {
                continue;
            }
            let done = Instant::now();
            let ok = if is_get {
                c.buf.starts_with(b"VALUE ")
            } else {
                c.buf == b"STORED\r\n"
            };
            if due >= record_from {
                sent += 1;
                errors += u64::from(!ok);
                let us = done.duration_since(due).as_micros().max(1) as u64;
                hist.saturating_record(us);
            }
            c.in_flight = None;
            c.k += 1;
        }
    }
    Ok((hist, sent, errors))
}

fn write_all_nonblocking(s: &mut mio::net::TcpStream, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        match s.write(data) {
            Ok(n) => data = &data[n..],
            // A request is a few hundred bytes: the socket buffer is full only if the server
            // stopped reading, so wait a moment rather than track partial writes.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_micros(50))
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn main() {
    let a = parse_args();
    populate(&a).expect("populating the keys failed");
    let start = Instant::now() + Duration::from_millis(200);
    // A connection that fails ends the run with an error: there is no partial result.
    let (hist, sent, errors) = run(&a, start).expect("the load run failed");
    let q = |p: f64| hist.value_at_quantile(p);
    println!(
        "{{\"target_rate\": {}, \"rate\": {:.0}, \"requests\": {}, \"errors\": {}, \
         \"p50_us\": {}, \"p90_us\": {}, \"p99_us\": {}, \
         \"p999_us\": {}, \"max_us\": {}}}",
        a.rate,
        sent as f64 / a.seconds,
        sent,
        errors,
        q(0.5),
        q(0.9),
        q(0.99),
        q(0.999),
        hist.max()
    );
}
