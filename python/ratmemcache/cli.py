"""The ``ratmemcached`` command."""

from __future__ import annotations

import click

from ratmemcache import Cache, __version__


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="ratmemcached")
def main() -> None:
    """ratmemcached: the memcached-compatible server (the network server is not built yet;
    this runs a short demonstration of the in-process cache that it will serve)."""
    cache = Cache(max_memory="64MB", eviction="s3fifo")
    cache.set("greeting", b"hello from ratmemcache")
    click.echo(f"ratmemcache {__version__}: {cache!r}")
    click.echo(f"get('greeting') -> {cache.get('greeting')!r}")
    click.echo(f"stats: hits={cache.stats()['hits']} curr_items={cache.stats()['curr_items']}")


if __name__ == "__main__":
    main()
