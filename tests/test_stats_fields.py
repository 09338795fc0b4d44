"""``stats`` speaks memcached's names: dashboards and exporters (prometheus memcached_exporter,
Grafana boards, memcache-top ...) read ratmemcached as they read memcached.

Both servers run side by side; their field names are compared with an explicit allowlist of the
differences (each one explained in docs/compatibility.md), and after the same traffic the counters
that both define the same way must have the same values.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from servers import ENGINES, exchange, memcached, ratmemcached, requires_memcached

pytestmark = requires_memcached

ROOT = Path(__file__).resolve().parent.parent

#: memcached `stats` fields that measure machinery ratmemcached does not have (slab allocator,
#: segmented LRU and its maintainer, hash table expansion, logger, buffer pools) or an event that
#: can't happen here. ratmemcached prints them with the value memcached shows when that
#: machinery is idle (0; `libevent` names the I/O engine instead), and docs/compatibility.md
#: says why for each.
IDLE_MACHINERY = {
    "response_obj_oom",
    "response_obj_count",
    "response_obj_bytes",
    "read_buf_count",
    "read_buf_bytes",
    "read_buf_bytes_free",
    "read_buf_oom",
    "reserved_fds",
    "get_flushed",
    "hash_is_expanding",
    "slab_reassign_rescues",
    "slab_reassign_chunk_rescues",
    "slab_reassign_evictions_nomem",
    "slab_reassign_inline_reclaim",
    "slab_reassign_busy_items",
    "slab_reassign_busy_deletes",
    "slab_reassign_running",
    "slabs_moved",
    "slab_global_page_pool",
    "malloc_fails",
    "lru_crawler_running",
    "lru_maintainer_juggles",
    "evicted_active",
    "lrutail_reflocked",
    "moves_to_cold",
    "moves_to_warm",
    "moves_within_lru",
    "direct_reclaims",
    "lru_bumps_dropped",
    "log_worker_dropped",
    "log_worker_written",
    "log_watcher_skipped",
    "log_watcher_sent",
    "log_watchers",
    "unexpected_napi_ids",
    "round_robin_fallback",
}

#: ratmemcached's own `stats` fields (the l2_* ones appear only with the L2 on).
RATMEMCACHE_ONLY = {"eviction_policy", "shards"}

#: Counters that mean the same thing in both servers, compared after the same traffic.
SAME_VALUES = [
    "cmd_get",
    "cmd_set",
    "cmd_flush",
    "cmd_touch",
    "cmd_meta",
    "get_hits",
    "get_misses",
    "get_expired",
    "delete_misses",
    "delete_hits",
    "incr_misses",
    "incr_hits",
    "decr_misses",
    "decr_hits",
    "cas_misses",
    "cas_hits",
    "cas_badval",
    "touch_hits",
    "touch_misses",
    "store_too_large",
    "curr_items",
    "total_items",
    "evictions",
    "limit_maxbytes",
    "max_connections",
    "curr_connections",
    "rejected_connections",
    "accepting_conns",
    "threads",
    "version",
    "pointer_size",
    "expired_unfetched",
    "auth_cmds",
    "auth_errors",
]

#: The traffic: every counted kind of command, hits and misses, through the text and meta
#: protocols (it runs on one connection; the replies are not compared here).
TRAFFIC = (
    b"set a 0 0 1\r\n1\r\n"
    b"set b 0 0 1\r\nx\r\n"
    b"add a 0 0 1\r\n2\r\n"
    b"add c 0 0 1\r\n3\r\n"
    b"replace nope 0 0 1\r\n4\r\n"
    b"append a 0 0 1\r\n5\r\n"
    b"prepend b 0 0 1\r\n6\r\n"
    b"get a b nope\r\n"
    b"gets a\r\n"
    b"cas a 0 0 1 1\r\n7\r\n"
    b"cas nope 0 0 1 1\r\n7\r\n"
    b"incr a 1\r\n"
    b"incr nope 1\r\n"
    b"decr a 1\r\n"
    b"decr nope 1\r\n"
    b"touch b 100\r\n"
    b"touch nope 100\r\n"
    b"gat 100 b nope\r\n"
    b"delete c\r\n"
    b"delete nope\r\n"
    b"set gone 0 -1 1\r\nx\r\n"
    b"get gone\r\n"
    b"mn\r\n"
    b"mg a v\r\n"
    b"ms m 1\r\nm\r\n"
    b"md m\r\n"
    b"set unread 0 1 1\r\nx\r\n"
    b"version\r\n"
)


def _stats(sock: socket.socket, sub: str = "") -> dict[str, str]:
    cmd = f"stats {sub}".strip().encode() + b"\r\n"
    reply = exchange(sock, cmd, until=b"END\r\n")
    out = {}
    for line in reply.decode().splitlines():
        if line.startswith("STAT "):
            _, k, v = line.split(" ", 2)
            out[k] = v
    return out


def _settle(sock: socket.socket) -> None:
    exchange(sock, TRAFFIC, until=b"VERSION 1.6.18\r\n")


@pytest.mark.parametrize("engine", ENGINES)
def test_stats_field_names_are_memcached_s(engine: str) -> None:
    with memcached() as ref, ratmemcached(engine=engine) as ours:
        theirs_s, ours_s = ref.connect(), ours.connect()
        try:
            mine, theirs = _stats(ours_s), _stats(theirs_s)
        finally:
            theirs_s.close()
            ours_s.close()
    # every one of memcached's 92 fields, in memcached's order, then ratmemcached's own
    assert len(theirs) == 92
    assert list(mine)[:92] == list(theirs)
    assert set(mine) - set(theirs) == RATMEMCACHE_ONLY
    assert mine["libevent"] == engine
    for name in IDLE_MACHINERY:
        assert mine[name] == "0", name
    # and the page that lists the differences names every one of them
    doc = (ROOT / "docs" / "compatibility.md").read_text()
    for name in IDLE_MACHINERY | RATMEMCACHE_ONLY | {"libevent"}:
        assert f"`{name}`" in doc, f"{name} is not in docs/compatibility.md"


def test_stats_values_match_memcached_after_the_same_traffic() -> None:
    with memcached() as ref, ratmemcached() as ours:
        a, b = ref.connect(), ours.connect()
        try:
            _settle(a)
            _settle(b)
            # the unread item expires; read it (a miss) so both count the expiry
            time.sleep(2.1)
            exchange(a, b"get unread\r\n", until=b"END\r\n")
            exchange(b, b"get unread\r\n", until=b"END\r\n")
            theirs, mine = _stats(a), _stats(b)
        finally:
            a.close()
            b.close()
    diffs = {k: (theirs.get(k), mine.get(k)) for k in SAME_VALUES if theirs.get(k) != mine.get(k)}
    assert not diffs, f"memcached vs ratmemcached: {diffs}"
    # memcached counts its listening socket as a connection too
    assert int(theirs["total_connections"]) == int(mine["total_connections"]) + 1


def test_stats_items_slabs_and_settings_use_memcached_names() -> None:
    """The names ratmemcached prints under ``stats items``, ``stats slabs`` and ``stats
    settings`` are memcached's, except the documented extras."""
    with memcached() as ref, ratmemcached() as ours:
        a, b = ref.connect(), ours.connect()
        try:
            for s in (a, b):
                exchange(s, b"set a 0 0 1\r\n1\r\n", until=b"STORED\r\n")
            got = {
                sub: (set(_stats(a, sub)), set(_stats(b, sub)))
                for sub in ("items", "slabs", "settings")
            }
        finally:
            a.close()
            b.close()
    extras = {
        "items": set(),
        "slabs": set(),
        "settings": {
            "eviction_policy",
            "max_entries",
            "default_ttl",
            "max_ttl",
            "cleanup_interval",
            "l2_enabled",
            "io_engine",
        },
    }
    for sub, (theirs, mine) in got.items():
        assert mine - theirs == extras[sub], sub
        assert mine, sub
