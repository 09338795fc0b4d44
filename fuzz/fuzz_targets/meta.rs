//! The meta protocol: lines biased toward mg/ms/md/ma/mn/me and their flags (see
//! `fuzz_support::text_stream`), fed to a session over a small cache with a manual clock.
//! Asserts: no panic; a closed session stays closed and silent.
#![no_main]

use fuzz_support::run_text_stream;
use libfuzzer_sys::fuzz_target;

#[rustfmt::skip]
const WORDS: &[&[u8]] = &[
    b"mg ", b"ms ", b"md ", b"ma ", b"mn", b"me ", b"mg k", b"ms k ", b"md k", b"ma k",
    b"me k", b"set k 0 0 ", b"get k", b"incr k ", b"mg b", b"ms b",
];

#[rustfmt::skip]
const ARGS: &[&[u8]] = &[
    b"v", b"k", b"f", b"t", b"c", b"s", b"q", b"h", b"l", b"b", b"u", b"x", b"I", b"O123",
    b"Oabc", b"T0", b"T-1", b"T60", b"T2592001", b"N30", b"N0", b"R30", b"E5", b"E0",
    b"C1", b"C0", b"F5", b"F4294967296", b"M+", b"M-", b"MS", b"MA", b"MP", b"MR", b"ME",
    b"MI", b"MD", b"D1", b"D18446744073709551615", b"J1", b"J0", b"S2", b"0", b"1", b"2",
    b"a2V5", b"noreply", b"\r\n", b"hi\r\n",
];

fuzz_target!(|data: &[u8]| run_text_stream(data, WORDS, ARGS));
