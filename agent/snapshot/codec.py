"""Blob encoding: one codec byte, then the payload.

  0 RAW      stored as is (compression would not save enough to pay for decompressing)
  1 ZSTD     zstd frame
  2 ZSTD_BG2 zstd frame over the bytes of 2-byte elements grouped: every element's second
             byte (the high byte of little-endian fp16/bf16), then every first byte. Exponent
             bytes of trained weights take few values; grouped together they compress far
             better (MEASURED.md: 1.44 against 1.28 on bf16; 1.50 with the entropy-only zstd
             settings used here).

The codec is chosen per blob and recorded in it, so a reader needs no other context. zstd
compresses and decompresses with the GIL released; compressor objects are not thread-safe,
so each thread keeps its own. Grouping and un-grouping use numpy when it is installed (16-bit
shifts, over 10 GB/s, GIL released); without it, bytes slicing gives the same bytes at a
fraction of the speed, holding the GIL.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import threading

import zstandard

_NOT_LOADED = object()
numpy = _NOT_LOADED  # imported at first use (~50 ms that a snapshot without tensors never needs)


def _numpy():
    """numpy, or None when it is not installed (optional: the same bytes, more slowly)."""
    global numpy
    if numpy is _NOT_LOADED:
        # numpy's OpenBLAS starts a thread per core that spins for a while: CPU a restore
        # needs, for linear algebra nothing here does. Set before the import, unless set.
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
        try:
            import numpy as module
        except ImportError:
            module = None
        numpy = module
    return numpy

RAW, ZSTD, ZSTD_BG2 = 0, 1, 2
DEFAULT_LEVEL = 3
BUFFERED_MIN = 256 * 1024  # smaller blobs are decoded into fresh memory: reused buffers pay off for large ones
MIN_SAVING = 0.03  # keep a blob raw unless zstd saves at least 3%
TENSOR_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")

_local = threading.local()


class CodecError(Exception):
    """A blob's payload does not decode."""


def warm_up() -> None:
    """Import now what tensor blobs need (numpy), e.g. while an agent waits for its first command."""
    _numpy()


def numpy_available() -> bool:
    return _numpy() is not None


def is_tensor_file(path: str) -> bool:
    return path.lower().endswith(TENSOR_SUFFIXES)


def encode(data: bytes, *, level: int = DEFAULT_LEVEL, tensor: bool = False) -> bytes:
    codec = ZSTD_BG2 if tensor and len(data) >= 2 else ZSTD
    if codec == ZSTD_BG2:
        compressed = _entropy_compressor().compress(group_bytes(data))
    else:
        compressed = _compressor(level).compress(data)
    if len(compressed) > len(data) * (1 - MIN_SAVING):
        return bytes((RAW,)) + data
    return bytes((codec,)) + compressed


class DecodeBuffers:
    """Memory that one thread at a time reuses for decoding (a restore's workers): a blob's
    decrypted bytes go into `opened`, its plaintext into `out` (anonymous maps, so page-aligned,
    which O_DIRECT writes need), grouped bytes into `grouped`. On a VM the page faults of a
    fresh 4 MiB buffer per chunk cost as much CPU as zstd itself. What decode returns lives in
    these until the next decode with them."""

    def __init__(self, blocking=contextlib.nullcontext):
        self.out: mmap.mmap | None = None
        self.grouped: bytearray | None = None
        self._opened: mmap.mmap | None = None
        self.blocking = blocking  # entered around a wait for the disk (a restore gives its core away)

    def output(self, size: int) -> mmap.mmap:
        if self.out is None or len(self.out) < size:
            self.out = mmap.mmap(-1, max(size, 1))
        return self.out

    def grouping(self, size: int) -> bytearray:
        if self.grouped is None or len(self.grouped) < size:
            self.grouped = bytearray(size)
        return self.grouped

    def opened(self, size: int) -> memoryview:
        """Room for `size` decrypted bytes (codec byte, then payload), placed so that the payload
        starts on a page: a raw blob's plaintext is then written with O_DIRECT where it lies."""
        need = mmap.PAGESIZE - 1 + size
        if self._opened is None or len(self._opened) < need:
            self._opened = mmap.mmap(-1, max(need, 1))
        return memoryview(self._opened)[mmap.PAGESIZE - 1 : need]

    def holds(self, view: memoryview) -> bool:
        return view.obj is self._opened and self._opened is not None


def decode(blob, raw_size: int, *, buffers: DecodeBuffers | None = None):
    """The plaintext of an encoded blob (`raw_size` is its size, or a bound for documents):
    a memoryview into `buffers` when given, else fresh bytes."""
    if not blob:
        raise CodecError("empty blob")
    codec, payload = blob[0], memoryview(blob)[1:]
    if codec not in (RAW, ZSTD, ZSTD_BG2):
        raise CodecError(f"unknown codec {codec}")
    if buffers is None:
        return _decode_fresh(codec, payload, raw_size)
    if codec == RAW:
        if buffers.holds(payload):
            return payload  # decrypted in place, page-aligned
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


def group_bytes(data) -> bytes:
    """Second bytes of each 2-byte element, then first bytes (a trailing odd byte goes last)."""
    size, half = len(data), len(data) // 2
    numpy = _numpy()
    if numpy is None or half == 0:
        return data[1::2] + data[0::2]
    out = bytearray(size)
    elements = numpy.frombuffer(data, dtype="<u2", count=half)
    target = numpy.frombuffer(out, dtype=numpy.uint8)
    numpy.right_shift(elements, 8, out=target[:half], casting="unsafe")  # high bytes
    numpy.copyto(target[half : 2 * half], elements, casting="unsafe")  # low bytes (truncation)
    if size % 2:
        out[-1] = data[-1]
    return out


def ungroup_bytes(grouped) -> bytearray:
    out = bytearray(len(grouped))
    _ungroup_into(grouped, out)
    return out


def _ungroup_into(grouped, out) -> None:
    """The inverse of group_bytes, into the first len(grouped) bytes of `out` (a bytearray or
    mmap)."""
    size, half = len(grouped), len(grouped) // 2
    view = memoryview(grouped)
    numpy = _numpy()
    if numpy is None or half == 0:
        # bytearray and mmap strided slice assignment is a C loop; a memoryview's is slower.
        out[1:size:2] = view[:half]
        out[0:size:2] = view[half:]  # with a trailing odd byte
        return
    source = numpy.frombuffer(view, dtype=numpy.uint8, count=size)
    elements = numpy.frombuffer(out, dtype="<u2", count=half)
    numpy.left_shift(source[:half], 8, out=elements, dtype="<u2")
    numpy.bitwise_or(elements, source[half : 2 * half], out=elements, dtype="<u2")
    if size % 2:
        out[size - 1] = view[size - 1]


def _compressor(level: int) -> zstandard.ZstdCompressor:
    compressors = _local.__dict__.setdefault("compressors", {})
    if level not in compressors:
        compressors[level] = zstandard.ZstdCompressor(level=level, write_content_size=True)
    return compressors[level]


def _entropy_compressor() -> zstandard.ZstdCompressor:
    """zstd for grouped tensor bytes: almost nothing but its entropy coder. Weights do not
    repeat; their exponent bytes are just few distinct values. Match finding (any level) costs
    time and even loses ratio to the bits it spends on short chance matches: on bf16 weights
    this gives 1.50 where level 3 gives 1.41, compresses ~6x and decompresses ~3x as fast
    (the mantissa half is stored raw by zstd either way). The frames are ordinary zstd."""
    if not hasattr(_local, "entropy_compressor"):
        _local.entropy_compressor = zstandard.ZstdCompressor(
            compression_params=zstandard.ZstdCompressionParameters(
                window_log=17, hash_log=6, chain_log=6, search_log=1, min_match=7, target_length=0,
                strategy=zstandard.STRATEGY_FAST, write_content_size=True),
        )
    return _local.entropy_compressor


def _decompressor() -> zstandard.ZstdDecompressor:
    if not hasattr(_local, "decompressor"):
        _local.decompressor = zstandard.ZstdDecompressor()
    return _local.decompressor
