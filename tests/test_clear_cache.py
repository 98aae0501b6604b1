"""The suite's cache reset leaves what else lives in the same Redis database (the Celery broker)."""

from __future__ import annotations

import pytest
from django.core.cache import cache

from tests.conftest import clear_cache


def test_it_empties_the_cache() -> None:
    cache.set("breaker:probe", 1)
    clear_cache()
    assert cache.get("breaker:probe") is None


def test_it_keeps_keys_outside_the_cache_prefix_on_redis() -> None:
    client_of = getattr(getattr(cache, "_cache", None), "get_client", None)
    if client_of is None:
        pytest.skip("the cache is not Redis here (REDIS_URL unset)")
    client = client_of(write=True)
    client.set("_kombu.binding.fos-clear-cache-probe", b"queued")
    try:
        cache.set("breaker:probe", 1)
        clear_cache()
        assert cache.get("breaker:probe") is None
        assert client.get("_kombu.binding.fos-clear-cache-probe") == b"queued"
    finally:
        client.delete("_kombu.binding.fos-clear-cache-probe")
