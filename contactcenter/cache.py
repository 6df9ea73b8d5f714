"""Django's Redis cache with one connection pool per process.

Django keeps its cache objects in an asgiref ``Local`` that is per request context under ASGI, and each
``RedisCache`` builds its own client and connection pool: every request opened (and later dropped) a new
TCP connection to Redis for its first cache call (a turn of a phone call makes two: the webhook's replay
check and the calendar stamp). Here the pools live in the process and are shared by every request; a
redis-py pool is thread-safe and starts afresh in a forked child (Celery's prefork workers).
"""

from __future__ import annotations

import threading

from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient

_pools: dict[tuple, object] = {}
_lock = threading.Lock()


class SharedPoolClient(RedisCacheClient):
    def _get_connection_pool(self, write):
        index = self._get_connection_pool_index(write)
        key = (self._servers[index], self._pool_class, repr(sorted(self._pool_options.items(), key=str)))
        pool = _pools.get(key)
        if pool is None:
            with _lock:
                pool = _pools.get(key)
                if pool is None:
                    pool = _pools[key] = self._pool_class.from_url(self._servers[index], **self._pool_options)
        return pool


class RedisCache(DjangoRedisCache):
    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = SharedPoolClient


def shared_pool_count() -> int:
    return len(_pools)
