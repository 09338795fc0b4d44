"""The users of memcached's authentication files: ``-Y`` (``[server] auth_file``) and the SASL
password database of ``-S`` (``[server] sasl_pwdb``, or ``$MEMCACHED_SASL_PWDB``).

The config's startup check reads them (a bad file is a one-line :class:`ConfigError` naming the
file and the line), and so does the engine builder; this module depends on neither.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from ratmemcache.errors import ConfigError

if TYPE_CHECKING:
    from ratmemcache.config import Config

__all__ = ["SASL_PWDB_ENV", "load_auth_file", "load_sasl_pwdb"]

SASL_PWDB_ENV = "MEMCACHED_SASL_PWDB"


def load_sasl_pwdb(config: Config) -> list[tuple[bytes, bytes]]:
    """The SASL users: ``[server] sasl_pwdb``, else the file named by $MEMCACHED_SASL_PWDB."""
    path = config.server.sasl_pwdb
    key = "sasl_pwdb"
    if path is None:
        path = os.environ.get(SASL_PWDB_ENV) or None
        key = f"sasl_pwdb (from ${SASL_PWDB_ENV})"
    if path is None:
        raise ConfigError(
            f'[server] sasl_pwdb: required when sasl = true (a file of "user:password" lines; '
            f"or set ${SASL_PWDB_ENV})"
        )
    return load_auth_file(path, key=key)


def load_auth_file(
    path: str | os.PathLike[str], *, key: str = "auth_file"
) -> list[tuple[bytes, bytes]]:
    """The users of a memcached authfile: one ``user:password`` per line.

    Raises ConfigError naming the file (and the line) when it can't be used.
    """
    where = f"[server] {key} {os.fspath(path)}"
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ConfigError(f"{where}: cannot read it ({e.strerror or e})") from None
    users: list[tuple[bytes, bytes]] = []
    for n, raw in enumerate(data.splitlines(), 1):
        line = raw.strip(b"\r")
        if not line:
            continue
        user, sep, password = line.partition(b":")
        if not sep or not user or not password:
            raise ConfigError(f'{where}:{n}: expected "user:password"')
        users.append((user, password))
    if not users:
        raise ConfigError(f'{where}: no "user:password" lines; nobody could connect')
    return users
