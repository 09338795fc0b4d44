"""Exceptions raised by ratmemcache.

Each subclasses the builtin that a caller would catch anyway, so ``except ValueError`` still works
for a bad configuration and ``except OSError`` for a persistence failure.
"""

from __future__ import annotations

__all__ = [
    "CacheClosedError",
    "ConfigError",
    "PersistenceError",
    "RatMemCacheError",
    "ServerStartError",
]


class RatMemCacheError(Exception):
    """Base class of every ratmemcache error."""


class ConfigError(RatMemCacheError, ValueError):
    """A setting is invalid; the message names it (and its TOML table) and what it expects."""


class PersistenceError(RatMemCacheError, OSError):
    """The persistent tier (L2) can't be opened, read or written. The message names the path."""


class CacheClosedError(RatMemCacheError, RuntimeError):
    """The cache was shut down; create a new one."""


class ServerStartError(RatMemCacheError, OSError):
    """The server could not start (the port is in use, the socket path is taken, ...).

    The message is one line meant for the operator; the CLI prints it as is.
    """
