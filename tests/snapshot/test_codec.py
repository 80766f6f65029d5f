from __future__ import annotations

import os

import pytest
import zstandard

from agent.snapshot import codec

from .trees import bf16_weights


@pytest.fixture(params=["numpy", "slicing"])
def grouping(request, monkeypatch):
    """Both ways of grouping bytes: numpy when installed, bytes slicing without it."""
    if request.param == "slicing":
        monkeypatch.setattr(codec, "numpy", None)
    elif codec._numpy() is None:
        pytest.skip("numpy is not installed")
    return request.param


def test_byte_grouping_round_trips_any_length(grouping):
    for data in (b"", b"a", b"ab", b"abc", os.urandom(4097), bf16_weights(3001, seed=2)):
        assert codec.ungroup_bytes(codec.group_bytes(data)) == data
        assert codec.decode(codec.encode(data, tensor=True), len(data)) == data


def test_byte_grouping_puts_high_bytes_first(grouping):
    assert codec.group_bytes(bytes([0x01, 0xA1, 0x02, 0xA2])) == bytes([0xA1, 0xA2, 0x01, 0x02])
    assert codec.group_bytes(bytes([0x01, 0xA1, 0x02, 0xA2, 0x03])) == bytes([0xA1, 0xA2, 0x01, 0x02, 0x03])


def test_both_groupings_give_the_same_bytes(monkeypatch):
    if codec._numpy() is None:
        pytest.skip("numpy is not installed")
    data = os.urandom(100_001)
    fast = bytes(codec.group_bytes(data))
    monkeypatch.setattr(codec, "numpy", None)
    assert bytes(codec.group_bytes(data)) == fast


def test_grouped_bf16_compresses_better_than_plain_zstd():
    weights = bf16_weights(5 * 1024 * 1024 // 2 + 3, seed=1)  # the tree's weights: cached
    plain = len(weights) / len(zstandard.ZstdCompressor(level=codec.DEFAULT_LEVEL).compress(weights))
    encoded = codec.encode(weights, tensor=True)
    grouped = len(weights) / len(encoded)

    assert encoded[0] == codec.ZSTD_BG2
    assert grouped > plain * 1.05  # MEASURED.md: 1.44 against 1.28 on real weights
    assert codec.decode(encoded, len(weights)) == weights


def test_incompressible_blobs_are_stored_raw():
    data = os.urandom(100_000)
    encoded = codec.encode(data)
    assert encoded[0] == codec.RAW and codec.decode(encoded, len(data)) == data
