//! The binary protocol. The input is a program of packets (below) that always starts the
//! connection with the 0x80 magic, so every run reaches the binary parser with well-framed
//! requests by default and malformed ones on demand. Fed to a session over a small cache with a
//! manual clock. Asserts: no panic; a closed session stays closed and silent.
//!
//! Each step reads a control byte `c`:
//! - `c < 0x80`: a framed request. Opcode `c & 0x3f`; extras of the right length for it unless
//!   bit 0x40 is set, then of length `next % 32`. Then a key length byte (`% 32`, or 250 + the
//!   excess above 0xF0 to pass the key limit), a value length byte and a CAS byte; the extras,
//!   key and value bytes follow (zero-padded when the input runs out).
//! - `0x80..=0x8F`: move the clock forward by the next byte, in seconds.
//! - `0x90..`: the next `next` input bytes go out verbatim (bad magic, lengths, truncation).
#![no_main]

use fuzz_support::{run_ops, session, Op};
use libfuzzer_sys::fuzz_target;

/// memcached's extras lengths: sets 8, arithmetic 20, touch/gat/verbosity 4, flush 0 (or 4).
fn extras_len(op: u8) -> usize {
    match op {
        0x01..=0x03 | 0x11..=0x13 => 8,
        0x05 | 0x06 | 0x15 | 0x16 => 20,
        0x1b..=0x1e | 0x23 | 0x24 => 4,
        _ => 0,
    }
}

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn bytes(&mut self, n: usize, out: &mut Vec<u8>) {
        let k = n.min(self.0.len());
        out.extend_from_slice(&self.0[..k]);
        out.resize(out.len() + n - k, 0);
        self.0 = &self.0[k..];
    }
}

fn program(data: &[u8]) -> Vec<Op> {
    let mut input = Input(data);
    let mut ops = Vec::new();
    let mut cur = Vec::new();
    let mut opaque = 0u32;
    while !input.0.is_empty() {
        let c = input.byte();
        match c {
            0x00..=0x7f => {
                let op = c & 0x3f;
                let ext = if c & 0x40 != 0 {
                    usize::from(input.byte() % 32)
                } else {
                    extras_len(op)
                };
                let kb = input.byte();
                let key_len = if kb >= 0xF0 {
                    250 + usize::from(kb - 0xF0)
                } else {
                    usize::from(kb % 32)
                };
                let val_len = usize::from(input.byte());
                let cas = u64::from(input.byte());
                opaque += 1;
                cur.extend_from_slice(&[0x80, op]);
                cur.extend_from_slice(&(key_len as u16).to_be_bytes());
                cur.extend_from_slice(&[ext as u8, 0, 0, 0]);
                cur.extend_from_slice(&((ext + key_len + val_len) as u32).to_be_bytes());
                cur.extend_from_slice(&opaque.to_be_bytes());
                cur.extend_from_slice(&cas.to_be_bytes());
                input.bytes(ext + key_len + val_len, &mut cur);
            }
            0x80..=0x8f => {
                if !cur.is_empty() {
                    ops.push(Op::Send(std::mem::take(&mut cur)));
                }
                ops.push(Op::Advance(u64::from(input.byte()) * 1000));
            }
            _ => {
                let n = usize::from(input.byte());
                input.bytes(n, &mut cur);
            }
        }
    }
    if !cur.is_empty() {
        ops.push(Op::Send(cur));
    }
    ops
}

fuzz_target!(|data: &[u8]| {
    let mut ops = program(data);
    // The first byte picks the protocol: make it binary.
    match ops.iter_mut().find(|o| matches!(o, Op::Send(_))) {
        Some(Op::Send(first)) if !first.is_empty() => first[0] = 0x80,
        _ => return,
    }
    let (mut s, clock) = session(256 << 10, 1024);
    run_ops(&mut s, &clock, &ops);
});
