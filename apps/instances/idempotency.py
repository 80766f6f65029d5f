"""Idempotency-Key: the first response to a keyed request is stored and replayed for repeats.

Used by the create and wake endpoints (apps.web) and the snapshot endpoint (apps.snapshots).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

from django.db import IntegrityError, transaction

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
