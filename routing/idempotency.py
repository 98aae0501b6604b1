"""Idempotency-Key handling: the same key and body replays the stored answer without calling a
provider; the same key with another body is refused; a key whose first request is still running
is refused until it finishes. Keys are scoped per caller and expire."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from routing.models import Caller, IdempotencyRecord


@dataclass(frozen=True)
class Claim:
    """What to do with a keyed request: run it (record set), replay, or refuse."""

    record: IdempotencyRecord | None = None
    replay: IdempotencyRecord | None = None
    conflict: str = ""  # "running" or "mismatch"


def request_hash(*, path: str, body: bytes) -> str:
    return hashlib.sha256(path.encode() + b"\n" + body).hexdigest()


def claim(*, caller: Caller, key: str, request_sha256: str) -> Claim:
    now = timezone.now()
    for _ in range(3):
        try:
            with transaction.atomic():
                record = IdempotencyRecord.objects.create(
                    caller=caller,
                    key=key,
                    request_sha256=request_sha256,
                    created_at=now,
                    expires_at=now + timedelta(seconds=settings.FOS_IDEMPOTENCY_TTL_S),
                )
            return Claim(record=record)
        except IntegrityError:
            existing = IdempotencyRecord.objects.filter(caller=caller, key=key).first()
            if existing is None:
                continue  # deleted between our insert and this read: try again
            if existing.expires_at <= now:
                IdempotencyRecord.objects.filter(pk=existing.pk, expires_at__lte=now).delete()
                continue
            if existing.request_sha256 != request_sha256:
                return Claim(conflict="mismatch")
            if existing.state == IdempotencyRecord.State.RUNNING:
                return Claim(conflict="running")
            return Claim(replay=existing)
    return Claim(conflict="running")


def finish(record: IdempotencyRecord, *, status: int, body: dict[str, Any]) -> None:
    record.state = IdempotencyRecord.State.DONE
    record.response_status = status
    record.response_body = body
    record.save(update_fields=["state", "response_status", "response_body"])


def abandon(record: IdempotencyRecord) -> None:
    """The request ended without an answer worth replaying (e.g. bad input): free the key."""
    IdempotencyRecord.objects.filter(pk=record.pk).delete()
