"""A workspace's repository: the objects under one prefix, sealed with the workspace key.

Object names (relative to the prefix):
  config                 sealed JSON {"format": 1, "hash": "blake3"}: written once, opened
                         first, so a wrong key is reported as such before anything else is
                         read; "hash" names the function of blob ids (sha256 where missing:
                         repositories written before BLAKE3)
  data/NN/NAME           one 4 MiB chunk of a large file, as written before chunks were
                         packed (still read; NAME = HMAC(name key, blob id))
  packs/NN/RANDOM        blobs (small files, 1 MiB chunks of large ones), each sealed on its
                         own, back to back (~8 MiB)
  snapshots/ID           one manifest per snapshot; IDs sort by creation time
  locks/RANDOM           sealed JSON: a process at work on the repository (locks.py)
Every blob (chunk or pack member) is sealed with "OBJECT#BLOBID" as associated data;
config and manifests with their own name.
"""

from __future__ import annotations

import hashlib
import json
import threading
import os
import time
from concurrent.futures import ThreadPoolExecutor

from . import codec
from .config import SnapshotConfig
from .crypto import OVERHEAD, SealBroken, Sealer
from .errors import ConfigError, ObjectCorrupt, ObjectMissing, WrongKey
from .manifest import BlobRef, Manifest
from .storage import Storage

CONFIG = "config"
SNAPSHOTS = "snapshots/"
INDEX_SNAPSHOTS = 10  # manifests whose blobs count as already stored (retention keeps few)
LOCKS = "locks/"
DATA, PACKS = "data/", "packs/"

try:
    import blake3
except ImportError:  # the snapshot extra installs it; without, new repositories use sha256
    blake3 = None


def _sha256(data) -> str:
    return hashlib.sha256(data).hexdigest()


def _blake3(data) -> str:
    if blake3 is None:
        raise ConfigError("this repository names blobs by their BLAKE3 hash: install blake3 "
                          "(pip install 'dumont-agent[snapshot]')")
    return blake3.blake3(data).hexdigest()


# A blob's id is the hash of its plaintext: BLAKE3 hashes over 3x faster than sha256 (even with
# SHA-NI) and releases the GIL; the repository's config fixes the function for good, because
# dedup needs every snapshot in it to name equal blobs alike.
BLOB_HASHES = {"sha256": _sha256, "blake3": _blake3}


class Repository:
    def __init__(self, config: SnapshotConfig, storage: Storage | None = None, *, settings: dict | None = None):
        """`settings`: the config document as another Repository's open() read it (a restore's
        worker processes), so that it is not read again."""
        self.config = config
        self.storage = storage or Storage(config.storage)
        self.sealer = Sealer(config.key)
        self._settings: dict | None = settings  # the config document, once read
        self._settings_lock = threading.Lock()

    @property
    def parallel(self) -> int:
        return self.config.storage.parallel

    # --- blobs ------------------------------------------------------------------------------

    def seal_blob(self, object_name: str, blob_id: str, encoded: bytes) -> bytes:
        return self.sealer.seal(f"{object_name}#{blob_id}", encoded)

    def blob_id(self, data) -> str:
        """The id of a blob with plaintext `data`: its hash by the function the repository's
        config names (read once, by open())."""
        return BLOB_HASHES[self.open()["hash"]](data)

    def open_blob(self, blob_id: str, ref: BlobRef, sealed, needed_by="",
                  buffers: codec.DecodeBuffers | None = None):
        """The plaintext of a blob, checked: authentic, decodable, and hashing to its id.
        `needed_by` (text, or a function giving it: only called for an error) names the file.
        With `buffers` (a restore's, reused), a large blob is decrypted and decoded into them and
        the result is a view of them; small ones (most blobs, few bytes) take the shortest path."""
        if ref.raw_size < codec.BUFFERED_MIN:
            buffers = None
        into = buffers.opened(len(sealed) - OVERHEAD) if buffers is not None and len(sealed) > OVERHEAD else None
        try:
            encoded = self.sealer.open(f"{ref.object}#{blob_id}", sealed, into=into)
            data = codec.decode(encoded, ref.raw_size, buffers=buffers)
        except (SealBroken, codec.CodecError) as exc:
            raise ObjectCorrupt(self.storage.key(ref.object), f"blob {blob_id[:16]}: {exc}", _text(needed_by)) from None
        if len(data) != ref.raw_size or self.blob_id(data) != blob_id:
            raise ObjectCorrupt(self.storage.key(ref.object), f"blob {blob_id[:16]} does not match its hash",
                                _text(needed_by))
        return data

    # --- small sealed documents -------------------------------------------------------------

    def put_document(self, name: str, document: bytes) -> None:
        self.storage.put(name, self.sealer.seal(name, codec.encode(document)))

    def get_document(self, name: str) -> bytes:
        sealed = self.storage.get(name)
        try:
            encoded = self.sealer.open(name, sealed)
        except SealBroken as exc:
            if name == CONFIG:
                raise WrongKey(f"the snapshot key does not open {self.storage.key(name)}") from None
            raise ObjectCorrupt(self.storage.key(name), str(exc)) from None
        try:
            return codec.decode(encoded, len(encoded) * 64)
        except codec.CodecError as exc:
            raise ObjectCorrupt(self.storage.key(name), str(exc)) from None

    def open(self) -> dict:
        """Read the repository's config (once per Repository): checks the key, fixes the blob
        hash. ObjectMissing when there is no repository under the prefix."""
        if self._settings is not None:  # every blob hashed asks: no lock once it is read
            return self._settings
        with self._settings_lock:
            if self._settings is None:
                settings = json.loads(self.get_document(CONFIG))
                name = settings.setdefault("hash", "sha256")
                if name not in BLOB_HASHES:
                    raise ConfigError(f"{self.storage.key(CONFIG)} names blobs by {name!r}, which this "
                                      f"agent does not know; upgrade the agent")
                self._settings = settings
            return self._settings

    def open_or_init(self) -> dict:
        """open(), creating the repository's config on first use."""
        try:
            return self.open()
        except ObjectMissing:
            hash_name = "blake3" if blake3 is not None else "sha256"
            document = {"format": 1, "hash": hash_name, "created": time.time()}
            self.put_document(CONFIG, json.dumps(document).encode())
            return self.open()

    # --- snapshots --------------------------------------------------------------------------

    def snapshot_ids(self) -> list:
        return [name[len(SNAPSHOTS) :] for name, _size in self.storage.list(SNAPSHOTS)]

    def load_manifest(self, snapshot_id: str) -> Manifest:
        self.open()  # a wrong key is named as such, not as a corrupt manifest
        document = self.get_document(SNAPSHOTS + snapshot_id)
        try:
            return Manifest.from_json(document)
        except (ValueError, KeyError, TypeError) as exc:
            raise ObjectCorrupt(self.storage.key(SNAPSHOTS + snapshot_id), f"unreadable manifest: {exc}") from None

    def save_manifest(self, manifest: Manifest) -> None:
        self.put_document(SNAPSHOTS + manifest.id, manifest.to_json())

    def recent_manifests(self, count: int | None = INDEX_SNAPSHOTS) -> list:
        """The newest `count` manifests (every one when None), newest first, fetched in parallel."""
        ids = sorted(self.snapshot_ids(), reverse=True)[:count]
        with ThreadPoolExecutor(max_workers=max(1, min(len(ids), self.parallel))) as pool:
            return list(pool.map(self.load_manifest, ids))

    def resolve(self, snapshot_id: str) -> str:
        """`latest` names the newest snapshot."""
        if snapshot_id != "latest":
            return snapshot_id
        ids = self.snapshot_ids()
        if not ids:
            raise ObjectMissing(self.storage.key(SNAPSHOTS), "restore of the latest snapshot: there is none")
        return max(ids)


def _text(needed_by) -> str:
    return needed_by() if callable(needed_by) else needed_by


def new_snapshot_id() -> str:
    now = time.time()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now))
    return f"{stamp}.{int(now * 1000) % 1000:03d}Z-{os.urandom(4).hex()}"

