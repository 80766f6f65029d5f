"""Blob encoding: one codec byte, then the payload.

  0 RAW      stored as is (compression would not save enough to pay for decompressing)
  1 ZSTD     zstd frame
  2 ZSTD_BG2 zstd frame over the bytes of 2-byte elements grouped: every element's second
             byte (the high byte of little-endian fp16/bf16), then every first byte. Exponent
             bytes of trained weights repeat a lot; grouped together they compress far better
             (MEASURED.md: 1.44 against 1.28 on bf16).

The codec is chosen per blob and recorded in it, so a reader needs no other context. zstd
compresses and decompresses with the GIL released; compressor objects are not thread-safe,
so each thread keeps its own.
"""

from __future__ import annotations

import mmap
import threading
from contextlib import contextmanager

import zstandard

RAW, ZSTD, ZSTD_BG2 = 0, 1, 2
DEFAULT_LEVEL = 3
MIN_SAVING = 0.03  # keep a blob raw unless zstd saves at least 3%
TENSOR_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")

_local = threading.local()


class CodecError(Exception):
    """A blob's payload does not decode."""


def is_tensor_file(path: str) -> bool:
    return path.lower().endswith(TENSOR_SUFFIXES)


def encode(data: bytes, *, level: int = DEFAULT_LEVEL, tensor: bool = False) -> bytes:
    codec = ZSTD_BG2 if tensor and len(data) >= 2 else ZSTD
    source = group_bytes(data) if codec == ZSTD_BG2 else data
    compressed = _compressor(level).compress(source)
    if len(compressed) > len(data) * (1 - MIN_SAVING):
        return bytes((RAW,)) + data
    return bytes((codec,)) + compressed


class DecodeBuffers:
    """Memory that one thread at a time reuses for decoding (a restore's workers): the plaintext
    goes into `out`, an anonymous map and so page-aligned (what O_DIRECT writes need), grouped
    bytes into `grouped`. On a VM the page faults of a fresh 4 MiB buffer per chunk cost as much
    CPU as zstd itself. What decode returns lives in `out` until the next decode with these."""

    def __init__(self):
        self.out: mmap.mmap | None = None
        self.grouped: bytearray | None = None

    def output(self, size: int) -> mmap.mmap:
        if self.out is None or len(self.out) < size:
            self.out = mmap.mmap(-1, max(size, 1))
        return self.out

    def grouping(self, size: int) -> bytearray:
        if self.grouped is None or len(self.grouped) < size:
            self.grouped = bytearray(size)
        return self.grouped


@contextmanager
def decoding_into(buffers: DecodeBuffers):
    """Within the block, decode() on this thread returns memoryviews into `buffers`
    (repo.open_blob decodes for its caller, which chooses the memory this way)."""
    _local.buffers = buffers
    try:
        yield buffers
    finally:
        _local.buffers = None


def decode(blob: bytes, raw_size: int) -> bytes:
    """The plaintext of an encoded blob (`raw_size` is its size, or a bound for documents)."""
    if not blob:
        raise CodecError("empty blob")
    codec, payload = blob[0], memoryview(blob)[1:]
    if codec not in (RAW, ZSTD, ZSTD_BG2):
        raise CodecError(f"unknown codec {codec}")
    buffers = getattr(_local, "buffers", None)
    if buffers is None:
        return _decode_fresh(codec, payload, raw_size)
    if codec == RAW:
        out = buffers.output(len(payload))
        out[: len(payload)] = payload
        return memoryview(out)[: len(payload)]
    # One byte of room beyond raw_size tells a longer frame from an exact one.
    if codec == ZSTD:
        return _decompress_into(payload, memoryview(buffers.output(raw_size + 1)), raw_size)
    grouped = _decompress_into(payload, memoryview(buffers.grouping(raw_size + 1)), raw_size)
    out = buffers.output(len(grouped))
    _ungroup_into(grouped, out)
    return memoryview(out)[: len(grouped)]


def _decode_fresh(codec: int, payload: memoryview, raw_size: int) -> bytes:
    if codec == RAW:
        return bytes(payload)
    try:
        data = _decompressor().decompress(payload, max_output_size=raw_size)
    except zstandard.ZstdError as exc:
        raise CodecError(f"zstd: {exc}") from None
    return ungroup_bytes(data) if codec == ZSTD_BG2 else data


def _decompress_into(payload: memoryview, room: memoryview, raw_size: int) -> memoryview:
    reader = _decompressor().stream_reader(payload, read_size=len(payload))
    filled = 0
    try:
        while filled < len(room):
            got = reader.readinto(room[filled:])
            if not got:
                break
            filled += got
    except zstandard.ZstdError as exc:
        raise CodecError(f"zstd: {exc}") from None
    if filled > raw_size:
        raise CodecError(f"more than the expected {raw_size} bytes")
    return room[:filled]


def group_bytes(data: bytes) -> bytes:
    """Second bytes of each 2-byte element, then first bytes (a trailing odd byte goes last)."""
    return data[1::2] + data[0::2]


def ungroup_bytes(grouped) -> bytearray:
    out = bytearray(len(grouped))
    _ungroup_into(grouped, out)
    return out


def _ungroup_into(grouped, out) -> None:
    """The inverse of group_bytes, into the first len(grouped) bytes of `out` (a bytearray or
    mmap: their strided slice assignment is a C loop; a memoryview's is several times slower)."""
    size, half = len(grouped), len(grouped) // 2
    view = memoryview(grouped)
    out[1:size:2] = view[:half]
    out[0:size:2] = view[half:]


def _compressor(level: int) -> zstandard.ZstdCompressor:
    compressors = _local.__dict__.setdefault("compressors", {})
    if level not in compressors:
        compressors[level] = zstandard.ZstdCompressor(level=level, write_content_size=True)
    return compressors[level]


def _decompressor() -> zstandard.ZstdDecompressor:
    if not hasattr(_local, "decompressor"):
        _local.decompressor = zstandard.ZstdDecompressor()
    return _local.decompressor
