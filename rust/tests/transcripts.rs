//! Runs every wire transcript in tests/transcripts/ against the Rust protocol engine directly:
//! once with each exchange fed whole, and once fed one byte at a time, so framing never depends
//! on how the socket splits the stream. The same files run over real sockets against
//! ratmemcached and Debian's memcached in tests/test_transcripts.py.

use std::path::{Path, PathBuf};

use ratmemcache::engine::EngineConfig;
use ratmemcache::protocol::Session;
use ratmemcache::testkit;

struct Step {
    send: Vec<u8>,
    expect: Vec<u8>,
    close: bool,
}

fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            i += 1;
            match b[i] {
                b'r' => out.push(b'\r'),
                b'n' => out.push(b'\n'),
                b't' => out.push(b'\t'),
                b'\\' => out.push(b'\\'),
                b'x' => {
                    let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
                    out.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 2;
                }
                c => panic!("unknown escape \\{}", c as char),
            }
        } else {
            out.push(b[i]);
        }
        i += 1;
    }
    out
}

/// Parses a transcript: `> ` lines are sent, `< ` lines expected, `< <CLOSED>` means the server
/// closes; `#! name=value` lines are engine options; other `#` lines are comments.
fn parse(path: &Path) -> (Vec<Step>, usize) {
    let text = std::fs::read(path).unwrap();
    let text: String = text.iter().map(|&c| c as char).collect(); // latin-1
    let mut steps = Vec::new();
    let mut cur = Step {
        send: vec![],
        expect: vec![],
        close: false,
    };
    let mut max_item_size = ratmemcache::engine::DEFAULT_MAX_ITEM_SIZE;
    for line in text.split('\n') {
        if let Some(opts) = line.strip_prefix("#!") {
            for kv in opts.split_whitespace() {
                let (k, v) = kv.split_once('=').unwrap();
                assert_eq!(k, "item_size_max", "unknown transcript option {k}");
                max_item_size = v.parse().unwrap();
            }
        } else if let Some(s) = line.strip_prefix("> ") {
            if !cur.expect.is_empty() || cur.close {
                steps.push(std::mem::replace(
                    &mut cur,
                    Step {
                        send: vec![],
                        expect: vec![],
                        close: false,
                    },
                ));
            }
            cur.send.extend(unescape(s));
        } else if line.starts_with("< <CLOSED>") {
            cur.close = true;
        } else if let Some(s) = line.strip_prefix("< ") {
            cur.expect.extend(unescape(s));
        }
    }
    if !cur.send.is_empty() {
        steps.push(cur);
    }
    (steps, max_item_size)
}

fn session(max_item_size: usize) -> Session {
    testkit::session_on_system_clock(EngineConfig {
        max_item_size,
        ..Default::default()
    })
}

fn transcripts() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/transcripts");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no transcripts in {}", dir.display());
    v
}

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(400)])
        .escape_debug()
        .to_string()
}

fn run(path: &Path, bytewise: bool) {
    let (steps, max_item_size) = parse(path);
    let mut s = session(max_item_size);
    for (i, step) in steps.iter().enumerate() {
        let mut out = Vec::new();
        let mut closed = false;
        if bytewise {
            for b in &step.send {
                closed |= s.feed(std::slice::from_ref(b), &mut out);
                if closed {
                    break;
                }
            }
        } else {
            closed = s.feed(&step.send, &mut out);
            while !closed && s.has_more() {
                closed = s.feed(&[], &mut out);
            }
        }
        assert!(
            out == step.expect && closed == step.close,
            "{} step {i} (bytewise={bytewise}): sent {}\n expected {} close={}\n got      {} close={closed}",
            path.display(),
            show(&step.send),
            show(&step.expect),
            step.close,
            show(&out)
        );
        if closed {
            break;
        }
    }
}

#[test]
fn transcripts_fed_whole() {
    for p in transcripts() {
        run(&p, false);
    }
}

#[test]
fn transcripts_fed_byte_by_byte() {
    for p in transcripts() {
        run(&p, true);
    }
}
