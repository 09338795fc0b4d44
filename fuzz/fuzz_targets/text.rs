//! The text protocol: lines biased toward the classic commands and their arguments (see
//! `fuzz_support::text_stream`), fed to a session over a small cache with a manual clock.
//! Asserts: no panic; a closed session stays closed and silent.
#![no_main]

use fuzz_support::run_text_stream;
use libfuzzer_sys::fuzz_target;

#[rustfmt::skip]
const WORDS: &[&[u8]] = &[
    b"get ", b"gets ", b"gat ", b"gats ", b"bget ", b"set ", b"add ", b"replace ", b"append ",
    b"prepend ", b"cas ", b"incr ", b"decr ", b"delete ", b"touch ", b"flush_all", b"stats",
    b"version", b"verbosity ", b"quit", b"shutdown", b"streaming_get ", b"sget ", b"set_begin ",
    b"set_data ", b"set_end ", b"stats settings", b"stats items", b"stats slabs", b"mg ", b"ms ",
];

#[rustfmt::skip]
const ARGS: &[&[u8]] = &[
    b"noreply", b"k", b"key", b"0", b"1", b"2", b"5", b"10", b"-1", b"100", b"2592000",
    b"2592001", b"1700000100", b"4294967295", b"4294967296", b"18446744073709551615",
    b"18446744073709551616", b"9223372036854775808", b"+1", b"-0", b"0x10", b"1025", b"65536",
    b"1048576", b"\r\n", b"hi\r\n", b"12345\r\n",
];

fuzz_target!(|data: &[u8]| run_text_stream(data, WORDS, ARGS));
