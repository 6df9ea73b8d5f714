"""The shared cache keeps one Redis connection pool per process (Django makes a cache object per request)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from asgiref.sync import sync_to_async
from django.core.cache import caches

from contactcenter.cache import RedisCache


@pytest.mark.redis
def test_requests_reuse_the_process_redis_connections_instead_of_opening_their_own(settings):
    settings.CACHES = {
        "default": {"BACKEND": "contactcenter.cache.RedisCache", "LOCATION": settings.REDIS_URL, "KEY_PREFIX": "t-pool"}
    }
    seen: list[int] = []

    def one_request(n: int) -> None:  # what a sync view does with the cache, in its request's own context
        cache = caches["default"]
        cache.set(f"visit-{n}", n, 30)
        assert cache.get(f"visit-{n}") == n
        seen.append(id(cache))

    async def twenty_requests():
        for n in range(20):  # each in a fresh context, as Django's ASGI handler runs them
            await asyncio.get_running_loop().create_task(sync_to_async(one_request, thread_sensitive=False)(n))

    # The process's pool for this server (other tests may have used it already), reached without touching
    # caches["default"] here: the requests' contexts would inherit this context's cache object.
    pool = RedisCache(settings.REDIS_URL, {})._cache._get_connection_pool(write=True)
    opened_before = pool._created_connections
    asyncio.run(twenty_requests())
    assert len(set(seen)) > 1, "each request context has its own cache object (Django's behaviour)"
    assert caches["default"]._cache._get_connection_pool(write=True) is pool
    assert pool._created_connections - opened_before <= 1, "twenty requests one after another reused a connection"


@pytest.mark.redis
def test_a_pool_is_shared_only_by_caches_of_the_same_server_and_options(settings):
    first = RedisCache(settings.REDIS_URL, {"KEY_PREFIX": "a"})
    again = RedisCache(settings.REDIS_URL, {"KEY_PREFIX": "b"})
    other_db = RedisCache(settings.REDIS_URL.rsplit("/", 1)[0] + "/15", {})
    results: list = []
    thread = threading.Thread(target=lambda: results.append(again._cache._get_connection_pool(write=True)))
    thread.start()
    thread.join()
    assert first._cache._get_connection_pool(write=True) is results[0]
    assert other_db._cache._get_connection_pool(write=True) is not results[0]


@pytest.mark.redis
def test_claim_stores_a_key_once_and_is_seen_by_add_and_other_threads(settings):
    import uuid

    cache = RedisCache(settings.REDIS_URL, {"KEY_PREFIX": "t-claim"})
    key = f"jti-{uuid.uuid4().hex}"
    assert cache.claim(key, 30) is True
    assert cache.claim(key, 30) is False, "the same thread claims it once"
    other: list[bool] = []
    thread = threading.Thread(target=lambda: other.append(cache.claim(key, 30)))
    thread.start()
    thread.join()
    assert other == [False], "another thread (its own connection) sees the claim"
    assert cache.get(key) == 1 and cache.add(key, 2, 30) is False, "stored as add() would have stored it"
    client = cache._cache.get_client(write=False)
    assert 0 < client.ttl(cache.make_key(key)) <= 30


@pytest.mark.redis
def test_claim_survives_a_connection_the_server_closed(settings):
    import uuid

    cache = RedisCache(settings.REDIS_URL, {"KEY_PREFIX": "t-claim"})
    assert cache.claim(f"a-{uuid.uuid4().hex}", 30) is True
    client = cache._cache.get_client(write=True)
    client.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")  # e.g. Redis restarted
    time.sleep(0.2)  # Redis closes the killed connections right after answering
    assert cache.claim(f"b-{uuid.uuid4().hex}", 30) is True
    assert cache.claim(f"c-{uuid.uuid4().hex}", 30) is True
