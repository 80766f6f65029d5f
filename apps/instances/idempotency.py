"""Idempotency-Key: the first response to a keyed request is stored and replayed for repeats,
for DUMONT_IDEMPOTENCY_TTL; after that the key is free again and the beat deletes the record.

Used by the create and wake endpoints (apps.web) and the snapshot endpoint (apps.snapshots).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from dumont.errors import Conflict, InvalidInput

from .models import IdempotencyRecord


def request_fingerprint(payload: object) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def idempotent(
    *, user, scope: str, key: str | None, payload: object, perform: Callable[[], tuple[int, dict]]
) -> tuple[int, dict, bool]:
    """Run `perform` once per (user, scope, key); repeats get the first response back.

    Returns (status, body, replayed). `perform` runs inside the same transaction as the record,
    so a crash cannot leave an action done without its record or the other way round.
    """
    if not key:
        status, body = perform()
        return status, body, False
    if len(key) > 255:
        raise InvalidInput("Idempotency-Key is longer than 255 characters", code="bad_idempotency_key")
    fingerprint = request_fingerprint(payload)
    _expired().filter(user=user, scope=scope, key=key).delete()  # the beat may not have come by yet
    record = IdempotencyRecord.objects.filter(user=user, scope=scope, key=key).first()
    if record is None:
        try:
            with transaction.atomic():
                status, body = perform()
                IdempotencyRecord.objects.create(
                    user=user, scope=scope, key=key, fingerprint=fingerprint,
                    response_status=status, response_body=body,
                )
                return status, body, False
        except IntegrityError:
            # A concurrent request with the same key committed first: its response is the answer.
            record = IdempotencyRecord.objects.filter(user=user, scope=scope, key=key).first()
            if record is None:
                raise
    if record.fingerprint != fingerprint:
        raise Conflict(
            "this Idempotency-Key was already used with a different request body",
            code="idempotency_key_reused",
        )
    return record.response_status, record.response_body, True


def idempotency_records_purge() -> int:
    """Periodic: records older than DUMONT_IDEMPOTENCY_TTL go."""
    deleted, _ = _expired().delete()
    return deleted


def _expired():
    cutoff = timezone.now() - timedelta(seconds=settings.DUMONT_IDEMPOTENCY_TTL)
    return IdempotencyRecord.objects.filter(created_at__lt=cutoff)
