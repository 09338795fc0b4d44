"""Integrations with other frameworks. Each submodule imports its framework; this package does not.

- :mod:`ratmemcache.contrib.django`: ``RatMemCache``, a Django cache backend on an in-process
  :class:`ratmemcache.Cache` (``pip install 'ratmemcache[django]'``).
"""
