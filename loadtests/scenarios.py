"""The load-test scenarios, shared by ``locustfile.py`` (the traffic) and ``run.py`` (the server
each one needs and the preload). Plain data: importing this module does not import locust.

Every value is a deterministic function of its key (``value_for``), so a read can be checked: a
get must return the key's value or a miss, anything else is reported as a failure.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass, field
from typing import Any

KB = 1024
MB = 1024 * KB


@dataclass(frozen=True)
class Scenario:
    name: str
    #: The locust User class in locustfile.py that runs it.
    user_class: str
    description: str
    keys: int
    min_value: int
    max_value: int
    #: Share of requests that are gets (the rest are sets), 0..1.
    get_ratio: float
    #: Share of the gets that are multi-key gets (get_many of ``multi_get`` keys).
    multi_get_ratio: float = 0.0
    multi_get: int = 10
    #: Extra ratmemcached arguments (``-m``, ``-I``...) and TOML config for its server.
    server_args: tuple[str, ...] = ()
    config: dict[str, Any] = field(default_factory=dict)
    #: Needs an ``[l2] data_dir`` (filled in by run.py).
    l2: bool = False
    #: Default number of concurrent users (connections).
    users: int = 8

    def key(self, i: int) -> str:
        return f"{self.name}:{i}"

    def size_of(self, i: int) -> int:
        span = self.max_value - self.min_value
        return self.min_value + (zlib.crc32(self.key(i).encode()) % (span + 1) if span else 0)


#: Incompressible bytes that values are cut from (LZ4 in the L2 cannot shrink them).
_NOISE = random.Random(20261126).randbytes(2 * MB + 4 * KB)


def value_for(scenario: Scenario, i: int) -> bytes:
    """The value of key ``i``: ``size_of(i)`` bytes at an offset that depends on the key."""
    size = scenario.size_of(i)
    offset = (i * 7919) % (len(_NOISE) - size + 1)
    return _NOISE[offset : offset + size]


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            name="get_heavy",
            user_class="GetHeavy",
            description="90% gets (a tenth are 10-key get_many), 10% sets; 10k keys, 100-1000 B",
            keys=10_000,
            min_value=100,
            max_value=1000,
            get_ratio=0.9,
            multi_get_ratio=0.1,
            server_args=("-m", "64"),
        ),
        Scenario(
            name="set_heavy",
            user_class="SetHeavy",
            description="10% gets, 90% sets; 10k keys of 100-1000 B",
            keys=10_000,
            min_value=100,
            max_value=1000,
            get_ratio=0.1,
            server_args=("-m", "64"),
        ),
        Scenario(
            name="large_values",
            user_class="LargeValues",
            description="70% gets, 30% sets; 64 keys of 256 KB-1 MB",
            keys=64,
            min_value=256 * KB,
            max_value=1 * MB,
            get_ratio=0.7,
            server_args=("-m", "256", "-I", "2m"),
            users=4,
        ),
        Scenario(
            name="l2_cold",
            user_class="L2ColdRead",
            description=(
                "90% gets, 10% sets; 10k keys of 2-6 KB (40 MB) on disk behind a 2 MB L1, "
                "so most reads come from the L2"
            ),
            keys=10_000,
            min_value=2 * KB,
            max_value=6 * KB,
            get_ratio=0.9,
            server_args=("-m", "2"),
            config={"l2": {"enable_l2_cache": True, "sync": "periodic"}},
            l2=True,
        ),
    )
}
