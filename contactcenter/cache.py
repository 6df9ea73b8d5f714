"""Django's Redis cache with one connection pool per process.

Django keeps its cache objects in an asgiref ``Local`` that is per request context under ASGI, and each
``RedisCache`` builds its own client and connection pool: every request opened (and later dropped) a new
TCP connection to Redis for its first cache call (a turn of a phone call makes two: the webhook's replay
check and the calendar stamp). Here the pools live in the process and are shared by every request; a
redis-py pool is thread-safe and starts afresh in a forked child (Celery's prefork workers).
"""

from __future__ import annotations

import os
import select
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
        self._location = (server, repr(sorted((params.get("OPTIONS") or {}).items(), key=str)))

    def claim(self, key: str, timeout: int) -> bool:
        """Store ``key`` for ``timeout`` seconds unless it exists (``SET NX EX``); True when this call stored
        it. What ``add(key, 1, timeout)`` stores, sent on a connection this thread keeps for itself.

        For the webhooks' replay check, once per webhook: ``add`` builds a redis-py client, checks a
        connection out of the pool and back, and dispatches events around it; that was most of the
        ~110 us it cost (this: ~60 us). A failed command drops the connection (the next call opens a new
        one) and raises; it is not retried (a lost reply would make the retry report a replay)."""
        key = self.make_key(key)
        held = _held.__dict__.get(self._location)
        if held is None or held[0] != os.getpid():
            pool = self._cache._get_connection_pool(write=True)
            held = _held.__dict__[self._location] = (os.getpid(), pool.make_connection())
        connection = held[1]
        if connection._sock is not None and _readable(connection._sock):
            connection.disconnect()  # closed by the server (or unread data): start afresh
        try:
            connection.send_command("SET", key, 1, "NX", "EX", max(1, int(timeout)))
            return connection.read_response() is not None
        except BaseException:
            connection.disconnect()
            raise


# Per thread: {(location, options): (pid, connection)} for RedisCache.claim.
_held = threading.local()


def _readable(sock) -> bool:
    """Whether an idle connection has something to read: the server closed it (or sent what nobody read).
    One poll(2); redis-py's own check is a non-blocking recv between two timeout changes."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


def shared_pool_count() -> int:
    return len(_pools)
