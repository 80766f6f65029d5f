"""The object store: any S3-compatible service through one boto3 client.

boto3 clients are thread-safe; one client with a connection pool as large as the worker pool
lets every thread keep a warm connection. botocore's own retries (standard mode) cover
throttling and transient network errors. Names given to this module are relative to the
repository prefix. Counters record what was sent, for statistics and tests.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import boto3
import botocore.config
from botocore.exceptions import BotoCoreError, ClientError

from .config import StorageConfig
from .errors import ObjectMissing, StorageError

MISSING_CODES = {"NoSuchKey", "404", "NotFound"}
DELETE_BATCH = 1000  # the most keys S3 takes in one DeleteObjects request


class StoredObject(NamedTuple):
    name: str  # relative to the prefix
    size: int
    modified: float  # LastModified as unix time, by the object store's clock


@dataclass
class Traffic:
    puts: int = 0
    bytes_put: int = 0
    gets: int = 0
    bytes_got: int = 0


class Storage:
    def __init__(self, config: StorageConfig):
        self.config = config
        self.traffic = Traffic()
        self._lock = threading.Lock()
        self._client = boto3.session.Session().client(
            "s3",
            endpoint_url=config.endpoint,
            aws_access_key_id=config.access_key,
            aws_secret_access_key=config.secret_key,
            region_name=config.region,
            config=botocore.config.Config(
                max_pool_connections=config.parallel,
                retries={"max_attempts": 6, "mode": "standard"},
                connect_timeout=10,
                read_timeout=60,
                s3={"addressing_style": "path"},
                # Objects are authenticated by AES-GCM and content hashes already; extra CRCs
                # cost CPU, and some S3-compatible stores reject the newer checksum headers.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )

    def key(self, name: str) -> str:
        return self.config.root + name

    def put(self, name: str, body: bytes) -> None:
        self._call("PUT", name, Bucket=self.config.bucket, Key=self.key(name), Body=body)
        with self._lock:
            self.traffic.puts += 1
            self.traffic.bytes_put += len(body)

    def get(self, name: str, start: int | None = None, length: int | None = None) -> bytes:
        """The whole object, or `length` bytes from `start` (one ranged GET)."""
        kwargs = {"Bucket": self.config.bucket, "Key": self.key(name)}
        if start is not None and length is not None:
            kwargs["Range"] = f"bytes={start}-{start + length - 1}"
        response = self._call("GET", name, **kwargs)
        try:
            body = response["Body"].read()
        except (BotoCoreError, OSError) as exc:
            raise StorageError(f"GET {self.key(name)}: {exc}") from exc
        with self._lock:
            self.traffic.gets += 1
            self.traffic.bytes_got += len(body)
        return body

    def objects(self, prefix: str) -> Iterator[StoredObject]:
        """Every object whose name starts with `prefix`, in key order."""
        paginator = self._client.get_paginator("list_objects_v2")
        root = self.config.root
        try:
            for page in paginator.paginate(Bucket=self.config.bucket, Prefix=root + prefix):
                for item in page.get("Contents", []):
                    yield StoredObject(item["Key"][len(root) :], item["Size"], item["LastModified"].timestamp())
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"LIST {root + prefix}: {exc}") from exc

    def list(self, prefix: str) -> Iterator[tuple[str, int]]:
        """(name, size) of every object whose name starts with `prefix`, in key order."""
        return ((stored.name, stored.size) for stored in self.objects(prefix))

    def delete_many(self, names: list) -> None:
        """Delete `names` with as few requests as S3 allows; an already missing one is no error."""
        for start in range(0, len(names), DELETE_BATCH):
            keys = [{"Key": self.key(name)} for name in names[start : start + DELETE_BATCH]]
            try:
                response = self._client.delete_objects(Bucket=self.config.bucket,
                                                       Delete={"Objects": keys, "Quiet": True})
            except (ClientError, BotoCoreError) as exc:
                raise StorageError(f"DELETE {len(keys)} objects from {keys[0]['Key']}: {exc}") from exc
            failed = response.get("Errors", [])
            if failed:
                first = failed[0]
                raise StorageError(f"DELETE {first.get('Key')}: {first.get('Code')} {first.get('Message')}"
                                   f" ({len(failed)} of {len(keys)} objects not deleted)")

    def delete(self, name: str) -> None:
        self._call("DELETE", name, Bucket=self.config.bucket, Key=self.key(name))

    def create_bucket_if_missing(self) -> None:
        try:
            self._client.head_bucket(Bucket=self.config.bucket)
        except ClientError:
            self._client.create_bucket(Bucket=self.config.bucket)

    def _call(self, verb: str, name: str, **kwargs):
        method = {"PUT": self._client.put_object, "GET": self._client.get_object,
                  "DELETE": self._client.delete_object}[verb]
        try:
            return method(**kwargs)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in MISSING_CODES:
                raise ObjectMissing(self.key(name)) from None
            raise StorageError(f"{verb} {self.key(name)}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"{verb} {self.key(name)}: {exc}") from exc
