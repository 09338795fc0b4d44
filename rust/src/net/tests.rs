//! The native engine over real sockets on 127.0.0.1 (port 0), with blocking std clients.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::engine::{Engine, EngineConfig};
use crate::protocol::SessionConfig;
use crate::testkit;

/// A request starting with this makes `feed` panic, to test the connection boundary.
const PANIC_TRIGGER: &[u8] = b"__net_test_panic__";

pub(super) fn fault_injection(data: &[u8]) {
    if data.starts_with(PANIC_TRIGGER) {
        panic!("injected by the net tests");
    }
}

/// Engines (by address) whose connections take the `may_block` path in these tests.
static OFFLOADED: std::sync::Mutex<Vec<usize>> = std::sync::Mutex::new(Vec::new());

pub(super) fn offload_everything(engine: &Engine) -> bool {
    let addr = engine as *const Engine as usize;
    OFFLOADED.lock().unwrap().contains(&addr)
}

fn engine_with(config: EngineConfig) -> Arc<Engine> {
    testkit::engine_on_system_clock(testkit::server_cache(), config)
}

fn start(net: NetConfig) -> (NativeServer, Arc<Engine>) {
    start_with(net, EngineConfig::default())
}

fn start_with(net: NetConfig, config: EngineConfig) -> (NativeServer, Arc<Engine>) {
    let engine = engine_with(config);
    let server = NativeServer::bind(NetConfig {
        worker_threads: 2,
        ..net
    })
    .unwrap();
    let port = server.start(engine.clone()).unwrap();
    assert_ne!(port, 0);
    (server, engine)
}

fn connect(server: &NativeServer) -> TcpStream {
    let s = TcpStream::connect(server.local_addrs()[0]).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Sends `data` and reads until the reply ends with `until`.
fn exchange(s: &mut TcpStream, data: &[u8], until: &[u8]) -> Vec<u8> {
    s.write_all(data).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    while !got.ends_with(until) {
        let n = s.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    got
}

fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    match s.read_to_end(&mut got) {
        Ok(_) => got,
        // A reset after the reply still counts as closed.
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => got,
        Err(e) => panic!("read failed: {e}"),
    }
}

fn eventually(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn set_get_and_pipelined_requests_in_one_reply() {
    let (server, _) = start(NetConfig::default());
    let mut s = connect(&server);
    assert_eq!(
        exchange(&mut s, b"set a 5 0 3\r\nabc\r\nget a\r\n", b"END\r\n"),
        b"STORED\r\nVALUE a 5 3\r\nabc\r\nEND\r\n"
    );
    let n = 300;
    let mut batch = Vec::new();
    let mut expected = Vec::new();
    for i in 0..n {
        let v = i.to_string();
        batch.extend_from_slice(format!("set p{i} 0 0 {}\r\n{v}\r\n", v.len()).as_bytes());
        expected.extend_from_slice(b"STORED\r\n");
    }
    for i in 0..n {
        let v = i.to_string();
        batch.extend_from_slice(format!("get p{i}\r\n").as_bytes());
        expected
            .extend_from_slice(format!("VALUE p{i} 0 {}\r\n{v}\r\nEND\r\n", v.len()).as_bytes());
    }
    let last = format!("VALUE p{} 0 3\r\n{}\r\nEND\r\n", n - 1, n - 1);
    assert_eq!(exchange(&mut s, &batch, last.as_bytes()), expected);
    assert_eq!(server.connection_count(), 1);
    server.stop(Duration::from_secs(1));
}

#[test]
fn binary_protocol_and_large_values() {
    let (server, _) = start(NetConfig::default());
    let mut s = connect(&server);
    // Binary noop: magic 0x80, opcode 0x0a, everything else zero.
    let mut noop = [0u8; 24];
    noop[0] = 0x80;
    noop[1] = 0x0a;
    s.write_all(&noop).unwrap();
    let mut reply = [0u8; 24];
    s.read_exact(&mut reply).unwrap();
    assert_eq!((reply[0], reply[1], reply[6], reply[7]), (0x81, 0x0a, 0, 0));
    // A value larger than one read, sent and fetched whole.
    let mut s = connect(&server);
    let value = vec![b'x'; 900_000];
    let mut req = format!("set big 0 0 {}\r\n", value.len()).into_bytes();
    req.extend_from_slice(&value);
    req.extend_from_slice(b"\r\n");
    assert_eq!(exchange(&mut s, &req, b"\r\n"), b"STORED\r\n");
    let got = exchange(&mut s, b"get big\r\n", b"END\r\n");
    assert_eq!(got.len(), "VALUE big 0 900000\r\n".len() + value.len() + 7);
    server.close();
}

#[test]
fn max_connections_refuses_like_memcached() {
    let (server, engine) = start(NetConfig {
        max_connections: 2,
        audit: true,
        ..NetConfig::default()
    });
    let mut a = connect(&server);
    let mut b = connect(&server);
    for s in [&mut a, &mut b] {
        assert!(exchange(s, b"version\r\n", b"\r\n").starts_with(b"VERSION "));
    }
    let mut third = connect(&server);
    assert_eq!(read_to_close(&mut third), TOO_MANY_CONNECTIONS);
    eventually("the refusal to be counted", || {
        engine.counters.rejected_connections.load(Ordering::Relaxed) == 1
    });
    drop(a);
    eventually("a slot to free up", || server.connection_count() == 1);
    let mut again = connect(&server);
    assert!(exchange(&mut again, b"version\r\n", b"\r\n").starts_with(b"VERSION "));
    assert!(exchange(&mut b, b"version\r\n", b"\r\n").starts_with(b"VERSION "));
    let (events, dropped) = server.take_events();
    assert_eq!(dropped, 0);
    assert!(events
        .iter()
        .any(|e| e.log == Log::Audit && e.message.contains("refused a connection")));
    assert!(events
        .iter()
        .any(|e| e.message.starts_with("conn 1 opened")));
    server.close();
}

#[test]
fn idle_timeout_closes_idle_connections_only() {
    let (server, _) = start(NetConfig {
        idle_timeout: Some(Duration::from_millis(300)),
        audit: true,
        ..NetConfig::default()
    });
    let mut idle = connect(&server);
    let mut busy = connect(&server);
    let t0 = Instant::now();
    for _ in 0..6 {
        assert!(exchange(&mut busy, b"version\r\n", b"\r\n").starts_with(b"VERSION "));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(read_to_close(&mut idle), b"");
    assert!(t0.elapsed() >= Duration::from_millis(250));
    assert!(exchange(&mut busy, b"version\r\n", b"\r\n").starts_with(b"VERSION "));
    let (events, _) = server.take_events();
    assert!(events.iter().any(|e| e.message.contains("(idle timeout)")));
    server.close();
}

#[test]
fn a_panic_closes_only_its_connection() {
    let (server, _) = start(NetConfig::default());
    let mut other = connect(&server);
    assert_eq!(
        exchange(&mut other, b"set k 0 0 1\r\nv\r\n", b"\r\n"),
        b"STORED\r\n"
    );
    let mut bad = connect(&server);
    bad.write_all(PANIC_TRIGGER).unwrap();
    let reply = read_to_close(&mut bad);
    assert!(reply.starts_with(b"SERVER_ERROR "), "{reply:?}");
    assert_eq!(
        exchange(&mut other, b"get k\r\n", b"END\r\n"),
        b"VALUE k 0 1\r\nv\r\nEND\r\n"
    );
    let (events, _) = server.take_events();
    assert!(events
        .iter()
        .any(|e| e.level == Level::Error && e.message.contains("injected by the net tests")));
    eventually("the panicked connection to be gone", || {
        server.connection_count() == 1
    });
    server.close();
}

#[test]
fn shutdown_command_begins_a_stop() {
    let (server, _) = start_with(
        NetConfig::default(),
        EngineConfig {
            allow_shutdown: true,
            ..EngineConfig::default()
        },
    );
    assert_eq!(server.wait(Some(Duration::from_millis(10))), None);
    let mut s = connect(&server);
    s.write_all(b"shutdown\r\n").unwrap();
    read_to_close(&mut s);
    let reason = server.wait(Some(Duration::from_secs(5))).unwrap();
    assert!(reason.contains("shutdown"), "{reason}");
    assert!(!server.is_running());
    assert!(server.wait_drained(Some(Duration::from_secs(5))));
    // Not accepting any more.
    eventually("the listener to close", || {
        TcpStream::connect(server.local_addrs()[0]).is_err()
    });
    server.close();
}

#[test]
fn graceful_stop_lets_a_request_in_flight_finish() {
    let (server, _) = start(NetConfig::default());
    let mut idle = connect(&server);
    let mut busy = connect(&server);
    assert!(exchange(&mut idle, b"version\r\n", b"\r\n").starts_with(b"VERSION "));
    busy.write_all(b"set inflight 0 0 10\r\n01234").unwrap();
    eventually("the half request to arrive", || {
        server.connection_count() == 2
    });
    std::thread::sleep(Duration::from_millis(100));
    server.begin_stop("test");
    // The idle one closes at once; the busy one waits for the rest of its request.
    assert_eq!(read_to_close(&mut idle), b"");
    assert!(!server.wait_drained(Some(Duration::from_millis(200))));
    busy.write_all(b"56789\r\n").unwrap();
    assert_eq!(read_to_close(&mut busy), b"STORED\r\n");
    assert!(server.wait_drained(Some(Duration::from_secs(5))));
    server.close();
}

#[test]
fn force_stop_closes_a_stuck_request() {
    let (server, _) = start(NetConfig::default());
    let mut stuck = connect(&server);
    stuck.write_all(b"set stuck 0 0 10\r\n01").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let t0 = Instant::now();
    assert!(!server.stop(Duration::from_millis(200)));
    assert!(t0.elapsed() < Duration::from_secs(3));
    assert_eq!(read_to_close(&mut stuck), b"");
}

#[cfg(unix)]
#[test]
fn unix_socket_serves_the_same_cache_and_is_removed() {
    use std::os::unix::net::UnixStream;
    let dir = std::env::temp_dir().join(format!("ratmemcache-net-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("s.sock");
    let _ = std::fs::remove_file(&path);
    let (server, _) = start(NetConfig {
        unix_socket: Some(path.clone()),
        ..NetConfig::default()
    });
    let mut u = UnixStream::connect(&path).unwrap();
    u.write_all(b"set u 0 0 1\r\nz\r\n").unwrap();
    let mut buf = [0u8; 8];
    u.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"STORED\r\n");
    let mut t = connect(&server);
    assert_eq!(
        exchange(&mut t, b"get u\r\n", b"END\r\n"),
        b"VALUE u 0 1\r\nz\r\nEND\r\n"
    );
    server.close();
    assert!(!path.exists());
    let _ = std::fs::remove_dir(&dir);
}

#[test]
fn port_in_use_is_an_error_at_bind() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let err = NativeServer::bind(NetConfig {
        tcp: vec![taken.local_addr().unwrap()],
        ..NetConfig::default()
    })
    .err()
    .expect("bind should fail");
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
}

#[test]
fn feeds_offloaded_for_a_blocking_engine_answer_the_same() {
    let (server, engine) = start(NetConfig::default());
    OFFLOADED
        .lock()
        .unwrap()
        .push(Arc::as_ptr(&engine) as usize);
    let mut a = connect(&server);
    let mut b = connect(&server);
    assert_eq!(
        exchange(&mut a, b"set k 0 0 2\r\nhi\r\nget k\r\n", b"END\r\n"),
        b"STORED\r\nVALUE k 0 2\r\nhi\r\nEND\r\n"
    );
    // Half a request, finished later, while the other connection is served.
    a.write_all(b"set j 0 0 5\r\nab").unwrap();
    assert_eq!(
        exchange(&mut b, b"get k\r\n", b"END\r\n"),
        b"VALUE k 0 2\r\nhi\r\nEND\r\n"
    );
    assert_eq!(exchange(&mut a, b"cde\r\n", b"\r\n"), b"STORED\r\n");
    a.write_all(PANIC_TRIGGER).unwrap();
    assert!(read_to_close(&mut a).starts_with(b"SERVER_ERROR "));
    server.close();
    OFFLOADED.lock().unwrap().clear();
}

#[cfg(unix)]
#[test]
fn a_unix_socket_alone_has_the_mask_and_no_tcp() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::net::UnixStream;
    let dir = std::env::temp_dir().join(format!("ratmemcache-net-mask-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("s.sock");
    let _ = std::fs::remove_file(&path);
    let server = NativeServer::bind(NetConfig {
        tcp: Vec::new(),
        unix_socket: Some(path.clone()),
        unix_socket_mask: 0o750,
        worker_threads: 1,
        ..NetConfig::default()
    })
    .unwrap();
    assert!(server.local_addrs().is_empty());
    assert_eq!(
        server.start(engine_with(EngineConfig::default())).unwrap(),
        0
    );
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o750);
    let mut u = UnixStream::connect(&path).unwrap();
    u.write_all(b"version\r\n").unwrap();
    let mut buf = [0u8; 16];
    u.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"VERSION 1.6.18\r\n");
    server.close();
    let _ = std::fs::remove_dir(&dir);
}

#[test]
fn udp_datagrams_are_answered_with_memcached_framing() {
    let engine = engine_with(EngineConfig::default());
    let server = NativeServer::bind(NetConfig {
        udp: vec![std::net::SocketAddr::from(([127, 0, 0, 1], 0))],
        worker_threads: 2,
        ..NetConfig::default()
    })
    .unwrap();
    let session = SessionConfig {
        reqs_per_event: 20,
        ..SessionConfig::default()
    };
    server.start_with(engine.clone(), session).unwrap();
    let udp_addr = server.udp_addrs()[0];
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut set = vec![0, 7, 0, 0, 0, 1, 0, 0];
    set.extend_from_slice(b"set k 0 0 3000\r\n");
    set.extend_from_slice(&[b'v'; 3000]);
    set.extend_from_slice(b"\r\n");
    client.send_to(&set, udp_addr).unwrap();
    let mut buf = [0u8; 2048];
    let n = client.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"\x00\x07\x00\x00\x00\x01\x00\x00STORED\r\n");
    client
        .send_to(b"\x01\x02\x00\x00\x00\x01\x00\x00get k\r\n", udp_addr)
        .unwrap();
    let mut whole = Vec::new();
    for seq in 0..3u8 {
        let n = client.recv(&mut buf).unwrap();
        assert_eq!(&buf[..8], [1, 2, 0, seq, 0, 3, 0, 0]);
        whole.extend_from_slice(&buf[8..n]);
    }
    let want = [&b"VALUE k 0 3000\r\n"[..], &[b'v'; 3000], b"\r\nEND\r\n"].concat();
    assert_eq!(whole, want);
    // the same cache as TCP
    let mut t = connect(&server);
    assert_eq!(exchange(&mut t, b"delete k\r\n", b"\r\n"), b"DELETED\r\n");
    server.close();
}
