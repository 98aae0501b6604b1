"""Callers: bearer tokens (stored hashed) and per-caller rate limits shared through the cache."""

from __future__ import annotations

import hashlib
import math
import secrets
import time

from django.conf import settings
from django.core.cache import cache
from django.db import transaction

from routing.models import Caller

TOKEN_PREFIX = "fos_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@transaction.atomic
def create_caller(*, name: str, rate_limit_per_minute: int | None = None, capabilities: list[str] | None = None) -> tuple[Caller, str]:
    """Create a caller and return it with its token; the token is not kept anywhere."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    caller = Caller(
        name=name,
        token_sha256=hash_token(token),
        token_prefix=token[:10],
        rate_limit_per_minute=rate_limit_per_minute,
        capabilities=capabilities or [],
    )
    caller.full_clean()
    caller.save(force_insert=True)
    return caller, token


def bearer_token(authorization: str) -> str:
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return ""
    return token.strip()


def authenticate(token: str) -> Caller | None:
    """The active caller holding this token, or None. Looked up on every request, so a revoked
    token is refused at once."""
    if not token:
        return None
    caller = Caller.objects.filter(token_sha256=hash_token(token)).first()
    if caller is None or not caller.is_active:
        return None
    return caller


def rate_limit_for(caller: Caller) -> int | None:
    if caller.rate_limit_per_minute is not None:
        return caller.rate_limit_per_minute or None
    return settings.FOS_DEFAULT_RATE_LIMIT_PER_MINUTE or None


def check_rate_limit(caller: Caller, *, now: float | None = None) -> float | None:
    """Count this request against the caller's limit; return seconds to wait when over it.

    A fixed one-minute window per caller, counted with an atomic cache increment so every
    process (with Redis) shares the count."""
    limit = rate_limit_for(caller)
    if limit is None:
        return None
    now = time.time() if now is None else now
    window = int(now // 60)
    key = f"ratelimit:{caller.pk}:{window}"
    if cache.add(key, 1, timeout=120):
        count = 1
    else:
        try:
            count = cache.incr(key)
        except ValueError:
            cache.set(key, 1, timeout=120)
            count = 1
    if count <= limit:
        return None
    return max(1.0, math.ceil((window + 1) * 60 - now))
