"""Listening addresses, as the logs print them, and the one-line errors when one can't be had.

Shared by both I/O engines and the HTTP admin listener; it imports none of them.
"""

from __future__ import annotations

import errno
import socket
import stat
import sys
from pathlib import Path

from ratmemcache.errors import ServerStartError

__all__ = ["bind_error", "check_unix_path", "format_addr", "is_wildcard"]


def format_addr(host: str, port: int) -> str:
    """``host:port``, or ``[v6]:port`` for an IPv6 address."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_wildcard(host: str) -> bool:
    """An address that listens on every interface."""
    return host in ("0.0.0.0", "::", "")


def bind_error(e: OSError, host: str, port: int) -> str:
    """The operator's one line for a listener that could not open on ``host:port``."""
    where = format_addr(host, port)
    if isinstance(e, socket.gaierror):
        return f"cannot listen on {where}: cannot resolve {host!r} ({e.strerror or e})"
    if e.errno == errno.EADDRINUSE:
        return (
            f"cannot listen on {where}: address already in use (is another memcached or "
            "ratmemcached running there? choose another port with -p)"
        )
    if e.errno == errno.EACCES:
        return f"cannot listen on {where}: permission denied (ports below 1024 need privileges)"
    if e.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {where}: {host} is not an address of this machine"
    return f"cannot listen on {where}: {e.strerror or e}"


def check_unix_path(path: str) -> None:
    """Refuse a non-socket file or a live server's socket; remove a stale socket."""
    if sys.platform == "win32":
        raise ServerStartError("--unix-socket / [server] unix_socket is POSIX-only")
    p = Path(path)
    try:
        st = p.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ServerStartError(f"cannot listen on unix socket {p}: a non-socket file is there")
    if _unix_socket_alive(p):
        raise ServerStartError(
            f"cannot listen on unix socket {p}: another server is listening on it"
        )
    p.unlink()  # a stale socket left by a crashed server


def _unix_socket_alive(path: Path) -> bool:
    if sys.platform == "win32":  # check_unix_path refuses unix sockets there first
        return False
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(0.5)
        s.connect(str(path))
    except OSError:
        return False
    else:
        return True
    finally:
        s.close()
