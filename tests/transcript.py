"""Wire transcripts: the bytes a client sends and the exact bytes the server must answer.

Format (tests/transcripts/*.txt; read as latin-1 so any byte can appear)::

    # a comment
    #! item_size_max=1024          engine options (memcached: -I 1k)
    > set k 0 0 1\\r\\n               bytes to send (Python escapes: \\r \\n \\t \\x00 \\\\)
    > x\\r\\n                         consecutive '>' lines are sent together
    < STORED\\r\\n                    then the exact reply to them
    < <CLOSED>                     the server closes the connection after the reply

Each file starts on a fresh server with an empty cache, over one connection. The expected bytes
are memcached 1.6.18's (tests/test_transcripts.py proves it against Debian's memcached), except in
files named ``ext_*``, which cover ratmemcache's own extensions.

API: ``parse(path) -> list[Step]``, ``options(path) -> dict[str, int]``,
``run_socket(host, port, steps)``, ``run_session(session, steps)``. Both runners raise
``AssertionError`` naming the step, what was sent, expected and received.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

TRANSCRIPTS = Path(__file__).parent / "transcripts"


@dataclass(frozen=True)
class Step:
    send: bytes
    expect: bytes
    close: bool


class FeedSession(Protocol):
    def feed(self, data: bytes, /) -> tuple[bytes, bool]: ...


def unescape(text: str) -> bytes:
    return text.encode("latin-1").decode("unicode_escape").encode("latin-1")


def options(path: Path) -> dict[str, int]:
    """The ``#! name=value`` options of a transcript."""
    opts: dict[str, int] = {}
    for line in path.read_text(encoding="latin-1").splitlines():
        if line.startswith("#!"):
            for pair in line[2:].split():
                name, value = pair.split("=", 1)
                opts[name] = int(value)
    return opts


def parse(path: Path) -> list[Step]:
    steps: list[Step] = []
    send, expect, close = b"", b"", False
    for line in path.read_text(encoding="latin-1").split("\n"):
        if line.startswith("> "):
            if expect or close:
                steps.append(Step(send, expect, close))
                send, expect, close = b"", b"", False
            send += unescape(line[2:])
        elif line.startswith("< <CLOSED>"):
            close = True
        elif line.startswith("< "):
            expect += unescape(line[2:])
    if send:
        steps.append(Step(send, expect, close))
    return steps


def _fail(i: int, step: Step, got: bytes, closed: bool) -> AssertionError:
    return AssertionError(
        f"step {i}: sent {step.send[:300]!r}\n"
        f"  expected {step.expect[:300]!r} close={step.close}\n"
        f"  received {got[:300]!r} close={closed}"
    )


def run_session(session: FeedSession, steps: list[Step]) -> None:
    """Feeds each step to an in-process ``ratmemcache._core.Session``."""
    for i, step in enumerate(steps):
        got, closed = session.feed(step.send)
        if got != step.expect or closed != step.close:
            raise _fail(i, step, got, closed)
        if closed:
            return


def _read(sock: socket.socket, want: int, expect_close: bool, timeout: float) -> tuple[bytes, bool]:
    got = b""
    deadline = time.monotonic() + timeout
    while len(got) < want or expect_close:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(1 << 20)
        except TimeoutError:
            break
        except ConnectionResetError:
            return got, True
        if not chunk:
            return got, True
        got += chunk
    return got, False


def run_socket(host: str, port: int, steps: list[Step], timeout: float = 5.0) -> None:
    """Plays the steps over one TCP connection to a running server."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        for i, step in enumerate(steps):
            sock.sendall(step.send)
            got, closed = _read(sock, len(step.expect), step.close, timeout)
            if not step.close and got == step.expect:
                # Nothing more may follow: a short wait catches surplus reply bytes.
                extra, closed = _read(sock, 1, False, 0.05)
                got += extra
            if got != step.expect or closed != step.close:
                raise _fail(i, step, got, closed)
            if closed:
                return


def transcript_files(include_extensions: bool = True) -> list[Path]:
    files = sorted(TRANSCRIPTS.glob("*.txt"))
    return [f for f in files if include_extensions or not f.name.startswith("ext_")]
