"""Workspace keys: 32 random bytes per workspace, stored sealed with the master key
(DUMONT_SNAPSHOT_MASTER_KEY). A database leak alone exposes no snapshot; the associated data
ties each sealed key to its instance, so a key copied onto another row does not open. Machines'
storage secrets (grants.py) are sealed the same way, tied to their access key."""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings

from dumont.errors import Conflict

KEY_BYTES = 32
NONCE_BYTES = 12


class SnapshotsNotConfigured(Conflict):
    code = "snapshots_not_configured"


def _master() -> AESGCM:
    text = settings.DUMONT_SNAPSHOT_MASTER_KEY or ""
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise SnapshotsNotConfigured("DUMONT_SNAPSHOT_MASTER_KEY must be set to 64 hex characters (32 bytes)")
    return AESGCM(key)


def new_sealed_key(instance_id) -> bytes:
    return _seal(os.urandom(KEY_BYTES), _aad(instance_id))


def open_key(instance_id, sealed: bytes) -> bytes:
    return _open(sealed, _aad(instance_id), f"the workspace key of instance {instance_id}",
                 hint=" (was the master key changed?)")


def seal_secret(access_key: str, secret: str) -> bytes:
    return _seal(secret.encode(), _secret_aad(access_key))


def open_secret(access_key: str, sealed: bytes) -> str:
    return _open(sealed, _secret_aad(access_key), f"the storage secret of access key {access_key}").decode()


def _seal(plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + _master().encrypt(nonce, plaintext, aad)


def _open(sealed: bytes, aad: bytes, what: str, *, hint: str = "") -> bytes:
    sealed = bytes(sealed)
    try:
        return _master().decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad)
    except InvalidTag:
        raise SnapshotsNotConfigured(f"{what} does not open with DUMONT_SNAPSHOT_MASTER_KEY{hint}") from None


def _aad(instance_id) -> bytes:
    return f"dumont workspace key v1:{instance_id}".encode()


def _secret_aad(access_key: str) -> bytes:
    return f"dumont storage secret v1:{access_key}".encode()
