#!/usr/bin/env python3
"""Regenerates fuzz/seeds/<target>/ from tests/transcripts/*.txt and a few hand-made binary
requests and L2 records. Run from anywhere: python3 fuzz/make_seeds.py

Seeds are plain files named by their content hash; the encodings match fuzz/src/lib.rs and
fuzz/fuzz_targets/*.rs.
"""

from __future__ import annotations

import hashlib
import shutil
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import transcript  # noqa: E402  (tests/transcript.py: the transcript format's own parser)

SEEDS = ROOT / "fuzz" / "seeds"


def quote_text(b: bytes) -> bytes:
    """Escapes bytes >= 0xC0 with 0xFE so `text_stream` passes them through unchanged."""
    out = bytearray()
    for c in b:
        if c >= 0xC0:
            out.append(0xFE)
        out.append(c)
    return bytes(out)


def req(op: int, key: bytes = b"", extras: bytes = b"", value: bytes = b"", cas: int = 0) -> bytes:
    body = extras + key + value
    return struct.pack(">BBHBBHIIQ", 0x80, op, len(key), len(extras), 0, 0, len(body), 0, cas) + body


def prog(op: int, key: bytes = b"", extras: bytes | None = None, value: bytes = b"", cas: int = 0) -> bytes:
    """One framed request in the binary target's program encoding."""
    c = op if extras is None else op | 0x40
    head = bytes([c]) if extras is None else bytes([c, len(extras)])
    return head + bytes([len(key), len(value), cas]) + (extras or b"") + key + value


E8 = struct.pack(">II", 5, 0)
E8_TTL = struct.pack(">II", 0, 2)
E20 = struct.pack(">QQI", 1, 10, 0)


def binary_requests() -> list[bytes]:
    return [
        req(0x01, b"k", E8, b"hello") + req(0x00, b"k") + req(0x0A),
        req(0x02, b"k", E8, b"1") + req(0x05, b"k", E20) + req(0x0C, b"k"),
        req(0x11, b"k", E8_TTL, b"v") + req(0x09, b"k") + req(0x0D, b"x") + req(0x0A),
        req(0x0E, b"k", b"", b"tail") + req(0x0F, b"k", b"", b"head") + req(0x00, b"k"),
        req(0x1C, b"k", struct.pack(">I", 100)) + req(0x1D, b"k", struct.pack(">I", 0)),
        req(0x04, b"k") + req(0x14, b"k") + req(0x08, b"", struct.pack(">I", 0)),
        req(0x10) + req(0x10, b"settings") + req(0x0B) + req(0x1B, b"", struct.pack(">I", 1)),
        req(0x01, b"k", E8, b"v", cas=1) + req(0x07),
        req(0x06, b"n", E20) + req(0x16, b"n", E20) + req(0x17),
    ]


def binary_programs() -> list[bytes]:
    return [
        prog(0x01, b"k", value=b"hello") + prog(0x00, b"k") + prog(0x0A),
        prog(0x02, b"k", value=b"1") + prog(0x05, b"k") + prog(0x0C, b"k"),
        prog(0x11, b"k", value=b"v") + prog(0x09, b"k") + prog(0x0D, b"x") + prog(0x0A),
        prog(0x0E, b"k", value=b"tail") + prog(0x0F, b"k", value=b"head") + prog(0x00, b"k"),
        prog(0x1C, b"k") + bytes([0x80, 5]) + prog(0x1D, b"k"),
        prog(0x04, b"k") + prog(0x14, b"k") + prog(0x08, extras=struct.pack(">I", 0)),
        prog(0x10) + prog(0x10, b"settings") + prog(0x0B) + prog(0x1B),
        prog(0x01, b"k", value=b"v", cas=1) + prog(0x07),
        prog(0x0A, extras=b"xx") + prog(0x00),
        bytes([0x90, 24]) + req(0x0A)[:24],
    ]


def record(value: bytes, codec: int = 0, stored: bytes | None = None, flags: int = 7) -> bytes:
    payload = value if stored is None else stored
    return struct.pack("<BBBBIQQQI", 1, codec, 0b101, 0, flags, 42, 0, 1_700_000_000_000, len(value)) + payload


def records() -> list[bytes]:
    # A hand-made LZ4 block: literal 'a', a 19-byte match at offset 1, then 5 literal bytes.
    lz4 = bytes([0x1F, ord("a"), 1, 0, 0]) + bytes([0x50]) + b"aaaaa"
    return [
        record(b""),
        record(b"hello"),
        record(bytes(range(256))),
        record(b"a" * 25, codec=1, stored=lz4),
        record(b"hello", codec=1, stored=bytes([0x50]) + b"hello"),
    ]


def write(target: str, blobs: list[bytes]) -> None:
    d = SEEDS / target
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    for b in blobs:
        (d / hashlib.sha1(b).hexdigest()).write_bytes(b)
    print(f"{target}: {len(set(blobs))} seeds")


def main() -> None:
    sends = []
    for p in sorted(transcript.TRANSCRIPTS.glob("*.txt")):
        steps = transcript.parse(p)
        sends.append(b"".join(s.send for s in steps))
    write("text", [quote_text(s) for s in sends])
    write("meta", [quote_text(s) for s in sends])
    write("binary", binary_programs())
    # No cuts, then the same streams cut after every line and at a few odd offsets.
    split = []
    for s in sends + binary_requests():
        split.append(b"\x00" + s)
        offs = [len(s) // 3, len(s) // 2 + 1, len(s) - 1]
        split.append(bytes([len(offs)]) + b"".join(struct.pack("<H", o % 65536) for o in offs) + s)
    write("split_feed", split)
    write("record", records())


if __name__ == "__main__":
    main()
