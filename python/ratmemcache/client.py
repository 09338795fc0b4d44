"""Client helpers for ratmemcached's streaming extension (large values in chunks).

Plain memcached clients move a value in one piece; these helpers move it in chunks, with progress
reports, using the extension that ``ratmemcached`` adds to the text protocol (see
docs/streaming.md for the wire format)::

    from ratmemcache.client import streaming_get, streaming_set
    streaming_set("127.0.0.1", 11211, "video:1", data, progress=lambda done, total: ...)
    data = streaming_get("127.0.0.1", 11211, "video:1", chunk_size=65536)

Download: ``streaming_get <key> [chunk_size]`` ->
``STREAM_BEGIN <key> <total_size> <chunk_count>``, then per chunk
``STREAM_DATA <key> <n> <len>\\r\\n<bytes>\\r\\n``, then ``STREAM_END <key>``.
Upload: ``set_begin <key> <total_size> <chunk_count> <flags> [exptime]`` -> ``OK``; per chunk
``set_data <key> <n> <len>\\r\\n<bytes>\\r\\n`` -> ``OK``; ``set_end <key>`` -> ``STORED``.
Errors are ``STREAM_ERROR <reason>``, raised here as :class:`StreamingError`.

The protocol logic is written once, as a generator of I/O steps, and driven by a blocking socket
(:func:`streaming_get`, :func:`streaming_set`) or by anyio (:func:`astreaming_get`,
:func:`astreaming_set`), so the two cannot drift apart.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Generator
from dataclasses import dataclass

import anyio
from anyio.streams.buffered import BufferedByteReceiveStream

from ratmemcache.errors import RatMemCacheError

__all__ = [
    "DEFAULT_GET_CHUNK",
    "DEFAULT_SET_CHUNK",
    "StreamingError",
    "astreaming_get",
    "astreaming_set",
    "streaming_get",
    "streaming_set",
]

#: The server's default chunk for streaming_get.
DEFAULT_GET_CHUNK = 4096
#: Upload chunk: each chunk costs a round trip, so it is larger than the download default.
DEFAULT_SET_CHUNK = 64 * 1024
#: memcached's key limit.
MAX_KEY_LENGTH = 250
#: A reply line longer than this is not one of ours: the stream is out of sync.
MAX_LINE = 4096

Progress = Callable[[int, int], object]


class StreamingError(RatMemCacheError, RuntimeError):
    """The server refused or broke a streaming transfer. ``reason`` is the server's words."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


# ----------------------------------------------------------------------------------------------
# The protocol, as a generator of I/O steps
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Send:
    data: bytes


@dataclass(frozen=True, slots=True)
class _ReadLine:
    pass


@dataclass(frozen=True, slots=True)
class _ReadExactly:
    n: int


_Step = _Send | _ReadLine | _ReadExactly
_Proto = Generator[_Step, bytes, bytes | None]


def _key_bytes(key: str | bytes) -> bytes:
    k = key.encode() if isinstance(key, str) else bytes(key)
    if not k or len(k) > MAX_KEY_LENGTH or any(c <= 32 or c == 127 for c in k):
        raise ValueError(
            f"invalid key {key!r}: 1 to {MAX_KEY_LENGTH} bytes, no spaces or control characters"
        )
    return k


def _fail_on(line: bytes, expected: str, key: bytes) -> StreamingError:
    text = line.decode("utf-8", "replace")
    if line.startswith(b"STREAM_ERROR"):
        reason = text[len("STREAM_ERROR") :].strip()
        return StreamingError(f"streaming {key.decode(errors='replace')!r}: {reason}", reason)
    if line in (b"ERROR", b"") or line.startswith((b"CLIENT_ERROR", b"SERVER_ERROR")):
        return StreamingError(
            f"streaming {key.decode(errors='replace')!r}: the server answered {text!r} "
            "(does it support ratmemcached's streaming extension?)",
            text,
        )
    return StreamingError(f"expected {expected}, got {text[:200]!r}", text)


def _get_protocol(key: bytes, chunk_size: int, progress: Progress | None) -> _Proto:
    yield _Send(b"streaming_get " + key + b" " + str(chunk_size).encode() + b"\r\n")
    line = yield _ReadLine()
    parts = line.split()
    if len(parts) != 4 or parts[0] != b"STREAM_BEGIN" or parts[1] != key:
        raise _fail_on(line, "STREAM_BEGIN", key)
    total, count = int(parts[2]), int(parts[3])
    chunks: list[bytes] = []
    done = 0
    for n in range(count):
        line = yield _ReadLine()
        parts = line.split()
        if len(parts) != 4 or parts[0] != b"STREAM_DATA" or parts[1] != key:
            raise _fail_on(line, f"STREAM_DATA for chunk {n}", key)
        if int(parts[2]) != n:
            raise StreamingError(f"expected chunk {n}, got chunk {int(parts[2])}")
        length = int(parts[3])
        block = yield _ReadExactly(length + 2)
        if block[-2:] != b"\r\n":
            raise StreamingError(
                f"chunk {n} is not terminated by \\r\\n: the stream is out of sync"
            )
        chunks.append(block[:-2])
        done += length
        if progress is not None:
            progress(done, total)
    line = yield _ReadLine()
    if line.split() != [b"STREAM_END", key]:
        raise _fail_on(line, "STREAM_END", key)
    value = b"".join(chunks)
    if len(value) != total:
        raise StreamingError(f"announced {total} bytes but received {len(value)}")
    return value


def _set_protocol(
    key: bytes,
    value: bytes,
    chunk_size: int,
    flags: int,
    exptime: int,
    progress: Progress | None,
) -> _Proto:
    total = len(value)
    count = (total + chunk_size - 1) // chunk_size
    yield _Send(b"set_begin %s %d %d %d %d\r\n" % (key, total, count, flags, exptime))
    line = yield _ReadLine()
    if line != b"OK":
        raise _fail_on(line, "OK", key)
    view = memoryview(value)
    for n in range(count):
        chunk = view[n * chunk_size : (n + 1) * chunk_size]
        yield _Send(b"set_data %s %d %d\r\n" % (key, n, len(chunk)) + bytes(chunk) + b"\r\n")
        line = yield _ReadLine()
        if line != b"OK":
            raise _fail_on(line, f"OK for chunk {n}", key)
        if progress is not None:
            progress(min((n + 1) * chunk_size, total), total)
    yield _Send(b"set_end " + key + b"\r\n")
    line = yield _ReadLine()
    if line != b"STORED":
        raise _fail_on(line, "STORED", key)
    return None


def _check_args(chunk_size: int, flags: int = 0) -> None:
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    if not 0 <= flags < 2**32:
        raise ValueError(f"flags must fit in 32 bits, got {flags}")


# ----------------------------------------------------------------------------------------------
# Blocking driver
# ----------------------------------------------------------------------------------------------


class _SocketReader:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()

    def _fill(self) -> None:
        data = self.sock.recv(256 * 1024)
        if not data:
            raise StreamingError("the server closed the connection mid-transfer")
        self.buf += data

    def readline(self) -> bytes:
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[:i]).rstrip(b"\r")
                del self.buf[: i + 1]
                return line
            if len(self.buf) > MAX_LINE:
                raise StreamingError("reply line too long: the stream is out of sync")
            self._fill()

    def readexactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out


def _run_sync(proto: _Proto, sock: socket.socket) -> bytes | None:
    reader = _SocketReader(sock)
    try:
        step = next(proto)
        while True:
            reply = b""
            if isinstance(step, _Send):
                sock.sendall(step.data)
            elif isinstance(step, _ReadLine):
                reply = reader.readline()
            else:
                reply = reader.readexactly(step.n)
            step = proto.send(reply)
    except StopIteration as stop:
        result: bytes | None = stop.value
        return result


def streaming_get(
    host: str,
    port: int,
    key: str | bytes,
    chunk_size: int = DEFAULT_GET_CHUNK,
    progress: Progress | None = None,
    *,
    timeout: float | None = 30.0,
) -> bytes:
    """Download ``key`` in chunks of ``chunk_size`` bytes; ``progress(done, total)`` after each.

    Raises :class:`StreamingError` on a miss or a refused chunk size (the server's reason is in
    ``.reason``), and ``OSError`` for network failures.
    """
    _check_args(chunk_size)
    k = _key_bytes(key)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        value = _run_sync(_get_protocol(k, chunk_size, progress), sock)
    assert value is not None
    return value


def streaming_set(
    host: str,
    port: int,
    key: str | bytes,
    value: bytes,
    chunk_size: int = DEFAULT_SET_CHUNK,
    flags: int = 0,
    exptime: int = 0,
    progress: Progress | None = None,
    *,
    timeout: float | None = 30.0,
) -> None:
    """Upload ``value`` under ``key`` in chunks; stored only once every chunk has arrived.

    ``progress(done, total)`` runs after each acknowledged chunk. Raises :class:`StreamingError`
    when the server refuses (too large, bad chunk) and ``OSError`` for network failures.
    """
    _check_args(chunk_size, flags)
    k = _key_bytes(key)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        _run_sync(_set_protocol(k, bytes(value), chunk_size, flags, exptime, progress), sock)


# ----------------------------------------------------------------------------------------------
# anyio driver
# ----------------------------------------------------------------------------------------------


async def _run_async(proto: _Proto, host: str, port: int) -> bytes | None:
    async with await anyio.connect_tcp(host, port) as stream:
        reader = BufferedByteReceiveStream(stream)
        try:
            step = next(proto)
            while True:
                reply = b""
                try:
                    if isinstance(step, _Send):
                        await stream.send(step.data)
                    elif isinstance(step, _ReadLine):
                        reply = (await reader.receive_until(b"\n", MAX_LINE)).rstrip(b"\r")
                    else:
                        reply = await reader.receive_exactly(step.n)
                except (anyio.IncompleteRead, anyio.EndOfStream):
                    raise StreamingError("the server closed the connection mid-transfer") from None
                except anyio.DelimiterNotFound:
                    raise StreamingError("reply line too long: the stream is out of sync") from None
                step = proto.send(reply)
        except StopIteration as stop:
            result: bytes | None = stop.value
            return result


async def astreaming_get(
    host: str,
    port: int,
    key: str | bytes,
    chunk_size: int = DEFAULT_GET_CHUNK,
    progress: Progress | None = None,
) -> bytes:
    """:func:`streaming_get` for anyio/asyncio code (use ``anyio.fail_after`` for a timeout)."""
    _check_args(chunk_size)
    value = await _run_async(_get_protocol(_key_bytes(key), chunk_size, progress), host, port)
    assert value is not None
    return value


async def astreaming_set(
    host: str,
    port: int,
    key: str | bytes,
    value: bytes,
    chunk_size: int = DEFAULT_SET_CHUNK,
    flags: int = 0,
    exptime: int = 0,
    progress: Progress | None = None,
) -> None:
    """:func:`streaming_set` for anyio/asyncio code."""
    _check_args(chunk_size, flags)
    proto = _set_protocol(_key_bytes(key), bytes(value), chunk_size, flags, exptime, progress)
    await _run_async(proto, host, port)
