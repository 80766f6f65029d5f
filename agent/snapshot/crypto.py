"""Encryption at rest: every stored blob is AES-256-GCM sealed with a random nonce.

The workspace key (32 bytes, held by the control plane) is never used directly: HKDF derives
the AES-GCM key from it. Object names are random, so the bucket listing reveals no content
hashes. The name under which a blob is stored is its associated data, so an object moved to
another name (or a pack member to another place) fails authentication instead of being read
as the wrong content.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import ConfigError

MAGIC = b"DMS1"  # format version of a sealed blob: magic, nonce, ciphertext and tag
NONCE_BYTES = 12
TAG_BYTES = 16
OVERHEAD = len(MAGIC) + NONCE_BYTES + TAG_BYTES
KEY_BYTES = 32


class SealBroken(Exception):
    """A sealed blob failed authentication: wrong key, wrong name, or altered bytes."""


class Sealer:
    def __init__(self, workspace_key: bytes):
        if len(workspace_key) != KEY_BYTES:
            raise ConfigError(f"the snapshot key must be {KEY_BYTES} bytes, got {len(workspace_key)}")
        self._aead = AESGCM(_derive(workspace_key, b"dumont snapshot encryption v1"))

    def seal(self, name: str, plaintext: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return MAGIC + nonce + self._aead.encrypt(nonce, plaintext, name.encode())

    def open(self, name: str, sealed, into: memoryview | None = None):
        """The plaintext of `sealed`; with `into` (exactly len(sealed) - OVERHEAD bytes of
        writable memory) decrypted there, and `into` returned."""
        if len(sealed) < OVERHEAD or sealed[: len(MAGIC)] != MAGIC:
            raise SealBroken("not a sealed Dumont blob")
        nonce = sealed[len(MAGIC) : len(MAGIC) + NONCE_BYTES]
        ciphertext = memoryview(sealed)[len(MAGIC) + NONCE_BYTES :]
        try:
            if into is None:
                return self._aead.decrypt(nonce, ciphertext, name.encode())
            self._aead.decrypt_into(nonce, ciphertext, name.encode(), into)
            return into
        except InvalidTag:
            raise SealBroken("authentication failed: wrong key or altered bytes") from None


def _derive(workspace_key: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=purpose).derive(workspace_key)


def parse_hex_key(text: str) -> bytes:
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        raise ConfigError("the snapshot key must be hex") from None
    if len(key) != KEY_BYTES:
        raise ConfigError(f"the snapshot key must be {KEY_BYTES} bytes ({2 * KEY_BYTES} hex digits), got {len(key)}")
    return key
